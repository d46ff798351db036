"""``create_app(store | path)``: the Litestar app serving DESIGN §8 (REST) and §7 (WebSocket subscriptions).

The app keeps the open Store in ``app.state.store``. Given a path, the app's lifespan opens the Store on startup and
closes it on shutdown; given a Store, the caller owns it. One exception map turns every ripple error and every
framework error (validation, unknown route, wrong method, body too large, bad JSON) into the JSON error body
``{"error": {"code", "message", "detail"}}`` with the statuses of DESIGN §8.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import msgspec
from litestar import Litestar, MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.utils import normalize_path

from ripple import __version__
from ripple.auth.book import TokenBook
from ripple.errors import RippleError
from ripple.http import console, rest, ws
from ripple.http.access import AccessControl, Security
from ripple.http.boundary import ROUTABLE_METHODS, guard
from ripple.http.console import static_routes
from ripple.http.metrics import Metrics, get_metrics
from ripple.http.requests import HttpStats, RequestMiddleware
from ripple.limits import DEFAULT_MAX_BODY_BYTES, MAX_BATCH_BODY_BYTES
from ripple.store.sqlite import Durability
from ripple.store.store import Store

if TYPE_CHECKING:
    from ripple.iii.engine import Engine

log = logging.getLogger("ripple.http")

_encode = msgspec.json.Encoder().encode

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}


def error_response(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> Response[bytes]:
    body = _encode(rest.ErrorBody(rest.ErrorInfo(code, message, detail)))
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def _ripple_error(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, RippleError)
    headers = rest.error_headers(exc)
    if exc.status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    return error_response(exc.status, exc.code, exc.message, exc.detail, headers)


def _validation_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, ValidationException)
    extra = exc.extra if isinstance(exc.extra, list) else []
    # Litestar raises this for query/path/header values of the wrong type (400) and for a ``data`` body of the
    # wrong shape (422: well-formed but invalid), as in user route handlers that take ``data: SomeStruct``.
    in_body = bool(extra) and all(isinstance(e, dict) and e.get("source") == "body" for e in extra)
    if in_body:
        return error_response(422, "invalid", f"invalid body: {_first_message(extra)}", extra)
    message = exc.detail if not extra else f"invalid request: {_first_message(extra)}"
    return error_response(400, "bad_request", message, extra or None)


def _first_message(extra: list[Any]) -> str:
    first = extra[0] if extra else {}
    if not isinstance(first, dict):
        return str(first)
    message = str(first.get("message", "invalid value"))
    source, key = first.get("source"), first.get("key")
    if key and source is not None:
        return f"{message} (in {getattr(source, 'value', source)} parameter {key!r})"
    return message


def _http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, "internal_error" if status >= 500 else "error")
    headers = dict(exc.headers or {})
    message = exc.detail
    if isinstance(exc, NotFoundException):
        message = f"no route for {request.method} {request.url.path}"
    elif isinstance(exc, MethodNotAllowedException):
        message = f"{request.method} is not allowed on {request.url.path} (allowed: {headers.get('allow', '?')})"
    elif status == 413:
        limit = request.route_handler.resolve_request_max_body_size()
        message = f"the request body is over the limit of {limit} bytes"
        return error_response(413, code, message, {"limit": limit}, headers)
    elif status >= 500:
        log.error("HTTP %d on %s %s: %s", status, request.method, request.url.path, exc.detail)
        message = "internal server error"
    return error_response(status, code, message, exc.extra or None, headers)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    RippleError: _ripple_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _internal_error,
}


# The API docs page (/schema) is Swagger UI served from files inside the package, so it works with no network:
# swagger-ui-dist 5.35.0 from npm (Apache-2.0; its LICENSE and NOTICE sit beside the files, which are copied
# unchanged). Swagger UI rather than Scalar: Scalar's standalone bundle is 3.6 MB, Swagger UI's three files 2.2 MB,
# and it keeps "try it out" (Redoc, smaller still, has none).
DOCS_ASSETS_DIR = Path(__file__).parent / "assets" / "swagger-ui"
DOCS_ASSETS_PATH = "/schema/assets/swagger-ui"


def _docs_assets() -> list[Any]:
    """``/schema/assets/swagger-ui/{file}``: the docs page's scripts, stylesheet and icon."""
    return static_routes(DOCS_ASSETS_PATH, DOCS_ASSETS_DIR, name="docs-assets")


