"""``IIIServer``: the three iii ports around one :class:`~ripple.iii.engine.Engine`, in the store's event loop.

* worker WebSocket (``ws://HOST:49134``): ``workerregistered`` first, then every frame to the engine; ``/otel``
  takes telemetry and drops it;
* HTTP triggers (``http://HOST:3111``): :mod:`ripple.iii.http`;
* stream WebSocket (``ws://HOST:3112``): :mod:`ripple.iii.streams`.

``async with IIIServer(store, worker_port=0, http_port=0, stream_port=0) as iii:`` binds free ports; the bound
ports are then ``iii.worker_port``, ``iii.http_port`` and ``iii.stream_port``.
"""

from __future__ import annotations

import http
import logging
from types import TracebackType

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from ripple.auth.book import TokenBook
from ripple.auth.context import acting_as
from ripple.auth.grants import Identity
from ripple.errors import ForbiddenError
from ripple.iii.auth import PortAuth, refusal, require_worker, trigger_refusal
from ripple.iii.channels import parse_channel_path
from ripple.iii.engine import DEFAULT_CALL_TIMEOUT, Engine, Worker
from ripple.iii.http import HttpTriggerApp, HttpTriggerServer
from ripple.iii.protocol import (
    ErrorBody,
    RegisterTrigger,
    TriggerRegistrationResultOut,
    WorkerRegistered,
    decode_frame,
    encode,
)
from ripple.iii.queues import Policy
from ripple.iii.streams import StreamServer
from ripple.store.store import Store

log = logging.getLogger("ripple.iii")

MAX_WORKER_FRAME = 64 * 1024 * 1024  # SDK telemetry batches are large; the Python SDK allows 64 MiB


class IIIServer:
    """Lets workers written with the iii SDKs run against a ripple store (DESIGN §9)."""

    def __init__(
        self,
        store: Store,
        *,
        host: str = "127.0.0.1",
        worker_port: int = 49134,
        http_port: int = 3111,
        stream_port: int = 3112,
        strict: bool = False,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        max_frame: int = MAX_WORKER_FRAME,
        queue_policy: Policy | None = None,
        book: TokenBook | None = None,
    ) -> None:
        """``book``: the server's tokens (``--auth``): workers and stream clients then need one (ripple.iii.auth)."""
        self.store = store
        self.host = host
        self.worker_port = worker_port
        self.http_port = http_port
        self.stream_port = stream_port
        self.strict = strict
        self.max_frame = max_frame
        self.engine = Engine(store, strict=strict, call_timeout=call_timeout, queue_policy=queue_policy)
        self.auth = None if book is None else PortAuth(book)
        self.streams = StreamServer(store, host, stream_port, auth=None if book is None else PortAuth(book))
        self.http = HttpTriggerServer(HttpTriggerApp(self.engine), host, http_port)
        self._workers: Server | None = None
        self._started = False
        self._closed = False

    async def start(self) -> None:
        """Bind the three ports (0 picks a free one) and start serving."""
        if self._started:
            raise RuntimeError("this IIIServer was already started")
        self._started = True
        self.engine.start()
        try:
            self._workers = await serve(
                self._worker_connection,
                self.host,
                self.worker_port,
                process_request=self._process_worker_request,
                max_size=self.max_frame,
                compression=None,
            )
            self.worker_port = self._workers.sockets[0].getsockname()[1]
            await self.http.start()
            self.http_port = self.http.port
            await self.streams.start()
            self.stream_port = self.streams.port
        except BaseException:
            await self.close()
            raise
        self.store.on_close(self.close)
        log.info(
            "iii: workers ws://%s:%d, http triggers http://%s:%d, streams ws://%s:%d%s",
            self.host,
            self.worker_port,
            self.host,
            self.http_port,
            self.host,
            self.stream_port,
            " (strict)" if self.strict else "",
        )

    async def close(self) -> None:
        """Stop serving: workers are disconnected (their calls fail), then the HTTP and stream ports. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.auth is not None:
            self.auth.close()
        if self._workers is not None:
            self._workers.close(close_connections=True)
        await self.engine.close()
        if self._workers is not None:
            await self._workers.wait_closed()
        await self.http.close()
        await self.streams.close()

    async def __aenter__(self) -> IIIServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- the worker port

    async def _process_worker_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.auth is None:
            return self._check_worker_path(connection, request)
        found = await self.auth.authenticate(connection, request)
        if isinstance(found, Response):
            return found
        try:
            require_worker(found)
        except ForbiddenError as exc:
            return refusal(connection, exc)
        refused = self._check_worker_path(connection, request)
        if refused is None:
            self.auth.remember(connection, found)
        return refused

    def _check_worker_path(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path in ("", "/", "/otel"):
            return None
        channel = parse_channel_path(request.path)
        if channel is not None:
            if self.engine.channels.get(channel[0], channel[1]) is None:
                return connection.respond(http.HTTPStatus.NOT_FOUND, "Channel not found")
            return None
        message = "iii workers connect to / (telemetry to /otel, byte channels to /ws/channels/{id})\n"
        return connection.respond(http.HTTPStatus.NOT_FOUND, message)

    async def _worker_connection(self, ws: ServerConnection) -> None:
        identity = None if self.auth is None else self.auth.connections.get(ws)
        try:
            with acting_as(identity):  # its calls are checked by its grants; its writes carry its name (meta.actor)
                await self._serve_worker(ws, identity)
        finally:
            if self.auth is not None:
                self.auth.forget(ws)

    async def _serve_worker(self, ws: ServerConnection, identity: Identity | None) -> None:
        full_path = ws.request.path if ws.request else "/"
        path = full_path.partition("?")[0]
        if path == "/otel":
            await self._telemetry(ws)
            return
        target = parse_channel_path(full_path)
        if target is not None:
            channel = self.engine.channels.get(target[0], target[1])
            if channel is not None:
                await self.engine.channels.serve(ws, channel, target[2])
            return

        async def send(frame: bytes) -> None:
            await ws.send(frame, text=True)

        async def close() -> None:
            await ws.close(1000, "reattached on another connection")

        worker = Worker(send, close)
        # Sent before anything is read (III-PROTOCOL §2.2); no `features`: ripple speaks none of them.
        await ws.send(encode(WorkerRegistered(worker.id, worker.reattach_token)), text=True)
        await self.engine.connect(worker)
        try:
            async for frame in ws:
                message = decode_frame(frame)
                if identity is not None and isinstance(message, RegisterTrigger):
                    forbidden = trigger_refusal(identity, message)
                    if forbidden is not None:
                        error = ErrorBody(forbidden.code, forbidden.message)
                        result = TriggerRegistrationResultOut(message.id, message.trigger_type, message.function_id,
                                                              error)
                        await ws.send(encode(result), text=True)
                        continue
                await self.engine.handle(worker, message)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.engine.disconnect(worker)

    async def _telemetry(self, ws: ServerConnection) -> None:
        try:
            async for _frame in ws:
                self.engine.counters["telemetry_frames"] += 1
        except websockets.ConnectionClosed:
            pass
