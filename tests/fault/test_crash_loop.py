"""Crash loop (issue 9, part 1): a real ``ripple serve --app examples.todo:setup`` under write load from several HTTP
clients and ``ripple.client`` subscribers is killed with ``kill -9`` at random moments and restarted on the same file.

After every kill ``ripple verify --app examples.todo:setup`` passes on the crashed file. At the end, on a last server:
every write a client saw acknowledged is in the log with its value and offset; the durable ``todo-metrics`` reaction
resumed (its counters equal the ``todo_stats`` projection and the todos themselves); and every subscriber yielded
exactly the log's matching events, in strictly increasing order, across all the crashes.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SECOND, count
from tests.fault.child import TODO_APP, ServeChild, run_verify
from tests.fault.subscribers import Recorder, assert_gapless, read_log, wait_all

WRITERS = 6
PAD = "p" * 64


@dataclass
class Load:
    """Shared by the writers and the test: what was acknowledged, and whether the server is up."""

    up: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    acked: dict[str, tuple[int, Any]] = field(default_factory=dict)  # load key -> (offset, value)
    acks: int = 0
    kill_at: int = 0
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    statuses: dict[int, int] = field(default_factory=dict)
    cut_off: int = 0  # requests the kill interrupted (unknown outcome)

    def ack(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status < 300:
            self.acks += 1
            if self.acks >= self.kill_at:
                self.enough.set()


async def one_write(c: httpx.AsyncClient, n: int, i: int, rng: random.Random, load: Load, todos: list[str]) -> None:
    roll = rng.random()
    if roll < 0.55:
        key, value = f"c{n}-{i}", {"n": n, "i": i, "pad": PAD}
        r = await c.put(f"/v1/state/load/{key}", json=value)
        assert r.status_code == 201, r.text
        load.acked[key] = (r.json()["offset"], value)
    elif roll < 0.65:
        r = await c.post(f"/v1/streams/chat/w{n}", json={"type": "msg", "data": {"i": i}})
        assert r.status_code == 201, r.text
    elif roll < 0.8 or not todos:
        r = await c.post("/todos", json={"title": f"todo {n}-{i}"})
        assert r.status_code == 201, r.text
        todos.append(r.json()["id"])
    elif roll < 0.95:
        r = await c.post("/todos/toggle", json={"id": rng.choice(todos)})
        assert r.status_code in (200, 404), r.text  # 404: a delete that committed but was never acknowledged
    else:
        r = await c.post("/todos/delete", json={"id": todos.pop(rng.randrange(len(todos)))})
        assert r.status_code in (200, 404), r.text
    load.ack(r.status_code)


async def writer(url: str, n: int, seed: int, load: Load) -> None:
    rng = random.Random(seed * 1000 + n)
    todos: list[str] = []
    i = 0
    async with httpx.AsyncClient(base_url=url, timeout=30 * SECOND) as c:
        while not load.stop.is_set():
            await load.up.wait()
            try:
                await one_write(c, n, i, rng, load, todos)
            except httpx.TransportError:
                load.cut_off += 1  # the server died under this request: not acknowledged (it may still have committed)
            i += 1  # never reuse a key: an unacknowledged write may have committed


async def until_enough(load: Load, writers: list[asyncio.Task[None]]) -> None:
    """Wait for ``load.kill_at`` acknowledgements; a writer that failed an assertion ends the wait with its error."""
    waiter = asyncio.ensure_future(load.enough.wait())
    done, _ = await asyncio.wait({waiter, *writers}, timeout=60 * SECOND, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    for task in done - {waiter}:
        await task
    assert waiter in done, f"no progress: {load.acks} acknowledged, waiting for {load.kill_at}"


async def settle_reaction(c: httpx.AsyncClient) -> dict[str, int]:
    """Wait until the durable reaction caught up: counters == todo_stats (long-polling the counters' scope)."""
    async with asyncio.timeout(60 * SECOND):
        while True:
            head = (await c.get("/v1/health")).json()["head"]
            metrics = (await c.get("/todos/metrics")).json()
            stats = (await c.get("/v1/projections/todo_stats")).json()["data"]
            if metrics == stats:
                return dict(stats)
            # the reaction's next write wakes this up (no polling interval)
            r = await c.get("/v1/events", params={"after": head, "scope": "todo-metrics", "wait": 10})
            assert r.status_code == 200, r.text


async def test_kill_9_loop_loses_no_acknowledged_write(tmp_path: Path) -> None:
    rounds, seed = count(5, 50), random.randrange(1 << 30)
    rng = random.Random(seed)
    db = tmp_path / "crash.db"
    server = ServeChild(db, "--app", TODO_APP, "--heartbeat", "0.5")
    load = Load()
    recorders = [
        Recorder(server.url, "state"),
        Recorder(server.url, "load", scopes=["load"]),
        Recorder(server.url, "todos", scopes=["todos", "todo-metrics"]),
        Recorder(server.url, "stream", kind="stream"),
        Recorder(server.url, "all", kind="all"),
    ]
    writers: list[asyncio.Task[None]] = []
    kill_points: list[int] = []
    try:
        await server.start()
        load.up.set()
        for rec in recorders:
            rec.start()
        writers = [asyncio.create_task(writer(server.url, n, seed, load)) for n in range(WRITERS)]
        for _ in range(rounds):
            # a random moment: right after startup (reaction catching up) or deep into the write load
            load.kill_at = load.acks + rng.choice([0, rng.randint(1, 10), rng.randint(10, count(300, 1000))])
            load.enough.clear()
            await until_enough(load, writers)
            load.up.clear()
            await server.kill()
            kill_points.append(load.acks)
            verified = run_verify(db, "--app", TODO_APP)
            assert verified.returncode == 0, (seed, verified.stdout, verified.stderr)
            await server.start()
            load.up.set()
        load.kill_at = load.acks + 100  # a last stretch of writes on the final server, then stop writing
        load.enough.clear()
        await until_enough(load, writers)
        load.stop.set()
        await asyncio.wait_for(asyncio.gather(*writers), 60 * SECOND)

        async with httpx.AsyncClient(base_url=server.url, timeout=30 * SECOND) as c:
            stats = await settle_reaction(c)
            todos = (await c.get("/todos")).json()
            done = sum(t["completed"] for t in todos)
            assert stats == {"total": len(todos), "completed": done, "active": len(todos) - done}, seed
            log = await read_log(c)
        assert_gapless(log)
        by_key = {(e["scope"], e["key"]): e for e in log if e["kind"] == "state"}
        for key, (offset, value) in load.acked.items():
            event = by_key.get(("load", key))
            assert event is not None, f"acknowledged write {key} lost (seed {seed})"
            assert (event["offset"], event["new_value"]) == (offset, value), key
        await wait_all(recorders, log, 60 * SECOND)
        lost = duplicated = 0
        for rec in recorders:
            rec_lost, rec_dup = rec.check(log)
            lost, duplicated = lost + rec_lost, duplicated + rec_dup
        assert await server.stop() == 0, server.stderr()
        final = run_verify(db, "--app", TODO_APP)
        assert final.returncode == 0, final.stdout + final.stderr
        assert "Traceback" not in server.stderr(), server.stderr()
        print(
            f"\nFIGURES crash-loop: rounds {rounds}, events written {len(log)}, acknowledged writes {load.acks} "
            f"({len(load.acked)} checked by key), lost {lost}, duplicated {duplicated}, "
            f"requests cut off by a kill {load.cut_off}, "
            f"subscribers {len(recorders)}, statuses {dict(sorted(load.statuses.items()))}, seed {seed}"
        )
    finally:
        load.stop.set()
        load.up.set()
        for task in writers:
            task.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        for rec in recorders:
            await rec.close()
        await server.kill()
