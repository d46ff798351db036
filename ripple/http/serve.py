"""``ripple serve``: run the app on uvicorn with a graceful shutdown that loses no acknowledged write.

uvicorn's own SIGTERM handling closes WebSockets with 1012 and only then runs the lifespan shutdown (DESIGN §13).
So ripple runs :class:`uvicorn.Server` itself, handles the signals and, on the first SIGTERM/SIGINT:

1. stops accepting connections (closes the listening sockets),
2. answers every long-poll and closes WebSocket subscribers with 1001 (going away),
3. lets uvicorn finish the requests in flight — their writes commit and are acknowledged — within
   ``timeout_graceful_shutdown`` seconds,
4. closes the Store, which commits everything still queued and checkpoints the WAL.

A second signal forces the exit (requests still running are cancelled; committed writes stay committed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import msgspec
import uvicorn

from ripple.errors import RippleError
from ripple.http import ws
from ripple.http.app import create_app
from ripple.iii.server import IIIServer
from ripple.store.retention import RetentionPolicy
from ripple.store.sqlite import Durability
from ripple.store.store import Store
from ripple.subscriptions.hub import HubSettings
from ripple.userapp import apply_setup

log = logging.getLogger("ripple.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
GRACEFUL_SECONDS = 10.0


class IiiOptions(msgspec.Struct, frozen=True):
    """The ``--iii*`` flags of DESIGN §10, handed to the iii layer (``ripple.iii``)."""

    enabled: bool = False
    strict: bool = False
    host: str = DEFAULT_HOST
    worker_port: int = 49134
    http_port: int = 3111
    stream_port: int = 3112


class ServeOptions(msgspec.Struct, frozen=True):
    db: str = "ripple.db"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    durability: Durability = "full"
    app: str | None = None
    access_log: bool = False
    iii: IiiOptions = IiiOptions()
    graceful_seconds: float = GRACEFUL_SECONDS
    # WebSocket keepalive (uvicorn pings; a client that cannot answer in time is closed and must resume) and the
    # subscription heartbeat frame interval (DESIGN §7, §13).
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    heartbeat_seconds: float = 15.0
    retention: RetentionPolicy | None = None  # ripple serve --retain-*: compaction while serving


class RippleServer(uvicorn.Server):
    """A uvicorn server whose shutdown first drains ripple's long-lived connections."""

    def __init__(
        self, config: uvicorn.Config, store: Store, on_ready: Callable[[RippleServer], None] | None = None
    ) -> None:
        super().__init__(config)
        self.store = store
        self.on_ready = on_ready
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # ripple installs its own handlers (install_signal_handlers); uvicorn's re-raise the signal after exit.
        yield

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_exit)

    def request_exit(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.ready.set()
            if self.on_ready is not None:
                self.on_ready(self)

    @property
    def port(self) -> int:
        port: int = self.servers[0].sockets[0].getsockname()[1]
        return port

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting before anything else
        app_state = getattr(self.config.loaded_app, "state", None) or getattr(self.config.app, "state", None)
        commits = getattr(app_state, "commits", None)
        if commits is not None:
            commits.close()
        try:
            await ws.close_subscribers(self.store, 1001)
        except Exception:
            log.exception("closing subscribers failed")
        await super().shutdown(sockets)


def raise_nofile_limit() -> None:
    """Many sockets need many file descriptors: raise the soft limit to the hard one (DESIGN §13)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def start_iii(store: Store, options: IiiOptions) -> IIIServer | None:
    """Start the iii worker, HTTP-trigger and stream ports (DESIGN §9) when ``--iii`` is given."""
    if not options.enabled:
        return None
    iii = IIIServer(store, host=options.host, worker_port=options.worker_port, http_port=options.http_port,
                    stream_port=options.stream_port, strict=options.strict)
    await iii.start()
    return iii


def config_for(app: Any, options: ServeOptions) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level="warning",
        access_log=options.access_log,
        timeout_graceful_shutdown=int(options.graceful_seconds),
        lifespan="on",
        server_header=False,
        # The subscription hub writes frames straight to this protocol's transport while it is writable (no task
        # wake-up per delivery, DESIGN §13); deflate would cost a compression per subscriber.
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_ping_interval=options.ws_ping_interval,
        ws_ping_timeout=options.ws_ping_timeout,
    )


def describe_policy(policy: RetentionPolicy) -> str:
    parts = []
    if policy.max_age_ms is not None:
        parts.append(f"events older than {policy.max_age_ms / 86_400_000:g} days")
    if policy.max_bytes is not None:
        parts.append(f"the oldest events while the file is over {policy.max_bytes:,} bytes")
    if policy.stream_max_age_ms is not None:
        parts.append(f"stream events older than {policy.stream_max_age_ms / 86_400_000:g} days")
    return f"compacting {', '.join(parts)}; every {policy.interval:g}s"


def announce(options: ServeOptions, iii: IIIServer | None) -> Callable[[RippleServer], None]:
    def on_ready(server: RippleServer) -> None:
        url = f"http://{options.host}:{server.port}"
        print(f"ripple serving {Path(options.db).absolute()} on {url}  (API docs: {url}/schema)", flush=True)
        if options.retention is not None:
            print(f"ripple retention: {describe_policy(options.retention)}", flush=True)
        if iii is not None:
            host, mode = options.iii.host, "strict" if options.iii.strict else "compat rules R-3..R-5 on"
            print(f"ripple iii ({mode}): workers ws://{host}:{iii.worker_port}, HTTP triggers "
                  f"http://{host}:{iii.http_port}, streams ws://{host}:{iii.stream_port}", flush=True)

    return on_ready


def listen(host: str, port: int) -> list[socket.socket]:
    """The listening sockets (one per address ``host`` resolves to, as asyncio binds them), bound here rather than by
    uvicorn: uvicorn logs a failure and exits with its own code, while a port in use or a host that does not resolve
    is bad input — one line and exit 2, and nothing created."""
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        ):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise RippleError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", code="cannot_listen") from None
    return sockets


async def serve(options: ServeOptions) -> None:
    """Open the store, mount the user's app, serve until SIGTERM/SIGINT, then shut down gracefully."""
    raise_nofile_limit()
    settings = HubSettings(heartbeat_interval=options.heartbeat_seconds)
    # The user's code is imported and registered, and the port bound, before the file is opened: a broken --app or
    # a port in use is one line and leaves no file behind; the app's projections start in the opening transaction.
    store = Store(options.db, durability=options.durability, subscription_settings=settings,
                  retention=options.retention)
    handlers = apply_setup(store, options.app) if options.app else []
    sockets = listen(options.host, options.port)
    with contextlib.ExitStack() as bound:
        for sock in sockets:
            bound.enter_context(sock)
        async with store:
            iii = await start_iii(store, options.iii)
            try:
                server = RippleServer(config_for(create_app(store, route_handlers=handlers), options), store)
                server.on_ready = announce(options, iii)
                server.install_signal_handlers()
                await server.serve(sockets=sockets)
            finally:
                if iii is not None:
                    await iii.close()
    print("ripple stopped", flush=True)


def run(options: ServeOptions) -> None:
    asyncio.run(serve(options))
