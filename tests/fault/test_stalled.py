"""Stalled subscribers (issue 9, part 4) against a real ``ripple serve`` child.

Subscribers connect with packed frames and then stop reading (tiny receive buffers, no pings answered) while events
are written over HTTP. Every write completes (the rate is printed, not asserted). The server's peak memory
(``VmHWM`` of the child, the kernel's own high-water mark of ``VmRSS``) stays under

    MEMORY_BOUND = resident memory with the subscribers connected, before the writes
                   + subscribers x (the hub's per-subscription buffer limit, 8 MiB, + 4 MiB of transport and page)
                   + 64 MiB for SQLite's page cache and the allocator

which does not grow with the number of events. The server's keepalive (``--ws-ping-interval/--ws-ping-timeout``,
made small here) closes stalled readers; each one then reads what reached it and reconnects with its last offset or
``through`` until it holds every event exactly once, in order. Half the readers are aborted by the client instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ripple.subscriptions.cursor import DEFAULT_MAX_BUFFER_BYTES
from tests.conftest import SECOND, count
from tests.fault.child import ServeChild
from tests.subscriptions.conftest import raise_nofile

PAD = "x" * 200
BATCH = 100
MIB = 1024 * 1024
PER_SUBSCRIBER = DEFAULT_MAX_BUFFER_BYTES + 4 * MIB
SLACK = 64 * MIB


class Offset(msgspec.Struct):
    offset: int


class Frame(msgspec.Struct):
    """Just what a reader needs of any server frame (unknown fields are skipped, so decoding is cheap)."""

    type: str
    events: list[Offset] = []
    offset: int = 0
    through: int = 0


_decode = msgspec.json.Decoder(Frame).decode


class Reader:
    """Checks offsets on the fly (1, 2, 3, ... with no gap or repeat) without keeping them: soak runs are large."""

    def __init__(self) -> None:
        self.position = 0  # last offset received, or a later `through`
        self.received = 0
        self.out_of_order = 0
        self.reconnects = 0

    def take(self, offset: int) -> None:
        if offset != self.position + 1:
            self.out_of_order += 1
        self.position = max(self.position, offset)
        self.received += 1

    async def drain(self, ws: ClientConnection, last: int) -> None:
        """Read until ``last`` or until the connection is closed (keepalive, or our own abort)."""
        with contextlib.suppress(ConnectionClosed):
            while self.position < last:
                frame = _decode(await ws.recv(decode=False))
                if frame.type == "events":
                    for event in frame.events:
                        self.take(event.offset)
                elif frame.type == "event":
                    self.take(frame.offset)
                elif frame.type in ("live", "heartbeat"):
                    self.position = max(self.position, frame.through)
                elif frame.type == "error":
                    return

    async def resume(self, url: str, last: int) -> None:
        while self.position < last:
            self.reconnects += 1
            async with connect(f"{url}&after={self.position}", max_size=None, compression=None) as ws:
                await self.drain(ws, last)


async def stalled_client(url: str) -> ClientConnection:
    """A client that stops reading: small kernel receive buffer, a 4-message queue, no pings of its own."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.setblocking(False)
    host, port = url.split("//")[1].split("/")[0].split(":")
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return await connect(url, sock=sock, max_size=None, compression=None, max_queue=4, ping_interval=None)


async def test_stalled_subscribers_bounded_memory_and_everything_on_resume(tmp_path: Path) -> None:
    n_clients, n_events = count(10, 100), count(20_000, 1_000_000)
    raise_nofile()
    server = await ServeChild(
        tmp_path / "stalled.db", "--ws-ping-interval", "0.5", "--ws-ping-timeout", "0.5", "--heartbeat", "0.5"
    ).start()
    url = server.url.replace("http", "ws") + "/v1/subscribe?scope=a&batch=100"
    clients: list[ClientConnection] = []
    try:
        clients = [await stalled_client(f"{url}&after=0") for _ in range(n_clients)]
        async with httpx.AsyncClient(base_url=server.url, timeout=60 * SECOND) as c:
            assert (await c.get("/v1/health")).status_code == 200
            baseline = server.rss_kib() * 1024
            bound = baseline + n_clients * PER_SUBSCRIBER + SLACK
            started = time.perf_counter()
            for start in range(0, n_events, BATCH):
                commands = [
                    {"op": "set", "scope": "a", "key": f"k{i % 1000}", "value": {"i": i, "pad": PAD}}
                    for i in range(start, start + BATCH)
                ]
                r = await c.post("/v1/batch", json={"commands": commands})
                assert r.status_code == 200, r.text[:300]
            rate = n_events / (time.perf_counter() - started)
            peak_writing = server.hwm_kib() * 1024
            assert (await c.get("/v1/health")).json()["head"] == n_events
        assert peak_writing < bound, (peak_writing, bound)

        readers = [Reader() for _ in clients]
        keepalive_closed = 0
        for i, (ws, reader) in enumerate(zip(clients, readers, strict=True)):
            if i % 2:
                ws.transport.abort()  # gone without a word: resumes from its hello's `after`
            else:
                await asyncio.wait_for(reader.drain(ws, n_events), 120 * SECOND)  # read again what is left
                # 1011 (keepalive ping timeout), or 1006 when the close frame could not get past the unread data
                keepalive_closed += ws.close_code in (1006, 1011)
            await asyncio.wait_for(reader.resume(url, n_events), 300 * SECOND)
            assert (reader.position, reader.received, reader.out_of_order) == (n_events, n_events, 0), f"client {i}"
        peak = server.hwm_kib() * 1024
        assert peak < bound, (peak, bound)
        assert await server.stop() == 0
        assert "Traceback" not in server.stderr(), server.stderr()[-3000:]
        print(
            f"\nFIGURES stalled: {n_clients} subscribers x {n_events:,} events (packed); writes {rate:,.0f} events/s "
            f"while stalled; RSS baseline {baseline / MIB:.0f} MiB, peak while writing {peak_writing / MIB:.0f} MiB, "
            f"peak overall {peak / MIB:.0f} MiB (bound {bound / MIB:.0f} MiB); {keepalive_closed} of "
            f"{(n_clients + 1) // 2} stalled readers closed by the server's keepalive; reconnects "
            f"{sum(r.reconnects for r in readers)}; lost 0, duplicated 0"
        )
    finally:
        for ws in clients:
            ws.transport.abort()
        await server.kill()
