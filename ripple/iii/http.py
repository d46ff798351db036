"""The HTTP-trigger port (iii's REST API, :3111): a plain ASGI app with its own router and permissive CORS.

Routes come and go with the workers that registered them (the router is the engine's registry); every request
either gets its handler's reply or an error envelope, and every call has a timeout, so no request hangs.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from ripple.iii.engine import Engine
from ripple.iii.protocol import HttpReply, error_reply
from ripple.iii.routes import StreamingReply

MAX_BODY = 16 * 1024 * 1024
MAX_CONCURRENT = 1024  # as the engine: at most 1024 requests run at once, the others wait

Scope = dict[str, Any]
Receive = Any
Send = Any

CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", b"*"),
]


class HttpTriggerApp:
    """ASGI: route the request to its ``http`` trigger through the engine."""

    def __init__(self, engine: Engine, *, max_body: int = MAX_BODY) -> None:
        self.engine = engine
        self.max_body = max_body
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        lower = {k.lower(): v for k, v in headers}
        method = scope["method"].upper()
        if method == "OPTIONS" and "access-control-request-method" in lower:
            await self._preflight(lower, send)
            return
        raw = await self._body(lower, receive)
        if isinstance(raw, HttpReply):
            await self._reply(raw, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        async with self._slots:
            reply = await self.engine.routes.request(method, scope["path"], query, headers, raw)
            if isinstance(reply, StreamingReply):
                await self._stream(reply, send, head=method == "HEAD")
                return
        await self._reply(reply, send, head=method == "HEAD")

    async def _body(self, headers: dict[str, str], receive: Receive) -> bytes | HttpReply:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return error_reply(413, "PAYLOAD_TOO_LARGE", f"the body is over the limit of {self.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return error_reply(413, "PAYLOAD_TOO_LARGE", f"the body is over the limit of {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _preflight(self, headers: dict[str, str], send: Send) -> None:
        allow = [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS"),
            (b"access-control-allow-headers", headers.get("access-control-request-headers", "*").encode("latin-1")),
            (b"access-control-max-age", b"86400"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": allow})
        await send({"type": "http.response.body", "body": b""})

    async def _reply(self, reply: HttpReply, send: Send, *, head: bool = False) -> None:
        headers = [(n.encode("latin-1"), v.encode("latin-1", "replace")) for n, v in reply.headers]
        names = {n for n, _ in headers}
        headers += [h for h in CORS_HEADERS if h[0] not in names]
        headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else reply.body})

    async def _stream(self, reply: StreamingReply, send: Send, *, head: bool) -> None:
        """A response the handler streams through its channel (SSE, downloads): chunks as they come."""
        headers = [(n.encode("latin-1"), v.encode("latin-1", "replace")) for n, v in reply.headers]
        names = {n for n, _ in headers}
        headers += [h for h in CORS_HEADERS if h[0] not in names]
        chunks = reply.chunks
        try:
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            if not head:
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await chunks.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


class HttpTriggerServer:
    """uvicorn on a socket we bind ourselves (port 0 works; bind errors raise ``OSError``), in the caller's loop.

    ``uvicorn.Server.serve`` would install signal handlers and exit the process on a bind error, so the server is
    started with ``startup``/``shutdown`` instead: the owner of the process keeps its signals.
    """

    def __init__(self, app: HttpTriggerApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._server = server

    async def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            await self._server.shutdown(sockets=[self._sock] if self._sock else None)
            self._server = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
