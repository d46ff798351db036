"""Property test: one event JSON encoding. For the same event, a live frame's body (msgspec, once per commit), the
catch-up page built and joined by SQLite (``sql.EVENT_JSON``, ``sql.events_json_page``) and ``ripple export`` are the
same bytes; so are the packed frames cut from a joined page and those the hub packs from live bodies. On PostgreSQL,
the page built and joined by ``ripple.store.dialect`` is those bytes too."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ripple import Delete, Meta, RippleError, Set, Store, Update
from ripple.core.events import Event
from ripple.core.filter import EVERYTHING
from ripple.core.ops import IncrementOp, MergeOp, SetOp
from ripple.offline import event_lines
from ripple.store.origin import current_origin
from ripple.store.sql import EVENT_SEPARATOR
from ripple.subscriptions.catchup import read_joined_page
from ripple.wire import event_body, pack, pack_joined
from tests.conftest import PG_URL, SOAK, pg_schema_url

# Names with what JSON must escape or keep as it is: quotes, backslashes, slashes, non-ASCII, emoji with ZWJ.
name_chars = st.sampled_from(['a', 'Z', '"', "\\", "/", " ", "é", "ß", "中", "😀", "\u200d", "'", "%", "<"])
scopes = st.text(name_chars.filter(lambda c: c != "/"), min_size=1, max_size=6)
keys = st.text(name_chars, min_size=1, max_size=6)
leaves = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),  # values may hold control characters: stored JSON escapes them
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=10,
)
ops = st.one_of(
    st.builds(SetOp, st.text(max_size=3), values),
    st.builds(MergeOp, st.dictionaries(st.text(max_size=3), values, max_size=2)),
    st.builds(IncrementOp, st.sampled_from(["n", "m"]), st.one_of(st.integers(-9, 9), st.floats(-1e6, 1e6))),
)
commands = st.one_of(
    st.builds(Set, scopes, keys, values),
    st.builds(Update, scopes, keys, st.lists(ops, min_size=1, max_size=2)),
    st.builds(Delete, scopes, keys),
    st.tuples(scopes, keys, st.text(name_chars, min_size=1, max_size=5), st.one_of(st.none(), values),
              st.one_of(st.none(), keys)),  # a stream send: stream, group, type, data, id
)
programs = st.lists(st.tuples(commands, st.booleans()), min_size=1, max_size=20)


async def write(store: Store, command: Any, idempotent: bool, n: int) -> None:
    key = f"idem-{n}" if idempotent else None
    if isinstance(command, tuple):
        await store.send(*command[:4], id=command[4])
    elif isinstance(command, Set):
        await store.set(command.scope, command.key, command.value, idempotency_key=key)
    elif isinstance(command, Update):
        await store.update(command.scope, command.key, command.ops, idempotency_key=key)
    else:
        await store.delete(command.scope, command.key, idempotency_key=key)


async def live_and_catch_up(location: str | Path, program: list[tuple[Any, bool]]) -> tuple[list[bytes], list[bytes]]:
    live: list[bytes] = []

    def record(events: list[Event]) -> None:
        live.extend(event_body(e) for e in events)

    async with Store.open(location) as store:
        store.commits.subscribe(record)
        # some writes carry a cause and depth (as if a reaction made them), so meta is not always empty
        token = current_origin.set(None)
        for n, (command, idempotent) in enumerate(program):
            if n % 3 == 2:
                current_origin.set(Meta(cause=n, depth=1))
            try:
                await write(store, command, idempotent, n)
            except RippleError:
                pass  # e.g. an update whose ops all fail: nothing is appended
            current_origin.set(None)
        current_origin.reset(token)
        page = await read_joined_page(store, EVERYTHING, 0, store.head, 100_000)
        catch_up = bytes(page.joined).split(EVENT_SEPARATOR) if page.count else []
        for batch in (None, 1, 3):
            assert (pack_joined(bytes(page.joined), batch) if page.count else []) == (pack(live, batch) if live else [])
    return live, catch_up


async def encodings(path: Path, program: list[tuple[Any, bool]]) -> tuple[list[bytes], list[bytes], list[bytes]]:
    live, catch_up = await live_and_catch_up(path, program)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        exported = list(event_lines(conn))
    finally:
        conn.close()
    return live, catch_up, exported


@settings(max_examples=1000 if SOAK else 50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs)
def test_live_catch_up_and_export_encode_an_event_to_the_same_bytes(program: list[tuple[Any, bool]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        live, catch_up, exported = asyncio.run(encodings(Path(tmp) / "t.db", program))
    assert len(live) == len(catch_up) == len(exported)
    for a, b, c in zip(live, catch_up, exported, strict=True):
        assert a == b == c


@pytest.mark.skipif(not PG_URL, reason="RIPPLE_TEST_PG is not set: run the PostgreSQL tests under .ci/postgres")
@settings(max_examples=200 if SOAK else 25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs)
def test_postgres_catch_up_encodes_an_event_to_the_live_bytes(program: list[tuple[Any, bool]]) -> None:
    assert PG_URL is not None
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute("DROP SCHEMA IF EXISTS event_json CASCADE")
        admin.execute("CREATE SCHEMA event_json")
    live, catch_up = asyncio.run(live_and_catch_up(pg_schema_url(PG_URL, "event_json"), program))
    assert live == catch_up
