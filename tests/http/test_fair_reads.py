"""Fair reads: no class of read starves point reads, log reads or health (separate reader pools; health reads no
file). Generous timeouts, no timing asserts: figures are in bench/time_travel.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from ripple import Set, Store
from tests.conftest import SECOND
from tests.http.conftest import Live

KEYS = 5000


async def big_scope(store: Store) -> int:
    for start in range(0, KEYS, 1000):
        await store.batch([Set("big", f"k{i}", {"i": i, "pad": "x" * 50}) for i in range(start, start + 1000)])
    for i in range(0, KEYS, 7):  # some history, so time travel has work to do
        await store.set("big", f"k{i}", {"i": i, "v": 2})
    return store.head


@contextlib.asynccontextmanager
async def holding_every_state_connection(store: Store) -> AsyncIterator[None]:
    """Take every connection of the state pool, as long-running list pages or snapshots would."""
    stack = contextlib.AsyncExitStack()
    async with stack:
        for _ in range(store.reader.size):
            await stack.enter_async_context(store.reader.connection("state"))
        yield


async def test_point_log_and_health_reads_do_not_wait_for_state_ranges(live: Live) -> None:
    head = await big_scope(live.store)
    async with holding_every_state_connection(live.store):
        waiting = asyncio.ensure_future(live.client.get("/v1/state/big", params={"limit": 10}))
        for _ in range(3):
            assert (await live.client.get("/v1/health")).json()["head"] == head
            assert (await live.client.get("/v1/state/big/k42")).json()["i"] == 42
            assert (await live.client.get("/v1/state/big/k42", params={"at": KEYS // 2})).json() == {"i": 42,
                                                                                                  "pad": "x" * 50}
            events = await live.client.get("/v1/events", params={"after": head - 5})
            assert [e["offset"] for e in events.json()["events"]] == list(range(head - 4, head + 1))
        assert not waiting.done()  # the list page queues for its own pool, and only there
    assert (await asyncio.wait_for(waiting, 10 * SECOND)).status_code == 200


async def test_eight_clients_looping_expensive_reads(live: Live) -> None:
    head = await big_scope(live.store)
    stop = asyncio.Event()
    pages = 0

    async def expensive(n: int) -> None:
        nonlocal pages
        async with httpx.AsyncClient(base_url=live.url, timeout=30 * SECOND) as client:
            while not stop.is_set():
                at = head // 2 + n
                answer = await client.get("/v1/state/big", params={"limit": 1000, "at": at})
                assert answer.status_code == 200 and len(answer.json()["items"]) == 1000
                pages += 1

    loops = [asyncio.create_task(expensive(n)) for n in range(8)]
    try:
        for i in range(8):
            assert (await live.client.get("/v1/health")).status_code == 200
            assert (await live.client.get(f"/v1/state/big/k{i}")).status_code == 200
            assert (await live.client.get("/v1/events", params={"after": head - 10})).status_code == 200
            write = await live.client.put(f"/v1/state/small/k{i}", json={"i": i})
            assert write.status_code == 201
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loops), 60 * SECOND)
    assert pages >= 8  # the expensive reads were running meanwhile
