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
import importlib.util
import ipaddress
import logging
import os
import resource
import signal
import socket
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Literal

import msgspec
import uvicorn

from ripple import __version__, logs
from ripple.auth.book import TokenBook
from ripple.core.validate import DEFAULT_MAX_VALUE_BYTES
from ripple.errors import InsecureBindError, RippleError
from ripple.http import ws
from ripple.http.access import Security
from ripple.http.app import create_app
from ripple.http.boundary import Boundary
from ripple.http.connections import (
    ConnectionLimits,
    HttpImplementation,
    guarded_protocol,
    listening_socket,
    quiet_accept_errors,
)
from ripple.iii.rbac import RbacPort
from ripple.iii.server import IIIServer
from ripple.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_QUEUE, MAX_BATCH_BODY_BYTES, MAX_BATCH_COMMANDS
from ripple.logs import LogFormat, LogLevel
from ripple.store.postgres import is_postgres_url, redact
from ripple.store.retention import RetentionPolicy, format_age
from ripple.store.sqlite import Durability
from ripple.store.store import Store
from ripple.subscriptions.cursor import DEFAULT_MAX_BUFFER_BYTES, DEFAULT_MAX_BUFFER_EVENTS
from ripple.subscriptions.hub import HubSettings
from ripple.userapp import apply_setup

