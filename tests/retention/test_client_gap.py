"""``ripple.client.subscribe`` behind the server's floor: ``on_gap="snapshot"`` starts over by itself and says so."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ripple import Event, OffsetOutOfRangeError, Store
from ripple.client import Backoff, Resync, subscribe
from tests.conftest import SECOND
from tests.subscriptions.conftest import LiveServer

FAST = Backoff(initial=0.02, maximum=0.2)


async def test_a_client_offline_across_a_compaction_resyncs_from_a_snapshot(db_path: Path) -> None:
    server = await LiveServer(db_path).start()
    port = server.port
    try:
        store = server.store
        assert store is not None
        for i in range(50):
            await store.set("todos", f"t{i % 10}", {"n": i})
        items = subscribe(f"http://127.0.0.1:{port}", scopes=["todos"], after=0, backoff=FAST, on_gap="snapshot")
        seen: list[Event | Resync] = []
        while not seen or seen[-1].offset < 50:
            seen.append(await asyncio.wait_for(anext(items), 5 * SECOND))
        assert [e.offset for e in seen] == list(range(1, 51))  # a resume from the beginning: plain events

        pending = asyncio.ensure_future(anext(items))  # the client keeps trying while the server is away
        await server.stop()
        async with Store.open(db_path) as offline:  # meanwhile: more writes, and the log before 120 compacted
            for i in range(50, 150):
                await offline.set("todos", f"t{i % 10}", {"n": i})
            await offline.delete("todos", "t3")
            await offline.compact(120)
            expected = {e.key: e.value for e in (await offline.list("todos")).items}
            head = offline.head
        server = await LiveServer(db_path, port=port).start()
        resync = await asyncio.wait_for(pending, 10 * SECOND)
        assert isinstance(resync, Resync)
        assert (resync.after, resync.earliest, resync.offset) == (50, 120, head)
        assert {i.key: i.value for i in resync.items} == expected
        store = server.store
        assert store is not None
        live = await store.set("todos", "t3", {"n": "back"})
        after = await asyncio.wait_for(anext(items), 5 * SECOND)
        assert isinstance(after, Event) and after.offset == live.offset  # events after the snapshot, none lost
        await items.aclose()  # type: ignore[attr-defined]
    finally:
        await server.stop()


async def test_without_on_gap_the_error_names_earliest(db_path: Path) -> None:
    server = await LiveServer(db_path).start()
    try:
        store = server.store
        assert store is not None
        for i in range(30):
            await store.set("todos", f"t{i}", i)
        await store.compact(20)
        with pytest.raises(OffsetOutOfRangeError) as refused:
            await asyncio.wait_for(anext(subscribe(server.url, after=5, backoff=FAST)), 5 * SECOND)
        assert refused.value.detail == {"earliest": 20}
        at_floor = subscribe(server.url, after=19, backoff=FAST, on_gap="snapshot")
        first = await asyncio.wait_for(anext(at_floor), 5 * SECOND)
        assert isinstance(first, Event) and first.offset == 20  # at the floor: nothing was lost, no resync
        await at_floor.aclose()  # type: ignore[attr-defined]
    finally:
        await server.stop()
