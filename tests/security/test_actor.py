"""``meta.actor`` and idempotency per actor in the embedded API (DESIGN §15); the migration that makes keys per
actor keeps the records it finds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ripple import ConflictError, Set, Store
from ripple.auth import Identity, acting_as, parse_grant
from ripple.errors import ForbiddenError
from ripple.migrations import APPLICATION_ID, migrations, statements


async def test_embedded_writes_have_no_actor_unless_acting_as(store: Store) -> None:
    await store.set("s", "plain", 1)
    with acting_as(Identity("nightly-import", admin=True)):
        await store.set("s", "job", 1)
        await store.batch([Set("s", "b", 1)])
        await store.send("live", "g", "t", 1)
    events = await store.read_events(0, 10)
    assert [e.meta.actor for e in events] == [None, "nightly-import", "nightly-import", "nightly-import"]


async def test_acting_as_checks_grants(store: Store) -> None:
    reader = Identity("reader", (parse_grant("todos:r"),))
    await store.set("todos", "a", 1)
    with acting_as(reader):
        assert await store.get("todos", "a") == 1
        with pytest.raises(ForbiddenError):
            await store.set("todos", "a", 2)
        with pytest.raises(ForbiddenError):
            await store.get("secret", "a")
        with pytest.raises(ForbiddenError):
            await store.read_events(0, 10)  # every scope: admin only
        assert len(await store.read_events(0, 10, scopes=["todos"], kind="state")) == 1
        with pytest.raises(ForbiddenError):
            store.subscribe(scopes=["secret"])
        with pytest.raises(ForbiddenError):
            await store.projection("metrics")
    assert store.head == 1


async def test_idempotency_keys_are_per_actor(store: Store) -> None:
    alice, bob = Identity("alice", admin=True), Identity("bob", admin=True)
    with acting_as(alice):
        first = await store.set("s", "k", "from alice", idempotency_key="key-1")
        again = await store.set("s", "k", "from alice", idempotency_key="key-1")
        assert again == first
        with pytest.raises(ConflictError) as reused:
            await store.set("s", "k", "something else", idempotency_key="key-1")
        assert reused.value.code == "idempotency_key_reused"
    with acting_as(bob):
        theirs = await store.set("s", "k", "from bob", idempotency_key="key-1")  # the same key, another actor
    assert theirs.offset == first.offset + 1
    mine = await store.set("s", "other", 1, idempotency_key="key-1")  # and no actor at all is a third owner
    assert store.head == mine.offset == 3


async def test_migrating_keeps_idempotency_records(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, _name, sql in migrations():
        if number > 3:
            break
        for stmt in statements(sql):
            conn.execute(stmt)
    conn.execute("PRAGMA user_version = 3")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("INSERT INTO events (seq, ts, kind, scope, key, op, event_type, version, old_value, new_value, meta) "
                 "VALUES (1, 1, 'state', 's', 'k', 'set', 'created', 1, NULL, '1', '{\"idempotency_key\":\"x\"}')")
    conn.execute("INSERT INTO state VALUES ('s', 'k', '1', 1, 1, 1)")
    from ripple.store.writer import command_hash

    conn.execute("INSERT INTO idempotency (key, request_hash, seq, result, created_ts) VALUES (?, ?, 1, ?, ?)",
                 ("x", command_hash(Set("s", "k", 1)),
                  '{"old_value":null,"new_value":1,"version":1,"offset":1}', 2**62))
    conn.close()
    async with Store.open(path) as store:
        retried = await store.set("s", "k", 1, idempotency_key="x")
        assert retried.offset == 1 and store.head == 1  # the record survived the migration
