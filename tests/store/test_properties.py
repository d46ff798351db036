"""Property test: random commands, batches and rejected commands; after each step the current-state table equals a
fold of the log, and offsets are exactly 1..head."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ripple import Delete, RippleError, Set, Store, Update
from ripple.core.fold import FoldedKey, fold_state
from ripple.core.ops import AppendOp, IncrementOp, MergeOp, RemoveOp, SetOp
from ripple.store.sql import EVENT_COLUMNS
from ripple.store.sqlite import row_to_event
from tests.conftest import SOAK

scopes = st.sampled_from(["a", "b"])
keys = st.sampled_from(["k1", "k2", "k3", "x/y"])
values = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.dictionaries(st.sampled_from("pq"), st.integers(0, 3)))
fields = st.one_of(st.sampled_from(["n", "t", "p"]), st.lists(st.sampled_from(["p", "q"]), min_size=1, max_size=2))
ops = st.one_of(
    st.builds(SetOp, fields, values),
    st.builds(MergeOp, st.dictionaries(st.sampled_from("pq"), st.integers(0, 3)), fields),
    st.builds(IncrementOp, fields, st.integers(-3, 3)),
    st.builds(AppendOp, values, fields),
    st.builds(RemoveOp, fields),
)
offsets = st.one_of(st.none(), st.integers(0, 8))
commands = st.one_of(
    st.builds(Set, scopes, keys, values, offsets),
    st.builds(Update, scopes, keys, st.lists(ops, max_size=3), offsets),
    st.builds(Delete, scopes, keys, offsets),
    st.builds(Set, st.just("bad/scope"), keys, values),          # always rejected
    st.builds(Set, scopes, keys, st.just(float("nan"))),         # always rejected
)
steps = st.lists(st.one_of(commands, st.lists(commands, min_size=1, max_size=4)), min_size=1, max_size=25)


def check_file(path: Path, head: int) -> None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        events = [row_to_event(r) for r in conn.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq")]
        assert [e.offset for e in events] == list(range(1, head + 1))
        table = {
            (s, k): FoldedKey(msgspec.json.decode(v), ver, last, created)
            for s, k, v, ver, last, created in conn.execute(
                "SELECT scope, key, value, version, last_seq, created_seq FROM state"
            )
        }
        assert table == fold_state(events)
        # each event's old_value equals the previous new_value of its key
        previous: dict[tuple[str, str], Any] = {}
        for e in events:
            assert e.old_value == previous.get((e.scope, e.key))
            previous[(e.scope, e.key)] = e.new_value
    finally:
        conn.close()


async def run_steps(path: Path, program: list[Any]) -> None:
    async with Store.open(path) as store:
        for step in program:
            try:
                if isinstance(step, list):
                    await store.batch(step)
                elif isinstance(step, Set):
                    await store.set(step.scope, step.key, step.value, expected_offset=step.expected_offset)
                elif isinstance(step, Update):
                    await store.update(step.scope, step.key, step.ops, expected_offset=step.expected_offset)
                else:
                    await store.delete(step.scope, step.key, expected_offset=step.expected_offset)
            except RippleError:
                pass
            check_file(path, store.head)
        # the same program concurrently: one group commit mixing good and bad commands
        singles = [s for s in program if not isinstance(s, list)]
        coros = [store.batch([s]) for s in singles]
        await asyncio.gather(*coros, return_exceptions=True)
        check_file(path, store.head)


@settings(max_examples=1000 if SOAK else 50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_state_equals_fold_of_log_and_offsets_are_gapless(program: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run_steps(Path(tmp) / "p.db", program))
