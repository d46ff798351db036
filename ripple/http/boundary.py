"""The browser boundary (DESIGN §15), on by default: what a web page may make a browser do to ripple.

Wrapped around the app's ASGI handler, so it sees every request and WebSocket upgrade, routed or not. The iii worker
and RBAC ports apply the same :meth:`Boundary.refusal` to every handshake (:mod:`ripple.iii.server`); the iii
HTTP-trigger and stream ports keep iii's open behaviour toward browsers (DESIGN §15).

- **Host.** Every request must name one of the server's names in ``Host``: the loopback names (``127.0.0.1``,
  ``localhost``, ``[::1]``), the address it binds to, and each ``--allow-host``. Anything else is DNS rebinding (a page
  whose domain now resolves to 127.0.0.1): 421 ``host_not_allowed``. The port is not compared: a rebinding page's
  host name is what gives it away. ``--allow-host '*'`` turns the check off (behind a proxy that checks itself).
- **Origin on WebSocket upgrades.** Browsers let any page open a WebSocket anywhere and send its ``Origin``: an
  upgrade is refused with HTTP 403 (before it is accepted) unless its ``Origin`` is the server's own (same host and
  port as ``Host``), listed with ``--allow-origin`` or ``--cors-origin``, or absent (not a browser). ``null`` (sandboxed
  frames, ``file:`` pages) is refused.
- **Origin on writes.** ``POST``/``PUT``/``PATCH``/``DELETE`` carrying a foreign ``Origin`` get 403 too: a cross-site
  form cannot create a todo nor start a rebuild even on a route without a body (bodies must also be JSON,
  :mod:`ripple.http.access`).
- **CORS**, off by default: without it no other origin can read an answer. ``--cors-origin ORIGIN`` (repeatable)
  answers that origin's preflights with the methods the route really takes (asked of the app's own router, one
  method at a time) and the headers ripple reads, and adds ``Access-Control-Allow-Origin`` to its answers. No
  cookies are involved (tokens travel in ``Authorization``), so credentials are never allowed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgspec

from ripple.errors import HostNotAllowedError, OriginNotAllowedError, RippleError
from ripple.http.rest import ErrorBody, ErrorInfo, error_answer, error_headers

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", "[::]", ""})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CORS_ALLOW_HEADERS = "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, X-Request-Id"
CORS_EXPOSE_HEADERS = "ETag, Retry-After, WWW-Authenticate"
CORS_MAX_AGE = "600"

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
MethodsOf = Callable[[str], list[str]]  # the HTTP methods the app routes for a path
ROUTABLE_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")
_encode = msgspec.json.Encoder().encode


def host_name(value: str) -> str:
    """The name part of a ``Host`` header or an address, lower-cased: ``[::1]:8000`` → ``[::1]``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    if value.count(":") > 1:  # a bare IPv6 address
        return f"[{value}]"
    name, colon, port = value.rpartition(":")
    return name if colon and port.isdigit() else value


