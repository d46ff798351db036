"""The embedded store on real SQLite files: commands, results, gapless offsets, reads, lifecycle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ripple import (
    ConflictError,
    Delete,
    DeleteResult,
    IncrementOp,
    InvalidNameError,
    InvalidOpError,
    InvalidValueError,
    PreconditionFailedError,
    Set,
    Store,
    StoreClosedError,
    Update,
    UpdateRejectedError,
    UpdateResult,
    ValidationError,
    ValueTooLargeError,
)
from ripple.core.events import Event, Meta
from ripple.errors import BadRequestError, CascadeLimitError
from ripple.store.backend import connect_reader
from ripple.store.origin import current_origin
from tests.conftest import SECOND

# The contract of the store: every test that uses the `store` fixture runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.conformance


async def offsets(store: Store) -> list[int]:
    return [e.offset for e in await store.read_events(after=0, limit=10_000)]


async def test_set_get_update_delete(store: Store) -> None:
    r = await store.set("todos", "a", {"title": "x"})
    assert (r.old_value, r.new_value, r.version, r.offset) == (None, {"title": "x"}, 1, 1)
    u = await store.update("todos", "a", [{"type": "set", "path": "done", "value": True}])
    assert (u.old_value, u.new_value, u.version, u.offset, u.errors) == (
        {"title": "x"}, {"title": "x", "done": True}, 2, 2, [])
    assert await store.get("todos", "a") == {"title": "x", "done": True}
    d = await store.delete("todos", "a")
    assert d == DeleteResult({"title": "x", "done": True}, 3)
    assert await store.get("todos", "a") is None
    assert await store.delete("todos", "a") is None
    assert store.head == 3
    events = await store.read_events()
    assert [(e.op, e.event_type, e.version) for e in events] == [
        ("set", "created", 1), ("update", "updated", 2), ("delete", "deleted", 0)]
    assert events[2].old_value == {"title": "x", "done": True} and events[2].new_value is None


async def test_version_restarts_after_delete_but_offset_guards(store: Store) -> None:
    await store.set("s", "k", 1)
    await store.delete("s", "k")
    r = await store.set("s", "k", 2)
    assert r.version == 1 and r.offset == 3
    with pytest.raises(PreconditionFailedError):
        await store.set("s", "k", 3, expected_offset=1)
    assert (await store.set("s", "k", 3, expected_offset=3)).offset == 4


async def test_rejected_commands_leave_offsets_gapless(store: Store) -> None:
    await store.set("s", "k", 1)
    bad = [
        (store.set("", "k", 1), InvalidNameError),
        (store.set("a/b", "k", 1), InvalidNameError),
        (store.set("s", "k\x00", 1), InvalidNameError),
        (store.set("s", "k", float("nan")), InvalidValueError),
        (store.set("s", "k", None), InvalidValueError),
        (store.set("s", "k", "x" * (1024 * 1024 + 1)), ValueTooLargeError),
        (store.update("s", "k", [{"type": "explode", "path": "a"}]), InvalidOpError),
        (store.update("s", "k", [{"type": "increment", "path": "a", "by": "1"}]), InvalidOpError),
        (store.update("s", "k", [{"type": "increment", "path": "a", "by": 1}]), UpdateRejectedError),
        (store.set("s", "k", 2, expected_offset=7), PreconditionFailedError),
        (store.delete("s", "nope", expected_offset=1), PreconditionFailedError),
        (store.batch([Set("s", "x", 1), Set("s", "y", None)]), InvalidValueError),
    ]
    for coro, error in bad:
        with pytest.raises(error):
            await coro
    assert store.head == 1
    assert (await store.set("s", "k2", 1)).offset == 2
    assert await offsets(store) == [1, 2]


async def test_update_rejected_carries_errors(store: Store) -> None:
    await store.set("s", "k", {"n": "text"})
    with pytest.raises(UpdateRejectedError) as info:
        await store.update("s", "k", [IncrementOp("n", 1)])
    assert info.value.errors == [
        {"op_index": 0, "code": "increment.not_number", "message": "the target is not a number"}
    ]
    with pytest.raises(UpdateRejectedError):
        await store.update("s", "k", [])


async def test_one_bad_command_never_fails_its_group(store: Store) -> None:
    await store.set("s", "k", 1)
    results = await asyncio.gather(
        *[store.set("s", f"k{i}", i) for i in range(50)],
        store.set("s", "k", 2, expected_offset=99),
        store.update("s", "k", [IncrementOp("", 1)]),
        *[store.set("s", f"j{i}", i) for i in range(50)],
        return_exceptions=True,
    )
    assert isinstance(results[50], PreconditionFailedError)
    assert not isinstance(results[51], BaseException)
    assert sum(not isinstance(r, BaseException) for r in results) == 101
    assert await offsets(store) == list(range(1, 103))


async def test_batch_all_or_nothing_with_consecutive_offsets(store: Store) -> None:
    await store.set("s", "a", 1)
    results = await store.batch([
        Set("s", "b", {"n": 1}),
        Update("s", "b", [IncrementOp("n", 2)]),
        Delete("s", "a"),
        Delete("s", "missing"),
    ])
    assert [r.offset if r else None for r in results] == [2, 3, 4, None]
    # the update sees the batch's own earlier write
    assert isinstance(results[1], UpdateResult) and results[1].new_value == {"n": 3}
    with pytest.raises(ConflictError) as info:
        await store.batch([Set("s", "c", 1), Set("s", "b", 9, expected_offset=2)])
    assert info.value.detail["index"] == 1
    with pytest.raises(UpdateRejectedError) as rejected:
        await store.batch([Set("s", "c", 1), Update("s", "c", [IncrementOp("x", "no")])])  # type: ignore[arg-type]
    assert rejected.value.detail["index"] == 1
    with pytest.raises(ValidationError):
        await store.batch([Set("s", str(i), i) for i in range(1001)])
    assert store.head == 4 and await store.get("s", "c") is None
    assert await store.batch([]) == []


async def test_idempotency(store: Store) -> None:
    first = await store.set("s", "k", 1, idempotency_key="req-1")
    again = await store.set("s", "k", 1, idempotency_key="req-1")
    assert again == first and store.head == 1
    with pytest.raises(ConflictError) as info:
        await store.set("s", "k", 2, idempotency_key="req-1")
    assert info.value.code == "idempotency_key_reused"
    # duplicates inside one group commit are caught too
    a, b = await asyncio.gather(store.update("s", "n", [IncrementOp("c", 1)], idempotency_key="req-2"),
                                store.update("s", "n", [IncrementOp("c", 1)], idempotency_key="req-2"))
    assert a == b and await store.get("s", "n") == {"c": 1}
    # the same command with its object keys in another order is the same command
    o1 = await store.set("s", "o", {"a": 1, "b": 2}, idempotency_key="req-order")
    assert await store.set("s", "o", {"b": 2, "a": 1}, idempotency_key="req-order") == o1
    d1 = await store.delete("s", "k", idempotency_key="req-3")
    assert await store.delete("s", "k", idempotency_key="req-3") == d1
    batch: list[Set | Update | Delete] = [Set("s", "x", 1), Delete("s", "none")]
    assert await store.batch(batch, idempotency_key="req-4") == await store.batch(batch, idempotency_key="req-4")
    events = await store.read_events()
    assert len(events) == 5 and events[0].meta.idempotency_key == "req-1"
    async with store.reader.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM idempotency")
        assert (await cur.fetchone()) == (5,)


async def test_time_travel(store: Store) -> None:
    await store.set("s", "a", 1)        # 1
    await store.set("s", "b", 2)        # 2
    await store.set("s", "a", 10)       # 3
    await store.delete("s", "b")        # 4
    await store.set("s", "b", 20)       # 5
    assert await store.get("s", "a", at=0) is None
    assert await store.get("s", "a", at=2) == 1
    assert await store.get("s", "a", at=3) == 10
    assert await store.get("s", "b", at=4) is None
    page = await store.list("s", at=3)
    assert [(e.key, e.value, e.offset) for e in page.items] == [("a", 10, 3), ("b", 2, 2)]
    page = await store.list("s", at=5)
    assert [(e.key, e.value) for e in page.items] == [("a", 10), ("b", 20)]
    with pytest.raises(ValidationError):
        await store.get("s", "a", at=6)
    with pytest.raises(ValidationError):
        await store.list("s", at=-1)


async def test_list_first_insertion_order_and_pages(store: Store) -> None:
    for i in range(7):
        await store.set("s", f"k{i}", i)
    await store.set("s", "k0", 100)          # an overwrite keeps its place
    await store.delete("s", "k1")
    await store.set("s", "k1", 1)            # delete + recreate moves to the end
    keys, cursor = [], None
    while True:
        page = await store.list("s", limit=3, cursor=cursor)
        keys += [e.key for e in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert keys == ["k0", "k2", "k3", "k4", "k5", "k6", "k1"]
    assert (await store.list("unknown")).items == []
    with pytest.raises(BadRequestError):
        await store.list("s", cursor="garbage!")
    with pytest.raises(ValidationError):
        await store.list("s", limit=0)
    with pytest.raises(ValidationError):
        await store.list("s", limit=1001)


async def test_list_groups_and_read_events_filters(store: Store) -> None:
    await store.set("b", "1", 1)
    await store.set("a", "1", 1)
    await store.set("a", "2", 1)
    await store.delete("b", "1")
    await store.send("chat", "room", "msg", {"text": "hi"}, id="m1")
    assert (await store.list_groups()).groups == ["a"]
    assert [e.offset for e in await store.read_events(scopes=["a"])] == [2, 3]
    assert [e.offset for e in await store.read_events(keys=["1"], kind="state")] == [1, 2, 4]
    assert [e.offset for e in await store.read_events(after=2, limit=2)] == [3, 4]
    (stream,) = await store.read_events(kind="stream")
    assert (stream.kind, stream.scope, stream.key, stream.op, stream.event_type, stream.new_value,
            stream.version, stream.meta.id) == ("stream", "chat", "room", "send", "msg", {"text": "hi"}, 0, "m1")
    with pytest.raises(ValidationError):
        await store.read_events(after=-1)
    with pytest.raises(ValidationError):
        await store.read_events(kind="nope")  # type: ignore[arg-type]


async def test_cascade_depth_limit(store: Store) -> None:
    token = current_origin.set(Meta(cause=1, depth=17))
    try:
        with pytest.raises(CascadeLimitError):
            await store.set("s", "k", 1)
    finally:
        current_origin.reset(token)
    token = current_origin.set(Meta(cause=1, depth=16))
    try:
        r = await store.set("s", "k", 1)
    finally:
        current_origin.reset(token)
    (event,) = await store.read_events()
    assert event.offset == r.offset and event.meta.cause == 1 and event.meta.depth == 16
    assert store.counters["refused_cascades"] == 1


async def test_close_commits_everything_queued(location: str | Path) -> None:
    store = await Store.open(location)
    pending = [asyncio.ensure_future(store.set("s", f"k{i}", i)) for i in range(500)]
    await asyncio.sleep(0)  # sleep-ok: let the tasks enqueue before close
    await store.close()
    results = await asyncio.gather(*pending, return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, StoreClosedError) for r in results if isinstance(r, BaseException))
    with pytest.raises(StoreClosedError):
        await store.set("s", "x", 1)
    with pytest.raises(StoreClosedError):
        await store.get("s", "x")
    async with Store.open(location) as again:
        assert again.head == len(ok) == 500


async def test_cancelled_caller_may_still_be_committed(store: Store) -> None:
    task = asyncio.ensure_future(store.set("s", "k", 1))
    await asyncio.sleep(0)  # sleep-ok: the command is queued once the task has run one step
    task.cancel()
    await store.set("s", "other", 1)
    assert await store.get("s", "k") == 1


async def test_ack_only_after_commit(store: Store, location: str | Path) -> None:
    """Every acknowledged offset is visible to a fresh connection the moment the caller sees it."""
    async def write_and_check(i: int) -> None:
        r = await store.set("s", f"k{i}", i)
        conn = connect_reader(location)
        try:
            assert conn.execute("SELECT value FROM state WHERE key = ?", (f"k{i}",)).fetchone() == (str(i),)
            assert conn.execute("SELECT count(*) FROM events WHERE seq = ?", (r.offset,)).fetchone() == (1,)
        finally:
            conn.close()
    await asyncio.gather(*[write_and_check(i) for i in range(100)])


@pytest.mark.parametrize(("durability", "expected"), [("full", 2), ("normal", 1)])
async def test_synchronous_mode_is_real(db_path: Path, durability: str, expected: int) -> None:
    async with Store.open(db_path, durability=durability) as store:
        assert await store.writer.call(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == expected
        assert await store.writer.call(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"


async def test_long_read_does_not_block_writes(store: Store, location: str | Path) -> None:
    await store.set("s", "k", 0)
    reader = connect_reader(location)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM events").fetchone() == (1,)
    try:
        await asyncio.wait_for(asyncio.gather(*[store.set("s", f"k{i}", i) for i in range(200)]), 10 * SECOND)
        assert reader.execute("SELECT count(*) FROM events").fetchone() == (1,)  # its snapshot is stable
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert store.head == 201


async def test_200_concurrent_producers(store: Store) -> None:
    async def producer(p: int) -> list[int]:
        return [(await store.set(f"p{p}", f"k{i}", i)).offset for i in range(10)]

    acked = [o for offs in await asyncio.gather(*[producer(p) for p in range(200)]) for o in offs]
    assert sorted(acked) == list(range(1, 2001))
    assert await offsets(store) == list(range(1, 2001))


async def test_send_validates(store: Store) -> None:
    assert (await store.send("st", "g", "t", None)).offset == 1
    with pytest.raises(InvalidNameError):
        await store.send("a/b", "g", "t", 1)
    with pytest.raises(InvalidNameError):
        await store.send("st", "g", "", 1)
    assert store.head == 1


async def test_cancelled_snapshot_read_never_leaves_a_stale_connection(store: Store) -> None:
    """Cancel reads at every point of a snapshot; afterwards every pooled connection sees the latest head."""
    await store.set("s", "k", 0)

    async def read() -> None:
        async with store.reader.snapshot() as conn:
            await conn.execute("SELECT count(*) FROM events")

    for i in range(200):
        task = asyncio.ensure_future(read())
        for _ in range(i % 5):
            await asyncio.sleep(0)  # sleep-ok: cancel the read after a varying number of steps
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # A connection left inside a transaction would take its snapshot on the next read and keep it.
    await asyncio.gather(*[store.get("s", "k") for _ in range(store.reader.size * 4)])
    await store.set("s", "k", 1)
    values = await asyncio.gather(*[store.get("s", "k") for _ in range(store.reader.size * 4)])
    assert values == [1] * len(values)


async def test_idempotency_records_expire_after_24_hours(store: Store) -> None:
    first = await store.set("s", "k", 1, idempotency_key="old")
    assert await store.expire_idempotency() == 0
    assert await store.set("s", "k", 1, idempotency_key="old") == first
    assert await store.expire_idempotency(now_ms=first_ts(await store.read_events()) + 25 * 3600 * 1000) == 1
    again = await store.set("s", "k", 1, idempotency_key="old")  # forgotten: a new write
    assert again.offset == 2


def first_ts(events: list[Event]) -> int:
    return events[0].ts


async def test_reads_never_return_an_offset_beyond_the_head(db_path: Path) -> None:
    """Between the writer thread's COMMIT and the loop's acknowledgement a read waits for the head instead of
    handing out an offset a client could not yet subscribe after. (SQLite only: it moves the head back by hand, and a
    PostgreSQL node's tailer would rightly publish the offset again; tests/store/test_postgres.py covers a node that
    is behind.)"""
    async with Store.open(db_path) as store:
        await reads_wait_for_the_head(store)


async def reads_wait_for_the_head(store: Store) -> None:
    r = await store.set("s", "k", 1)
    store.writer.head = r.offset - 1  # as if the COMMIT had landed and its acknowledgement were still queued
    get = asyncio.ensure_future(store.entry("s", "k"))
    page = asyncio.ensure_future(store.list("s"))
    for _ in range(20):
        await asyncio.sleep(0)  # sleep-ok: give the reads every chance to (wrongly) finish early
    assert not get.done() and not page.done()
    store.writer.head = r.offset
    store.writer._release_head_waiters()
    entry = await asyncio.wait_for(get, 5 * SECOND)
    assert entry is not None and entry.offset == r.offset
    assert (await asyncio.wait_for(page, 5 * SECOND)).items[0].offset == r.offset
