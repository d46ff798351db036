"""Property: for any command sequence, a projection rebuilt from the log equals the one maintained incrementally
(inline and async), equals a fold computed in plain Python, and the offline rebuild and compare agree."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ripple import Delete, Set, Store, Update
from ripple.projections.builtin import metrics_projection
from ripple.projections.runner import compare_projection, rebuild_offline
from ripple.store.sqlite import connect_reader, connect_writer
from tests.conftest import SECOND, count
from tests.projections.helpers import all_events, expected_keys, expected_metrics, keys_data, keys_projection

scopes = st.sampled_from(["a", "b"])
keys = st.sampled_from(["x", "y", "z"])
values = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.dictionaries(st.sampled_from(["n", "m"]),
                                                                               st.integers(0, 3), max_size=2))
ops = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("increment"), "path": st.just("n"), "by": st.integers(-2, 2)}),
        st.fixed_dictionaries({"type": st.just("set"), "path": st.just("m"), "value": st.integers(0, 3)}),
        st.fixed_dictionaries({"type": st.just("remove"), "path": st.just("m")}),
    ),
    min_size=1,
    max_size=2,
)
commands = st.lists(
    st.one_of(
        st.builds(Set, scopes, keys, values),
        st.builds(Update, scopes, keys, ops),
        st.builds(Delete, scopes, keys),
    ),
    max_size=40,
)


async def apply(store: Store, cmds: list[Any], chunk: int) -> None:
    """Apply commands in concurrent chunks (so group commits hold several), ignoring the ones the core rejects."""
    for i in range(0, len(cmds), chunk):
        await asyncio.gather(*(run(store, c) for c in cmds[i : i + chunk]), return_exceptions=True)


async def run(store: Store, cmd: Any) -> None:
    if isinstance(cmd, Set):
        await store.set(cmd.scope, cmd.key, cmd.value)
    elif isinstance(cmd, Update):
        await store.update(cmd.scope, cmd.key, cmd.ops)
    else:
        await store.delete(cmd.scope, cmd.key)


async def scenario(path: Path, cmds: list[Any], chunk: int) -> None:
    async with Store.open(path) as store:
        store.register_projection(keys_projection(mode="async"))
        await apply(store, cmds, chunk)
        await asyncio.wait_for(store.projections.wait_caught_up(), 10 * SECOND)
        events = await all_events(store)
        incremental_keys = (await store.projection("keys")).data
        incremental_metrics = (await store.projection("metrics")).data
        assert keys_data(incremental_keys) == expected_keys(events)
        assert incremental_metrics == expected_metrics(events)
        assert (await store.rebuild("keys")).data == incremental_keys
        assert (await store.rebuild("metrics")).data == incremental_metrics
    # offline, on plain sqlite3 connections: a fresh fold agrees, and an offline rebuild gives the same data
    reader = connect_reader(path)
    try:
        for p in (metrics_projection(), keys_projection(mode="async")):
            assert compare_projection(reader, p) == []
    finally:
        reader.close()
    conn = connect_writer(path, "full")
    try:
        rebuild_offline(conn, [metrics_projection(), keys_projection(mode="async")])
    finally:
        conn.close()
    async with Store.open(path) as store:
        store.register_projection(keys_projection(mode="async"))
        assert (await store.projection("keys")).data == incremental_keys
        assert (await store.projection("metrics")).data == incremental_metrics


@settings(max_examples=count(50, 1000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cmds=commands, chunk=st.integers(1, 8))
def test_rebuild_equals_incremental(cmds: list[Any], chunk: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp) / "p.db", cmds, chunk))


def test_compare_reports_a_tampered_row(tmp_path: Path) -> None:
    path = tmp_path / "t.db"

    async def fill() -> None:
        async with Store.open(path) as store:
            for i in range(20):
                await store.set("s", f"k{i % 4}", i)

    asyncio.run(fill())
    conn = connect_writer(path, "full")
    try:
        conn.execute("UPDATE proj_metrics__0__scopes SET updates = updates + 1 WHERE scope = 's'")
    finally:
        conn.close()
    reader = connect_reader(path)
    try:
        diffs = compare_projection(reader, metrics_projection())
        assert {d.kind for d in diffs} == {"missing", "unexpected"}
        assert all(d.table == "scopes" and d.row is not None and d.row[0] == "s" for d in diffs)
        assert "is missing from the live table" in diffs[0].message or "not in a fresh fold" in diffs[0].message
        # TEMP tables only: nothing was written to the file
        assert not [r for r in reader.execute("SELECT name FROM sqlite_master WHERE name GLOB 'verify_*'")]
    finally:
        reader.close()
    progress: list[tuple[int, int]] = []
    conn = connect_writer(path, "full")
    try:
        rows = rebuild_offline(conn, metrics_projection(), progress=lambda done, total: progress.append((done, total)))
        assert rows[0].generation == 1 and rows[0].status == "ok" and rows[0].checkpoint == 20
        assert progress[-1] == (20, 20)
    finally:
        conn.close()
    reader = connect_reader(path)
    try:
        assert compare_projection(reader, metrics_projection()) == []
        assert isinstance(reader, sqlite3.Connection)
    finally:
        reader.close()
