"""``GET /metrics`` moves as it should under a scripted load: writes, a refused write, a stalled subscriber, a failing
reaction, a projection, an iii worker sending a bad frame. A real server on a free port; the text is parsed with
prometheus_client's parser."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from ripple import Store
from ripple.iii.server import IIIServer
from ripple.subscriptions.cursor import Limits
from tests.conftest import ROOT, SECOND
from tests.http.conftest import JSON, start_server, stop_server
from tests.ops.helpers import Scrape, scrape

OPERATIONS = ROOT / "docs" / "operations.md"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Store, httpx.AsyncClient, IIIServer]]:
    async with Store.open(tmp_path / "m.db") as store:
        async with IIIServer(store, worker_port=0, http_port=0, stream_port=0) as iii:
            server, task = await start_server(store, iii_engine=iii.engine)
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10 * SECOND) as c:
                    yield store, c, iii
            finally:
                await stop_server(server, task)


async def test_metrics_follow_a_scripted_load(served: tuple[Store, httpx.AsyncClient, IIIServer]) -> None:
    store, client, iii = served
    failures: list[int] = []

    @store.on_change("boom")
    async def explode(event: Any) -> None:
        failures.append(event.offset)
        raise RuntimeError("this reaction always fails")

    before = await scrape(client)
    assert before.value("ripple_head_offset") == 0
    assert before.types["ripple_group_commit_seconds"] == "histogram"

    # a stalled subscriber: attached, never read, a buffer of 5 events
    stalled = await store.subscribe(scopes=["todos"], limits=Limits(max_buffer_events=5)).start()
    for i in range(20):
        assert (await client.put(f"/v1/state/todos/t{i}", json={"n": i}, headers=JSON)).status_code == 201
    refused = await client.put("/v1/state/todos/t0", json={"n": 0}, headers={**JSON, "If-Match": '"999"'})
    assert refused.status_code == 412
    for i in range(3):
        await client.put(f"/v1/state/boom/b{i}", json={"n": i}, headers=JSON)
    assert (await client.post("/v1/streams/chat/room", json={"type": "said", "data": "hi"})).status_code == 201
    await asyncio.wait_for(store.reactions.wait_idle(), 10 * SECOND)
    await asyncio.wait_for(store.projections.wait_caught_up(), 10 * SECOND)

    # an iii worker that sends a frame that is not JSON
    worker = await websockets.connect(f"ws://127.0.0.1:{iii.worker_port}")
    try:
        assert json.loads(await asyncio.wait_for(worker.recv(), 5 * SECOND))["type"] == "workerregistered"
        await worker.send("{not json")
        assert json.loads(await asyncio.wait_for(worker.recv(), 5 * SECOND))["type"] == "error"
        m = await scrape(client)
        health = (await client.get("/v1/health")).json()
    finally:
        await worker.close()
        await stalled.aclose()

    assert m.value("ripple_head_offset") == store.head == 24
    assert m.value("ripple_writes_total", op="set", outcome="ok") == 23
    assert m.value("ripple_writes_total", op="send", outcome="ok") == 1
    assert m.value("ripple_writes_total", op="set", outcome="precondition_failed") == 1
    assert m.value("ripple_group_commit_events_sum") == 24
    assert m.value("ripple_group_commit_events_count") == store.commit_count
    assert m.value("ripple_group_commit_seconds_count") == store.commit_count
    assert m.value("ripple_group_commit_seconds_bucket", le="+Inf") == store.commit_count

    # the stalled subscriber overflowed and is 20 events behind; the reaction failed on each of its 3 events
    assert m.value("ripple_follower_overflows_total", kind="subscriber") == 1
    assert m.value("ripple_followers", kind="subscriber") == 1
    assert stalled.after == 0
    assert m.value("ripple_follower_lag_events_max", kind="subscriber") == store.head
    label = explode.__qualname__
    assert len(failures) == 3
    assert m.value("ripple_reaction_failures_total", reaction=label) == 3
    assert m.value("ripple_reaction_handled_total", reaction=label) == 3
    assert m.value("ripple_reaction_lag_events", reaction=label) == 0
    assert m.value("ripple_followers", kind="reaction") == 1

    # the built-in metrics projection is caught up and ok
    assert m.value("ripple_projection_lag_events", projection="metrics") == 0
    assert m.value("ripple_projection_status", projection="metrics", status="ok") == 1
    assert m.value("ripple_projection_status", projection="metrics", status="failed") == 0

    # HTTP requests by route and status; the database file and its WAL
    put_route = "/v1/state/{scope_name}/{key}"
    assert m.value("ripple_http_requests_total", method="PUT", route=put_route, status="201") == 23
    assert m.value("ripple_http_requests_total", method="PUT", route=put_route, status="412") == 1
    assert m.value("ripple_http_request_duration_seconds_count") >= 26
    assert m.value("ripple_db_file_bytes") > 0 and m.value("ripple_db_wal_bytes") > 0

    # the iii engine: one worker connected, one bad frame, in /metrics and in /v1/health
    assert m.value("ripple_iii_workers") == 1
    assert m.value("ripple_iii_bad_frames_total", kind="invalid_json") == 1
    assert health["counters"]["iii.workers"] == 1
    assert health["counters"]["iii.bad_frames.invalid_json"] == 1
    assert health["counters"]["reaction_failures"] == 3 and health["status"] == "ok"

    # every metric is documented with its meaning
    documented = OPERATIONS.read_text()
    undocumented = [name for name in m.types if not name.startswith("process_") and f"`{name}" not in documented]
    assert undocumented == []


async def test_websocket_subscribers_are_counted_by_endpoint(
    served: tuple[Store, httpx.AsyncClient, IIIServer],
) -> None:
    store, client, _ = served
    base = str(client.base_url).replace("http://", "ws://")
    async with websockets.connect(f"{base}/v1/subscribe?scope=todos") as one, \
            websockets.connect(f"{base}/v1/streams/chat/room") as two:
        for ws in (one, two):
            assert json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND))["type"] == "hello"
        m = await scrape(client)
        assert m.value("ripple_websocket_connections", endpoint="subscribe") == 1
        assert m.value("ripple_websocket_connections", endpoint="streams") == 1
        assert m.value("ripple_followers", kind="websocket") == 2
        await client.put("/v1/state/todos/a", json=1, headers=JSON)
        frame: dict[str, Any] = {"type": "live"}
        while frame["type"] == "live":
            frame = json.loads(await asyncio.wait_for(one.recv(), 5 * SECOND))
        assert frame["type"] == "event" and frame["offset"] == 1
    await asyncio.wait_for(store.hub.wait_no_sessions(), 5 * SECOND)
    m = await scrape(client)
    assert m.value("ripple_websocket_connections", endpoint="subscribe") == 0
    assert m.value("ripple_websocket_sessions_total", route="/v1/subscribe") == 1


async def test_no_metrics_route_when_turned_off(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "n.db") as store:
        server, task = await start_server(store, metrics=False)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
                response = await client.get("/metrics")
                assert response.status_code == 404
                assert response.headers["x-request-id"]
        finally:
            await stop_server(server, task)


def test_scrape_helper_reads_labels() -> None:
    from tests.ops.helpers import parse

    s: Scrape = parse('# TYPE x counter\nx_total{a="1"} 2.0\n')
    assert s.value("x_total", a="1") == 2.0
