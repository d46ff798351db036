"""The WebSocket subscription endpoints (DESIGN §7): ``/v1/subscribe`` and ``/v1/streams/{stream}/{group}``.

Fan-out cost (DESIGN §13). On uvicorn's ``websockets-sansio`` protocol a live event never costs a task wake-up while
the connection is writable: the hub calls each cursor, which writes the commit's frames — encoded once per commit,
WebSocket header included, shared by every subscriber with the same filter and packing — straight to the connection's
transport. Only while the transport is paused (the client reads slower than we write) do events go to the
subscription's bounded buffer, drained by its own task when the transport resumes; on overflow the buffer is dropped
and the task catches up from the log. Frames are unmasked, uncompressed server frames, valid whether or not
permessage-deflate was negotiated (RSV1 unset means "not compressed", RFC 7692 §6). On any other ASGI server or
protocol the same code runs through ASGI ``send`` from the subscription's task (correct, but a wake-up per commit).

Each subscription runs one ``TaskGroup`` with two tasks: the sender (hello, snapshot, catch-up, buffered live events,
heartbeats) and the receiver (a client frame is a ``bad_request``; a disconnect ends the subscription).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, cast

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.types import ASGIApp, Receive, Scope, Send

from ripple.auth.grants import Identity
from ripple.errors import BadRequestError, ForbiddenError, OffsetOutOfRangeError, RippleError, StoreClosedError
from ripple.http.access import AUTH_ERROR, IDENTITY
from ripple.http.markers import REFUSES_IN_FRAMES
from ripple.http.rest import STREAM_PREFIX, split_path
from ripple.store.store import Store
from ripple.subscriptions.catchup import JoinedPage, check_after, read_joined_page, read_snapshot
from ripple.subscriptions.cursor import Cursor
from ripple.subscriptions.hub import Commit
from ripple.subscriptions.params import SubscribeParams, parse_stream, parse_subscribe
from ripple.wire import (
    PROTOCOL_VERSION,
    ErrorFrame,
    Heartbeat,
    Hello,
    Live,
    RawSnapshotItem,
    SnapshotEnd,
    encode,
    pack,
    pack_joined,
    pack_snapshot,
    raw_json,
    ws_text_frame,
)

try:  # the fast path needs uvicorn's sans-I/O websockets protocol (uvicorn --ws websockets-sansio)
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol as _SansIO
except ImportError:  # pragma: no cover
    _SansIO = None  # type: ignore[assignment,misc]

log = logging.getLogger("ripple.ws")

_PROTOCOL_KEY = "ripple.ws_protocol"
CLOSE_TIMEOUT = 2.0  # seconds to get a final error frame and close out to a client that may not be reading


class _Gone(Exception):
    """The connection is closed or closing: stop sending."""


def _expose_protocol(app: ASGIApp) -> ASGIApp:
    """Route middleware: remember uvicorn's protocol object (the owner of the raw ASGI ``receive``) in the scope."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        owner = getattr(receive, "__self__", None)
        if _SansIO is not None and isinstance(owner, _SansIO):
            cast(dict[str, Any], scope)[_PROTOCOL_KEY] = owner
        await app(scope, receive, send)

    return middleware


