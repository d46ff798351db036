"""The iii stream WebSocket server (III-PROTOCOL §5, R-2), fed from ripple's log.

``ws://HOST:3112/`` speaks iii's ``join``/``leave`` frames. ``/stream/{stream}/{group}`` joins at connect, and
``?after=N`` first replays the group's logged changes after offset N — ``stream::send`` events and its stored items'
create/update/delete (``ripple.core.names``) — then goes live with no gap and no duplicate. The ``sync`` frame after a
join holds the group's stored items as of the join's offset. Every envelope carries ripple's extra ``offset`` so a
client knows where to resume.

Each join is a thin driver of a :class:`~ripple.subscriptions.follower.Follower` (the one log follower): its task
sends the ``sync`` frame, then what the follower returns, with backpressure. Once live, a commit is written straight
to the connection from the hub (each envelope encoded once per commit, shared by every subscriber) while the
connection's buffer is under ``max_buffer`` bytes; otherwise it waits in the follower's bounded buffer for the task,
and a subscriber that falls further behind reads the log at its own pace — one slow client never stalls the writer
or the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Literal

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from ripple.core.events import Event
from ripple.core.filter import Filter
from ripple.core.names import item_scope
from ripple.errors import (
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    OffsetOutOfRangeError,
    RippleError,
    StoreClosedError,
)
from ripple.iii.auth import PortAuth, refusal
from ripple.iii.items import sync_data
from ripple.iii.protocol import (
    Join,
    StreamPath,
    decode_client_frame,
    encode,
    parse_stream_path,
    stream_envelope,
    stream_target,
    sync_envelope,
)
from ripple.store.store import Store
from ripple.subscriptions.cursor import Limits
from ripple.subscriptions.follower import Follower
from ripple.subscriptions.hub import Commit

log = logging.getLogger("ripple.iii.streams")

PAGE = 500
DEFAULT_MAX_BUFFER = 1 << 20  # bytes queued on a connection beyond which live events wait for the task


def envelope_frame(commit: Commit, i: int) -> bytes:
    """The iii envelope of a commit's ``i``-th event, encoded once per commit for every subscriber."""
    frames = commit.derived.setdefault("iii-stream", {})
    frame = frames.get(i)
    if frame is None:
        frame = frames[i] = encode(stream_envelope(commit.events[i]))
    return frame


def group_filter(stream: str, group: str) -> Filter:
    """A stream group's changes: its sends (scope = stream, key = group) and its stored items' scope."""
    try:
        items = frozenset([item_scope(stream, group)])
    except ValueError:  # no item can live under names that long
        items = frozenset()
    return Filter("stream", frozenset([stream]), frozenset([group]), items)


class Subscription:
    """One join (or the auto-join of a ``/stream/...`` URL) on one connection."""

    def __init__(self, server: StreamServer, ws: ServerConnection, stream: str, group: str, item_id: str | None,
                 after: int) -> None:
        self.store = server.store
        self.ws = ws
        self.stream = stream
        self.group = group
        self.item_id = item_id
        self.after = after
        self.max_buffer = server.max_buffer
        self.follower = Follower(server.store, group_filter(stream, group), after, limits=server.limits,
                                 overflow_counter="iii_stream_overflows")
        self.follower.cursor.inline = self._inline
        self.task: asyncio.Task[None] | None = None

    def wants(self, event: Event) -> bool:
        if self.item_id is None:
            return True
        target = stream_target(event)
        return target is not None and target[2] == self.item_id

    def _inline(self, commit: Commit) -> bool:
        transport: Any = self.ws.transport
        if transport is None or transport.get_write_buffer_size() > self.max_buffer:
            return False  # the task sends these, with backpressure
        for i in commit.matching(self.follower.cursor.filter):
            if self.wants(commit.events[i]):
                websockets.broadcast([self.ws], envelope_frame(commit, i), text=True)
        return True

    async def sync_frame(self) -> bytes:
        """The ``sync`` frame: the group's stored items (or the joined item) as of the join's offset."""
        data = await sync_data(self.store, self.stream, self.group, self.item_id, self.after)
        return encode(sync_envelope(self.stream, self.group, self.item_id, int(time.time() * 1000), self.after, data))

    async def run(self) -> None:
        """Send the ``sync`` frame, then every event the follower returns (catch-up, then what waits while live)."""
        try:
            await self.ws.send(await self.sync_frame(), text=True)
            while True:
                for event in await self.follower.next(PAGE):
                    if self.wants(event):
                        await self.ws.send(encode(stream_envelope(event)), text=True)
        except (websockets.ConnectionClosed, StoreClosedError):
            return
        except OffsetOutOfRangeError:  # a compaction of the stream overtook this client while it caught up
            await self.ws.close(1008, "offset_out_of_range")
        except Exception:
            log.exception("stream subscription failed")
            await self.ws.close(1011, "stream subscription failed")

