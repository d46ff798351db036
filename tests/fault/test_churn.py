"""Open-file limits and many clients (issue 9, part 6): WebSocket subscribers opened and closed over and over — closed
politely, aborted, or dropped mid-catch-up while events are written. Nothing leaks:

- a real ``ripple serve`` child: its open file descriptors (``/proc/<pid>/fd``) come back to the count before the
  churn, within ``FD_SLACK`` (the read-only connection pool opens its SQLite files lazily; each is a database and a
  WAL descriptor, so the slack is the pool size x 2 plus 2 for a WAL/SHM reopen);
- an in-process server: its asyncio tasks and hub sessions come back to what they were before the churn.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection

from ripple import Set
from tests.conftest import SECOND, count
from tests.fault.child import ServeChild
from tests.subscriptions.conftest import LiveServer, raise_nofile, recv_json, ws_connect

FD_SLACK = 4 * 2 + 2
# live subscribers of the trickle of writes, small catch-ups and snapshots: the churn is about connections coming and
# going (mid-hello, mid-catch-up, mid-delivery), not about moving much data
QUERIES = ["scope=a", "kind=all&batch=100", "scope=b&after=0", "scope=b&snapshot=true", "kind=stream&after=0"]


async def churn_round(url: str, n: int, rng: random.Random, probe: Callable[[], int] = lambda: 0) -> tuple[int, int]:
    """Open ``n`` subscribers at once, read each hello, then end them in mixed ways.

    Returns how many were aborted and what ``probe()`` said while all were open."""
    sockets: list[ClientConnection] = await asyncio.gather(
        # an unbounded client queue: a client that closes must not wait behind its own unread frames
        *(ws_connect(f"{url}/v1/subscribe?{rng.choice(QUERIES)}", max_queue=None) for _ in range(n))
    )
    for first in await asyncio.gather(*(recv_json(ws, 30) for ws in sockets)):
        assert first["type"] == "hello", first
    while_open = probe()
    aborted = 0
    closing = []
    for ws in sockets:
        if rng.random() < 0.4:
            ws.transport.abort()  # vanished: no close frame, RST
            aborted += 1
        else:
            closing.append(ws.close())
    await asyncio.wait_for(asyncio.gather(*closing), 60 * SECOND)
    return aborted, while_open


async def write_some(url: str, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30 * SECOND) as c:
        i = 0
        while not stop.is_set():
            commands = [{"op": "set", "scope": "a", "key": f"k{i}-{j}", "value": {"i": i}} for j in range(5)]
            assert (await c.post("/v1/batch", json={"commands": commands})).status_code == 200
            i += 1
            await asyncio.sleep(0.05)  # sleep-ok: a steady trickle of events, not a flood competing for the 2 cores


async def fds_settle(server: ServeChild, limit: int) -> int:
    """The child's fd count once it is <= ``limit`` (closing sockets takes the server a moment), or after 15 s."""
    deadline = time.monotonic() + 15 * SECOND
    fds = server.fds()
    while fds > limit and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # sleep-ok: another process's fd table offers nothing to await
        fds = server.fds()
    return fds


async def test_churn_leaks_no_file_descriptors_in_ripple_serve(tmp_path: Path) -> None:
    per_round, rounds = count(500, 2000), count(3, 20)
    raise_nofile(4 * per_round + 1024)
    rng = random.Random(9)
    server = await ServeChild(tmp_path / "churn.db", "--heartbeat", "1").start()
    url = server.url.replace("http", "ws")
    stop = asyncio.Event()
    writer: asyncio.Task[None] | None = None
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            for i in range(50):
                assert (await c.put(f"/v1/state/b/w{i}", json=i)).status_code == 201
        await churn_round(url, 20, rng)  # warm up: the reader pool opens its connections lazily
        before = await fds_settle(server, 0)
        writer = asyncio.create_task(write_some(server.url, stop))
        peak = aborted = 0
        for _ in range(rounds):
            n_aborted, fds_open = await churn_round(url, per_round, rng, server.fds)
            aborted, peak = aborted + n_aborted, max(peak, fds_open)
        stop.set()
        await writer
        after = await fds_settle(server, before + FD_SLACK)
        assert after <= before + FD_SLACK, (before, after)
        assert (await server.health())["status"] == "ok"
        assert await server.stop() == 0
        assert "Traceback" not in server.stderr(), server.stderr()[-3000:]
        print(
            f"\nFIGURES churn (ripple serve): {rounds} x {per_round} WebSocket connections ({aborted} aborted); "
            f"server fds before {before}, after {after} (slack {FD_SLACK}), {peak} with a round's connections open"
        )
    finally:
        stop.set()
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        await server.kill()


async def test_churn_leaks_no_tasks_in_process(db_path: Path) -> None:
    per_round, rounds = count(500, 2000), count(3, 20)
    raise_nofile(4 * per_round + 1024)
    rng = random.Random(10)
    server = await LiveServer(db_path).start()
    store = server.store
    assert store is not None
    try:
        await store.batch([Set("b", f"k{j}", j) for j in range(50)])
        await churn_round(server.url, 20, rng)
        await asyncio.wait_for(store.hub.wait_no_sessions(), 10 * SECOND)
        tasks_before = len(asyncio.all_tasks())
        fds_before = len(os.listdir("/proc/self/fd"))
        for r in range(rounds):
            writes = asyncio.create_task(store.batch([Set("a", f"r{r}-{j}", j) for j in range(100)]))
            await churn_round(server.url, per_round, rng)
            await writes
            await asyncio.wait_for(store.hub.wait_no_sessions(), 30 * SECOND)
            assert len(store.hub) == 0, "a cursor stayed attached to the hub"
        tasks_after = len(asyncio.all_tasks())
        fds_after = len(os.listdir("/proc/self/fd"))
        assert tasks_after <= tasks_before, [t.get_name() for t in asyncio.all_tasks()]
        assert fds_after <= fds_before + FD_SLACK, (fds_before, fds_after)
        print(
            f"\nFIGURES churn (in process): {rounds} x {per_round}; tasks before {tasks_before}, after {tasks_after}; "
            f"fds before {fds_before}, after {fds_after}"
        )
    finally:
        await server.stop()
