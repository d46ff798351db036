"""The todo example: the iii-style counters (a durable reaction with update ops) equal the ``todo_stats``
projection folded from the log — after random changes, after a rebuild, and after ``kill -9``."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from examples.todo import COUNTERS_KEY, COUNTERS_SCOPE, SCOPE, counter_deltas, setup
from examples.todo.api import TodoController
from examples.todo.model import _add, as_todo, counter_ops, fold_stats_many
from ripple import Event, RegistrationError, Store
from ripple.userapp import apply_setup, load_setup
from tests.conftest import SECOND, count, ripple_env
from tests.projections.todo_ops import random_todo_op

CHILD = Path(__file__).with_name("todo_child.py")


async def counters(store: Store) -> dict[str, int]:
    value = await store.get(COUNTERS_SCOPE, COUNTERS_KEY) or {}
    return {f: value.get(f, 0) for f in ("total", "completed", "active")}


async def settled(store: Store) -> dict[str, Any]:
    """Wait for the reaction, then return the projection's data after checking both agree with the state."""
    await asyncio.wait_for(store.reactions.wait_idle(), 30 * SECOND)
    stats = (await store.projection("todo_stats")).data
    todos = [e.value for e in (await store.list(SCOPE, limit=1000)).items]
    truth = {"total": len(todos), "completed": sum(t["completed"] for t in todos)}
    truth["active"] = truth["total"] - truth["completed"]
    assert stats == truth
    assert await counters(store) == truth
    return dict(stats)


def test_counter_ops_are_iii_update_ops() -> None:
    new = {"id": "a", "title": "milk", "completed": False, "created_at": "2026-01-01"}
    done = {**new, "completed": True}
    assert counter_deltas(None, new) == (1, 0, 1)
    assert counter_ops(None, new) == [
        {"type": "increment", "path": "total", "by": 1},
        {"type": "increment", "path": "active", "by": 1},
    ]
    assert counter_ops(new, done) == [
        {"type": "increment", "path": "completed", "by": 1},
        {"type": "decrement", "path": "active", "by": 1},
    ]
    assert counter_ops(done, None) == [
        {"type": "decrement", "path": "total", "by": 1},
        {"type": "decrement", "path": "completed", "by": 1},
    ]
    assert counter_ops(new, {**new, "title": "oat milk"}) == []


@pytest.mark.parametrize("other", [5, "x", [1], {"completed": False}, {"title": "buy milk"}, {"foo": 1}])
def test_values_that_are_not_todos_count_as_absent(other: object) -> None:
    todo = {"id": "a", "title": "milk", "completed": True, "created_at": "2026-01-01"}
    assert counter_deltas(None, other) == (0, 0, 0)
    assert counter_deltas(other, todo) == counter_deltas(None, todo) == (1, 1, 0)
    assert counter_deltas(todo, other) == counter_deltas(todo, None) == (-1, -1, 0)


_TODO = {"id": "a", "title": "milk", "completed": True, "created_at": "2026-01-01"}


@pytest.mark.parametrize("value", [
    None, 5, [_TODO], _TODO, {**_TODO, "completed": False}, {**_TODO, "extra": [1]}, {**_TODO, "completed": 1},
    {**_TODO, "completed": None}, {**_TODO, "id": 7}, {**_TODO, "title": None}, {**_TODO, "created_at": 1},
    {k: v for k, v in _TODO.items() if k != "created_at"},
])  # fmt: skip
def test_fast_counts_agree_with_as_todo(value: object) -> None:
    """The folds decide most values without as_todo; they must decide every value as it does."""
    todo = as_todo(value)
    expected = (0, 0) if todo is None else (1, int(todo.completed))
    assert counter_deltas(None, value)[:2] == expected
    assert fold_stats_many([_event(None, value)], {"stats": "s"}) == (
        [] if expected == (0, 0) else [(_add("s"), expected)])


def _event(old: object, new: object) -> Event:
    return Event(1, 0, "state", SCOPE, "a", "set", "updated", 2, old, new)


async def test_counters_equal_todo_stats_before_and_after_rebuild(store: Store) -> None:
    assert setup(store)[0] is TodoController  # then the page (/todo) handlers
    rng = random.Random(7)
    for _ in range(40):
        await asyncio.gather(*(random_todo_op(store, rng) for _ in range(10)))
    before = await settled(store)
    assert before["total"] > 0
    rebuilt = await asyncio.wait_for(store.rebuild("todo_stats"), 30 * SECOND)
    assert rebuilt.data == before and rebuilt.status == "ok"
    await settled(store)


async def test_counters_equal_todo_stats_after_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "todo.db"
    for seed in range(count(5, 50)):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), str(db), str(seed), stdout=subprocess.PIPE, env=ripple_env()
        )
        try:
            assert proc.stdout is not None
            target = random.Random(seed).choice([50, 100, 150])
            while True:
                line = (await asyncio.wait_for(proc.stdout.readline(), 30 * SECOND)).decode()
                assert line, "the child exited early"
                if int(line.split()[1]) >= target:
                    break
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)  # mid-write: commits, reactions and group commits in flight
            await proc.wait()
    async with Store.open(db) as store:
        setup(store)
        stats = await settled(store)
        assert (await asyncio.wait_for(store.rebuild("todo_stats"), 30 * SECOND)).data == stats


async def test_apply_setup_loads_the_example(db_path: Path) -> None:
    async with Store.open(db_path) as store:
        assert apply_setup(store, "examples.todo:setup")[0] is TodoController
        assert "todo_stats" in store.projections and store.reactions.get("todo-metrics").durable
    async with Store.open(db_path, run_reactions=True) as store:
        apply_setup(store, setup, reactions=False)  # the offline tool: projections only
        await store.set(SCOPE, "a", {"id": "a", "title": "x", "completed": False, "created_at": "2026-01-01"})
        await asyncio.wait_for(store.projections.wait_caught_up("todo_stats"), 10 * SECOND)
        assert (await store.projection("todo_stats")).data["total"] == 1
        assert all(r.task is None for r in store.reactions)
        assert await store.get(COUNTERS_SCOPE, COUNTERS_KEY) is None


@pytest.mark.parametrize(
    "spec",
    ["examples.todo", "examples.todo:", ":setup", "a:b:c", "no_such_module_x:setup", "examples.todo:nope",
     "examples.todo:SCOPE"],
)
def test_load_setup_errors(spec: str) -> None:
    with pytest.raises(RegistrationError):
        load_setup(spec)


def test_apply_setup_checks_what_setup_returns() -> None:
    store = Store("never-opened.db")

    async def async_setup(s: Store) -> None:
        return None

    with pytest.raises(RegistrationError, match="plain function"):
        apply_setup(store, async_setup)
    with pytest.raises(RegistrationError, match="list of route handlers"):
        apply_setup(store, lambda s: 42)
    assert apply_setup(store, lambda s: None) == []
