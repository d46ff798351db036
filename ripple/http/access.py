"""Who may call which route (DESIGN §15): tokens on every route, JSON-only bodies, revocation of open sessions.

A Litestar middleware on every route (so it knows the route's handler and its ``opt`` markers):

- **Authentication** (``ripple serve --auth``). The token comes from ``Authorization: Bearer <token>``, or on a
  WebSocket also from the ``token`` query parameter (browsers cannot set headers on a WebSocket). A missing, wrong,
  expired or revoked token is 401 (on a WebSocket: the ``error`` frame ``unauthorized`` and close 1008, after the
  upgrade, so a browser client can see why); too many failures from one address is 429. The identity is then set
  for the whole request (:data:`ripple.auth.current_identity`): the store checks its grants on every call and names
  it as ``meta.actor`` of every write. Routes marked :data:`PUBLIC` (``/v1/health``, the API docs) answer without a
  token, as an identity with no grants.
- **JSON-only bodies**, with or without ``--auth``: a ``POST``/``PUT``/``PATCH``/``DELETE`` that declares a content
  type other than ``application/json`` / ``application/*+json``, or sends a body without one, is 415 — so an HTML
  form (``application/x-www-form-urlencoded``, ``multipart/form-data``, ``text/plain``) cannot reach a handler. A user
  route that takes other bodies opts out with ``opt={ANY_BODY: True}``.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

import msgspec

from ripple.auth.book import DEFAULT_REFRESH_SECONDS, FailureLimiter, TokenBook
from ripple.auth.context import current_identity
from ripple.auth.grants import ANONYMOUS, Identity
from ripple.errors import RippleError, StoreClosedError
from ripple.http.boundary import UNSAFE_METHODS, ASGIApp, Boundary, deny_websocket
from ripple.http.markers import ANY_BODY, PUBLIC, REFUSES_IN_FRAMES
from ripple.http.rest import UnsupportedMediaTypeError, error_answer, is_json_media_type
from ripple.store.store import Store

__all__ = ["ANY_BODY", "PUBLIC", "REFUSES_IN_FRAMES", "AccessControl", "Security", "bearer_token"]

log = logging.getLogger("ripple.http")

AUTH_ERROR = "ripple.auth_error"  # scope key: why a WebSocket upgrade is not authenticated
IDENTITY = "ripple.identity"  # scope key: the identity a connection acts as
PUBLIC_PATH_PREFIXES = ("/schema",)  # the OpenAPI document and its viewer


def bearer_token(scope: Any) -> str | None:
    """The token of a request: ``Authorization: Bearer …``, or on a WebSocket the ``token`` query parameter."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            text: str = value.decode("latin-1")
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return ""  # a malformed Authorization header is a wrong token, not a missing one
    if scope["type"] == "websocket":
        query: str = scope.get("query_string", b"").decode("latin-1")
        for key, item in urllib.parse.parse_qsl(query, keep_blank_values=True):
            if key == "token":
                return item
    return None


def _declared_body(scope: Any) -> tuple[str | None, bool]:
    """The declared ``Content-Type`` (or None) and whether the request says it has a body."""
    declared, has_body = None, False
    for name, value in scope["headers"]:
        if name == b"content-type":
            declared = value.decode("latin-1")
        elif name == b"content-length":
            has_body = value.strip() not in (b"0", b"")
        elif name == b"transfer-encoding":
            has_body = True
    return declared, has_body


class Security(msgspec.Struct, frozen=True):
    """The security settings of an app (``ripple serve --auth``, ``--allow-host`` …; docs/security.md)."""

    boundary: Boundary = Boundary()
    auth: bool = False
    failure_burst: int = 20  # failed token attempts per client address before 429 …
    failures_per_second: float = 1.0  # … then one more per second
    token_refresh_seconds: float = DEFAULT_REFRESH_SECONDS

    def token_book(self, db_path: str) -> TokenBook:
        """A (not yet started) token book for the database at ``db_path`` with these limits."""
        limiter = FailureLimiter(self.failure_burst, self.failures_per_second)
        return TokenBook(db_path, limiter=limiter, refresh_seconds=self.token_refresh_seconds)


class AccessControl:
    """The access rules of one app. With ``auth``, :meth:`start` opens the token book of the app's database."""

    def __init__(self, security: Security, book: TokenBook | None = None) -> None:
        """``book``: a token book the caller opens and closes (``ripple serve`` shares one with the iii ports);
        without one, :meth:`start` opens the app's own."""
        self.security = security
        self.book = book
        self._own_book = False

    async def start(self, store: Store) -> None:
        """Open the token book (``--auth``) and end the sessions of tokens revoked while they are open."""
        if not self.security.auth:
            return
        if self.book is None:
            self.book = self.security.token_book(store.path)
            self._own_book = True
            await self.book.start()
        self.book.listeners.append(end_revoked_sessions(self.book, lambda: list(store.hub.sessions)))

    async def close(self) -> None:
        if self.book is not None and self._own_book:
            await self.book.close()
            self.book = None

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """The Litestar middleware (``Litestar(middleware=[control.middleware])``)."""

        async def access(scope: Any, receive: Any, send: Any) -> None:
            kind = scope["type"]
            if kind == "http" and scope["method"] == "OPTIONS":
                await app(scope, receive, send)  # preflights and Allow carry no data and never a token
                return
            opt = getattr(scope.get("route_handler"), "opt", None) or {}
            identity: Identity | None = None
            if self.security.auth:
                try:
                    identity = await self._identify(scope, opt)
                except RippleError as exc:
                    if kind == "websocket" and opt.get(REFUSES_IN_FRAMES):
                        scope[AUTH_ERROR] = exc  # refused with an error frame once accepted (ripple.http.ws)
                        await app(scope, receive, send)
                        return
                    if kind == "websocket":
                        await deny_websocket(scope, send, exc)
                        return
                    await error_answer(exc)(scope, receive, send)
                    return
                scope[IDENTITY] = identity
            if kind == "http" and scope["method"] in UNSAFE_METHODS and not opt.get(ANY_BODY):
                declared, has_body = _declared_body(scope)
                if (declared is None and has_body) or (declared is not None and not is_json_media_type(declared)):
                    refusal = UnsupportedMediaTypeError(
                        f"the body must be JSON: send Content-Type: application/json (got {declared or 'none'!r})",
                        detail={"content_type": declared})
                    await error_answer(refusal)(scope, receive, send)
                    return
            reset = current_identity.set(identity) if identity is not None else None
            try:
                await app(scope, receive, send)
            finally:
                if reset is not None:
                    current_identity.reset(reset)

        return access

    async def _identify(self, scope: Any, opt: dict[str, Any]) -> Identity:
        if self.book is None:
            raise StoreClosedError("the server is not ready")
        token = bearer_token(scope)
        public = opt.get(PUBLIC) or scope["path"].startswith(PUBLIC_PATH_PREFIXES)
        if token is None and public:
            return ANONYMOUS
        client = scope.get("client")
        return await self.book.authenticate(token, client[0] if client else None)


def end_revoked_sessions(book: TokenBook, sessions: Callable[[], list[Any]]) -> Callable[[], None]:
    """A book listener: end each WebSocket session whose token was revoked or expired (``unauthorized``, 1008)."""

    def check() -> None:
        for session in sessions():
            identity = getattr(session, "identity", None)
            if identity is not None and not book.is_current(identity):
                session.end("unauthorized", "the token was revoked or expired", 1008)

    return check