class Boundary(msgspec.Struct, frozen=True):
    """The browser-boundary settings (``ripple serve --allow-host/--allow-origin/--cors-origin``)."""

    hosts: frozenset[str] = LOOPBACK_NAMES
    allow_origins: frozenset[str] = frozenset()
    cors_origins: frozenset[str] = frozenset()

    @classmethod
    def listed(cls, allow_hosts: tuple[str, ...] = (), allow_origins: tuple[str, ...] = (),
               cors_origins: tuple[str, ...] = ()) -> Boundary:
        """The rules of the allow lists alone: a port adds its own address with :meth:`serving`."""
        hosts = set(LOOPBACK_NAMES) | {host_name(h) for h in allow_hosts}
        return cls(frozenset(hosts), _origins(allow_origins), _origins(cors_origins))

    @classmethod
    def for_bind(cls, bind_host: str, allow_hosts: tuple[str, ...] = (), allow_origins: tuple[str, ...] = (),
                 cors_origins: tuple[str, ...] = ()) -> Boundary:
        return cls.listed(allow_hosts, allow_origins, cors_origins).serving(bind_host)

    def serving(self, bind_host: str) -> Boundary:
        """These rules on a port bound to ``bind_host``: its address is one of its names (a wildcard adds none)."""
        if bind_host.strip().lower() in WILDCARD_BINDS:
            return self
        return msgspec.structs.replace(self, hosts=self.hosts | {host_name(bind_host)})

    def host_allowed(self, host: str | None) -> bool:
        if "*" in self.hosts:
            return True
        return host is not None and host_name(host) in self.hosts

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        """Same origin as the server (the request's own ``Host``), or listed; ``null`` never."""
        origin = origin.strip().lower().rstrip("/")
        if origin == "null":
            return False
        if origin in self.allow_origins or origin in self.cors_origins:
            return True
        scheme, sep, authority = origin.partition("://")
        return bool(sep) and scheme in ("http", "https") and host is not None and authority == host.strip().lower()

    def refusal(self, host: str | None, origin: str | None, *, checks_origin: bool) -> RippleError | None:
        """Why a request is refused (the ``Host`` it names; its ``Origin`` when ``checks_origin``: a WebSocket upgrade
        or a write), or ``None``. One rule for every port that applies the boundary (the main port, the iii worker
        and RBAC ports)."""
        if not self.host_allowed(host):
            return HostNotAllowedError(
                f"this server does not answer to the host name {host_name(host or '')!r} (start it with --allow-host "
                "to add a name)", detail={"host": host})
        if checks_origin and origin is not None and not self.origin_allowed(origin, host):
            return OriginNotAllowedError(
                f"requests from the origin {origin!r} are not allowed (start the server with --allow-origin or "
                "--cors-origin to allow it)", detail={"origin": origin})
        return None


def _origins(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(v.strip().lower().rstrip("/") for v in values)


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return cast(bytes, value).decode("latin-1")
    return None


async def deny_websocket(scope: Any, send: Any, exc: RippleError) -> None:
    """Refuse a WebSocket upgrade before accepting it: an HTTP answer with the JSON error body where the server
    supports it (uvicorn does), else a plain close (HTTP 403)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = _encode(ErrorBody(ErrorInfo(exc.code, exc.message, exc.detail)))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in (error_headers(exc) or {}).items()]
        await send({"type": "websocket.http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})


def guard(inner: ASGIApp, boundary: Boundary, methods_of: MethodsOf) -> ASGIApp:
    """Wrap an ASGI handler with the browser boundary (see the module docstring)."""

    async def boundary_app(scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await inner(scope, receive, send)
            return
        host = _header(scope, b"host")
        origin = _header(scope, b"origin")
        refusal = boundary.refusal(host, origin, checks_origin=kind == "websocket" or scope["method"] in UNSAFE_METHODS)
        if refusal is not None:
            if kind == "websocket":
                await deny_websocket(scope, send, refusal)
            else:
                await error_answer(refusal)(scope, receive, send)
            return
        if kind == "http" and origin is not None and boundary.cors_origins:
            await _cors(inner, boundary, methods_of, origin, scope, receive, send)
            return
        await inner(scope, receive, send)

    return boundary_app


async def _cors(inner: ASGIApp, boundary: Boundary, methods_of: MethodsOf, origin: str, scope: Any, receive: Any,
                send: Any) -> None:
    listed = origin.strip().lower().rstrip("/") in boundary.cors_origins
    preflight = scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method") is not None
    if preflight and not listed:
        refusal = OriginNotAllowedError(f"no CORS for the origin {origin!r} (see --cors-origin)",
                                        detail={"origin": origin})
        await error_answer(refusal)(scope, receive, send)
        return
    if not listed:
        await inner(scope, receive, send)
        return
    cors = [(b"access-control-allow-origin", origin.strip().encode("latin-1")), (b"vary", b"Origin")]
    if preflight:
        methods = methods_of(scope["path"])
        if not methods:
            await inner(scope, receive, send)  # no such route: the app's own 404
            return
        headers = [*cors, (b"access-control-allow-methods", ", ".join(methods).encode()),
                   (b"access-control-allow-headers", CORS_ALLOW_HEADERS.encode()),
                   (b"access-control-max-age", CORS_MAX_AGE.encode()), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return

    async def send_with_cors(message: Any) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), *cors,
                       (b"access-control-expose-headers", CORS_EXPOSE_HEADERS.encode())]
            message = {**message, "headers": headers}
        await send(message)

    await inner(scope, receive, send_with_cors)
