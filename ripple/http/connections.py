"""Connection limits for ``ripple serve`` (DESIGN §15): slow clients and floods cannot starve the others.

uvicorn reads a request head for as long as a client cares to send it, one byte at a time (slowloris), and a client
that connects and sends nothing is never closed; past the file-descriptor limit, asyncio's accept loop logs a
traceback per attempt (hundreds of thousands a minute). ripple therefore runs uvicorn's own HTTP protocol (h11 or
httptools, whichever uvicorn picks) with a guard, and listens on a socket that sheds connections it cannot afford:

- **Header timeout** (``--header-timeout``, 10 s): a request head (request line and headers) must arrive completely
  within this time of its first byte — or of the connection, for the first request. Data does not extend it. A client
  that sent part of a head gets ``408`` (JSON error body) and is closed; one that sent nothing is closed.
- **Body timeout** (``--body-timeout``, 60 s): the whole body must arrive within this time of the head.
- **Keep-alive timeout** (``--keep-alive-timeout``, 5 s): an idle connection between requests is closed (uvicorn's).
- **Head size**: a request head larger than 64 KiB gets ``431`` (JSON error body) and the connection is closed; the
  parser would otherwise buffer a head that never ends (httptools has no limit of its own).
- **Unparseable requests** get uvicorn's 400, with the JSON error body like every other answer.
- **Connection cap** (``--max-connections``; default 10,000, lowered to fit the file-descriptor limit): a connection
  over the cap is answered at once with ``503`` and the JSON error body ``too_many_connections`` (``Retry-After: 1``)
  and closed. WebSocket connections count.
- **Out of file descriptors**: the listening socket keeps one descriptor in reserve; when ``accept()`` fails with
  ``EMFILE``/``ENFILE`` it frees one, accepts the waiting connection, answers it the same ``503`` and closes it (the
  trick libuv uses), so nothing spins and waiting clients get an answer; with no reserve left it pauses accepting
  for a second. Either refusal logs one line per 10 seconds at most, with a count.

None of this applies to a connection once it is upgraded to a WebSocket: uvicorn's ping/pong keepalive (``--ws-ping-
interval``, ``--ws-ping-timeout``) closes a client that stops answering, and the subscription's bounded buffer keeps
a slow reader from growing memory (DESIGN §7).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
import time
from typing import Any, Literal

import msgspec

from ripple.http.rest import ErrorBody, ErrorInfo

log = logging.getLogger("ripple.serve")

HttpImplementation = Literal["auto", "h11", "httptools"]
DEFAULT_MAX_CONNECTIONS = 10_000
FD_RESERVE = 64  # descriptors kept for the database, its WAL, the reader pool and the listening sockets
FD_RESERVES = 4  # descriptors a listening socket holds to shed connections with (another thread may take one)
LOG_EVERY_SECONDS = 10.0
MAX_HEAD_BYTES = 64 * 1024  # a request line and its headers; browsers send a few KiB, h11's own limit is 16 KiB


class ConnectionLimits(msgspec.Struct, frozen=True):
    """``ripple serve --header-timeout/--body-timeout/--keep-alive-timeout/--max-connections``."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    keep_alive_timeout: float = 5.0
    max_connections: int | None = None  # None: DEFAULT_MAX_CONNECTIONS, lowered to fit RLIMIT_NOFILE

    def connection_cap(self) -> int:
        if self.max_connections is not None:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return DEFAULT_MAX_CONNECTIONS
        return max(1, min(DEFAULT_MAX_CONNECTIONS, soft - FD_RESERVE))


class RateLimitedLog:
    """One warning per ``every`` seconds at most; the lines in between are counted and reported with the next one."""

    def __init__(self, every: float = LOG_EVERY_SECONDS) -> None:
        self.every = every
        self._last = -float("inf")
        self._suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            self._suppressed += 1
            return
        self._last = now
        suffix = f" ({self._suppressed} more since the last such line)" if self._suppressed else ""
        self._suppressed = 0
        log.warning(message + suffix, *args)


