"""The outermost ASGI layer of ``create_app``: a request id on every request, the access log and the HTTP metrics.

- **Request id.** Taken from the client's ``X-Request-Id`` (1-128 printable ASCII characters) or made here (a random
  per-process prefix and a counter: unique, and cheaper than a UUID), returned in the response's ``X-Request-Id``
  (and in a WebSocket's accept), and set in :data:`ripple.logs.request_id` for the duration of the request, so
  every log line written meanwhile carries it (:mod:`ripple.logs`).
- **Access log** (``--access-log``): one line per request on the ``ripple.access`` logger with the request id,
  method, path, query, status, duration and client; one per WebSocket connection when it ends. The query's ``token``
  value is replaced by ``<redacted>``; headers (``Authorization``) are never logged.
- **Metrics** (:class:`HttpStats`): requests by method, route template and status, and their duration.

Only ``send`` is wrapped, never ``receive``: the subscription fast path finds uvicorn's protocol through ``receive``
(:mod:`ripple.http.ws`).
"""

from __future__ import annotations

import collections
import itertools
import logging
import re
import secrets
import time
from typing import Any

from litestar.types import ASGIApp

from ripple.logs import REDACTED, request_id
from ripple.store.stats import Histogram

log = logging.getLogger("ripple.access")

REQUEST_ID_HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"[\x21-\x7e]{1,128}")
# Query parameters whose value is a secret (DESIGN §15: the WebSocket token); matched case-insensitively.
SECRET_PARAMS = frozenset({b"token", b"access_token"})
# ASGI messages and scopes as plain dicts: Litestar's TypedDicts make every key access a union check.
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Any
Send = Any
HTTP_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0)


class RequestIds:
    """``<8 random hex>-<counter in hex>``: unique within the process, and across restarts in practice."""

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(4)
        self._next = itertools.count(1).__next__

    def __call__(self) -> str:
        return f"{self.prefix}-{self._next():x}"


class HttpStats:
    """HTTP requests by (method, route template, status) and their durations, for ``/metrics``."""

    def __init__(self) -> None:
        self.requests: collections.Counter[tuple[str, str, int]] = collections.Counter()
        self.seconds = Histogram(HTTP_SECONDS_BUCKETS)
        self.websockets: collections.Counter[str] = collections.Counter()  # WebSocket connections by route


def redact_query(query: bytes) -> str:
    """The query string with the values of secret parameters replaced (the rest is left as the client sent it)."""
    if not query:
        return ""
    parts = []
    for part in query.split(b"&"):
        name, eq, _ = part.partition(b"=")
        parts.append(name + b"=" + REDACTED.encode() if eq and name.lower() in SECRET_PARAMS else part)
    return b"&".join(parts).decode("latin-1")


def incoming_id(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return value if _VALID_ID.fullmatch(value) else None
    return None


def client_of(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


class RequestMiddleware:
    """Wraps an ASGI app (Litestar's ``asgi_handler``): request ids, the access log, HTTP metrics."""

    def __init__(self, app: ASGIApp, *, access_log: bool = False, stats: HttpStats | None = None) -> None:
        self.app: Any = app
        self.access_log = access_log
        self.stats = stats
        self.ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _id(self, scope: Scope) -> tuple[str, bytes]:
        given = incoming_id(scope)
        if given is not None:
            return given.decode("ascii"), given
        made = self.ids()
        return made, made.encode("ascii")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid, rid_bytes = self._id(scope)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering (the server answers 500)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (REQUEST_ID_HEADER, rid_bytes)]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            if self.stats is not None:
                route = scope.get("path_template") or "unmatched"
                self.stats.requests[(scope["method"], route, status)] += 1
                self.stats.seconds.observe(seconds)
            if self.access_log:
                self._log_request(scope, rid, status, seconds)
            request_id.reset(token)

    def _log_request(self, scope: Scope, rid: str, status: int, seconds: float) -> None:
        method, path = scope["method"], scope["path"]
        log.info("%s %s %d", method, path, status, extra={
            "event": "request", "request_id": rid, "method": method, "path": path,
            "query": redact_query(scope.get("query_string", b"")), "status": status,
            "duration_ms": round(seconds * 1000, 3), "client": client_of(scope),
        })

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid, rid_bytes = self._id(scope)
        token = request_id.set(rid)
        started = time.perf_counter()
        outcome: dict[str, Any] = {"status": 101, "close_code": None}

        async def send_with_id(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.accept":
                message = {**message, "headers": [*message.get("headers", ()), (REQUEST_ID_HEADER, rid_bytes)]}
            elif kind == "websocket.close":
                outcome["close_code"] = message.get("code", 1000)
            elif kind == "websocket.http.response.start":  # refused before the upgrade
                outcome["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.stats is not None:
                self.stats.websockets[scope.get("path_template") or "unmatched"] += 1
            if self.access_log:
                path = scope["path"]
                log.info("WEBSOCKET %s closed %s", path, outcome["close_code"], extra={
                    "event": "websocket", "request_id": rid, "method": "WEBSOCKET", "path": path,
                    "query": redact_query(scope.get("query_string", b"")), "status": outcome["status"],
                    "close_code": outcome["close_code"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3), "client": client_of(scope),
                })
            request_id.reset(token)
