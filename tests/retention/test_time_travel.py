"""Time travel after compaction, against a model: every key and every list page as of every offset from the floor
- 1 to the head (the O(page) list query and the base it starts from)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ripple import Entry, Store
from tests.conftest import count

KEYS = ["a", "b", "c", "d"]
ops = st.lists(
    st.tuples(st.sampled_from(["set", "delete", "send", "other"]), st.sampled_from(KEYS), st.integers(0, 9)),
    min_size=1, max_size=40,
)


def model(history: list[tuple[int, str, str, int]]) -> dict[int, dict[str, Entry]]:
    """The scope as of each offset: key -> Entry, from the writes themselves (offset, op, key, value)."""
    alive: dict[str, tuple[Entry, int]] = {}
    at: dict[int, dict[str, Entry]] = {0: {}}
    for offset, op, key, value in history:
        if op == "set":
            old = alive.get(key)
            version = 1 if old is None else old[0].version + 1
            alive[key] = (Entry(key, value, version, offset), offset if old is None else old[1])
        elif op == "delete":
            alive.pop(key, None)
        ordered = sorted(alive.values(), key=lambda pair: pair[1])
        at[offset] = {e.key: e for e, _ in ordered}
    return at


async def scope_at(store: Store, at: int) -> list[Entry]:
    items: list[Entry] = []
    cursor = None
    while True:
        page = await store.list("s", limit=2, cursor=cursor, at=at)
        items += page.items
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


@settings(max_examples=count(40, 1000), deadline=None)
@given(ops, st.floats(0, 1))
async def test_time_travel_after_compaction_matches_the_model(steps: list[tuple[str, str, int]], where: float
                                                              ) -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with Store.open(Path(folder) / "t.db") as store:
            history: list[tuple[int, str, str, int]] = []
            for op, key, value in steps:
                if op == "set":
                    history.append((((await store.set("s", key, value)).offset), "set", key, value))
                elif op == "delete":
                    deleted = await store.delete("s", key)
                    if deleted is not None:
                        history.append((deleted.offset, "delete", key, 0))
                elif op == "send":
                    history.append(((await store.send("s", key, "t", value)).offset, "send", key, value))
                else:
                    history.append(((await store.set("other", key, value)).offset, "other", key, value))
            head = store.head
            if head == 0:
                return
            expected = model(history)
            floor = 1 + int(where * (head - 1))
            await store.compact(floor)
            for at in range(floor - 1, head + 1):
                want: dict[str, Any] = expected[max(o for o in expected if o <= at)]
                assert await scope_at(store, at) == list(want.values()), (at, floor)
                for key in KEYS:
                    assert await store.entry("s", key, at=at) == want.get(key), (at, key, floor)
