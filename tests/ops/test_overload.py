"""Overload: with the writer stalled and its queue full, writes get 503 ``overloaded`` with ``Retry-After``, health
says ``degraded`` with the reason, the metrics show it; once the writer moves again every queued write commits and
the server recovers. The writer is stalled for real: a transaction hook (the commit bus) blocks the writer thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ripple import Store
from tests.conftest import SECOND
from tests.http.conftest import JSON, error_of, start_server, stop_server
from tests.ops.helpers import scrape

MAX_QUEUE = 3


class Stall:
    """A transaction hook that holds the writer thread inside the first group's transaction until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.armed = True

    def __call__(self, txn: Any, events: Any) -> None:
        if self.armed:
            self.armed = False
            self.entered.set()
            self.release.wait(30 * SECOND)


@pytest.fixture
async def small_queue(tmp_path: Path) -> AsyncIterator[tuple[Store, httpx.AsyncClient]]:
    async with Store.open(tmp_path / "o.db", max_queue=MAX_QUEUE) as store:
        server, task = await start_server(store)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30 * SECOND) as client:
                yield store, client
        finally:
            await stop_server(server, task)


async def test_a_full_queue_answers_503_with_retry_after_and_recovers(
    small_queue: tuple[Store, httpx.AsyncClient],
) -> None:
    store, client = small_queue
    stall = Stall()
    remove = store.commits.add_txn_hook(stall)
    try:
        first = asyncio.ensure_future(client.put("/v1/state/q/first", json=0, headers=JSON))
        assert await asyncio.to_thread(stall.entered.wait, 10 * SECOND)  # the writer thread is now stuck
        queued = [asyncio.ensure_future(client.put(f"/v1/state/q/k{i}", json=i, headers=JSON))
                  for i in range(MAX_QUEUE)]
        async with asyncio.timeout(10 * SECOND):
            while store.queue_depth < MAX_QUEUE:  # the queued PUTs reach the writer's queue (no event tells)
                await asyncio.wait(queued, timeout=0.05 * SECOND)  # sleep-ok: bounded poll of requests in flight
        refused = await client.put("/v1/state/q/late", json=1, headers=JSON)
        error_of(refused, 503, "overloaded")
        assert refused.headers["retry-after"] == "1"
        health = (await client.get("/v1/health")).json()
        assert health["status"] == "degraded"
        assert [r.split(":")[0] for r in health["reasons"]] == ["overloaded"], health
        m = await scrape(client)
        assert m.value("ripple_writer_overloaded") == 1
        assert m.value("ripple_writer_queue_depth") == MAX_QUEUE
        assert m.value("ripple_writes_total", op="set", outcome="overloaded") == 1
    finally:
        stall.release.set()
        remove()
    answers = await asyncio.wait_for(asyncio.gather(first, *queued), 10 * SECOND)
    assert [a.status_code for a in answers] == [201] * (1 + MAX_QUEUE)  # nothing queued was lost
    assert store.head == 1 + MAX_QUEUE

    # recovered: the queue drained, health is ok, writes are accepted again
    health = (await client.get("/v1/health")).json()
    assert health["status"] == "ok" and health["reasons"] == [], health
    assert (await client.put("/v1/state/q/late", json=1, headers=JSON)).status_code == 201
    m = await scrape(client)
    assert m.value("ripple_writer_overloaded") == 0
    assert m.value("ripple_writer_overload_episodes_total") == 1
