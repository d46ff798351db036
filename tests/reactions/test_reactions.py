"""Reactions on real SQLite files: payload, order, isolation, overflow, durability, cascade limit, bad registrations."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from ripple import ChangeEvent, RegistrationError, Store, StoreClosedError, Writes
from tests.conftest import SECOND

# The contract: every test here that uses the `store` or `location` fixture runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.conformance


async def idle(store: Store, *which: Any) -> None:
    await asyncio.wait_for(store.reactions.wait_idle(*which), 10 * SECOND)


async def test_payload_is_the_iii_trigger_plus_offset(store: Store) -> None:
    got: list[ChangeEvent] = []

    @store.on_change("todos")
    async def seen(event: ChangeEvent) -> None:
        got.append(event)

    a = await store.set("todos", "t1", {"title": "milk"})
    b = await store.update("todos", "t1", [{"type": "set", "path": "completed", "value": True}])
    c = await store.delete("todos", "t1")
    assert c is not None
    await store.set("other", "x", 1)  # another scope: not delivered
    await store.send("todos", "g", "ping", {})  # a stream message: not a state change
    await idle(store)
    assert got == [
        ChangeEvent("state", "state:created", "todos", "t1", None, {"title": "milk"}, a.offset),
        ChangeEvent(
            "state", "state:updated", "todos", "t1", {"title": "milk"}, {"title": "milk", "completed": True}, b.offset
        ),
        ChangeEvent("state", "state:deleted", "todos", "t1", {"title": "milk", "completed": True}, None, c.offset),
    ]


async def test_each_reaction_sees_every_event_in_offset_order(store: Store) -> None:
    seen_async: list[int] = []
    seen_sync: list[int] = []
    store.on_change("s", lambda e: seen_sync.append(e.offset))  # sync: runs in a worker thread

    @store.on_change("s")
    async def collect(event: ChangeEvent) -> None:
        seen_async.append(event.offset)

    results = await asyncio.gather(*(store.set("s", f"k{i % 17}", i) for i in range(500)))
    await idle(store)
    expected = sorted(r.offset for r in results)
    assert seen_async == expected
    assert seen_sync == expected


async def test_key_and_condition_filter(store: Store) -> None:
    by_key: list[str] = []
    completed: list[str] = []
    store.on_change("todos", lambda e: by_key.append(e.key), key="a")
    store.on_change(
        "todos",
        lambda e: completed.append(e.key),
        condition=lambda e: isinstance(e.new_value, dict) and e.new_value.get("completed") is True,
    )
    await store.set("todos", "a", {"completed": False})
    await store.set("todos", "b", {"completed": True})
    await store.set("todos", "a", {"completed": True})
    await idle(store)
    assert by_key == ["a", "a"]
    assert completed == ["b", "a"]


async def test_slow_and_failing_reactions_block_nothing(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    gate = asyncio.Event()
    slow_seen: list[int] = []
    fast_seen: list[int] = []

    async def slow(event: ChangeEvent) -> None:
        await gate.wait()
        slow_seen.append(event.offset)

    async def failing(event: ChangeEvent) -> None:
        raise RuntimeError(f"boom at {event.offset}")

    store.reactions.on_change("s", slow, capacity=8)  # a tiny buffer: it overflows and must read the log
    store.on_change("s", failing)
    store.on_change("s", lambda e: fast_seen.append(e.offset))
    n = 300
    with caplog.at_level(logging.ERROR, logger="ripple.reactions"):
        writes = [await asyncio.wait_for(store.set("s", f"k{i}", i), 5 * SECOND) for i in range(n)]
        await asyncio.wait_for(store.reactions.wait_idle(failing), 10 * SECOND)
    offsets = [w.offset for w in writes]
    assert store.counters["reaction_failures"] == n
    assert any("failing" in r.getMessage() and f"offset {offsets[0]}" in r.getMessage() for r in caplog.records)
    assert slow_seen == []  # still blocked, yet every write above was acknowledged
    assert store.counters["reaction_overflows"] >= 1
    gate.set()
    await idle(store)
    assert slow_seen == offsets  # lossless despite the overflow, and in order
    assert fast_seen == offsets


async def test_registration_errors(store: Store) -> None:
    def handler(event: ChangeEvent, writes: Writes) -> None:
        pass

    store.on_change("s", handler, name="taken", start="head")
    bad: list[dict[str, Any]] = [
        {"scope": ""},
        {"scope": "a/b"},
        {"scope": 5},
        {"scope": "s", "key": ""},
        {"scope": "s", "name": "taken", "start": "head"},
        {"scope": "s", "name": "n1"},  # durable without start
        {"scope": "s", "name": "n2", "start": "now"},
        {"scope": "s", "start": "head"},  # start without a name
        {"scope": "s", "condition": 3},
    ]
    for kwargs in bad:
        scope = kwargs.pop("scope")
        with pytest.raises(RegistrationError):
            store.on_change(scope, handler, **kwargs)
    with pytest.raises(RegistrationError, match="callable"):
        store.on_change("s", 42)  # type: ignore[call-overload]
    with pytest.raises(RegistrationError, match="callable"):
        store.on_change("s")("not a function")  # type: ignore[type-var]
    assert [r.label for r in store.reactions] == ["taken"]
    assert store.head == 0


async def test_registration_on_a_closed_store_is_refused(location: str | Path) -> None:
    store = await Store.open(location)
    await store.close()
    with pytest.raises(StoreClosedError):
        store.on_change("s", lambda e: None)


async def test_cascade_limit_stops_a_reaction_that_writes_its_own_scope(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    async def again(event: ChangeEvent) -> None:
        await store.update("loop", "n", [{"type": "increment", "path": "v", "by": 1}])

    store.on_change("loop", again)
    with caplog.at_level(logging.ERROR):
        first = await store.set("loop", "n", {"v": 0})
        await idle(store)
    limit = store.cascade_limit
    assert await store.get("loop", "n") == {"v": limit}
    events = await store.read_events(after=0)
    assert [e.meta.depth for e in events] == [None, *range(1, limit + 1)]
    assert [e.meta.cause for e in events[1:]] == [first.offset + i for i in range(limit)]
    assert store.counters["refused_cascades"] == 1
    assert any("cascade" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


async def test_cascade_limit_for_durable_staged_writes(store: Store) -> None:
    def again(event: ChangeEvent, writes: Writes) -> None:
        writes.update("loop", "n", [{"type": "increment", "path": "v", "by": 1}])

    store.on_change("loop", again, name="looper", start="head")
    await asyncio.sleep(0)  # sleep-ok: let the durable reaction take its cursor at the (empty) head first
    await store.set("loop", "n", {"v": 0})
    await idle(store)
    assert await store.get("loop", "n") == {"v": store.cascade_limit}
    assert store.counters["refused_cascades"] == 1


async def test_durable_writes_commit_with_the_cursor(store: Store) -> None:
    def mirror(event: ChangeEvent, writes: Writes) -> None:
        if event.new_value is None:
            writes.delete("mirror", event.key)
        else:
            writes.set("mirror", event.key, event.new_value)
        writes.update("count", "n", [{"type": "increment", "path": "n", "by": 1}])

    store.on_change("src", mirror, name="mirror", start="beginning")
    for i in range(50):
        await store.set("src", f"k{i % 7}", i)
    await store.delete("src", "k0")
    await idle(store)
    src = {e.key: e.value for e in (await store.list("src")).items}
    mirrored = {e.key: e.value for e in (await store.list("mirror")).items}
    assert src == mirrored
    assert await store.get("count", "n") == {"n": 51}
    events = await store.read_events(after=0, limit=1000)
    caused = [e for e in events if e.scope == "mirror"]
    assert all(e.meta.cause is not None and e.meta.depth == 1 for e in caused)
    async with store.reader.connection() as conn:
        cur = await conn.execute("SELECT cursor FROM reactions WHERE name = 'mirror'")
        row = await cur.fetchone()
    # the cursor covers every src event (it may sit past the last one: it is a position in the whole log)
    assert row is not None and max(e.offset for e in events if e.scope == "src") <= row[0] <= store.head


async def test_durable_failures_drop_that_events_writes_and_go_on(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(event: ChangeEvent, writes: Writes) -> None:
        writes.set("out", event.key, event.new_value)
        if event.new_value == "raise":
            raise ValueError("no")
        if event.new_value == "conflict":
            writes.set("out", "x", 1, expected_offset=999_999)  # rejected at commit: the event's writes roll back

    store.on_change("in", handler, name="h", start="beginning")
    with caplog.at_level(logging.ERROR):
        offsets = [
            (await store.set("in", key, value)).offset
            for key, value in [("a", "ok"), ("b", "raise"), ("c", "conflict"), ("d", "ok")]
        ]
        await idle(store)
    assert {e.key for e in (await store.list("out")).items} == {"a", "d"}
    assert store.counters["reaction_failures"] == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"reaction h failed at offset {offsets[1]}" in m for m in messages)
    assert any(f"reaction h failed at offset {offsets[2]}" in m and "rejected" in m for m in messages)


async def test_durable_reaction_resumes_after_restart(location: str | Path) -> None:
    seen: list[int] = []

    def record(event: ChangeEvent, writes: Writes) -> None:
        seen.append(event.offset)
        writes.update("count", "n", [{"type": "increment", "path": "n", "by": 1}])

    async with Store.open(location) as store:
        store.on_change("s", record, name="rec", start="beginning")
        for i in range(20):
            await store.set("s", f"k{i}", i)
        await idle(store)
    first = list(seen)
    async with Store.open(location) as store:  # the reaction is not registered: these events wait for it
        for i in range(20, 35):
            await store.set("s", f"k{i}", i)
    seen.clear()
    async with Store.open(location) as store:
        store.on_change("s", record, name="rec", start="beginning")
        await idle(store)
        events = [e.offset for e in await store.read_events(after=0, limit=1000) if e.scope == "s"]
        assert first + seen == events  # nothing lost, nothing repeated, in order
        assert await store.get("count", "n") == {"n": 35}


async def test_durable_start_head_and_registration_after_open(store: Store) -> None:
    for i in range(10):
        await store.set("s", f"k{i}", i)
    from_head: list[int] = []
    from_start: list[int] = []
    store.on_change("s", lambda e, w: from_head.append(e.offset), name="head", start="head")
    store.on_change("s", lambda e, w: from_start.append(e.offset), name="start", start="beginning")
    await idle(store)
    last = await store.set("s", "k99", 99)
    await idle(store)
    assert from_head == [last.offset]
    assert from_start == [*range(1, 11), last.offset]


async def test_reactions_never_run_when_disabled(location: str | Path) -> None:
    seen: list[int] = []
    async with Store.open(location, run_reactions=False) as store:
        store.on_change("s", lambda e: seen.append(e.offset))
        store.on_change("s", lambda e, w: seen.append(e.offset), name="d", start="beginning")
        await store.set("s", "k", 1)
        assert all(r.task is None for r in store.reactions)
    assert seen == []


async def test_durable_start_head_sees_every_event_committed_after_registration(location: str | Path) -> None:
    # Regression: the cursor used to be read when the reaction's task first ran, so writes made right after
    # on_change(...) returned could land before it and be skipped.
    async with Store.open(location) as store:
        await store.set("s", "before", 0)
        seen: list[int] = []
        store.on_change("s", lambda e, w: seen.append(e.offset), name="head", start="head")
        written = [(await store.set("s", f"k{i}", i)).offset for i in range(5)]
        await idle(store)
        assert seen == written
    async with Store.open(location) as store:  # the cursor is durable: a restart repeats nothing
        again: list[int] = []
        store.on_change("s", lambda e, w: again.append(e.offset), name="head", start="head")
        last = (await store.set("s", "after", 1)).offset
        await idle(store)
        assert again == [last]