class WsSession:
    """One WebSocket subscriber: its cursor, its connection and the two tasks that serve it."""

    def __init__(self, store: Store, socket: WebSocket[Any, Any, Any], params: SubscribeParams, proto: Any,
                 identity: Identity | None = None) -> None:
        self.store = store
        self.socket = socket
        self.params = params
        self.identity = identity  # the token it was opened with (``--auth``): revoking it ends the session
        self.batch = params.batch
        self.proto = proto  # uvicorn's WebSocketsSansIOProtocol, or None
        self.settings = store.hub.settings
        self.cursor: Cursor | None = None
        self._wakeup = asyncio.Event()
        self._final: tuple[str, str, int] | None = None  # (error code, message, close code) to end with
        self._tasks: list[asyncio.Task[None]] = []
        self._done = asyncio.Event()

    # -- writing

    def _check(self) -> None:
        proto = self.proto
        if proto is not None and (proto.disconnected or proto.close_sent or proto.transport.is_closing()):
            raise _Gone

    async def _send(self, payload: bytes) -> None:
        if self.proto is not None:
            self._check()
            self.proto.transport.write(ws_text_frame(payload))
        else:
            await self.socket.send_text(payload.decode())

    async def _writable(self) -> None:
        """Wait until the transport takes more (flow control), so a slow client never grows our memory."""
        if self.proto is not None:
            await self.proto.writable.wait()
            self._check()

    def _inline(self, commit: Commit) -> bool:
        """The hub's fast path: write this commit's shared frames now if the transport is writable."""
        proto = self.proto
        if not proto.writable.is_set():
            return False
        if proto.close_sent or proto.disconnected:
            return True  # the session is ending; nothing more to deliver
        assert self.cursor is not None
        write = proto.transport.write
        for frame in commit.frames(self.cursor.filter, self.batch):
            write(frame)
        self.store.counters["ws_fast_path_commits"] += 1
        return True

    def _overflowed(self) -> None:
        through = self.cursor.through if self.cursor is not None else None
        log.warning("a subscriber fell behind (its buffer overflowed); catching it up from the log after offset %s",
                    through, extra={"event": "overflow", "kind": "websocket", "through": through,
                                    "path": self.socket.scope.get("path")})

    async def _refuse(self, code: str, message: str, close_code: int, earliest: int | None = None) -> None:
        await refuse(self.socket, self.proto, code, message, close_code, earliest)

    # -- lifecycle

    async def open(self) -> Cursor:
        """Check ``after``, attach to the hub, read the snapshot, send ``hello`` (and the snapshot)."""
        store, params = self.store, self.params
        kind = params.filter.kind
        earliest = (await check_after(store, params.after, kind) if params.after is not None
                    else store.log_floor.for_kind(kind))
        after = store.head if params.after is None else params.after
        cursor = Cursor(params.filter, after, self.settings.limits, counters=store.counters, wake=self._wakeup.set,
                        on_overflow=self._overflowed)
        store.hub.attach(cursor)  # attach first: nothing committed from here on can be missed
        self.cursor = cursor
        if self.proto is not None:
            cursor.inline = self._inline
        rows: list[Any] = []
        if params.snapshot:
            offset, rows = await read_snapshot(store, params.filter)
            cursor.advance(offset)
        await self._send(encode(Hello(PROTOCOL_VERSION, store.head, cursor.through, earliest)))
        if params.snapshot:
            items = [RawSnapshotItem(r[0], r[1], raw_json(r[2]), r[3], r[4]) for r in rows]
            for payload in pack_snapshot(cursor.through, items):
                await self._send(payload)
                await self._writable()
            await self._send(encode(SnapshotEnd(cursor.through)))
        return cursor

    async def run(self) -> None:
        hub = self.store.hub
        hub.add_session(self)  # from the start, so close_subscribers reaches a subscriber that is still opening
        try:
            try:
                cursor = await self.open()
            except OffsetOutOfRangeError as exc:
                earliest = exc.detail.get("earliest") if isinstance(exc.detail, dict) else None
                await self._refuse(exc.code, exc.message, 1008, earliest)
                return
            except StoreClosedError:
                await self._refuse("shutting_down", "the server is shutting down", 1001)
                return
            except _Gone:
                return
            try:
                if self._final is None:
                    async with asyncio.TaskGroup() as tg:
                        sender = tg.create_task(self._send_loop(cursor), name="ripple-ws-send")
                        receiver = tg.create_task(self._receive_loop(), name="ripple-ws-receive")
                        self._tasks = [sender, receiver]
                        sender.add_done_callback(lambda _t: receiver.cancel())
                        receiver.add_done_callback(lambda _t: sender.cancel())
            finally:
                hub.detach(cursor)
            if self._final is not None:
                code, message, close_code = self._final
                earliest = self.store.log_floor.for_kind(cursor.filter.kind) if code == "offset_out_of_range" else None
                await self._refuse(code, message, close_code, earliest)
        finally:
            hub.discard_session(self)
            if self.cursor is not None:
                hub.detach(self.cursor)
            self._done.set()

    async def shutdown(self, code: int = 1001) -> None:
        """Send ``shutting_down`` and close with ``code`` (the server is stopping)."""
        self.end("shutting_down", "the server is shutting down", code)
        await self._done.wait()

    def end(self, code: str, message: str, close_code: int) -> None:
        """Stop delivering now; the session then sends ``error{code}`` and closes with ``close_code``."""
        if self._final is None:
            self._final = (code, message, close_code)
        for task in self._tasks:
            task.cancel()

    # -- the two tasks

    async def _receive_loop(self) -> None:
        try:
            while True:
                message = await self.socket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message["type"] == "websocket.receive":
                    if self._final is None:
                        self._final = ("bad_request", "clients send no frames on this endpoint", 1008)
                    return
        except WebSocketDisconnect:
            return

    async def _send_loop(self, cursor: Cursor) -> None:
        try:
            await self._serve(cursor)
        except (_Gone, WebSocketDisconnect, ConnectionError):
            pass
        except OffsetOutOfRangeError as exc:  # a compaction overtook this subscriber while it caught up
            if self._final is None:
                self._final = (exc.code, exc.message, 1008)
        except StoreClosedError:
            if self._final is None:
                self._final = ("shutting_down", "the server is shutting down", 1001)
        except Exception as exc:
            if type(exc).__name__ == "ClientDisconnected":  # uvicorn's, from ASGI send on a closed socket
                return
            log.exception("subscription failed")
            if self._final is None:
                self._final = ("internal_error", "the subscription failed on the server", 1011)

    async def _serve(self, cursor: Cursor) -> None:
        loop = asyncio.get_running_loop()
        interval = self.settings.heartbeat_interval
        next_heartbeat = loop.time() + interval
        while True:
            if self.store.closed or self.store.hub.closed:
                raise StoreClosedError("the store is closed")
            if not cursor.live:
                await self._catch_up(cursor)
                continue
            if cursor.buffer:
                await self._writable()
                if cursor.live and cursor.buffer:  # it may have overflowed while we waited
                    for payload in pack([item[1] for item in cursor.take()], self.batch):
                        await self._send(payload)
                continue
            self._wakeup.clear()
            timeout = next_heartbeat - loop.time()
            if timeout <= 0:
                if self.proto is None or self.proto.writable.is_set():
                    head = self.store.head
                    await self._send(encode(Heartbeat(head, cursor.current_through(head))))
                next_heartbeat = loop.time() + interval
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()

    async def _catch_up(self, cursor: Cursor) -> None:
        """Rounds of log pages until the cursor can go live, then ``live{through}``.

        The next page is read (in the reader's thread, SQLite releasing the GIL) while this one drains to the client.
        """
        store = self.store
        ahead: asyncio.Task[JoinedPage] | None = None
        try:
            while cursor.next_read(store.head):
                if ahead is None:
                    page = await self._read(cursor, cursor.through)
                else:
                    page, ahead = await ahead, None
                if page.covered < cursor.target:
                    ahead = asyncio.ensure_future(self._read(cursor, page.covered))
                if page.count:
                    for payload in pack_joined(page.joined, self.batch):
                        await self._send(payload)
                cursor.advance(page.covered)
                await self._writable()
        finally:
            if ahead is not None:
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)
        await self._send(encode(Live(cursor.current_through(store.head))))

    async def _read(self, cursor: Cursor, after: int) -> JoinedPage:
        return await read_joined_page(self.store, cursor.filter, after, cursor.target, cursor.limits.page_size)


