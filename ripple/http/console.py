"""The web console at ``/`` and ``ripple.js`` at ``/ripple.js``: static files shipped inside the Python package.

No CDN, no network at run time, no build step: the console is plain HTML, CSS and ES modules in ``ripple/console/``
(package data), and it talks to the server through ``ripple.js`` like any web app would. :func:`static_routes` is the
one way ripple serves a folder of static files; the todo example mounts its page with it too.

Every file gets its content type, a content-hash ``ETag`` (a reload answers 304) with ``Cache-Control: no-cache``,
``X-Content-Type-Options: nosniff`` and a Content-Security-Policy that allows only the server's own scripts, styles
and connections: values shown by the console are text, never markup, and a page cannot be framed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, get
from litestar.params import FromPath
from litestar.types import ASGIApp

from ripple.errors import NotFoundError
from ripple.http.markers import PUBLIC

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".ts": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'"
)


# Static files hold no data: under ``--auth`` they load without a token (the page then asks for one).
PUBLIC_FILE = {PUBLIC: True}


class StaticFile(msgspec.Struct, frozen=True):
    """One file as served: its bytes, content type and entity tag."""

    body: bytes
    content_type: str
    etag: str

    @classmethod
    def read(cls, path: Path) -> StaticFile:
        body = path.read_bytes()
        content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return cls(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


class StaticAnswer:
    """A static file as a bare ASGI app (304 when the client already has it)."""

    __slots__ = ("file", "not_modified")

    def __init__(self, file: StaticFile, if_none_match: str | None) -> None:
        self.file = file
        self.not_modified = if_none_match is not None and file.etag in if_none_match

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        file = self.file
        headers = [
            (b"content-type", file.content_type.encode()),
            (b"etag", file.etag.encode()),
            (b"cache-control", b"no-cache"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        ]
        body = b"" if self.not_modified else file.body
        if not self.not_modified:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 304 if self.not_modified else 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _files(directory: Path) -> dict[str, Path]:
    """The servable files of a folder by name (no subfolders, no dotfiles): requests can name nothing else."""
    return {
        p.name: p for p in sorted(directory.iterdir()) if p.is_file() and not p.name.startswith(".")
    }


def static_routes(prefix: str, directory: Path, *, index: str | None = None, name: str) -> list[Any]:
    """Route handlers serving the files of ``directory`` at ``{prefix}/{file}``, and ``index`` at ``prefix`` itself.

    Files are read on request (a reload shows an edited file), from a listing fixed when the routes are made.
    """
    files = _files(directory)
    base = prefix.rstrip("/")

    def answer(request: Request[Any, Any, Any], filename: str) -> ASGIApp:
        path = files.get(filename)
        if path is None:
            raise NotFoundError(f"no file {filename!r} under {base or '/'}", detail={"file": filename})
        return StaticAnswer(StaticFile.read(path), request.headers.get("if-none-match"))

    @get(f"{base}/{{filename:str}}", include_in_schema=False, name=f"{name}-file", sync_to_thread=False,
         opt=PUBLIC_FILE)
    def asset(request: Request[Any, Any, Any], filename: FromPath[str]) -> ASGIApp:
        return answer(request, filename)

    handlers: list[Any] = [asset]
    if index is not None:

        @get(base or "/", include_in_schema=False, name=f"{name}-index", sync_to_thread=False, opt=PUBLIC_FILE)
        def index_page(request: Request[Any, Any, Any]) -> ASGIApp:
            return answer(request, index)

        handlers.append(index_page)
    return handlers


def console_handlers() -> Sequence[Any]:
    """``GET /`` (the console), ``GET /console/{file}`` (its files) and ``GET /ripple.js`` (the client)."""

    @get("/ripple.js", include_in_schema=False, name="ripple-js", sync_to_thread=False, opt=PUBLIC_FILE)
    def ripple_js(request: Request[Any, Any, Any]) -> ASGIApp:
        return StaticAnswer(StaticFile.read(CONSOLE_DIR / "ripple.js"), request.headers.get("if-none-match"))

    @get("/", include_in_schema=False, name="console", sync_to_thread=False, opt=PUBLIC_FILE)
    def console_index(request: Request[Any, Any, Any]) -> ASGIApp:
        return StaticAnswer(StaticFile.read(CONSOLE_DIR / "index.html"), request.headers.get("if-none-match"))

    return [console_index, ripple_js, *static_routes("/console", CONSOLE_DIR, name="console")]
