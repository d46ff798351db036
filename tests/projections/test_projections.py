"""Projections on real SQLite files: metrics, inline and async folds, failures, catch-up, rebuild, version change."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from ripple import Event, NotFoundError, Projection, ProjectionRebuildingError, RegistrationError, Store
from ripple.projections import manager
from ripple.projections.base import Mode, Statement, Tables
from tests.conftest import SECOND
from tests.projections.helpers import (
    Gate,
    all_events,
    expected_keys,
    expected_metrics,
    fold_keys,
    keys_data,
    keys_projection,
)

# The contract: every test here that uses the `store` or `location` fixture runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.conformance


async def caught_up(store: Store, *names: str) -> None:
    await asyncio.wait_for(store.projections.wait_caught_up(*names), 10 * SECOND)


async def random_writes(store: Store, n: int, seed: int = 1, scopes: tuple[str, ...] = ("a", "b")) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        scope, key = rng.choice(scopes), f"k{rng.randrange(8)}"
        roll = rng.random()
        if roll < 0.5:
            await store.set(scope, key, {"v": rng.randrange(100)})
        elif roll < 0.8:
            await store.update(scope, key, [{"type": "increment", "path": "n", "by": 1}])
        else:
            await store.delete(scope, key)


async def test_metrics_is_built_in(store: Store) -> None:
    await random_writes(store, 200)
    await store.delete("a", "never-there")  # appends nothing, counts nothing
    await store.send("a", "g", "t", {})  # stream messages are not state
    state = await store.projection("metrics")
    assert state.status == "ok" and state.checkpoint == store.head and state.version == 1
    assert state.data == expected_metrics(await all_events(store))
    for scope, m in state.data["scopes"].items():
        assert m["keys"] == len((await store.list(scope, limit=1000)).items)


async def test_unknown_projection(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.projection("nope")
    with pytest.raises(NotFoundError):
        await store.rebuild("nope")


@pytest.mark.parametrize("mode", ["inline", "async"])
async def test_projection_follows_writes(store: Store, mode: Mode) -> None:
    store.register_projection(keys_projection(mode=mode))
    await random_writes(store, 150)
    await caught_up(store, "keys")
    state = await store.projection("keys")
    assert state.status == "ok" and state.checkpoint == store.head
    assert keys_data(state.data) == expected_keys(await all_events(store))


def test_registration_errors() -> None:
    store = Store("unused.db")  # never opened: registration alone touches no file
    good: dict[str, Any] = {"name": "p", "version": 1, "schema": "CREATE TABLE {t} (x)", "fold": lambda e, t: []}
    bad: list[dict[str, Any]] = [
        {"name": ""},
        {"name": "Bad-Name"},
        {"name": "a__b"},
        {"version": -1},
        {"version": "1"},
        {"schema": []},
        {"schema": "CREATE TABLE t (x)"},  # no placeholder: the runner could not name its tables
        {"fold": None},
        {"read": 3},
        {"scopes": []},
        {"scopes": [""]},
        {"scopes": "todos"},
        {"mode": "eager"},
    ]
    for change in bad:
        with pytest.raises(RegistrationError):
            Projection(**{**good, **change})
    store.register_projection(Projection(**good))
    with pytest.raises(RegistrationError, match="already registered"):
        store.register_projection(Projection(**good))
    with pytest.raises(RegistrationError):
        store.register_projection("metrics")  # type: ignore[arg-type]


def failing_fold(event: Event, tables: Tables) -> list[Statement]:
    if event.new_value == "bad":
        raise ValueError("cannot fold 'bad'")
    return fold_keys(event, tables)


def folding_each(fold: Any) -> Any:
    """A ``fold_many`` made of ``fold``: the same statements, one call for many events (raises where fold raises)."""

    def fold_many(events: Any, tables: Tables) -> list[Statement]:
        return [s for e in events for s in fold(e, tables)]

    return fold_many


@pytest.mark.parametrize("many", [False, True], ids=["fold", "fold_many"])
@pytest.mark.parametrize("mode", ["inline", "async"])
async def test_a_failing_fold_stops_only_its_projection(
    store: Store, mode: Mode, many: bool, caplog: pytest.LogCaptureFixture
) -> None:
    fold_many = folding_each(failing_fold) if many else None
    store.register_projection(keys_projection(mode=mode, scopes=["a"], fold=failing_fold, fold_many=fold_many))
    with caplog.at_level(logging.ERROR, logger="ripple.projections"):
        await store.set("a", "x", 1)
        good = await store.set("a", "y", 2)
        bad = await store.set("a", "z", "bad")
        after = await store.set("a", "w", 3)  # writes go on
        await caught_up(store)
    state = await store.projection("keys")
    assert (state.status, state.checkpoint, state.failed_at) == ("failed", bad.offset - 1, bad.offset)
    assert state.error is not None and "cannot fold 'bad'" in state.error
    assert keys_data(state.data) == {("a", "x"): (1, "1"), ("a", "y"): (1, "2")}
    assert good.offset < bad.offset < after.offset
    assert any(f"failed at offset {bad.offset}" in r.getMessage() for r in caplog.records)
    metrics = await store.projection("metrics")  # other projections go on
    assert metrics.status == "ok" and metrics.data["scopes"]["a"]["keys"] == 4


@pytest.mark.parametrize("many", [False, True], ids=["fold", "fold_many"])
async def test_a_failing_statement_rolls_back_alone(store: Store, many: bool) -> None:
    def bad_sql(event: Event, tables: Tables) -> list[Statement]:
        stmts = fold_keys(event, tables)
        if event.key == "boom":
            stmts.append(("INSERT INTO no_such_table VALUES (1)", ()))
        return stmts

    store.register_projection(Projection(name="keys", version=1, schema=keys_projection().schema, fold=bad_sql,
                                         fold_many=folding_each(bad_sql) if many else None))
    # one group commit holds all three: the first event's statements stay, the failing event's are rolled back
    first, boom, _ = await asyncio.gather(store.set("s", "ok", 1), store.set("s", "boom", 2), store.set("s", "z", 3))
    state = await store.projection("keys")
    assert (state.status, state.failed_at) == ("failed", boom.offset)
    assert keys_data(state.data) == {("s", "ok"): (1, "1")} if first.offset < boom.offset else {}
    assert await store.get("s", "boom") == 2  # the write itself committed


@pytest.mark.parametrize("many", [False, True], ids=["fold", "fold_many"])
async def test_a_failing_single_statement_marks_its_event(store: Store, many: bool) -> None:
    """One statement runs without a SAVEPOINT (SQLite undoes a failing statement by itself): still exactly-once."""

    def one_statement(event: Event, tables: Tables) -> list[Statement]:
        if event.key == "boom":
            return [("INSERT INTO no_such_table VALUES (1)", ())]
        return fold_keys(event, tables)

    store.register_projection(Projection(name="keys", version=1, schema=keys_projection().schema, fold=one_statement,
                                         fold_many=folding_each(one_statement) if many else None))
    await store.set("s", "ok", 1)
    boom = await store.set("s", "boom", 2)
    await store.set("s", "after", 3)
    state = await store.projection("keys")
    assert (state.status, state.checkpoint, state.failed_at) == ("failed", boom.offset - 1, boom.offset)
    assert keys_data(state.data) == {("s", "ok"): (1, "1")}


@pytest.mark.parametrize("mode", ["inline", "async"])
async def test_fold_many_folds_many_events_per_call(store: Store, mode: Mode) -> None:
    calls: list[int] = []

    def fold_many(events: Any, tables: Tables) -> list[Statement]:
        calls.append(len(events))
        return [s for e in events for s in fold_keys(e, tables)]

    store.register_projection(keys_projection(mode=mode, fold_many=fold_many))
    await asyncio.gather(*(store.set("s", f"k{i % 5}", i) for i in range(40)))  # a few group commits
    await caught_up(store)
    assert keys_data((await store.projection("keys")).data) == expected_keys(await all_events(store))
    assert sum(calls) == 40 and len(calls) < 40
    calls.clear()
    rebuilt = await store.rebuild("keys")
    assert keys_data(rebuilt.data) == expected_keys(await all_events(store))
    assert calls == [40]  # the rebuild folded its one page in one call


async def test_async_projection_catches_up_after_restart(location: str | Path) -> None:
    async with Store.open(location) as store:
        store.register_projection(keys_projection(mode="async"))
        await random_writes(store, 100, seed=2)
        await caught_up(store)
        before = (await store.projection("keys")).checkpoint
    async with Store.open(location) as store:  # not registered: it falls behind
        await random_writes(store, 100, seed=3)
    async with Store.open(location) as store:
        store.register_projection(keys_projection(mode="async"))
        await caught_up(store, "keys")
        state = await store.projection("keys")
        assert before < state.checkpoint == store.head and state.status == "ok"
        assert keys_data(state.data) == expected_keys(await all_events(store))


async def test_inline_projection_registered_late_catches_up_then_goes_inline(location: str | Path) -> None:
    async with Store.open(location) as store:
        await random_writes(store, 300, seed=5)
        store.register_projection(keys_projection())
        writing = asyncio.ensure_future(random_writes(store, 200, seed=6))
        await caught_up(store, "keys")
        await writing
        await store.set("a", "last", 1)
        state = await store.projection("keys")  # inline: read-your-writes once it has handed over
        assert state.status == "ok" and state.checkpoint == store.head
        assert keys_data(state.data) == expected_keys(await all_events(store))


@pytest.mark.parametrize("mode", ["inline", "async"])
async def test_rebuild_while_writes_go_on(store: Store, mode: Mode, monkeypatch: pytest.MonkeyPatch) -> None:
    # small pages and a small final gap: many pages, each applied between ordinary writes, then the catch-up
    monkeypatch.setattr(manager, "REBUILD_PAGE", 200)
    monkeypatch.setattr(manager, "FINISH_GAP", 20)
    store.register_projection(keys_projection(mode=mode))
    await asyncio.gather(*(store.set("a", f"k{i % 50}", i) for i in range(3000)))
    stop = asyncio.Event()
    written: list[int] = []

    async def keep_writing() -> None:
        i = 0
        while not stop.is_set():
            written.append((await store.set("b", f"k{i % 30}", i)).offset)
            i += 1

    writer = asyncio.ensure_future(keep_writing())
    try:
        rebuilt = await asyncio.wait_for(store.rebuild("keys"), 30 * SECOND)
        metrics = await asyncio.wait_for(store.rebuild("metrics"), 30 * SECOND)
    finally:
        stop.set()
        await writer
    assert rebuilt.status == "ok" and metrics.status == "ok"
    assert written, "no write went through during the rebuild"
    await caught_up(store)
    events = await all_events(store)
    assert keys_data((await store.projection("keys")).data) == expected_keys(events)
    assert (await store.projection("metrics")).data == expected_metrics(events)
    async with store.reader.connection() as conn:  # the old generation is gone
        cur = await conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'proj\\_%'"
            if store.shared_log else "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'proj_*'")
        tables = sorted(r[0] for r in await cur.fetchall())
    assert tables == ["proj_keys__1__keys", "proj_metrics__1__scopes"]


async def test_version_change_rebuilds_on_open_and_refuses_reads_meanwhile(location: str | Path) -> None:
    async with Store.open(location) as store:
        store.register_projection(keys_projection(version=1))
        await random_writes(store, 100, seed=8)
    gate = Gate()

    def gated(event: Event, tables: Tables) -> list[Statement]:
        gate.wait()
        return fold_keys(event, tables)

    async with Store.open(location) as store:
        store.register_projection(
            Projection(name="keys", version=2, schema=keys_projection().schema, fold=gated)
        )
        await asyncio.wait_for(asyncio.to_thread(gate.reached.wait, 30), 30 * SECOND)
        with pytest.raises(ProjectionRebuildingError) as info:
            await store.projection("keys")
        assert info.value.detail["name"] == "keys" and info.value.detail["version"] == 2
        assert info.value.detail["status"] == "rebuilding" and "checkpoint" in info.value.detail
        written = await store.set("a", "during", 1)  # writes go on meanwhile
        gate.opened.set()
        state = await asyncio.wait_for(store.rebuild("keys"), 30 * SECOND)  # joins the running rebuild
        assert state.version == 2 and state.status == "ok" and state.checkpoint >= written.offset
        assert keys_data(state.data) == expected_keys(await all_events(store))
    async with Store.open(location) as store:  # the new version persisted: no second rebuild
        store.register_projection(keys_projection(version=2))
        state = await store.projection("keys")
        assert state.version == 2 and state.status == "ok"



async def test_an_inline_projection_registered_on_an_open_store_reads_its_writes(tmp_path: Path) -> None:
    """Its tables are made in the writer's queue at registration, before any write that follows: on an empty log it
    is live at once, so a write made right after registering folds inline and the projection reads it."""
    for attempt in range(10):  # it was a race: the first write often went ahead of the tables
        async with Store.open(tmp_path / f"{attempt}.db") as store:
            store.register_projection(keys_projection())
            done = await store.set("s", "k", attempt)
            state = await store.projection("keys")
            assert (state.status, state.checkpoint) == ("ok", done.offset), attempt
            assert keys_data(state.data) == {("s", "k"): (1, repr(attempt))}
