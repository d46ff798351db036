"""Tokens on the iii ports (``ripple serve --iii --auth``, DESIGN §15). Without ``--auth`` nothing here runs.

- **Worker port.** A worker connects with a token made with ``--worker`` (or ``--admin``): ``Authorization: Bearer``
  on the handshake (the Python SDK sends ``$III_TOKEN`` by itself, or ``headers=``; the Node SDK ≥ 0.22 takes
  ``{headers: {...}}``) or ``?token=`` on the engine URL (``ws://host:49134/?token=…``, for SDKs that set no headers).
  Its calls then run as that token: ``state::*`` and ``stream::*`` are checked by its grants, exactly like REST calls,
  and its writes carry its name as ``meta.actor``. A ``state`` trigger needs read access to its scope (a trigger on
  every scope needs admin), a ``stream`` trigger read access to its stream.
- **Stream port.** A client needs a token that may read the stream it joins (same two ways to pass it).
- Refusals happen before the WebSocket upgrade (401, 403, 429 with the JSON error body), a join of a forbidden stream
  closes the connection with 1008, and revoking a token closes its connections within the token book's refresh.
- The HTTP-trigger port keeps iii's behaviour: it is the workers' public API, and what their functions may do is
  decided by the worker's own token.
"""

from __future__ import annotations

import asyncio
import http
import urllib.parse
from typing import Any

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from ripple.auth.book import TokenBook
from ripple.auth.grants import Identity
from ripple.errors import BadRequestError, ForbiddenError, RippleError
from ripple.http.rest import ErrorBody, ErrorInfo, error_headers
from ripple.iii.protocol import RegisterTrigger, StateTriggerConfig, StreamTriggerConfig, parse_trigger_config

_encode = msgspec.json.Encoder().encode


def request_token(request: Request) -> str | None:
    """``Authorization: Bearer …`` of a handshake (the first one), else its ``token`` query parameter. Two ``token``
    parameters are refused (:class:`BadRequestError`), as on the main port: which one counts would be a guess."""
    headers = request.headers.get_all("Authorization")
    if headers:
        scheme, _, token = headers[0].strip().partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    query = urllib.parse.urlsplit(request.path).query
    tokens = [value for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True) if name == "token"]
    if len(tokens) > 1:
        raise BadRequestError(f"query parameter 'token' given {len(tokens)} times", detail={"parameter": "token"})
    return tokens[0] if tokens else None


def refusal(connection: ServerConnection, exc: RippleError) -> Response:
    """An HTTP answer to a handshake with the JSON error body (401, 403, 429)."""
    response = connection.respond(http.HTTPStatus(exc.status), "")
    response.body = _encode(ErrorBody(ErrorInfo(exc.code, exc.message, exc.detail)))
    del response.headers["Content-Type"]
    del response.headers["Content-Length"]
    response.headers["Content-Type"] = "application/json"
    response.headers["Content-Length"] = str(len(response.body))
    for name, value in (error_headers(exc) or {}).items():
        response.headers[name] = value
    return response


class PortAuth:
    """The token check of one iii port and the identities of its open connections."""

    def __init__(self, book: TokenBook) -> None:
        self.book = book
        self.connections: dict[ServerConnection, Identity] = {}
        self._closing: set[asyncio.Task[None]] = set()
        book.listeners.append(self._close_revoked)

    async def authenticate(self, connection: ServerConnection, request: Request) -> Identity | Response:
        address = connection.remote_address[0] if connection.remote_address else None
        try:
            return await self.book.authenticate(request_token(request), address)
        except RippleError as exc:
            return refusal(connection, exc)

    def remember(self, connection: ServerConnection, identity: Identity) -> None:
        self.connections[connection] = identity

    def forget(self, connection: ServerConnection) -> Identity | None:
        return self.connections.pop(connection, None)

    def _close_revoked(self) -> None:
        for connection, identity in list(self.connections.items()):
            if not self.book.is_current(identity):
                self.connections.pop(connection, None)
                task = asyncio.ensure_future(connection.close(1008, "unauthorized: the token was revoked or expired"))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    def close(self) -> None:
        if self._close_revoked in self.book.listeners:
            self.book.listeners.remove(self._close_revoked)


def require_worker(identity: Identity) -> None:
    if not identity.worker:
        raise ForbiddenError(f"token {identity.name!r} may not connect as an iii worker (create it with --worker)",
                             detail={"token": identity.name})


def trigger_refusal(identity: Identity, message: RegisterTrigger) -> ForbiddenError | None:
    """Why a worker's ``state``/``stream`` trigger would show it events it may not read, or ``None``."""
    try:
        config: Any = parse_trigger_config(message.trigger_type, message.config)
    except Exception:
        return None  # the engine refuses bad configs itself
    try:
        if isinstance(config, StateTriggerConfig):
            if config.scope is None:
                identity.require_admin("register a state trigger on every scope")
            else:
                identity.require_read(config.scope)
        elif isinstance(config, StreamTriggerConfig):
            identity.require_read_stream(config.stream_name)
    except ForbiddenError as exc:
        return exc
    return None
