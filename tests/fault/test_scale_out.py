"""Scale-out (issue 19): three ``ripple serve postgresql://...`` nodes on one PostgreSQL log, writes spread over them,
WebSocket subscribers that move between nodes, and nodes killed with ``kill -9`` and restarted.

At the end: the log's offsets are gapless; every write a client saw acknowledged is in the log at its offset with its
value; every subscriber yielded exactly the log's matching events, in order, however often it moved or lost its node
(``ripple.client`` resumes from its last offset; a node behind that offset waits for its tailer); and the durable
reaction of ``tests.fault.scale_app`` (leased to one node at a time, taken over after each kill) handled every event of
its scope exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any, cast

import httpx
import psycopg
import pytest

from ripple.client import subscribe
from tests.conftest import SECOND, count
from tests.fault.child import ServeChild
from tests.fault.subscribers import FAST, assert_gapless, read_log

NODES = 3
WRITERS = 6
SUBSCRIBERS = 4


class Cluster:
    def __init__(self, url: str, folder: Path) -> None:
        self.nodes = [ServeChild(url, "--app", "tests.fault.scale_app:setup", stderr_path=folder / f"node{i}.stderr")
                      for i in range(NODES)]
        self.down: set[int] = set()

    def alive(self, rng: random.Random) -> ServeChild:
        return self.nodes[rng.choice([i for i in range(NODES) if i not in self.down])]


class Mover:
    """A subscriber that changes node every few events, and whenever its node stops answering."""

    def __init__(self, cluster: Cluster, name: str, scopes: tuple[str, ...], seed: int) -> None:
        self.cluster, self.name, self.scopes = cluster, name, scopes
        self.rng = random.Random(seed)
        self.offsets: list[int] = []
        self.moves = 0
        self.progress = asyncio.Event()

    async def run(self) -> None:
        while True:
            node = self.cluster.alive(self.rng)
            after = self.offsets[-1] if self.offsets else 0
            events = subscribe(node.url, scopes=self.scopes, after=after, backoff=FAST)
            try:
                for _ in range(self.rng.randint(5, 60)):
                    event = await asyncio.wait_for(anext(events), 1.0 * SECOND)
                    self.offsets.append(event.offset)
                    self.progress.set()
            except TimeoutError:
                pass  # its node is down or quiet: move
            finally:
                await cast(Any, events).aclose()  # an async generator: closing it closes its WebSocket
            self.moves += 1

    async def wait_through(self, offset: int, seconds: float) -> None:
        async with asyncio.timeout(seconds):
            while not self.offsets or self.offsets[-1] < offset:
                self.progress.clear()
                await self.progress.wait()


async def writer(cluster: Cluster, n: int, writes: int, acked: dict[str, tuple[int, Any]],
                 progress: asyncio.Event) -> None:
    try:
        await write_some(cluster, n, writes, acked, progress)
    finally:
        progress.set()


async def write_some(cluster: Cluster, n: int, writes: int, acked: dict[str, tuple[int, Any]],
                     progress: asyncio.Event) -> None:
    rng = random.Random(1000 + n)
    i = 0
    while i < writes:
        node = cluster.alive(rng)
        key, value = f"w{n}-{i}", {"n": n, "i": i}
        scope = rng.choice(["a", "b"])
        try:
            async with httpx.AsyncClient(base_url=node.url, timeout=10 * SECOND) as client:
                r = await client.put(f"/v1/state/{scope}/{key}", json=value)
        except httpx.HTTPError:
            continue  # its node was killed: the outcome is unknown, the log says (same key, another try)
        assert r.status_code == 201, r.text
        acked[f"{scope}/{key}"] = (r.json()["offset"], value)
        progress.set()
        i += 1


async def check_copies(cluster: Cluster, log: list[dict[str, Any]]) -> None:
    """Every event of scope ``a`` was copied exactly once by the durable reaction, whichever node ran it."""
    wanted = sorted(f"{e['key']}@{e['offset']}" for e in log if e["scope"] == "a" and e["kind"] == "state")
    async with httpx.AsyncClient(base_url=cluster.nodes[0].url, timeout=10 * SECOND) as client:
        async with asyncio.timeout(30 * SECOND):
            while True:
                copies = await read_log(client)  # the reaction's copies come after the writes: wait for them
                made = [f"{e['key']}" for e in copies if e["scope"] == "copies"]
                if len(made) >= len(wanted):
                    break
                await client.get("/v1/events", params={"after": copies[-1]["offset"], "wait": 1})
    assert sorted(made) == wanted  # each once: no copy lost across the kills, none made twice


async def test_three_nodes_kills_and_moving_subscribers(pg_url: str, tmp_path: Path) -> None:
    cluster = Cluster(pg_url, tmp_path)
    await asyncio.gather(*(node.start() for node in cluster.nodes))
    movers = [Mover(cluster, f"sub{i}", (("a",), ("b",), ("a", "b"), ())[i % 4], i) for i in range(SUBSCRIBERS)]
    tasks = [asyncio.create_task(m.run(), name=m.name) for m in movers]
    acked: dict[str, tuple[int, Any]] = {}
    writes, kills = count(50, 500), count(3, 20)
    first_victim = random.Random(19).randrange(NODES)
    try:
        progress = asyncio.Event()
        load = asyncio.gather(*(writer(cluster, n, writes, acked, progress) for n in range(WRITERS)))
        for k in range(kills):
            target = (k + 1) * WRITERS * writes // (kills + 2)  # kills spread over the acknowledged writes
            while len(acked) < target and not load.done():
                progress.clear()
                await progress.wait()
            victim = (first_victim + k) % NODES  # each node dies at least once: the lease holder too
            cluster.down.add(victim)
            await cluster.nodes[victim].kill()
            await cluster.nodes[victim].start()
            cluster.down.discard(victim)
        await asyncio.wait_for(load, 60 * SECOND)

        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute("SELECT max(seq) FROM events").fetchone()
            assert row is not None
            head = row[0]
        async with httpx.AsyncClient(base_url=cluster.nodes[0].url, timeout=10 * SECOND) as client:
            await client.get("/v1/events", params={"after": head - 1})  # the node catches up to the head first
            await check_copies(cluster, await read_log(client))  # then the reaction's copies end the log
            log = await read_log(client)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            assert conn.execute("SELECT max(seq) FROM events").fetchone() == (log[-1]["offset"],)
        assert_gapless(log)
        by_offset = {e["offset"]: e for e in log}
        for name, (offset, value) in acked.items():
            event = by_offset[offset]
            assert f"{event['scope']}/{event['key']}" == name and event["new_value"] == value
        for mover in movers:
            wanted = [e["offset"] for e in log if e["kind"] == "state" and (not mover.scopes
                                                                              or e["scope"] in mover.scopes)]
            await mover.wait_through(wanted[-1], 20 * SECOND)
            assert mover.offsets == wanted, f"{mover.name}: {len(mover.offsets)} events, wanted {len(wanted)}"
            assert mover.moves >= 2, f"{mover.name} never moved"
    except BaseException:
        for node in cluster.nodes:
            print(node.stderr()[-3000:])  # diagnostics of a failure
        raise
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for node in cluster.nodes:
            await node.kill()


pytestmark = pytest.mark.slow