def _refusal(status: int, reason: str, code: str, message: str, detail: Any, retry_after: int | None) -> bytes:
    """A complete HTTP/1.1 answer with the JSON error body, written before (or instead of) reading the request."""
    body = msgspec.json.encode(ErrorBody(ErrorInfo(code, message, detail)))
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            "connection: close"]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def too_many_connections(limit: int | None) -> bytes:
    return _refusal(503, "Service Unavailable", "too_many_connections",
                    "the server has too many open connections; retry shortly", {"limit": limit}, 1)


HEAD_TOO_LARGE = _refusal(431, "Request Header Fields Too Large", "headers_too_large",
                          f"the request line and headers exceed {MAX_HEAD_BYTES} bytes", {"limit": MAX_HEAD_BYTES},
                          None)
REQUEST_TIMEOUT = _refusal(408, "Request Timeout", "request_timeout",
                           "the request head did not arrive in time", None, None)

_cap_log = RateLimitedLog()
_fd_log = RateLimitedLog()


def base_protocol(implementation: HttpImplementation = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class for ``implementation`` ("auto": httptools when installed, else h11)."""
    if implementation == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    if implementation == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return AutoHTTPProtocol


def guarded_protocol(limits: ConnectionLimits, implementation: HttpImplementation = "auto") -> type[asyncio.Protocol]:
    """A subclass of uvicorn's HTTP protocol that enforces ``limits`` (see the module docstring).

    It relies only on what both of uvicorn's protocols share: ``cycle`` (the current request, with ``more_body`` and
    ``response_complete``), ``on_response_complete``, ``server_state.connections`` and ``transport``.
    """
    base: Any = base_protocol(implementation)
    cap = limits.connection_cap()

    class GuardedProtocol(base):  # type: ignore[misc]
        _guard_timer: asyncio.TimerHandle | None = None
        _guard_phase: str | None = None  # "head" | "body" | None
        _guard_seen: Any = None  # the request cycle last seen
        _guard_partial = False  # bytes of a request head have arrived
        _head_bytes = 0  # bytes received while waiting for the current request head to complete

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            if len(self.server_state.connections) > cap:
                _cap_log.warning("refusing connections over the cap of %d (--max-connections)", cap)
                self.transport.write(too_many_connections(cap))
                self.transport.close()
                return
            self._guard_arm("head", limits.header_timeout)

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            super().data_received(data)
            waiting = before is None or (before.response_complete and not before.more_body)  # for the next head
            if self.cycle is before and waiting:  # and this chunk did not complete it
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                    self.transport.write(HEAD_TOO_LARGE)
                    self.transport.close()
                    return
            else:
                self._head_bytes = 0  # a head completed in this chunk; what follows it is body or the next head
            self._guard_check(got_data=True)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._guard_check(got_data=False)

        def connection_lost(self, exc: Exception | None) -> None:
            self._guard_cancel()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            # uvicorn answers a request it cannot parse in plain text; ripple's answers are JSON error bodies
            self.transport.write(_refusal(400, "Bad Request", "bad_request", msg, None, None))
            self.transport.close()

        # -- the guard

        def _guard_check(self, *, got_data: bool) -> None:
            transport = self.transport
            if transport.is_closing() or transport.get_protocol() is not self:
                self._guard_cancel()  # closed, or upgraded to a WebSocket (its own keepalive takes over)
                return
            cycle = self.cycle
            if cycle is not self._guard_seen:  # a new request head arrived in full
                self._guard_seen = cycle
                self._guard_cancel()
            if cycle is None or cycle.response_complete:  # between requests
                if self._guard_phase == "body":
                    self._guard_cancel()
                if got_data:
                    self._guard_partial = True
                    if self._guard_phase != "head":
                        self._guard_arm("head", limits.header_timeout)
                return
            if cycle.more_body:
                if self._guard_phase != "body":
                    self._guard_arm("body", limits.body_timeout)
            elif self._guard_phase is not None:
                self._guard_cancel()  # the request is in; the app takes its time (long polls are fine)

        def _guard_arm(self, phase: str, seconds: float) -> None:
            self._guard_cancel()
            self._guard_phase = phase
            self._guard_timer = self.loop.call_later(seconds, self._guard_expired)

        def _guard_cancel(self) -> None:
            if self._guard_timer is not None:
                self._guard_timer.cancel()
            self._guard_timer = None
            self._guard_phase = None
            self._guard_partial = False

        def _guard_expired(self) -> None:
            phase, partial = self._guard_phase, self._guard_partial
            self._guard_timer = None
            self._guard_phase = None
            transport = self.transport
            if transport.is_closing() or transport.get_protocol() is not self:
                return
            if phase == "head" and partial:
                transport.write(REQUEST_TIMEOUT)
            transport.close()

    GuardedProtocol.__name__ = GuardedProtocol.__qualname__ = f"Guarded{base.__name__}"
    return GuardedProtocol


class SheddingSocket(socket.socket):
    """A listening socket that answers ``503`` instead of failing when the process is out of file descriptors.

    asyncio's accept loop calls :meth:`accept`; on ``EMFILE``/``ENFILE`` this frees a reserved descriptor, accepts the
    waiting connection, writes the refusal, closes it, takes the reserve back and reports "nothing to accept", so the
    loop neither spins nor logs a traceback per attempt. (uvloop accepts in libuv, which does the same by itself.)

    If another thread took the freed descriptor first (SQLite opening a file) and no reserve is left, the error goes
    to asyncio once, which stops accepting for a second; the next calls in the same round report "nothing to
    accept", so asyncio does not repeat it per pending connection (Python 3.11's accept loop would, a traceback each:
    :func:`quiet_accept_errors` turns that one message into the rate-limited line).
    """

    _reserves: list[int] | None = None
    _pausing = False

    def keep_reserve(self) -> None:
        reserves = self._reserves if self._reserves is not None else []
        self._reserves = reserves
        while len(reserves) < FD_RESERVES:
            try:
                reserves.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                return

    def accept(self) -> tuple[socket.socket, Any]:
        if self._pausing:  # asyncio was told to pause; stop its accept loop for this round
            self._pausing = False
            raise BlockingIOError(errno.EAGAIN, "accepting is paused")
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            log_out_of_descriptors()
            if not self._shed():
                self._pausing = True
                raise
            raise BlockingIOError(errno.EAGAIN, "connection shed") from None

    def _shed(self) -> bool:
        if not self._reserves:
            self.keep_reserve()
            if not self._reserves:
                return False
        os.close(self._reserves.pop())
        try:
            conn, _ = super().accept()
        except OSError:
            self.keep_reserve()
            return False
        try:
            conn.setblocking(False)
            conn.send(too_many_connections(None))
        except OSError:
            pass
        finally:
            conn.close()
            self.keep_reserve()
        return True

    def close(self) -> None:
        for fd in self._reserves or []:
            os.close(fd)
        self._reserves = []
        super().close()


def log_out_of_descriptors() -> None:
    _fd_log.warning("out of file descriptors (RLIMIT_NOFILE %d): answering new connections 503",
                    resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A loop exception handler: asyncio's "out of system resource" accept error becomes the rate-limited line."""
    if context.get("message") == "socket.accept() out of system resource":
        log_out_of_descriptors()
        return
    loop.default_exception_handler(context)


def listening_socket(sock: socket.socket) -> SheddingSocket:
    """Adopt a bound, listening socket (uvicorn's ``Config.bind_socket()``) as a :class:`SheddingSocket`."""
    shedding = SheddingSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    shedding.keep_reserve()
    return shedding
