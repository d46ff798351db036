"""Random todo changes (creates, toggles, title edits, deletes), as the example's REST API would make them.

Changes of an existing todo use ``expected_offset`` (optimistic concurrency): with several running at once, an edit
must not resurrect a todo that was deleted meanwhile as a half todo.
"""

from __future__ import annotations

import random

from examples.todo import SCOPE
from ripple import PreconditionFailedError, Store


async def random_todo_op(store: Store, rng: random.Random, prefix: str = "") -> None:
    key = f"{prefix}t{rng.randrange(12)}"
    roll = rng.random()
    if roll < 0.35:
        await store.set(
            SCOPE,
            key,
            {"id": key, "title": f"todo {key}", "completed": rng.random() < 0.3, "created_at": "2026-01-01"},
        )
        return
    if roll >= 0.8:
        await store.delete(SCOPE, key)
        return
    current = await store.entry(SCOPE, key)
    if current is None:
        return
    if roll < 0.65:
        op = {"type": "set", "path": "completed", "value": not current.value["completed"]}
    else:
        op = {"type": "set", "path": "title", "value": f"edited {rng.random():.3f}"}
    try:
        await store.update(SCOPE, key, [op], expected_offset=current.offset)
    except PreconditionFailedError:
        pass  # changed meanwhile: the user would reload
