"""store.subscribe without HTTP: exactly once across catch-up → live, snapshots, overflow fallback, bad input."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from ripple import OffsetOutOfRangeError, Set, Store, StoreClosedError, ValidationError
from ripple.core.events import Event
from ripple.errors import InvalidNameError
from ripple.subscriptions.cursor import Limits
from tests.conftest import SECOND, count

# The contract: every test here that uses the `store` or `location` fixture runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.conformance


async def collect(sub: object, upto: int) -> list[Event]:
    out: list[Event] = []
    async with asyncio.timeout(20 * SECOND):
        async for event in sub:  # type: ignore[attr-defined]
            out.append(event)
            if event.offset >= upto:
                break
    return out


async def writer(store: Store, n: int, scopes: tuple[str, ...] = ("a", "b")) -> None:
    rng = random.Random(1)
    for i in range(n):
        scope = rng.choice(scopes)
        if rng.random() < 0.1:
            await store.send("st", "g", "t", {"i": i})
        else:
            await store.set(scope, f"k{i % 13}", {"i": i})


async def test_catch_up_then_live_exactly_once(store: Store) -> None:
    await writer(store, 300)

    async def more() -> None:
        await writer(store, 700)
        await store.set("a", "end", True)

    async with store.subscribe(scopes=["a"], after=17) as sub:
        task = asyncio.create_task(more())
        got: list[Event] = []
        async with asyncio.timeout(20 * SECOND):
            async for event in sub:
                got.append(event)
                if event.key == "end":
                    break
        await task
    log = await store.read_events(after=17, limit=10_000, scopes=["a"], kind="state")
    offsets = [e.offset for e in got]
    assert offsets == sorted(set(offsets)), "offsets strictly increasing"
    assert got == log


async def test_after_none_starts_at_head_and_kinds(store: Store) -> None:
    await store.set("a", "x", 1)
    sub = store.subscribe(kind="stream")
    await sub.start()
    assert sub.after == 1
    await store.set("a", "y", 2)
    await store.send("s", "g", "t", {"v": 1})
    [event] = await collect(sub, 3)
    assert (event.kind, event.scope, event.key, event.new_value) == ("stream", "s", "g", {"v": 1})
    await sub.aclose()
    async with store.subscribe(kind="all", after=0) as every:
        assert [e.offset for e in await collect(every, 3)] == [1, 2, 3]
    async with store.subscribe(keys=["y"], after=0) as by_key:
        assert [e.offset for e in await collect(by_key, 2)] == [2]
    assert len(store.hub) == 0


async def test_snapshot_then_tail_gives_final_state(store: Store) -> None:
    await writer(store, 200, scopes=("a",))
    task = asyncio.create_task(writer(store, 300, scopes=("a",)))
    async with store.subscribe(scopes=["a"], snapshot=True) as sub:
        assert sub.snapshot is not None and sub.snapshot_offset is not None
        state = {(i.scope, i.key): i.value for i in sub.snapshot}
        await task
        head = store.head
        if sub.snapshot_offset < head:
            async with asyncio.timeout(20 * SECOND):
                async for event in sub:
                    if event.event_type == "deleted":
                        state.pop((event.scope, event.key), None)
                    else:
                        state[(event.scope, event.key)] = event.new_value
                    if sub.through >= head:
                        break
    final = {("a", e.key): e.value for e in (await store.list("a", limit=1000)).items}
    assert state == final


async def test_slow_consumer_overflows_and_falls_back_losslessly(location: str | Path) -> None:
    async with Store.open(location, durability="normal") as store:
        n = count(3000, 30_000)
        limits = Limits(max_buffer_events=20, max_buffer_bytes=4096, page_size=50)
        async with store.subscribe(scopes=["a"], after=0, limits=limits) as sub:
            got: list[int] = []

            async def burst() -> None:
                for start in range(0, n, 100):
                    await store.batch([Set("a", f"k{i}", i) for i in range(start, start + 100)])

            task = asyncio.create_task(burst())
            async with asyncio.timeout(30 * SECOND):
                async for batch in sub.batches(37):
                    assert len(batch) <= 37
                    got.extend(e.offset for e in batch)
                    await asyncio.sleep(0)  # sleep-ok: yield so the writer runs ahead of this consumer
                    if got[-1] == n:
                        break
            await task
        assert got == list(range(1, n + 1))
        assert store.counters["subscriber_overflows"] > 0
        assert len(store.hub) == 0


async def test_bad_input(store: Store) -> None:
    await store.set("a", "x", 1)
    with pytest.raises(ValidationError):
        store.subscribe(after=-1)
    with pytest.raises(ValidationError):
        store.subscribe(after="1")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.subscribe(after=0, snapshot=True)
    with pytest.raises(ValidationError):
        store.subscribe(kind="nope")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.subscribe(batch=0)
    with pytest.raises(ValidationError):
        store.subscribe(scopes="a")
    with pytest.raises(InvalidNameError):
        store.subscribe(scopes=["a/b"])
    with pytest.raises(OffsetOutOfRangeError):
        await store.subscribe(after=5).start()
    assert len(store.hub) == 0


async def test_store_close_ends_subscription(location: str | Path) -> None:
    store = await Store.open(location)
    sub = await store.subscribe(after=0).start()
    waiting = asyncio.create_task(sub.__anext__())
    await asyncio.sleep(0)  # sleep-ok: let the iterator reach its wait
    await store.close()
    with pytest.raises(StoreClosedError):
        await asyncio.wait_for(waiting, 5 * SECOND)
