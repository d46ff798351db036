"""Slow and stalled readers, keepalive, and many subscribers, on a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any, cast

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ripple import Set, Store
from ripple.core.events import Event
from ripple.subscriptions.hub import HubSettings
from tests.conftest import SECOND, count
from tests.subscriptions.conftest import LiveServer, raise_nofile, recv_events, recv_json, ws_connect

PAD = "x" * 200


async def stalled_client(url: str) -> ClientConnection:
    """A client that will not read: a short message queue (websockets then stops reading the socket) and no pings."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    host, port = url.split("//")[1].split("/")[0].split(":")
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return await connect(url, sock=sock, max_size=None, compression=None, max_queue=4, ping_interval=None)


class Watch:
    """A commit listener (after the hub's) recording the largest per-subscriber memory the server holds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.buffer_events = self.buffer_bytes = self.transport_bytes = 0
        store.commits.subscribe(self)

    def __call__(self, _events: list[Event]) -> None:
        for session in self.store.hub.sessions:
            cursor: Any = getattr(session, "cursor", None)
            if cursor is not None:
                self.buffer_events = max(self.buffer_events, len(cursor.buffer))
                self.buffer_bytes = max(self.buffer_bytes, cursor.buffer_bytes)
            proto: Any = getattr(session, "proto", None)
            if proto is not None:
                self.transport_bytes = max(self.transport_bytes, proto.transport.get_write_buffer_size())


async def read_until(ws: ClientConnection, last: int, position: int = 0) -> tuple[list[int], int]:
    """Offsets received until ``last`` (or until the connection drops); returns them and the resume position."""
    got: list[int] = []
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(60 * SECOND):
            while position < last:
                frame = json.loads(await ws.recv())
                if frame["type"] in ("event", "events"):
                    got.extend(e["offset"] for e in (frame["events"] if frame["type"] == "events" else [frame]))
                    position = got[-1]
                elif frame["type"] in ("live", "heartbeat"):
                    position = max(position, frame["through"])
    return got, position


async def test_stalled_readers_never_slow_the_writer(db_path: Path) -> None:
    settings = HubSettings(max_buffer_events=500, max_buffer_bytes=256 * 1024, page_size=200)
    server = await LiveServer(db_path, settings=settings, durability="normal", sndbuf=32 * 1024).start()
    store = server.store
    assert store is not None
    watch = Watch(store)
    n_clients, n_events = count(10, 100), count(20_000, 1_000_000)
    try:
        clients = [
            await stalled_client(f"{server.url}/v1/subscribe?scope=a&after=0&batch=100") for _ in range(n_clients)
        ]
        started = time.perf_counter()
        async with asyncio.timeout(120 * SECOND):  # every write completes while nobody reads
            for start in range(0, n_events, 100):
                await store.batch([Set("a", f"k{i % 1000}", {"i": i, "pad": PAD}) for i in range(start, start + 100)])
        rate = n_events / (time.perf_counter() - started)
        assert len(store.hub.sessions) == n_clients
        # server memory per subscriber is bounded by the buffer limits plus one page / one commit in the transport
        assert watch.buffer_events <= settings.max_buffer_events + 100
        assert watch.buffer_bytes <= settings.max_buffer_bytes + 100 * 400
        assert watch.transport_bytes < 2 * 1024 * 1024, watch.transport_bytes
        assert store.counters["subscriber_overflows"] > 0
        # half read again, half reconnect; one that keepalive closed meanwhile resumes: everything exactly once
        expected = list(range(1, n_events + 1))
        for i, ws in enumerate(clients):
            if i % 2:
                ws.transport.abort()
                got, position = cast(list[int], []), 0
            else:
                got, position = await read_until(ws, n_events)
                await ws.close()
            while position < n_events:
                async with await ws_connect(f"{server.url}/v1/subscribe?scope=a&after={position}&batch=100") as again:
                    more, position = await read_until(again, n_events, position)
                    got += more
            assert got == expected, f"client {i}"
        print(
            f"\nstalled readers: {n_clients} x {n_events} events; writes {rate:,.0f} events/s while stalled; "
            f"max buffer {watch.buffer_events} events / {watch.buffer_bytes:,} B, "
            f"max transport buffer {watch.transport_bytes:,} B, overflows {store.counters['subscriber_overflows']}"
        )
    finally:
        await server.stop()


async def test_keepalive_closes_a_stalled_reader_which_resumes(db_path: Path) -> None:
    server = await LiveServer(
        db_path, ping_interval=0.2, ping_timeout=0.3, durability="normal", sndbuf=32 * 1024
    ).start()
    store = server.store
    assert store is not None
    n_events = 3000
    try:
        ws = await stalled_client(f"{server.url}/v1/subscribe?scope=a&after=0&batch=50")
        assert (await recv_json(ws))["type"] == "hello"
        await store.set("a", "first", {"pad": PAD})
        [session] = list(store.hub.sessions)
        proto: Any = session.proto  # type: ignore[attr-defined]
        fired = asyncio.Event()
        original = proto.keepalive_timeout

        def timed_out() -> None:
            original()
            fired.set()

        proto.keepalive_timeout = timed_out
        for start in range(1, n_events, 100):
            await store.batch([Set("a", f"k{i}", {"i": i, "pad": PAD * 10}) for i in range(start, start + 100)])
        await asyncio.wait_for(fired.wait(), 10 * SECOND)  # the server gave up on the silent client
        head = store.head
        got, position = await read_until(ws, head)
        assert ws.close_code == 1011, (ws.close_code, position)  # keepalive timeout
        while position < head:  # resume (keepalive may close a slow catch-up too: small ping timeouts here)
            async with await ws_connect(f"{server.url}/v1/subscribe?scope=a&after={position}&batch=50") as again:
                rest, position = await read_until(again, head, position)
                got += rest
        assert got == list(range(1, head + 1))
        await asyncio.wait_for(store.hub.wait_no_sessions(), 5 * SECOND)
    finally:
        await server.stop()


async def test_thousand_subscribers_receive_a_burst(db_path: Path) -> None:
    raise_nofile()
    server = await LiveServer(db_path, durability="normal").start()
    store = server.store
    assert store is not None
    n = count(1000, 1000)
    try:
        await store.set("a", "before", 0)
        clients: list[ClientConnection] = []
        for start in range(0, n, 100):
            clients += await asyncio.gather(
                *(ws_connect(f"{server.url}/v1/subscribe?scope=a&batch=100") for _ in range(start, start + 100))
            )
        for ws in clients:
            assert (await recv_json(ws))["type"] == "hello"
            assert await recv_json(ws) == {"type": "live", "through": 1}
        assert len(store.hub.sessions) == n
        for start in range(0, 200, 50):
            await store.batch([Set("a", f"k{i}", i) for i in range(start, start + 50)])
        for i in range(50):
            await store.set("a", f"single{i}", i)
        await store.set("b", "other", 1)
        await store.set("a", "end", True)
        expected = [e.offset for e in await store.read_events(after=1, limit=1000, scopes=["a"])]

        async def drain(ws: ClientConnection) -> list[int]:
            events, _ = await recv_events(ws, expected[-1], wait=60)
            return [e["offset"] for e in events]

        results = await asyncio.gather(*(drain(ws) for ws in clients))
        assert all(r == expected for r in results)
        await asyncio.gather(*(ws.close() for ws in clients))
    finally:
        await server.stop()
