"""Byte channels (``engine::channels::create``, III-PROTOCOL §3.4): a bounded pipe between one writer and one reader.

A channel is reached on the worker port at ``/ws/channels/{id}?key=K&dir=read|write``. The writer's text frames travel
as text (control messages such as the HTTP response's ``set_status``), its binary frames as bytes; when the writer
closes, the reader gets what is left and then a close. Either end can also be ripple itself: an HTTP request writes its
raw body into a channel and reads the handler's streamed response from another. Nothing here is logged: channels carry
bytes between live parties, as in iii.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec
import websockets
from websockets.asyncio.server import ServerConnection

DEFAULT_BUFFER = 64  # items, as the engine's default
MAX_BUFFER = 1024
CHANNEL_TTL = 300.0  # seconds a channel may wait for an end that never connects
END = None  # queued after the writer's last item

Item = str | bytes


class ChannelRef(msgspec.Struct, frozen=True):
    channel_id: str
    access_key: str
    direction: Literal["read", "write"]


class Channel:
    """A bounded pipe: :meth:`put` waits while ``buffer`` items are unread (backpressure to the writer's socket);
    ending never waits, so a writer whose reader went away still finishes."""

    def __init__(self, buffer: int) -> None:
        self.id = str(uuid.uuid4())
        self.key = str(uuid.uuid4())
        self.items: asyncio.Queue[Item | None] = asyncio.Queue()
        self.slots = asyncio.Semaphore(max(1, buffer))
        self.writer_taken = False
        self.reader_taken = False
        self.writer_arrived = asyncio.Event()
        self.created = time.monotonic()

    def refs(self) -> tuple[ChannelRef, ChannelRef]:
        return ChannelRef(self.id, self.key, "write"), ChannelRef(self.id, self.key, "read")

    async def put(self, item: Item) -> None:
        await self.slots.acquire()
        self.items.put_nowait(item)

    def end(self) -> None:
        self.items.put_nowait(END)

    async def drain(self) -> AsyncIterator[Item]:
        """Everything the writer sends, until it ends."""
        while True:
            item = await self.items.get()
            if item is END:
                return
            self.slots.release()
            yield item


class Channels:
    """Live channels by id. A channel whose ends never both connected goes away after :data:`CHANNEL_TTL`."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}

    def create(self, buffer: int = DEFAULT_BUFFER) -> Channel:
        self._sweep()
        channel = Channel(min(buffer, MAX_BUFFER))
        self.channels[channel.id] = channel
        return channel

    def get(self, channel_id: str, key: str) -> Channel | None:
        channel = self.channels.get(channel_id)
        return channel if channel is not None and channel.key == key else None

    def remove(self, channel: Channel) -> None:
        self.channels.pop(channel.id, None)

    def _sweep(self) -> None:
        now = time.monotonic()
        for channel in list(self.channels.values()):
            if now - channel.created > CHANNEL_TTL and not (channel.writer_taken and channel.reader_taken):
                self.remove(channel)

    async def create_builtin(self, data: Any) -> Any:
        """``engine::channels::create {buffer_size?}`` → ``{writer, reader}`` refs."""
        size = data.get("buffer_size") if isinstance(data, dict) else None
        channel = self.create(size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 64)
        writer, reader = channel.refs()
        return {"writer": msgspec.to_builtins(writer), "reader": msgspec.to_builtins(reader)}

    # -- the worker port's /ws/channels/{id}

    async def serve(self, ws: ServerConnection, channel: Channel, direction: str) -> None:
        """Pump one WebSocket end of a channel. The engine answers a second connection to a taken end with a close."""
        if direction == "write":
            if channel.writer_taken:
                await ws.close()
                return
            channel.writer_taken = True
            channel.writer_arrived.set()
            try:
                async for frame in ws:
                    await channel.put(frame)
            except websockets.ConnectionClosed:
                pass
            finally:
                channel.end()
            return
        if channel.reader_taken:
            await ws.close()
            return
        channel.reader_taken = True
        try:
            async for item in channel.drain():
                await ws.send(item)
            await ws.close(1000)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.remove(channel)


def parse_channel_path(path: str) -> tuple[str, str, str] | None:
    """``/ws/channels/{id}?key=K&dir=read|write`` → ``(id, key, dir)``; anything else → ``None``."""
    from urllib.parse import parse_qs, unquote

    route, _, query = path.partition("?")
    prefix = "/ws/channels/"
    if not route.startswith(prefix) or "/" in route[len(prefix) :] or len(route) == len(prefix):
        return None
    params = parse_qs(query)
    key = params.get("key", [""])[0]
    direction = params.get("dir", [""])[0]
    if not key or direction not in ("read", "write"):
        return None
    return unquote(route[len(prefix) :]), key, direction
