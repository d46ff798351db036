"""``IIIServer``: the three iii ports around one :class:`~ripple.iii.engine.Engine`, in the store's event loop.

* worker WebSocket (``ws://HOST:49134``): ``workerregistered`` first, then every frame to the engine; ``/otel``
  takes telemetry and drops it;
* HTTP triggers (``http://HOST:3111``): :mod:`ripple.iii.http`;
* stream WebSocket (``ws://HOST:3112``): :mod:`ripple.iii.streams`;
* the RBAC worker port (``rbac=RbacPort(...)``, off by default): a second worker port whose connections are sessions
  with the rights their auth function and ripple token give them (:mod:`ripple.iii.rbac`, :mod:`ripple.iii.sessions`).

The worker and RBAC ports apply the main port's browser boundary (:class:`~ripple.http.boundary.Boundary`, the same
``--allow-host``/``--allow-origin`` lists) to every handshake: a ``Host`` that is not one of the server's names → 421,
a browser's foreign ``Origin`` (or ``null``) → 403, both before the upgrade. The iii SDKs send no ``Origin``. The
HTTP-trigger and stream ports keep iii's open behaviour toward browsers (DESIGN §15).

Byte channels (``/ws/channels/{id}?key=…``) are served on both worker ports and reached by their access key alone, as
in the engine: the key is the capability, handed only to the two ends of a call (the Node SDK sends no headers on
channel sockets).

``async with IIIServer(store, worker_port=0, http_port=0, stream_port=0) as iii:`` binds free ports; the bound
ports are then ``iii.worker_port``, ``iii.http_port``, ``iii.stream_port`` (and ``iii.rbac_port``).
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
from ripple.errors import ForbiddenError, RippleError
from ripple.http.boundary import Boundary
from ripple.iii.auth import PortAuth, refusal, require_worker
from ripple.iii.channels import parse_channel_path
from ripple.iii.engine import DEFAULT_CALL_TIMEOUT, Engine, Worker
from ripple.iii.http import HttpTriggerApp, HttpTriggerServer
from ripple.iii.protocol import WorkerRegistered, decode_frame, encode
from ripple.iii.queues import Policy
from ripple.iii.rbac import RbacPort, Session, current_session
from ripple.iii.sessions import SessionGate
from ripple.iii.streams import StreamServer
from ripple.store.store import Store

log = logging.getLogger("ripple.iii")

MAX_WORKER_FRAME = 64 * 1024 * 1024  # SDK telemetry batches are large; the Python SDK allows 64 MiB
HANDSHAKE_SLACK = 10.0  # seconds an RBAC handshake may take beyond its auth function's call timeout



def boundary_refusal(boundary: Boundary, connection: ServerConnection, request: Request) -> Response | None:
    """The browser boundary on a worker-port handshake (every one is a WebSocket upgrade, so ``Origin`` counts); with
    repeated headers the first decides, as on the main port."""
    host, origin = request.headers.get_all("Host"), request.headers.get_all("Origin")
    exc = boundary.refusal(host[0] if host else None, origin[0] if origin else None, checks_origin=True)
    return None if exc is None else refusal(connection, exc)


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
        rbac: RbacPort | None = None,
        boundary: Boundary | None = None,
    ) -> None:
        """``book``: the server's tokens (``--auth``): workers and stream clients then need one (ripple.iii.auth).
        ``rbac``: also listen on the RBAC worker port. ``boundary``: the allow lists of the browser boundary
        (``Boundary.listed(...)``; default: the loopback names, no other origin); each port adds its own address."""
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
        self.rbac = rbac
        self.rbac_port = None if rbac is None else rbac.port
        rules = boundary or Boundary()
        self._worker_boundary = rules.serving(host)
        self._rbac_boundary = rules.serving(host if rbac is None else rbac.host or host)
        self._gate = None if rbac is None else SessionGate(self.engine, rbac.config, book)
        self._rbac_auth = None if rbac is None or book is None else PortAuth(book)  # ends revoked tokens' sessions
        self._sessions: dict[ServerConnection, tuple[Session, Identity | None]] = {}
        self._rbac_server: Server | None = None
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
            if self.rbac is not None:
                self._rbac_server = await serve(
                    self._rbac_connection,
                    self.rbac.host or self.host,
                    self.rbac.port,
                    process_request=self._process_rbac_request,
                    max_size=self.max_frame,
                    compression=None,
                    open_timeout=self.engine.call_timeout + HANDSHAKE_SLACK,  # the auth function answers first
                )
                self.rbac_port = self._rbac_server.sockets[0].getsockname()[1]
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
        if self.rbac is not None:
            log.info("iii: RBAC workers ws://%s:%d", self.rbac.host or self.host, self.rbac_port)

    async def close(self) -> None:
        """Stop serving: workers are disconnected (their calls fail), then the HTTP and stream ports. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for port_auth in (self.auth, self._rbac_auth):
            if port_auth is not None:
                port_auth.close()
        for server in (self._workers, self._rbac_server):
            if server is not None:
                server.close(close_connections=True)
        await self.engine.close()
        for server in (self._workers, self._rbac_server):
            if server is not None:
                await server.wait_closed()
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
        refused = boundary_refusal(self._worker_boundary, connection, request) or self._check_worker_path(
            connection, request)
        if refused is not None or self.auth is None or parse_channel_path(request.path) is not None:
            return refused  # a byte channel is reached by its access key alone
        found = await self.auth.authenticate(connection, request)
        if isinstance(found, Response):
            return found
        try:
            require_worker(found)
        except ForbiddenError as exc:
            return refusal(connection, exc)
        self.auth.remember(connection, found)
        return None

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
                await self._serve_worker(ws)
        finally:
            if self.auth is not None:
                self.auth.forget(ws)

    # -- the RBAC port

    async def _process_rbac_request(self, connection: ServerConnection, request: Request) -> Response | None:
        refused = boundary_refusal(self._rbac_boundary, connection, request) or self._check_worker_path(
            connection, request)
        if refused is not None or parse_channel_path(request.path) is not None:
            return refused
        assert self._gate is not None
        address = connection.remote_address[0] if connection.remote_address else None
        try:
            session, identity = await self._gate.open(request, address)
        except RippleError as exc:
            return refusal(connection, exc)
        self._sessions[connection] = (session, identity)
        if self._rbac_auth is not None and identity is not None:
            self._rbac_auth.remember(connection, identity)
        return None

    async def _rbac_connection(self, ws: ServerConnection) -> None:
        session, identity = self._sessions.pop(ws, (None, None))
        try:
            with acting_as(identity):
                token = current_session.set(session)
                try:
                    await self._serve_worker(ws, session)
                finally:
                    current_session.reset(token)
        finally:
            if self._rbac_auth is not None:
                self._rbac_auth.forget(ws)

    # -- either worker port

    async def _serve_worker(self, ws: ServerConnection, session: Session | None = None) -> None:
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

        worker = Worker(send, close, session)
        # Sent before anything is read (III-PROTOCOL §2.2); no `features`: ripple speaks none of them.
        await ws.send(encode(WorkerRegistered(worker.id, worker.reattach_token)), text=True)
        await self.engine.connect(worker)
        try:
            async for frame in ws:
                await self.engine.handle(worker, decode_frame(frame))
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
