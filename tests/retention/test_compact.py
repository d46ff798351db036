"""Compaction on a live store: the floor moves, nothing readable at or after it changes, and readers behind it are
told so (``offset_out_of_range`` with ``earliest``) instead of skipping events."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from ripple import ConflictError, Event, OffsetOutOfRangeError, Store, ValidationError
from ripple.core.events import KindFilter
from ripple.offline import VerifyReport, open_readonly, verify
from ripple.store import retention
from ripple.subscriptions.cursor import Limits
from tests.conftest import SECOND


async def history(store: Store, n: int, rng: random.Random, keys: int = 12) -> None:
    """Creates, updates, deletes and re-creates over a few keys, with stream sends in between."""
    for i in range(n):
        key = f"k{rng.randrange(keys)}"
        roll = rng.random()
        if roll < 0.15:
            await store.delete("s", key)
        elif roll < 0.25:
            await store.send("chat", "room", "msg", {"i": i})
        elif roll < 0.35:
            await store.update("s", key, [{"type": "increment", "path": "n", "by": 1}])
        else:
            await store.set("s", key, {"i": i})


def verify_file(path: Path) -> VerifyReport:
    conn = open_readonly(path)
    try:
        return verify(conn)
    finally:
        conn.close()


async def answers(store: Store, at: int, keys: int = 12) -> tuple[list[Any], list[Any]]:
    """Everything time travel says at ``at``: each key, and the scope paged 3 at a time."""
    values = [await store.entry("s", f"k{i}", at=at) for i in range(keys)]
    items: list[Any] = []
    cursor = None
    while True:
        page = await store.list("s", limit=3, cursor=cursor, at=at)
        items += page.items
        if page.next_cursor is None:
            return values, items
        cursor = page.next_cursor


async def test_compaction_keeps_every_answer_at_or_after_the_floor(db_path: Path) -> None:
    async with Store.open(db_path) as store:
        await history(store, 300, random.Random(1))
        head = store.head
        floor = 150
        expected = {at: await answers(store, at) for at in range(floor - 1, head + 1)}
        before = verify_file(db_path)
        result = await store.compact(floor)
        assert (result.earliest_before, result.earliest) == (1, floor)
        assert result.removed == floor - 1
        assert await store.earliest() == floor and store.head == head
        for at in range(floor - 1, head + 1):
            assert await answers(store, at) == expected[at], at
        with pytest.raises(OffsetOutOfRangeError) as below:
            await store.get("s", "k1", at=floor - 2)
        assert below.value.detail["earliest"] == floor
        with pytest.raises(OffsetOutOfRangeError):
            await store.list("s", at=0)
        with pytest.raises(OffsetOutOfRangeError):
            await store.read_events(after=floor - 2)
        assert [e.offset for e in await store.read_events(after=floor - 1, limit=5)] == list(range(floor, floor + 5))
    after = verify_file(db_path)
    assert after.ok, after.faults
    assert after.state_hash == before.state_hash and after.head == head
    assert after.events == head - floor + 1


async def test_compaction_in_steps_beside_writes_and_subscribers(db_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """Writers keep writing while the floor moves in steps; subscribers at or past the floor lose nothing, and
    one still catching up from behind it gets offset_out_of_range instead of a silent gap."""
    async with Store.open(db_path) as store:
        await history(store, 600, random.Random(2))
        floor = 400
        at_floor = await store.subscribe(kind="all", after=floor - 1).start()
        past_floor = await store.subscribe(kind="all", after=floor + 50).start()
        behind = await store.subscribe(kind="all", after=0, limits=Limits(page_size=10)).start()
        first = await asyncio.wait_for(behind.__anext__(), 5 * SECOND)
        assert first.offset == 1
        stop = asyncio.Event()

        async def writer(w: int) -> None:
            i = 0
            while not stop.is_set():
                await store.set("w", f"{w}-{i % 20}", i)
                i += 1

        writers = [asyncio.create_task(writer(w)) for w in range(3)]
        monkeypatch.setattr(retention, "COMPACT_CHUNK", 37)  # many steps, interleaved with the writers' commits
        result = await store.compact(floor)
        stop.set()
        await asyncio.gather(*writers)
        assert result.earliest == floor
        head = store.head
        log = await all_events(store, floor - 1, head)

        async def received(sub: Any, upto: int) -> list[Event]:
            got: list[Event] = []
            while not got or got[-1].offset < upto:
                got.append(await asyncio.wait_for(sub.__anext__(), 5 * SECOND))
            return got

        assert await received(at_floor, head) == log
        assert await received(past_floor, head) == [e for e in log if e.offset > floor + 50]
        with pytest.raises(OffsetOutOfRangeError) as gap:
            await asyncio.wait_for(received(behind, head), 5 * SECOND)
        assert gap.value.detail["earliest"] == floor
        with pytest.raises(OffsetOutOfRangeError):
            await store.subscribe(after=floor - 2).start()
        for sub in (at_floor, past_floor, behind):
            await sub.aclose()
    report = verify_file(db_path)
    assert report.ok, report.faults


async def all_events(store: Store, after: int, upto: int, kind: KindFilter = "all") -> list[Event]:
    out: list[Event] = []
    while after < upto:
        page = await store.read_events(after=after, limit=1000, kind=kind)
        out += [e for e in page if e.offset <= upto]
        if not page:
            return out
        after = page[-1].offset
    return out


async def test_bad_floors_change_nothing(db_path: Path) -> None:
    async with Store.open(db_path) as store:
        await history(store, 40, random.Random(3))
        head = store.head
        for bad in (head + 1, 0, -3):
            with pytest.raises(ValidationError, match="outside the log"):
                await store.compact(bad)
        with pytest.raises(ValidationError):
            await store.compact("7")  # type: ignore[arg-type]
        assert (await store.earliest(), store.head) == (1, head)
        assert (await store.compact(1)).removed == 0  # the floor is already there
    assert verify_file(db_path).events == head


async def test_a_floor_below_a_durable_reaction_is_refused_then_forced(db_path: Path) -> None:
    async with Store.open(db_path) as store:
        await history(store, 50, random.Random(4))
        seen: list[int] = []
        gate = asyncio.Event()

        async def slow(event: Any, _writes: Any) -> None:
            await gate.wait()
            seen.append(event.offset)

        store.on_change("s", slow, name="mailer", start="beginning")
        with pytest.raises(ConflictError) as refused:
            await store.compact(30)
        assert refused.value.code == "floor_blocked"
        assert "durable reaction 'mailer'" in refused.value.message
        assert refused.value.detail["blockers"][0]["name"] == "mailer"
        assert await store.earliest() == 1
        result = await store.compact(30, force=True)
        assert result.earliest == 30 and [b.name for b in result.forced] == ["mailer"]
        gate.set()
        await asyncio.wait_for(store.reactions.wait_idle("mailer"), 10 * SECOND)
        # it had started on the first events; what was compacted before it got there is skipped, nothing after
        s_offsets = [e.offset for e in await all_events(store, 29, store.head) if e.scope == "s"]
        assert [o for o in seen if o >= 30] == s_offsets


async def test_an_idle_reaction_on_a_quiet_scope_does_not_hold_the_floor(db_path: Path) -> None:
    """Its stored cursor stays at the last event it handled while other scopes write; compaction and close move it
    up to where the reaction stands (it has handled everything that matches up to the head)."""
    handled: list[int] = []

    async def note(event: Any, _writes: Any) -> None:
        handled.append(event.offset)

    async with Store.open(db_path) as store:
        store.on_change("quiet", note, name="pager", start="beginning")
        await store.set("quiet", "k", 1)
        await history(store, 60, random.Random(10))  # scope "s" only
        await asyncio.wait_for(store.reactions.wait_idle("pager"), 10 * SECOND)
        result = await store.compact(store.head - 5)  # not blocked: nothing after offset 1 matches "quiet"
        assert result.earliest == store.head - 5 and not result.forced
        await store.set("s", "more", 1)
        head = store.head
    conn = open_readonly(db_path)
    try:
        assert conn.execute("SELECT cursor FROM reactions WHERE name = 'pager'").fetchone()[0] == head
    finally:
        conn.close()
    assert handled == [1]


async def test_projections_rebuild_from_the_base(db_path: Path) -> None:
    """A rebuild folds one synthetic `created` event per key alive at the floor - 1, then the events after it: the
    keys agree with the state, and creates/updates/deletes count what the log still holds."""
    async with Store.open(db_path) as store:
        await history(store, 200, random.Random(5))
        await store.compact(120)
        rebuilt = await store.rebuild("metrics")
        keys = len((await store.list("s", limit=1000)).items)
        assert rebuilt.data["scopes"]["s"]["keys"] == keys
        base = len((await store.list("s", limit=1000, at=119)).items)
        log = [e for e in await all_events(store, 119, store.head) if e.scope == "s"]
        counts = {t: sum(1 for e in log if e.event_type == t) for t in ("created", "updated", "deleted")}
        assert rebuilt.data["scopes"]["s"] == {"keys": keys, "creates": base + counts["created"],
                                              "updates": counts["updated"], "deletes": counts["deleted"]}
    assert verify_file(db_path).ok


async def test_stream_events_expire_separately(db_path: Path) -> None:
    async with Store.open(db_path) as store:
        await history(store, 200, random.Random(6))
        state_before = await answers(store, 150)
        await store.compact(streams_before=160)
        assert store.log_floor == retention.Floor(1, 160)
        streams = await all_events(store, 159, store.head, "stream")
        assert streams and streams[0].offset >= 160
        conn = open_readonly(db_path)
        try:
            assert conn.execute("SELECT count(*) FROM events WHERE kind = 'stream' AND seq < 160").fetchone()[0] == 0
        finally:
            conn.close()
        assert await answers(store, 150) == state_before  # state history is untouched
        await store.subscribe(kind="state", after=0).start()  # state followers may start anywhere
        with pytest.raises(OffsetOutOfRangeError) as refused:
            await store.subscribe(kind="stream", after=100).start()
        assert refused.value.detail["earliest"] == 160
        with pytest.raises(OffsetOutOfRangeError):
            await store.read_events(after=0, kind="all")
        assert await store.read_events(after=0, kind="state", limit=1)
    assert verify_file(db_path).ok


async def test_retention_policy_by_age_size_and_stream_age(db_path: Path) -> None:
    async with Store.open(db_path) as store:
        await history(store, 300, random.Random(7))
        old = store.head
        await history(store, 100, random.Random(8))
        events = await all_events(store, 0, store.head)
        cutoff = events[old].ts  # the first event after `old` was committed at or after this
        ages = retention.RetentionPolicy(max_age_ms=10_000, stream_max_age_ms=5_000)
        assert await store.apply_retention(ages, now_ms=cutoff - 20_000) is None  # nothing is that old yet
        result = await store.apply_retention(retention.RetentionPolicy(max_age_ms=10_000), now_ms=cutoff + 10_000)
        assert result is not None and 1 < result.earliest <= old + 1
        assert all(e.ts >= cutoff for e in await all_events(store, result.earliest - 1, store.head))
        conn = open_readonly(db_path)
        try:
            used = retention.used_bytes(conn)
        finally:
            conn.close()
        by_size = await store.apply_retention(retention.RetentionPolicy(max_bytes=used // 2))
        assert by_size is not None and by_size.earliest > result.earliest
        assert await store.apply_retention(retention.RetentionPolicy(max_bytes=used * 10)) is None
    assert verify_file(db_path).ok


async def test_retention_waits_for_a_durable_reaction(db_path: Path) -> None:
    async with Store.open(db_path) as store:
        await history(store, 100, random.Random(9))
        gate = asyncio.Event()

        async def blocked(_event: Any, _writes: Any) -> None:
            await gate.wait()

        store.on_change("s", blocked, name="held", start="beginning")
        now = 2**62
        assert await store.apply_retention(retention.RetentionPolicy(max_age_ms=1), now_ms=now) is None
        gate.set()
        await asyncio.wait_for(store.reactions.wait_idle("held"), 10 * SECOND)
        result = await store.apply_retention(retention.RetentionPolicy(max_age_ms=1), now_ms=now)
        assert result is not None and result.earliest > 1


async def test_space_comes_back(db_path: Path) -> None:
    async with Store.open(db_path) as store:
        for i in range(3000):
            await store.set("big", f"k{i % 50}", {"blob": "x" * 400, "i": i})
        head = store.head
    size = db_path.stat().st_size
    async with Store.open(db_path) as store:
        await store.compact(head - 100)
    conn = open_readonly(db_path)
    try:
        assert retention.auto_vacuum(conn) == "incremental"
        assert retention.free_pages(conn) <= 1
    finally:
        conn.close()
    assert db_path.stat().st_size < size / 3


def test_sizes_and_ages_parse() -> None:
    assert retention.parse_size("2GiB") == 2 * 1024**3
    assert retention.parse_size("500MB") == 500_000_000
    assert retention.parse_size("1000") == 1000
    assert retention.parse_age("30d") == 30 * 86_400_000
    assert retention.parse_age("90m") == 5_400_000
    assert [retention.format_age(retention.parse_age(t)) for t in ("5s", "30d", "12h", "90m", "2w", "1.5h")] == [
        "5s", "30d", "12h", "90m", "2w", "90m"]
    for bad in ("", "-1GB", "ten MB", "5 parsecs"):
        with pytest.raises(ValidationError):
            retention.parse_size(bad)
    for bad in ("", "30", "1y", "d"):
        with pytest.raises(ValidationError):
            retention.parse_age(bad)