log = logging.getLogger("ripple.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
GRACEFUL_SECONDS = 10.0


# The event loop and HTTP parser: uvloop and httptools (uvicorn[standard]'s) when installed, else asyncio's own loop
# and the pure-Python h11 parser. "auto" takes the fast ones when it can; naming one that is missing is an error.
Loop = Literal["auto", "uvloop", "asyncio"]


class IiiOptions(msgspec.Struct, frozen=True):
    """The ``--iii*`` flags of DESIGN §10, handed to the iii layer (``ripple.iii``)."""

    enabled: bool = False
    strict: bool = False
    host: str = DEFAULT_HOST
    worker_port: int = 49134
    http_port: int = 3111
    stream_port: int = 3112
    rbac: RbacPort | None = None  # --iii-rbac-port and the --iii-rbac-* rules: the RBAC worker port


class LogOptions(msgspec.Struct, frozen=True):
    """``--log-format`` and ``--log-level`` (:mod:`ripple.logs`)."""

    format: LogFormat = "text"
    level: LogLevel = "info"


class ServerLimits(msgspec.Struct, frozen=True):
    """The ``--max-*`` and ``--subscriber-buffer-*`` options (defaults in :mod:`ripple.limits`)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch_body_bytes: int = MAX_BATCH_BODY_BYTES
    max_batch_commands: int = MAX_BATCH_COMMANDS
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_queue: int = DEFAULT_MAX_QUEUE
    subscriber_buffer_events: int = DEFAULT_MAX_BUFFER_EVENTS
    subscriber_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES


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
    logs: LogOptions = LogOptions()
    metrics: bool = True
    # behind a reverse proxy: trust X-Forwarded-For/-Proto from these addresses (uvicorn's ProxyHeadersMiddleware)
    proxy_headers: bool = False
    forwarded_allow_ips: str = "127.0.0.1"
    limits: ServerLimits = ServerLimits()
    # Security (docs/security.md): tokens, the browser boundary, connection limits.
    auth: bool = False
    insecure_no_auth: bool = False
    allow_hosts: tuple[str, ...] = ()
    allow_origins: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    connections: ConnectionLimits = ConnectionLimits()
    http: HttpImplementation = "auto"
    loop: Loop = "auto"

    def security(self) -> Security:
        return Security(self.boundary().serving(self.host), self.auth)

    def boundary(self) -> Boundary:
        """The browser boundary's allow lists, for every port that applies it (each adds its own address)."""
        return Boundary.listed(self.allow_hosts, self.allow_origins, self.cors_origins)
    retention: RetentionPolicy | None = None  # ripple serve --retain-*: compaction while serving


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def loop_factory(choice: Loop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for ``choice`` (``None``: asyncio's default loop)."""
    if choice == "asyncio" or (choice == "auto" and not _installed("uvloop")):
        return None
    try:
        import uvloop
    except ImportError:
        raise RippleError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def http_parser(choice: HttpImplementation) -> Literal["httptools", "h11"]:
    """The HTTP/1.1 implementation uvicorn runs for ``choice``."""
    if choice == "h11" or (choice == "auto" and not _installed("httptools")):
        return "h11"
    if not _installed("httptools"):
        raise RippleError("--http httptools: httptools is not installed (pip install httptools)")
    return "httptools"


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
        log.info("shutting down: closing subscribers, finishing the requests in flight",
                 extra={"event": "shutdown", "phase": "draining", "head": self.store.head})
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


async def start_iii(store: Store, options: IiiOptions, book: TokenBook | None = None,
                    boundary: Boundary | None = None) -> IIIServer | None:
    """Start the iii worker, HTTP-trigger and stream ports (DESIGN §9) when ``--iii`` is given (with ``book``:
    workers and stream clients need tokens, ripple.iii.auth; ``boundary``: the browser boundary's allow lists, for
    the worker and RBAC ports)."""
    if not options.enabled:
        return None
    iii = IIIServer(store, host=options.host, worker_port=options.worker_port, http_port=options.http_port,
                    stream_port=options.stream_port, strict=options.strict, book=book, rbac=options.rbac,
                    boundary=boundary)
    await iii.start()
    return iii


def is_loopback(host: str) -> bool | None:
    """Does ``host`` (a bind address or a name) reach only this machine? ``None``: it does not resolve."""
    name = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError:
        return None
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in found)


def binds(options: ServeOptions) -> list[tuple[str, str]]:
    """Every address the server listens on, with the flag that sets it: the main port and the iii ports."""
    found = [("--host", options.host)]
    if options.iii.enabled:
        found.append(("--iii-host", options.iii.host))
        if options.iii.rbac is not None and options.iii.rbac.host is not None:
            found.append(("--iii-rbac-host", options.iii.rbac.host))
    return found


def check_bind(options: ServeOptions) -> None:
    """A server reachable from the network must require tokens, unless the operator insists (one-line refusal).
    A host that does not resolve passes here: binding it fails with its own one-line error."""
    if options.auth or options.insecure_no_auth:
        return
    for flag, host in binds(options):
        if is_loopback(host) is False:
            raise InsecureBindError(
                f"refusing to serve {host} ({flag}) without --auth: anyone who reaches it could read and write "
                "everything (create tokens with 'ripple token create' and add --auth, or add --insecure-no-auth)"
            )


def auth_mode(options: ServeOptions) -> str:
    if options.auth:
        return "auth: tokens required"
    if all(is_loopback(host) is True for _, host in binds(options)):
        return "auth: off (loopback only)"
    return "auth: OFF on a network address (--insecure-no-auth)"


def config_for(app: Any, options: ServeOptions) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        # ripple.logs formats every record (uvicorn's too); the access log is ripple's (ripple.http.requests)
        log_config=None,
        log_level=None,
        access_log=False,
        proxy_headers=options.proxy_headers,
        forwarded_allow_ips=options.forwarded_allow_ips,
        timeout_graceful_shutdown=int(options.graceful_seconds),
        lifespan="on",
        server_header=False,
        # uvicorn's HTTP protocol with header/body timeouts and a connection cap (ripple.http.connections)
        http=guarded_protocol(options.connections, http_parser(options.http)),
        timeout_keep_alive=max(1, round(options.connections.keep_alive_timeout)),
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
        parts.append(f"events older than {format_age(policy.max_age_ms)}")
    if policy.max_bytes is not None:
        parts.append(f"the oldest events while the file is over {policy.max_bytes:,} bytes")
    if policy.stream_max_age_ms is not None:
        parts.append(f"stream events older than {format_age(policy.stream_max_age_ms)}")
    return f"compacting {', '.join(parts)}; every {policy.interval:g}s"


def announce(options: ServeOptions, iii: IIIServer | None) -> Callable[[RippleServer], None]:
    def on_ready(server: RippleServer) -> None:
        url = f"http://{options.host}:{server.port}"
        where = redact(options.db) if is_postgres_url(options.db) else str(Path(options.db).absolute())
        print(f"ripple serving {where} on {url}  (API docs: {url}/schema; {auth_mode(options)})",
              flush=True)
        log.info("ripple %s serving %s on %s", __version__, where, url, extra={
            "event": "startup", "version": __version__, "db": where, "url": url,
            "head": server.store.head, "durability": options.durability, "iii": iii is not None,
            "metrics": options.metrics, "pid": os.getpid(), "auth": options.auth,
        })
        if options.retention is not None:
            print(f"ripple retention: {describe_policy(options.retention)}", flush=True)
        if iii is not None:
            host, mode = options.iii.host, "strict" if options.iii.strict else "compat rules R-3..R-5 on"
            rbac_host = host if options.iii.rbac is None else options.iii.rbac.host or host
            rbac = "" if iii.rbac_port is None else f", RBAC workers ws://{rbac_host}:{iii.rbac_port}"
            print(f"ripple iii ({mode}): workers ws://{host}:{iii.worker_port}, HTTP triggers "
                  f"http://{host}:{iii.http_port}, streams ws://{host}:{iii.stream_port}{rbac}", flush=True)

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
    check_bind(options)
    raise_nofile_limit()
    logs.configure(options.logs.format, options.logs.level)
    limits = options.limits
    settings = HubSettings(heartbeat_interval=options.heartbeat_seconds,
                           max_buffer_events=limits.subscriber_buffer_events,
                           max_buffer_bytes=limits.subscriber_buffer_bytes)
    # The user's code is imported and registered, and the port bound, before the file is opened: a broken --app or
    # a port in use is one line and leaves no file behind; the app's projections start in the opening transaction.
    store = Store(options.db, durability=options.durability, subscription_settings=settings,
                  max_value_bytes=limits.max_value_bytes, max_queue=limits.max_queue,
                  max_batch_commands=limits.max_batch_commands, retention=options.retention)
    handlers = apply_setup(store, options.app) if options.app else []
    # listening sockets that shed connections with 503 when the process runs out of descriptors
    sockets = [listening_socket(sock) for sock in listen(options.host, options.port)]
    with contextlib.ExitStack() as bound:
        for sock in sockets:
            bound.enter_context(sock)
        async with store:
            security = options.security()
            book = security.token_book(store.path) if options.auth else None
            if book is not None:
                await book.start()
                store.on_close(book.close)
            iii = await start_iii(store, options.iii, book, options.boundary())
            try:
                app = create_app(store, route_handlers=handlers, max_body_bytes=limits.max_body_bytes,
                                 max_batch_body_bytes=limits.max_batch_body_bytes, metrics=options.metrics,
                                 access_log=options.access_log, iii_engine=None if iii is None else iii.engine,
                                 security=security, book=book)
                server = RippleServer(config_for(app, options), store)
                server.on_ready = announce(options, iii)
                server.install_signal_handlers()
                asyncio.get_running_loop().set_exception_handler(quiet_accept_errors)
                await server.serve(sockets=list(sockets))
            finally:
                if iii is not None:
                    await iii.close()
        head = store.head
    log.info("ripple stopped at head %d", head, extra={"event": "shutdown", "phase": "stopped", "head": head})
    print("ripple stopped", flush=True)


def run(options: ServeOptions) -> None:
    with asyncio.Runner(loop_factory=loop_factory(options.loop)) as runner:
        runner.run(serve(options))
