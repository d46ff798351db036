"""The iii stream WebSocket server (III-PROTOCOL §5, R-2), fed from ripple's log.

``ws://HOST:3112/`` speaks iii's ``join``/``leave`` frames. ``/stream/{stream}/{group}`` joins at connect, and
``?after=N`` first replays the logged ``stream::send`` events after offset N, then goes live with no gap and no
duplicate (attach first, catch up from the log in pages, then drop buffered live events already sent). Every envelope
carries ripple's extra ``offset`` so a client knows where to resume.

Live delivery never awaits a socket: the commit listener writes each frame (encoded once per event) straight into the
connection's buffer. A subscriber whose buffer grows past ``max_buffer`` bytes falls back to reading the log at its
own pace (with backpressure), then goes live again — one slow client never stalls the writer or the others.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from ripple.core.events import Event
from ripple.iii.items import sync_data
from ripple.iii.names import item_scope
from ripple.iii.protocol import (
    Join,
    StreamPath,
    decode_client_frame,
    encode,
    parse_stream_path,
    stream_envelope,
    stream_matches,
    stream_target,
    sync_envelope,
)
from ripple.store.store import Store

log = logging.getLogger("ripple.iii.streams")

PAGE = 500
LIVE_BUFFER_EVENTS = 10_000  # events held for one subscription while it catches up; beyond: re-read the log
DEFAULT_MAX_BUFFER = 1 << 20  # bytes queued on a connection before its subscriptions fall back to the log


class Subscription:
    """One join (or the auto-join of a ``/stream/...`` URL) on one connection."""

    def __init__(self, ws: ServerConnection, stream: str, group: str, item_id: str | None) -> None:
        self.ws = ws
        self.stream = stream
        self.group = group
        self.item_id = item_id
        self.live = False
        self.buffer: list[Event] | None = []  # live events that arrive while catching up; None once overflowed
        self.last_sent = 0
        self.task: asyncio.Task[None] | None = None


class StreamServer:
    def __init__(self, store: Store, host: str, port: int, *, max_buffer: int = DEFAULT_MAX_BUFFER) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.max_buffer = max_buffer
        self.subs: dict[tuple[str, str], list[Subscription]] = {}
        self.fallbacks = 0
        self._server: Server | None = None
        self._unsubscribe: Callable[[], None] = lambda: None

    async def start(self) -> None:
        self._unsubscribe = self.store.commits.subscribe(self._on_commit)
        self._server = await serve(
            self._connection,
            self.host,
            self.port,
            process_request=self._check_path,
            max_size=1 << 20,
            compression=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._unsubscribe()
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()

    # -- connections

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            target = parse_stream_path(request.path)
        except ValueError as exc:
            return connection.respond(http.HTTPStatus.BAD_REQUEST, f"{exc}\n")
        if target is None:
            message = "the stream server serves / and /stream/{stream}/{group}\n"
            return connection.respond(http.HTTPStatus.NOT_FOUND, message)
        if target != "root" and target.after is not None and target.after > self.store.head:
            # A resume point the log has not reached would silently skip every event up to it (offset_out_of_range).
            message = f"offset_out_of_range: after={target.after} is beyond the head ({self.store.head})\n"
            return connection.respond(http.HTTPStatus.BAD_REQUEST, message)
        return None

    async def _connection(self, ws: ServerConnection) -> None:
        target = parse_stream_path(ws.request.path if ws.request else "/")
        mine: dict[str, Subscription] = {}
        try:
            if isinstance(target, StreamPath):
                mine[""] = self._join(ws, target.stream, target.group, None, target.after)
            async for frame in ws:
                message = decode_client_frame(frame)
                if message is None:
                    continue  # bad frames are ignored, as the engine does
                data = message.data
                old = mine.pop(data.subscriptionId, None)
                if old is not None:
                    self._detach(old)
                if isinstance(message, Join):
                    mine[data.subscriptionId] = self._join(ws, data.streamName, data.groupId, data.id, None)
        except websockets.ConnectionClosed:
            pass
        finally:
            for sub in mine.values():
                self._detach(sub)

    def _join(
        self, ws: ServerConnection, stream: str, group: str, item_id: str | None, after: int | None
    ) -> Subscription:
        sub = Subscription(ws, stream, group, item_id)
        start = self.store.head if after is None else after
        self.subs.setdefault((stream, group), []).append(sub)  # attach before catching up: nothing is missed
        sub.task = asyncio.create_task(self._catch_up(sub, start, sync=True), name="iii-stream-catch-up")
        return sub

    async def _sync_frame(self, sub: Subscription, at: int) -> bytes:
        """The ``sync`` frame: the group's stored items (or the joined item) as of offset ``at``."""
        data = await sync_data(self.store, sub.stream, sub.group, sub.item_id, at)
        return encode(sync_envelope(sub.stream, sub.group, sub.item_id, int(time.time() * 1000), at, data))

    def _scopes(self, sub: Subscription) -> list[str]:
        """The scopes a group's changes are logged under: its sends, and its stored items' scope."""
        try:
            return [sub.stream, item_scope(sub.stream, sub.group)]
        except ValueError:  # no item can live under a name that long
            return [sub.stream]

    def _detach(self, sub: Subscription) -> None:
        subs = self.subs.get((sub.stream, sub.group))
        if subs is not None and sub in subs:
            subs.remove(sub)
            if not subs:
                del self.subs[(sub.stream, sub.group)]
        if sub.task is not None:
            sub.task.cancel()

    # -- delivery

    async def _catch_up(self, sub: Subscription, after: int, sync: bool = False) -> None:
        """Send logged events after ``after`` with backpressure, then flush the live buffer and go live."""
        try:
            if sync:
                await sub.ws.send(await self._sync_frame(sub, after), text=True)
            scopes = self._scopes(sub)
            while True:
                head = self.store.head
                page = await self.store.read_events(after, PAGE, kind="all", scopes=scopes)
                for event in page:
                    if stream_matches(sub.stream, sub.group, sub.item_id, event):
                        await sub.ws.send(encode(stream_envelope(event)), text=True)
                    sub.last_sent = event.offset
                if len(page) == PAGE:
                    after = page[-1].offset
                    continue
                after = max(after, head)
                if sub.buffer is None:  # overflowed while we were sending: read the rest from the log too
                    sub.buffer = []
                    continue
                pending, sub.buffer = sub.buffer, None
                sub.last_sent = max(sub.last_sent, after)
                sub.live = True
                for event in pending:
                    self._deliver(sub, event, encode(stream_envelope(event)))
                return
        except websockets.ConnectionClosed:
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("stream catch-up failed for %s/%s", sub.stream, sub.group)
            await sub.ws.close(1011, "stream catch-up failed")

    def _on_commit(self, events: list[Event]) -> None:
        for event in events:
            target = stream_target(event)
            if target is None:
                continue
            subs = self.subs.get((target[0], target[1]))
            if not subs:
                continue
            frame = encode(stream_envelope(event))  # once per event, shared by every subscriber
            for sub in list(subs):
                self._deliver(sub, event, frame)

    def _deliver(self, sub: Subscription, event: Event, frame: bytes) -> None:
        if sub.item_id is not None and not stream_matches(sub.stream, sub.group, sub.item_id, event):
            return
        if not sub.live:
            if sub.buffer is not None:
                if len(sub.buffer) < LIVE_BUFFER_EVENTS:
                    sub.buffer.append(event)
                else:
                    sub.buffer = None
            return
        if event.offset <= sub.last_sent:
            return
        transport: Any = sub.ws.transport
        if transport is not None and transport.get_write_buffer_size() > self.max_buffer:
            # Too slow for live delivery: catch up from the log at the client's pace (nothing is lost).
            self.fallbacks += 1
            sub.live = False
            sub.buffer = []  # the catch-up reads this event from the log
            sub.task = asyncio.create_task(self._catch_up(sub, sub.last_sent), name="iii-stream-catch-up")
            return
        websockets.broadcast([sub.ws], frame, text=True)
        sub.last_sent = event.offset