class StreamServer:
    def __init__(self, store: Store, host: str, port: int, *, max_buffer: int = DEFAULT_MAX_BUFFER,
                 auth: PortAuth | None = None) -> None:
        self.store = store
        self.auth = auth  # ``--auth``: a client needs a token that may read the streams it joins
        self.host = host
        self.port = port
        self.max_buffer = max_buffer
        self.limits = Limits(max_buffer_bytes=None)  # each join's live buffer (then: the log)
        self._server: Server | None = None

    async def start(self) -> None:
        self._server = await serve(
            self._connection,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=1 << 20,
            compression=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.auth is not None:
            self.auth.close()
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()

    # -- connections

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.auth is None:
            return self._check_path(connection, request)
        found = await self.auth.authenticate(connection, request)
        if isinstance(found, Response):
            return found
        refused = self._check_path(connection, request)
        if refused is not None:
            return refused
        target = parse_stream_path(request.path)
        if isinstance(target, StreamPath) and not found.may_read_stream(target.stream):
            try:
                found.require_read_stream(target.stream)
            except ForbiddenError as exc:
                return refusal(connection, exc)
        self.auth.remember(connection, found)
        return None

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        """A handshake's path and ``?after=``: refusals carry the JSON error body, as the token refusals do."""
        try:
            self._target(request.path)
        except RippleError as exc:
            return refusal(connection, exc)
        return None

    def _target(self, path: str) -> StreamPath | Literal["root"]:
        try:
            target = parse_stream_path(path)
        except ValueError as exc:
            raise BadRequestError(str(exc)) from None
        if target is None:
            raise NotFoundError("the stream server serves / and /stream/{stream}/{group}")
        if target == "root" or target.after is None:
            return target
        head, earliest = self.store.head, self.store.log_floor.stream_earliest
        detail = {"after": target.after, "earliest": earliest, "head": head}
        if target.after > head:
            # A resume point the log has not reached would silently skip every event up to it.
            raise OffsetOutOfRangeError(f"after={target.after} is beyond the head ({head})", detail=detail)
        if target.after < earliest - 1:
            raise OffsetOutOfRangeError(
                f"after={target.after} is older than the earliest offset kept ({earliest})", detail=detail)
        return target

    async def _connection(self, ws: ServerConnection) -> None:
        target = parse_stream_path(ws.request.path if ws.request else "/")
        identity = None if self.auth is None else self.auth.connections.get(ws)
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
                    self._leave(old)
                if isinstance(message, Join):
                    if identity is not None and not identity.may_read_stream(data.streamName):
                        await ws.close(1008, f"forbidden: token {identity.name!r} may not read that stream")
                        return
                    mine[data.subscriptionId] = self._join(ws, data.streamName, data.groupId, data.id, None)
        except websockets.ConnectionClosed:
            pass
        finally:
            for sub in mine.values():
                self._leave(sub)
            if self.auth is not None:
                self.auth.forget(ws)

    def _join(
        self, ws: ServerConnection, stream: str, group: str, item_id: str | None, after: int | None
    ) -> Subscription:
        start = self.store.head if after is None else after
        sub = Subscription(self, ws, stream, group, item_id, start)
        sub.follower.attach()  # before catching up: nothing is missed
        sub.task = asyncio.create_task(sub.run(), name="iii-stream-subscription")
        return sub

    @staticmethod
    def _leave(sub: Subscription) -> None:
        sub.follower.detach()
        if sub.task is not None:
            sub.task.cancel()