def _openapi() -> OpenAPIConfig:
    swagger = SwaggerRenderPlugin(
        js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{DOCS_ASSETS_PATH}/favicon-32x32.png'>",
    )
    return OpenAPIConfig(
        title="ripple",
        version=__version__,
        description="An event-sourced reactive store over HTTP: state, batch, streams, the log, projections.",
        path="/schema",
        render_plugins=[swagger],
    )


def create_app(
    store_or_path: Store | str | os.PathLike[str],
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch_body_bytes: int = MAX_BATCH_BODY_BYTES,
    durability: Durability = "full",
    route_handlers: Sequence[Any] = (),
    debug: bool = False,
    metrics: bool = True,
    access_log: bool = False,
    iii_engine: Engine | None = None,
    security: Security | None = None,
    book: TokenBook | None = None,
) -> Litestar:
    """The ripple app. ``route_handlers`` are mounted beside the API (``--app`` handlers, the todo example).

    ``metrics``: serve ``GET /metrics`` and count requests; ``access_log``: one log line per request
    (:mod:`ripple.http.requests`); ``iii_engine``: its counters go into ``/metrics`` and ``/v1/health``.
    ``security`` sets the browser boundary and access control (docs/security.md); the default is the boundary for a
    loopback server and no tokens. ``book``: with ``security.auth``, a token book the caller runs (else the app
    opens its own).
    """
    given = store_or_path if isinstance(store_or_path, Store) else None
    path = None if given is not None else os.fspath(cast(Any, store_or_path))
    http_stats = HttpStats() if metrics else None
    control = AccessControl(security or Security(), book)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if given is not None:
            async with controlled(control, given):
                with attached(app, given, http_stats):
                    yield
            return
        assert path is not None
        async with Store.open(path, durability=durability) as store, controlled(control, store):
            with attached(app, store, http_stats):
                yield

    metrics_route = [get_metrics] if metrics else []
    app = Litestar(
        route_handlers=[
            *rest.rest_handlers(),
            *ws.websocket_handlers(),
            *_docs_assets(),
            *console.console_handlers(),
            *metrics_route,
            *route_handlers,
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=max_body_bytes,
        openapi_config=_openapi(),
        debug=debug,
        logging_config=None,
        middleware=[control.middleware],
    )
    app.state.iii_engine = iii_engine
    app.state.max_batch_body_bytes = max_batch_body_bytes
    # The browser boundary wraps the whole handler (routed or not): Host, Origin and CORS (ripple.http.boundary).
    app.asgi_handler = guard(app.asgi_handler, control.security.boundary, lambda path: routed_methods(app, path))
    app.state.access = control
    if given is not None:
        app.state.store = given
    # Outermost, so every answer gets a request id and is counted, 404s and refusals included.
    app.asgi_handler = cast(Any, RequestMiddleware(app.asgi_handler, access_log=access_log, stats=http_stats))
    return app


def routed_methods(app: Litestar, path: str) -> list[str]:
    """The methods the app's router routes for ``path`` (for CORS preflights: Litestar's own ``OPTIONS`` answer
    names the wrong route's methods for ``{key:path}`` routes)."""
    methods = []
    path = normalize_path(path)  # as the router does: "/todos/" is "/todos"
    for method in ROUTABLE_METHODS:
        try:
            _, handler, *_ = app.asgi_router.handle_routing(path=path, method=method)
        except HTTPException:
            continue
        if method in getattr(handler, "http_methods", ()):
            methods.append(method)
    return methods


@asynccontextmanager
async def controlled(control: AccessControl, store: Store) -> AsyncIterator[None]:
    """Access control's token book open while the app runs (``--auth``)."""
    await control.start(store)
    try:
        yield
    finally:
        await control.close()


@contextmanager
def attached(app: Litestar, store: Store, http_stats: HttpStats | None = None) -> Iterator[None]:
    """Make ``store`` the app's store and wire the long-poll wake-up (and the metrics) to its commits while the app
    runs."""
    signal = rest.CommitSignal()
    unsubscribe = store.commits.subscribe(signal)

    async def _close_signal() -> None:
        signal.close()

    store.on_close(_close_signal)
    app.state.store = store
    app.state.commits = signal
    metrics = None if http_stats is None else Metrics(store, http_stats, app.state.iii_engine)
    app.state.metrics = metrics
    try:
        if metrics is None:
            yield
        else:
            with metrics.counting():
                yield
    finally:
        signal.close()
        unsubscribe()
