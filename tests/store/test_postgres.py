"""What only a shared log has: several stores (nodes) on one PostgreSQL schema (DESIGN §11)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from ripple import Store
from ripple.core.events import Event
from ripple.errors import NotARippleDatabaseError, OffsetOutOfRangeError, ValidationError
from ripple.projections.base import ProjectionState
from tests.conftest import SECOND
from tests.projections.helpers import all_events, expected_keys, keys_data, keys_projection


async def test_nodes_share_one_gapless_log_and_publish_it_in_order(pg_url: str) -> None:
    """Three nodes write at once: acknowledged offsets are exactly 1..N, and every node's listeners see the whole
    log, each offset once, in order (its own commits and the others')."""
    stores = [await Store.open(pg_url) for _ in range(3)]
    try:
        seen: list[list[int]] = [[] for _ in stores]
        for store, offsets in zip(stores, seen, strict=True):
            def record(events: list[Event], offsets: list[int] = offsets) -> None:
                offsets.extend(e.offset for e in events)
            store.commits.subscribe(record)

        async def writer(n: int) -> list[int]:
            store = stores[n % 3]
            return [(await store.set(f"w{n}", f"k{i}", i)).offset for i in range(20)]

        acked = [o for offsets in await asyncio.gather(*(writer(n) for n in range(15))) for o in offsets]
        total = len(acked)
        assert sorted(acked) == list(range(1, total + 1))
        for store in stores:
            await asyncio.wait_for(store.writer.wait_for_head(total), 5 * SECOND)
        for offsets in seen:
            assert offsets == list(range(1, total + 1))
        # a key written through one node is read (and versioned) the same through another
        await stores[0].set("shared", "k", 1)
        r = await stores[1].update("shared", "k", [{"type": "increment", "path": "", "by": 1}])
        assert r.version == 2 and await stores[2].get("shared", "k") == 2
    finally:
        for store in stores:
            await store.close()


async def test_a_subscriber_moves_to_another_node_and_misses_nothing(pg_url: str) -> None:
    async with Store.open(pg_url) as a, Store.open(pg_url) as b:
        for i in range(5):
            await a.set("todos", f"k{i}", i)
        async with a.subscribe(scopes=["todos"], after=0) as sub:
            first = [(await anext(sub)).offset for _ in range(3)]
        last = first[-1]
        for i in range(5, 8):
            await b.set("todos", f"k{i}", i)
        async with b.subscribe(scopes=["todos"], after=last) as sub:
            rest = [(await asyncio.wait_for(anext(sub), 5 * SECOND)).offset for _ in range(5)]
        assert first + rest == list(range(1, 9))


async def test_a_node_behind_the_clients_offset_waits_for_it(pg_url: str) -> None:
    """A client resuming at an offset another node acknowledged: this node catches up instead of refusing."""
    async with Store.open(pg_url) as a, Store.open(pg_url) as b:
        for _ in range(3):
            r = await a.set("s", "k", 1)
            # b may not have tailed r yet: it waits (bounded) rather than refusing an offset beyond its head
            assert await b.read_events(after=r.offset) == []
            assert b.head >= r.offset
            assert [e.offset for e in await b.read_events(after=r.offset - 1)] == [r.offset]
        with pytest.raises(OffsetOutOfRangeError):
            await b.read_events(after=r.offset + 100)


async def test_nodes_starting_together_migrate_once(pg_url: str) -> None:
    stores = await asyncio.gather(*(Store.open(pg_url) for _ in range(3)))
    try:
        assert [s.head for s in stores] == [0, 0, 0]
    finally:
        for s in stores:
            await s.close()


async def test_sqlite_only_operations_are_refused_clearly(pg_url: str) -> None:
    async with Store.open(pg_url) as store:
        await store.set("s", "k", 1)
        with pytest.raises(ValidationError, match="not supported on PostgreSQL"):
            await store.compact(2)
        with pytest.raises(ValidationError, match="not supported on PostgreSQL"):
            await store.reclaim_space()
        assert await store.get("s", "k") == 1


async def test_a_foreign_events_table_is_left_untouched(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id integer)")
    with pytest.raises(NotARippleDatabaseError):
        await Store.open(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('ripple_schema')").fetchone() == (None,)


async def test_a_durable_reaction_runs_on_one_node_and_moves_when_it_stops(pg_url: str) -> None:
    """Registered on two nodes, a durable reaction runs on one; when that node goes, the other takes it over from
    the committed cursor: every event handled exactly once overall, its staged writes committed once."""
    handled: list[tuple[str, int]] = []
    a, b = await Store.open(pg_url), await Store.open(pg_url)
    try:
        for node, store in (("a", a), ("b", b)):
            async def handler(event: Any, writes: Any, node: str = node) -> None:
                handled.append((node, event.offset))
                writes.set("out", f"k{event.offset}", node)
            store.on_change("in", handler, name="copy", start="beginning")
            if node == "a":  # a takes the lease first; b keeps trying
                await asyncio.wait_for(a.reactions.wait_idle("copy"), 10 * SECOND)
        first = [(await a.set("in", f"k{i}", i)).offset for i in range(10)]
        await asyncio.wait_for(a.reactions.wait_idle("copy"), 10 * SECOND)
        assert [o for node, o in handled] == first and {node for node, _ in handled} == {"a"}
    finally:
        await a.close()
    try:
        second = [(await b.set("in", f"k{i}", i)).offset for i in range(10, 20)]
        await asyncio.wait_for(b.reactions.wait_idle("copy"), 10 * SECOND)
        assert [o for _, o in handled] == first + second  # each once, in order, across the move
        assert {node for node, o in handled if o in second} == {"b"}
        page = await b.list("out", limit=100)
        assert sorted(int(e.key[1:]) for e in page.items) == first + second
    finally:
        await b.close()


async def test_a_snapshot_on_a_node_behind_is_followed_by_exactly_the_later_events(pg_url: str) -> None:
    async with Store.open(pg_url) as a, Store.open(pg_url) as b:
        for round_ in range(3):
            written = [(await a.set("todos", f"k{i}", round_)).offset for i in range(5)]
            # b may not have published a's writes yet: its snapshot (read from the database) can be ahead of it
            async with b.subscribe(scopes=["todos"], snapshot=True) as sub:
                assert sub.snapshot_offset is not None and sub.snapshot_offset >= written[-1]
                values = {item.key: item.value for item in sub.snapshot or []}
                assert {k: v for k, v in values.items() if k != "later"} == {f"k{i}": round_ for i in range(5)}
                later = (await a.set("todos", "later", round_)).offset
                event = await asyncio.wait_for(anext(sub), 5 * SECOND)
                assert event.offset == later  # nothing of the snapshot again, nothing skipped


async def wait_checkpoint(store: Store, name: str, offset: int) -> ProjectionState:
    """Poll: the node that folds the projection may be another one, and nothing on this one signals its progress."""
    for _ in range(int(200 * SECOND)):
        state = await store.projection(name)
        if state.checkpoint >= offset:
            return state
        await asyncio.sleep(0.05)  # sleep-ok: polling another node's progress (see above)
    raise AssertionError(f"projection {name} stuck at {state.checkpoint}, waiting for {offset}")


async def test_an_async_projection_folds_on_one_node_and_moves_when_it_stops(pg_url: str) -> None:
    a, b = await Store.open(pg_url), await Store.open(pg_url)
    try:
        a.register_projection(keys_projection(mode="async"))
        await wait_checkpoint(a, "keys", 0)
        b.register_projection(keys_projection(mode="async"))
        for i in range(20):
            await (a if i % 2 else b).set("todos", f"k{i % 7}", i)
        await wait_checkpoint(b, "keys", b.head)
    finally:
        await a.close()  # a held the lease: b takes the projection over from its checkpoint
    try:
        for i in range(20, 40):
            await b.set("todos", f"k{i % 7}", i)
        state = await wait_checkpoint(b, "keys", b.head)
        assert keys_data(state.data) == expected_keys(await all_events(b))  # each event folded exactly once
    finally:
        await b.close()
