"""The todo example (DESIGN §6): todos in scope ``todos`` as ``{id, title, completed, created_at}``.

- A durable reaction keeps iii-style counters in ``todo-metrics/global`` (``total``, ``completed``, ``active``) with
  ``increment``/``decrement`` update ops — the iii way (see the iii reactive-backend example).
- A projection ``todo_stats`` computes the same numbers from the log into its own table, so the two can be compared
  at any time, and the projection rebuilt from offset 0.

Serve it with ``ripple serve app.db --app examples.todo:setup``.
"""

from __future__ import annotations

from typing import Any

from examples.todo.api import TodoController
from examples.todo.model import COUNTERS_KEY, COUNTERS_SCOPE, SCOPE, counter_deltas, counter_ops, todo_stats
from examples.todo.page import page_handlers
from ripple import ChangeEvent, Store, Writes

__all__ = ["COUNTERS_KEY", "COUNTERS_SCOPE", "SCOPE", "counter_deltas", "setup", "todo_stats"]


def update_counters(event: ChangeEvent, writes: Writes) -> None:
    """The iii-style reaction: a todo changed, so adjust the counters with update ops (exactly once, staged)."""
    ops = counter_ops(event.old_value, event.new_value)
    if ops:
        writes.update(COUNTERS_SCOPE, COUNTERS_KEY, ops)


def setup(store: Store) -> list[Any]:
    """Register the todo reaction and projection; return the REST routes and the page (``/todo``) to mount."""
    store.on_change(SCOPE, update_counters, name="todo-metrics", start="beginning")
    store.register_projection(todo_stats())
    return [TodoController, *page_handlers()]
