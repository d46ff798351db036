"""Sessions of the RBAC worker port: who a connection is (its handshake: a ripple token, the auth function, or both)
and the registration hooks its registrations pass through. The rules themselves are :mod:`ripple.iii.rbac`.

**Opening a session** (before the WebSocket upgrade, so a refusal is an HTTP answer with the JSON error body):

- A ripple token (``Authorization: Bearer rpl_…`` or ``?token=``) is checked against the server's tokens when the
  server runs ``--auth``; a wrong, expired or revoked one is refused (401, 429 after repeated failures). When the
  port has an auth function, only credentials that look like ripple tokens (``rpl_…``) are ripple's: anything else
  (an app's own bearer token, an API key) is for the auth function to judge.
- The auth function (``--iii-rbac-auth-function``), when configured, is called with the engine's ``AuthInput``
  (``headers`` with lower-case names, ``query_params`` as lists, ``ip_address``) — minus any ripple token, which
  never leaves the server — plus ``token``: the ripple token's name and grants when one was presented. It answers an
  ``AuthResult``; an error or no answer refuses the connection (401, counted as a failed attempt of the address).
- Under ``--auth`` a connection needs a ripple token or an auth function's yes (both, when the port has one and a
  token is presented). Its data calls then run as the token, or, admitted by the auth function alone, as an identity
  without grants (``anonymous``), so ripple's data stays behind the grants either way.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import TYPE_CHECKING, Any

import msgspec
from websockets.http11 import Request

from ripple.auth.book import NO_TOKEN, FailureLimiter, TokenBook
from ripple.auth.grants import ANONYMOUS, Identity
from ripple.auth.tokens import PREFIX
from ripple.errors import RateLimitedError, UnauthorizedError
from ripple.iii.auth import request_token
from ripple.iii.protocol import (
    FORBIDDEN,
    IIIError,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
)
from ripple.iii.rbac import AuthResult, RbacConfig, Session, default_auth, parse_auth_result

if TYPE_CHECKING:
    from ripple.iii.engine import Engine

log = logging.getLogger("ripple.iii")

REDACTED = "<ripple token>"


def _is_ripple_token(value: str) -> bool:
    return value.strip().startswith(PREFIX)


def auth_headers(request: Request) -> dict[str, str]:
    """The handshake's headers as the engine hands them to an auth function (lower-case names; the last of repeated
    headers), with a ripple bearer token left out."""
    headers: dict[str, str] = {}
    for name, value in request.headers.raw_items():
        lower = name.lower()
        if lower == "authorization" and _is_ripple_token(value.partition(" ")[2]):
            continue
        headers[lower] = value
    return headers


def auth_query(request: Request) -> dict[str, list[str]]:
    """The handshake's query parameters as lists (kept as sent, like the engine), without a ripple ``token``."""
    params: dict[str, list[str]] = {}
    query = urllib.parse.urlsplit(request.path).query
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if not name or (name == "token" and _is_ripple_token(urllib.parse.unquote(value))):
            continue
        params.setdefault(name, []).append(value)
    return params


def token_summary(identity: Identity) -> dict[str, Any]:
    """What an auth function learns about the ripple token a connection presented (never the token itself)."""
    return {
        "name": identity.name,
        "admin": identity.admin,
        "worker": identity.worker,
        "scopes": [str(g) for g in identity.scopes],
        "streams": [str(g) for g in identity.streams],
    }


class SessionGate:
    """Opens the sessions of one RBAC port."""

    def __init__(self, engine: Engine, config: RbacConfig, book: TokenBook | None) -> None:
        self.engine = engine
        self.config = config
        self.book = book
        self.limiter = book.limiter if book is not None else FailureLimiter()

    async def open(self, request: Request, address: str | None) -> tuple[Session, Identity | None]:
        """The session of a handshake and the identity its data calls run as (``None``: no ``--auth``).
        Raises :class:`UnauthorizedError` or :class:`RateLimitedError`."""
        token = request_token(request)
        identity: Identity | None = None
        if self.book is not None and token is not None and (
            self.config.auth_function_id is None or _is_ripple_token(token)
        ):
            identity = await self.book.authenticate(token, address)
        if self.config.auth_function_id is None:
            if self.book is not None and identity is None:
                raise UnauthorizedError(NO_TOKEN)
            auth = default_auth(identity)
        else:
            auth = await self._ask(self.config.auth_function_id, request, address or "", identity)
        token_name = None if identity is None else identity.name
        if self.book is not None and identity is None:
            identity = ANONYMOUS
        return Session(self.config, auth, token_name), identity

    async def _ask(self, function_id: str, request: Request, address: str, identity: Identity | None) -> AuthResult:
        retry = self.limiter.retry_after(address or "?")
        if retry is not None:
            raise RateLimitedError(f"too many refused connections from this address; retry in {retry} s",
                                   retry_after=retry, detail={"retry_after": retry})
        data: dict[str, Any] = {"headers": auth_headers(request), "query_params": auth_query(request),
                                "ip_address": address}
        if identity is not None:
            data["token"] = token_summary(identity)
        try:
            return parse_auth_result(await self.engine.invoke(function_id, data, trusted=True))
        except (IIIError, ValueError) as exc:
            self.limiter.failed(address or "?")
            message = exc.message if isinstance(exc, IIIError) else str(exc)
            log.info("iii rbac: %s refused a connection from %s: %s", function_id, address, message)
            raise UnauthorizedError(f"the auth function refused the connection: {message}",
                                    detail={"code": "AUTH_ERROR"}) from None