async def refuse(
    socket: WebSocket[Any, Any, Any],
    proto: Any,
    code: str,
    message: str,
    close_code: int,
    earliest: int | None = None,
) -> None:
    """Send an ``error`` frame and close; a client that does not read gets its connection aborted instead."""
    payload = encode(ErrorFrame(code, message, earliest)).decode()
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await socket.send_text(payload)
            await socket.close(close_code, reason=code)
    except TimeoutError:
        if proto is not None:
            proto.transport.abort()
    except Exception as exc:  # already gone
        log.debug("could not send %s to a subscriber: %r", code, exc)


async def _serve(socket: WebSocket[Any, Any, Any], parse: Callable[[], SubscribeParams]) -> None:
    await socket.accept()
    scope = cast(dict[str, Any], socket.scope)
    proto = scope.get(_PROTOCOL_KEY)
    store: Store = socket.app.state.store
    not_authenticated: RippleError | None = scope.get(AUTH_ERROR)
    if not_authenticated is not None:  # ``--auth`` and no valid token (ripple.http.access)
        await refuse(socket, proto, not_authenticated.code, not_authenticated.message, 1008)
        return
    try:
        params = parse()
    except BadRequestError as exc:
        await refuse(socket, proto, exc.code, exc.message, 1008)
        return
    except RippleError as exc:  # pragma: no cover - parsers raise BadRequestError only
        await refuse(socket, proto, "bad_request", exc.message, 1008)
        return
    identity: Identity | None = scope.get(IDENTITY)
    if identity is not None:
        try:
            identity.require_follow(params.filter)  # a subscription only ever sees scopes it may read
        except ForbiddenError as exc:
            await refuse(socket, proto, exc.code, exc.message, 1008)
            return
    if store.closed or store.hub.closed:
        await refuse(socket, proto, "shutting_down", "the server is shutting down", 1001)
        return
    await WsSession(store, socket, params, proto, identity).run()


def _parse_stream_path(socket: WebSocket[Any, Any, Any]) -> SubscribeParams:
    """Stream and group from the raw path, as the REST send does: the router decodes ``a%2Fb/c`` to ``a/b/c``, which
    would subscribe to stream ``a``, group ``b/c`` instead of refusing the stream name ``a/b``."""
    stream, group = split_path(socket, STREAM_PREFIX)
    return parse_stream(stream, group or "", socket.scope.get("query_string", b""))


def websocket_handlers() -> list[Any]:
    """Fresh Litestar route handlers for ``/v1/subscribe`` and ``/v1/streams/{stream}/{group}``.

    The Store is taken from ``app.state.store``. Serve with uvicorn ``ws="websockets-sansio"`` for the fast path.
    """

    async def subscribe_handler(socket: WebSocket[Any, Any, Any]) -> None:
        await _serve(socket, lambda: parse_subscribe(socket.scope.get("query_string", b"")))

    async def stream_handler(socket: WebSocket[Any, Any, Any]) -> None:
        await _serve(socket, lambda: _parse_stream_path(socket))

    opt = {REFUSES_IN_FRAMES: True}
    return [
        websocket("/v1/subscribe", middleware=[_expose_protocol], name="ripple-subscribe", opt=opt)(subscribe_handler),
        websocket(
            "/v1/streams/{stream:str}/{group:path}", middleware=[_expose_protocol], name="ripple-stream-subscribe",
            opt=opt,
        )(stream_handler),
    ]


async def close_subscribers(store: Store, code: int = 1001) -> None:
    """Graceful shutdown: every live WebSocket subscriber gets ``error{shutting_down}`` and close ``code``.

    Call it before uvicorn closes sockets (it would close them with 1012).
    """
    await store.hub.close_sessions(code)
