"""Pure parts of the todo example: what a todo is, counter deltas, the update ops the reaction writes, the
``todo_stats`` fold.

Scope ``todos`` may hold values that are not todos: the REST API (``PUT /v1/state/todos/x``) writes any JSON there.
Such values are not counted by the reaction or by ``todo_stats`` and ``GET /todos`` skips them, so the three agree
by construction: one definition, :func:`as_todo`, decides for all of them.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from ripple import Event, Projection
from ripple.projections.base import Statement, Tables

SCOPE = "todos"
COUNTERS_SCOPE = "todo-metrics"
COUNTERS_KEY = "global"


class Todo(msgspec.Struct):
    """A todo as stored in scope ``todos`` and returned by the routes (other fields are allowed and ignored)."""

    id: str
    title: str
    completed: bool
    created_at: str


def as_todo(value: Any) -> Todo | None:
    """The todo a stored value holds, or ``None`` when it is not one (absent, or any other JSON)."""
    if not isinstance(value, dict):
        return None
    try:
        return msgspec.convert(value, Todo)
    except msgspec.ValidationError:
        return None


def _counts(value: Any) -> tuple[int, int]:
    """(is a todo, is a completed todo) of one stored value (``None`` = absent)."""
    if type(value) is dict:
        completed = value.get("completed")
        # A value whose four fields already have their types is a todo for as_todo too (it ignores other fields):
        # decided here without building a Todo, the common case of every fold (a rebuild folds millions).
        if (type(completed) is bool and type(value.get("id")) is str and type(value.get("title")) is str
                and type(value.get("created_at")) is str):
            return 1, 1 if completed else 0
    todo = as_todo(value)
    if todo is None:
        return 0, 0
    return 1, 1 if todo.completed else 0


def counter_deltas(old: Any, new: Any) -> tuple[int, int, int]:
    """How (total, completed, active) change when a todo goes from ``old`` to ``new``."""
    old_total, old_done = _counts(old)
    new_total, new_done = _counts(new)
    total, completed = new_total - old_total, new_done - old_done
    return total, completed, total - completed


def counter_ops(old: Any, new: Any) -> list[dict[str, Any]]:
    """iii update ops for ``todo-metrics/global``; empty when the counts did not change (a title edit)."""
    ops = []
    for field, delta in zip(("total", "completed", "active"), counter_deltas(old, new), strict=True):
        if delta > 0:
            ops.append({"type": "increment", "path": field, "by": delta})
        elif delta < 0:
            ops.append({"type": "decrement", "path": field, "by": -delta})
    return ops


STATS_SCHEMA = """
CREATE TABLE {stats} (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    total     INTEGER NOT NULL,
    completed INTEGER NOT NULL
);
"""

_ADD = (
    "INSERT INTO {t} (id, total, completed) VALUES (1, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET total = total + excluded.total, completed = completed + excluded.completed"
)


@functools.lru_cache(maxsize=64)
def _add(table: str) -> str:
    return _ADD.format(t=table)


def fold_stats(event: Event, tables: Tables) -> list[Statement]:
    """Pure: each todo event is self-describing (old and new value), so the delta needs no lookup."""
    total, completed, _ = counter_deltas(event.old_value, event.new_value)
    if total == 0 and completed == 0:
        return []
    return [(_add(tables["stats"]), (total, completed))]


def fold_stats_many(events: Sequence[Event], tables: Tables) -> list[Statement]:
    """Many events at once (a rebuild page, a group commit): their deltas summed into one statement."""
    total = completed = 0
    counts = _counts
    for event in events:  # counter_deltas, inlined: this runs once per event of a rebuild
        old_total, old_done = counts(event.old_value)
        new_total, new_done = counts(event.new_value)
        total += new_total - old_total
        completed += new_done - old_done
    if total == 0 and completed == 0:
        return []
    return [(_add(tables["stats"]), (total, completed))]


def read_stats(conn: sqlite3.Connection, tables: Tables) -> dict[str, int]:
    row = conn.execute(f"SELECT total, completed FROM {tables['stats']}").fetchone()
    total, completed = row if row is not None else (0, 0)
    return {"total": total, "completed": completed, "active": total - completed}


def todo_stats(*, mode: str = "inline") -> Projection:
    """``todo_stats``: total, completed and active todos, folded from the log."""
    return Projection(
        name="todo_stats",
        version=2,  # 2: values that are not todos are no longer counted
        schema=STATS_SCHEMA,
        fold=fold_stats,
        fold_many=fold_stats_many,
        read=read_stats,
        scopes=[SCOPE],
        mode=mode,  # type: ignore[arg-type]
        description="total, completed and active todos",
    )