# ---- registration hooks ---------------------------------------------------------------------------------------------


def _text(result: dict[str, Any], field: str, default: str) -> str:
    value = result.get(field)
    return value if isinstance(value, str) else default


async def _hook(engine: Engine, hook: str | None, data: dict[str, Any], what: str) -> dict[str, Any] | None:
    """Ask a registration hook; ``{}`` without a hook, ``None`` when it denies (an error or a non-object answer)."""
    if hook is None:
        return {}
    try:
        result = await engine.invoke(hook, data, trusted=True)
    except IIIError as exc:
        log.warning("iii rbac: %s denied by %s: %s %s", what, hook, exc.code, exc.message)
        return None
    if not isinstance(result, dict):
        log.warning("iii rbac: %s denied by %s (it answered %s, not an object)", what, hook,
                    "nothing" if result is None or result is msgspec.UNSET else type(result).__name__)
        return None
    return result


async def function_registration(engine: Engine, session: Session, msg: RegisterFunction) -> RegisterFunction | IIIError:
    """A session's ``registerfunction`` as it is to be registered (mapped by the hook, then prefixed), or why not
    (``FORBIDDEN``)."""
    if not session.auth.allow_function_registration:
        return IIIError(FORBIDDEN, f"function '{msg.id}' not registered: this session may not register functions")
    data = {"function_id": msg.id, "description": msg.description, "metadata": msg.metadata,
            "context": session.auth.context}
    hook = session.config.on_function_registration_function_id
    result = await _hook(engine, hook, data, f"function {msg.id}")
    if result is None:
        return IIIError(FORBIDDEN, f"function '{msg.id}' denied by {hook}")
    function_id = session.registered_id(_text(result, "function_id", msg.id))
    if function_id in session.config.own_functions():
        return IIIError(FORBIDDEN, f"function '{function_id}' not registered: the RBAC port's auth function, "
                                   "middleware and hooks come from workers on the main worker port")
    description, metadata = result.get("description"), result.get("metadata")
    return msgspec.structs.replace(
        msg,
        id=function_id,
        description=description if isinstance(description, str) else msg.description,
        metadata=msg.metadata if metadata is None else metadata,
    )


async def trigger_registration(engine: Engine, session: Session, msg: RegisterTrigger) -> RegisterTrigger | IIIError:
    """A session's ``registertrigger`` as it is to be registered, or why not."""
    if not session.may_use_trigger_type(msg.trigger_type):
        return IIIError(FORBIDDEN, f"Trigger type '{msg.trigger_type}' is not allowed for this session.")
    data = {"trigger_id": msg.id, "trigger_type": msg.trigger_type, "function_id": msg.function_id,
            "config": msg.config, "metadata": msg.metadata, "context": session.auth.context}
    hook = session.config.on_trigger_registration_function_id
    result = await _hook(engine, hook, data, f"trigger {msg.id}")
    if result is None:
        return IIIError(FORBIDDEN, f"trigger '{msg.id}' denied by {hook}")
    config = result.get("config")
    return msgspec.structs.replace(
        msg,
        id=_text(result, "trigger_id", msg.id),
        trigger_type=_text(result, "trigger_type", msg.trigger_type),
        function_id=session.registered_id(_text(result, "function_id", msg.function_id)),
        config=msg.config if config is None else config,
    )


async def trigger_type_registration(
    engine: Engine, session: Session, msg: RegisterTriggerType
) -> RegisterTriggerType | None:
    """A session's ``registertriggertype`` as it is to be registered, or ``None``."""
    if not session.auth.allow_trigger_type_registration:
        log.warning("iii rbac: trigger type %s refused: this session may not register trigger types", msg.id)
        return None
    description = msg.description or ""
    data = {"trigger_type_id": msg.id, "description": description, "context": session.auth.context}
    hook = session.config.on_trigger_type_registration_function_id
    result = await _hook(engine, hook, data, f"trigger type {msg.id}")
    if result is None:
        return None
    return msgspec.structs.replace(msg, id=_text(result, "trigger_type_id", msg.id),
                                   description=_text(result, "description", description))
