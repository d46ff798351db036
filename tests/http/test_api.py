"""The rest of DESIGN §8 against a real uvicorn server: batch, streams, events, projections, health, limits, the
framework's own errors, overload, a full disk, concurrency, OpenAPI and the todo controller."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from ripple import Store
from ripple.store.writer import WriteTxn
from tests.conftest import SECOND, count
from tests.http.conftest import JSON, Live, error_of, start_server, stop_server

# ---- batch ---------------------------------------------------------------------------------------------------


@pytest.mark.conformance
async def test_batch(live: Live) -> None:
    c = live.client
    await c.put("/v1/state/s/gone", json=0)
    commands = [
        {"op": "set", "scope": "s", "key": "a", "value": {"n": 1}},
        {"op": "update", "scope": "s", "key": "a", "ops": [{"type": "increment", "path": "n", "by": 1}]},
        {"op": "delete", "scope": "s", "key": "gone"},
        {"op": "delete", "scope": "s", "key": "never"},
        {"op": "set", "scope": "t", "key": "b", "value": 1, "expected_offset": 0},
    ]
    r = await c.post("/v1/batch", json={"commands": commands})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x and x["offset"] for x in results] == [2, 3, 4, None, 5]
    assert results[1] == {"old_value": {"n": 1}, "new_value": {"n": 2}, "version": 2, "offset": 3, "errors": []}
    assert results[2] == {"old_value": 0, "offset": 4}
    assert (await c.post("/v1/batch", json={"commands": []})).json() == {"results": []}
    await live.unchanged(5)


@pytest.mark.conformance
async def test_batch_errors_name_the_index(live: Live) -> None:
    c = live.client
    await c.put("/v1/state/s/a", json=1)
    ok = {"op": "set", "scope": "s", "key": "x", "value": 1}
    conflict = {"op": "set", "scope": "s", "key": "a", "value": 2, "expected_offset": 7}
    error = error_of(await c.post("/v1/batch", json={"commands": [ok, conflict]}), 409, "conflict")
    assert error["detail"]["index"] == 1
    bad_name = {"op": "set", "scope": "a/b", "key": "x", "value": 1}
    error = error_of(await c.post("/v1/batch", json={"commands": [ok, ok, bad_name]}), 422, "invalid_name")
    assert error["detail"]["index"] == 2
    bad_op = {"op": "update", "scope": "s", "key": "a", "ops": [{"type": "nope"}]}
    error = error_of(await c.post("/v1/batch", json={"commands": [ok, bad_op]}), 422, "invalid_op")
    assert error["detail"]["index"] == 1
    error = error_of(await c.post("/v1/batch", json={"commands": [{"op": "upsert", "scope": "s", "key": "k"}]}), 422)
    assert error["detail"]["index"] == 0
    null_value = {"op": "set", "scope": "s", "key": "x", "value": None}
    error = error_of(await c.post("/v1/batch", json={"commands": [ok, null_value]}), 422, "invalid_value")
    assert error["detail"]["index"] == 1
    too_many = {"commands": [ok] * 1001}
    error_of(await c.post("/v1/batch", json=too_many), 422)
    error_of(await c.post("/v1/batch", json={"commands": "x"}), 422)
    error_of(await c.post("/v1/batch", content=b'{"commands": [', headers=JSON), 400, "bad_request")
    error_of(await c.post("/v1/batch", content=b"{}", headers={"content-type": "text/json"}), 415)
    await live.unchanged(1)
    idem = {"Idempotency-Key": "batch-1"}
    first = await c.post("/v1/batch", json={"commands": [ok]}, headers=idem)
    second = await c.post("/v1/batch", json={"commands": [ok]}, headers=idem)
    assert first.json() == second.json() and live.store.head == 2


async def test_batch_body_limit_is_8_mib(live: Live) -> None:
    c = live.client
    value = "v" * 500_000
    commands = [{"op": "set", "scope": "big", "key": f"k{i}", "value": value} for i in range(4)]  # ~2 MB body
    r = await c.post("/v1/batch", json={"commands": commands})
    assert r.status_code == 200, r.text[:200]
    huge = json.dumps({"commands": [{"op": "set", "scope": "big", "key": "k", "value": "v" * (9 << 20)}]})
    error_of(await c.post("/v1/batch", content=huge, headers=JSON), 413, "body_too_large")
    error_of(await c.put("/v1/state/big/k", content=json.dumps("v" * (2 << 20)), headers=JSON), 413)
    await live.unchanged(4)


# ---- body limit: announced and streamed ----------------------------------------------------------------------


async def test_oversized_bodies_get_413_without_being_read_whole(live: Live) -> None:
    c = live.client
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'"'
        for _ in range(64):  # up to 4 MiB, chunked: no Content-Length to check up front
            sent += 65536
            yield b"a" * 65536
        yield b'"'

    try:
        r = await c.put("/v1/state/s/k", content=chunks(), headers=JSON)
        error_of(r, 413, "body_too_large")
    except httpx.HTTPError:
        pass  # the server may close the connection while the client is still sending: also a refusal
    assert sent < 4 << 20 or live.store.head == 0
    error = error_of(await c.put("/v1/state/s/k", content=b"1" * ((1 << 20) + 1), headers=JSON), 413)
    assert error["detail"] == {"limit": 1 << 20}
    await live.unchanged(0)
    assert (await c.put("/v1/state/s/k", json="fits")).status_code == 201


async def test_max_body_bytes_is_configurable(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "small.db") as store:
        server, task = await start_server(store, max_body_bytes=100)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as c:
                error_of(await c.put("/v1/state/s/k", json="x" * 200), 413, "body_too_large")
                assert (await c.put("/v1/state/s/k", json="x" * 50)).status_code == 201
        finally:
            await stop_server(server, task)


# ---- framework errors ----------------------------------------------------------------------------------------


async def test_framework_errors_have_the_json_body(live: Live) -> None:
    c = live.client
    error_of(await c.get("/nope"), 404, "not_found")
    error_of(await c.get("/v1/state"), 404, "not_found")
    error_of(await c.post("/v1/projections/metrics"), 405, "method_not_allowed")
    r = await c.delete("/v1/scopes")
    error_of(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]
    error_of(await c.put("/v1/batch", json={}), 405, "method_not_allowed")
    error_of(await c.post("/v1/state/s", json=1), 405, "method_not_allowed")
    error_of(await c.get("/v1/events", params={"after": "x"}), 400, "bad_request")
    await live.unchanged(0)


# ---- streams ---------------------------------------------------------------------------------------------------


@pytest.mark.conformance
async def test_stream_send(live: Live) -> None:
    c = live.client
    r = await c.post("/v1/streams/chat/room/1", json={"type": "msg", "data": {"text": "hi"}, "id": "m1"})
    assert r.status_code == 201 and r.json() == {"offset": 1}
    event = (await c.get("/v1/events")).json()["events"][0]
    assert (event["kind"], event["scope"], event["key"], event["event_type"]) == ("stream", "chat", "room/1", "msg")
    assert event["new_value"] == {"text": "hi"} and event["meta"]["id"] == "m1"
    assert (await c.get("/v1/scopes")).json() == {"groups": []}  # streams change no state
    error_of(await c.post("/v1/streams/ch%2Fat/g", json={"type": "m", "data": 1}), 422, "invalid_name")
    error_of(await c.post("/v1/streams/chat/g", json={"data": 1}), 422)
    error_of(await c.post("/v1/streams/chat/g", json={"type": "m", "data": 1, "extra": 2}), 422)
    error_of(await c.post("/v1/streams/chat/g", content=b"{", headers=JSON), 400, "bad_request")
    error_of(await c.post("/v1/streams/chat/g", content=b"{}"), 415)
    error_of(await c.post("/v1/streams/chat", json={"type": "m"}), 404, "not_found")
    await live.unchanged(1)


# ---- events ----------------------------------------------------------------------------------------------------


@pytest.mark.conformance
async def test_events_pages_and_filters(live: Live) -> None:
    c = live.client
    for i in range(5):
        await c.put(f"/v1/state/{'a' if i % 2 else 'b'}/k{i}", json=i)
    await c.post("/v1/streams/st/g", json={"type": "t", "data": None})
    page = (await c.get("/v1/events", params={"after": 1, "limit": 2})).json()
    assert [e["offset"] for e in page["events"]] == [2, 3] and page["next_after"] == 3 and page["head"] == 6
    assert set(page["events"][0]) >= {"offset", "ts", "kind", "scope", "key", "op", "event_type", "version"}
    page = (await c.get("/v1/events", params={"scope": "a"})).json()
    assert [e["key"] for e in page["events"]] == ["k1", "k3"]
    page = (await c.get("/v1/events", params=[("scope", "a"), ("scope", "st")])).json()
    assert [e["offset"] for e in page["events"]] == [2, 4, 6]
    page = (await c.get("/v1/events", params={"key": "k4"})).json()
    assert [e["offset"] for e in page["events"]] == [5]
    assert [e["offset"] for e in (await c.get("/v1/events", params={"kind": "stream"})).json()["events"]] == [6]
    assert len((await c.get("/v1/events", params={"kind": "state"})).json()["events"]) == 5
    page = (await c.get("/v1/events", params={"after": 6})).json()
    assert page == {"events": [], "next_after": 6, "head": 6}
    error_of(await c.get("/v1/events", params={"after": -1}), 422)
    error_of(await c.get("/v1/events", params={"limit": 0}), 422)
    error_of(await c.get("/v1/events", params={"limit": "many"}), 400, "bad_request")
    error_of(await c.get("/v1/events", params={"kind": "both"}), 400, "bad_request")
    error_of(await c.get("/v1/events", params={"scope": "a/b"}), 422, "invalid_name")
    error_of(await c.get("/v1/events", params={"wait": 1000}), 422)
    error_of(await c.get("/v1/events", params={"wait": "soon"}), 400, "bad_request")
    await live.unchanged(6)


@pytest.mark.conformance
async def test_events_long_poll_wakes_on_commit(live: Live) -> None:
    c = live.client
    await c.put("/v1/state/s/old", json=0)
    started = time.monotonic()
    poll = asyncio.create_task(c.get("/v1/events", params={"after": 1, "wait": 20, "scope": "s"}))
    other = await c.put("/v1/state/other/x", json=1)  # does not match: the poll keeps waiting
    assert other.status_code == 201
    assert not poll.done()
    await c.put("/v1/state/s/new", json=2)
    page = (await asyncio.wait_for(poll, 10 * SECOND)).json()
    assert [e["key"] for e in page["events"]] == ["new"] and page["next_after"] == 3
    assert time.monotonic() - started < 10 * SECOND
    quiet = await c.get("/v1/events", params={"after": 3, "wait": 0.2})
    assert quiet.json() == {"events": [], "next_after": 3, "head": 3}


# ---- projections and health ------------------------------------------------------------------------------------


async def test_unknown_projection_is_404(live: Live) -> None:
    error_of(await live.client.get("/v1/projections/nope"), 404, "not_found")
    error_of(await live.client.post("/v1/projections/nope/rebuild"), 404, "not_found")
    await live.unchanged(0)


@pytest.mark.conformance
async def test_health(live: Live) -> None:
    await live.client.put("/v1/state/s/k", json=1)
    health = (await live.client.get("/v1/health")).json()
    assert health["status"] == "ok" and health["head"] == 1 and health["earliest"] == 1
    assert health["schema_version"] >= 1 and isinstance(health["version"], str)
    assert health["counters"]["refused_cascades"] == 0


# ---- overload and a full disk ----------------------------------------------------------------------------------


async def test_overloaded_writer_answers_503_with_retry_after(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "busy.db", max_queue=2) as store:
        server, task = await start_server(store)
        gate, inside = threading.Event(), threading.Event()

        def block(_txn: WriteTxn) -> None:
            inside.set()
            gate.wait(30 * SECOND)

        try:
            blocker = asyncio.ensure_future(store.writer.run_in_txn(block))
            await asyncio.wait_for(asyncio.to_thread(inside.wait), 10 * SECOND)
            queued = [asyncio.ensure_future(store.set("s", f"q{i}", i)) for i in range(2)]  # the queue is full
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as c:
                r = await c.put("/v1/state/s/k", json=1)
                error_of(r, 503, "overloaded")
                assert int(r.headers["retry-after"]) >= 1
                gate.set()
                await asyncio.wait_for(asyncio.gather(blocker, *queued), 10 * SECOND)
                assert (await c.put("/v1/state/s/k", json=1)).status_code == 201
                assert store.head == 3
        finally:
            gate.set()
            await stop_server(server, task)


async def test_full_database_answers_507(live: Live) -> None:
    store = live.store
    await live.client.put("/v1/state/s/k", json=1)
    pages = await store.writer.call(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    await store.writer.call(lambda conn: conn.execute(f"PRAGMA max_page_count={pages}"))
    r = await live.client.put("/v1/state/s/big", json="x" * 200_000)
    error_of(r, 507, "database_full")
    await live.unchanged(1)
    await store.writer.call(lambda conn: conn.execute("PRAGMA max_page_count=1073741823"))
    assert (await live.client.put("/v1/state/s/big", json="x" * 200_000)).status_code == 201


# ---- concurrency -----------------------------------------------------------------------------------------------


@pytest.mark.conformance
async def test_64_concurrent_clients_lose_no_acknowledged_write(live: Live) -> None:
    per_client = count(10, 200)
    acked: dict[str, int] = {}

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=live.url, timeout=30 * SECOND) as c:
            for i in range(per_client):
                r = await c.put(f"/v1/state/load/c{n}/{i}", json={"n": n, "i": i})
                assert r.status_code == 201, r.text
                acked[f"c{n}/{i}"] = r.json()["offset"]

    await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(64))), 120 * SECOND)
    assert len(acked) == 64 * per_client
    assert sorted(acked.values()) == list(range(1, 64 * per_client + 1))  # gapless, each offset once
    assert live.store.head == 64 * per_client
    for key, offset in acked.items():
        entry = await live.store.entry("load", key)
        assert entry is not None and entry.offset == offset
        n, i = key[1:].split("/")
        assert entry.value == {"n": int(n), "i": int(i)}


# ---- OpenAPI ---------------------------------------------------------------------------------------------------


async def test_openapi_document_validates_and_lists_every_route(live: Live) -> None:
    r = await live.client.get("/schema/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    expected = {
        "/v1/state/{scope_name}/{key}": {"get", "put", "patch", "delete"},
        "/v1/state/{scope_name}": {"get"},
        "/v1/scopes": {"get"},
        "/v1/batch": {"post"},
        "/v1/streams/{stream}/{group}": {"post"},
        "/v1/events": {"get"},
        "/v1/projections": {"get"},
        "/v1/projections/{name}": {"get"},
        "/v1/projections/{name}/rebuild": {"post"},
        "/v1/health": {"get"},
        "/todos": {"get", "post"},
        "/todos/toggle": {"post"},
        "/todos/delete": {"post"},
        "/todos/metrics": {"get"},
    }
    for path, methods in expected.items():
        assert path in doc["paths"], path
        assert methods <= set(doc["paths"][path]), (path, set(doc["paths"][path]))
    ops = doc["paths"]["/v1/state/{scope_name}/{key}"]
    assert ops["patch"]["requestBody"]["content"]["application/json"]["schema"]["title"] == "PatchBody"
    assert "201" in ops["put"]["responses"] and "412" in ops["put"]["responses"]
    batch = doc["paths"]["/v1/batch"]["post"]
    assert batch["requestBody"]["content"]["application/json"]["schema"]["title"] == "BatchBody"
    error_ref = batch["responses"]["409"]["content"]["application/json"]["schema"]["$ref"]
    assert error_ref.endswith("/ErrorBody")
    assert "ErrorBody" in doc["components"]["schemas"] and "Event" in doc["components"]["schemas"]
    assert (await live.client.get("/schema")).status_code == 200


# ---- the todo controller ---------------------------------------------------------------------------------------


async def test_todo_controller(live: Live) -> None:
    c = live.client
    assert (await c.get("/todos/metrics")).json() == {"total": 0, "completed": 0, "active": 0}
    r = await c.post("/todos", json={"title": " buy milk "})
    assert r.status_code == 201
    todo = r.json()
    assert set(todo) == {"id", "title", "completed", "created_at"} and todo["title"] == "buy milk"
    assert (await live.client.get(f"/v1/state/todos/{todo['id']}")).json() == todo
    second = (await c.post("/todos", json={"title": "walk"})).json()
    assert [t["id"] for t in (await c.get("/todos")).json()] == [todo["id"], second["id"]]
    toggled = await c.post("/todos/toggle", json={"id": todo["id"]})
    assert toggled.status_code == 200 and toggled.json()["completed"] is True
    both = await asyncio.gather(*(c.post("/todos/toggle", json={"id": second["id"]}) for _ in range(2)))
    assert all(r.status_code == 200 for r in both)
    assert (await live.store.get("todos", second["id"]))["completed"] is False  # two toggles cancel out
    r = await c.post("/todos/delete", json={"id": todo["id"]})
    assert r.status_code == 200 and r.json() == {"id": todo["id"], "deleted": True}
    head = live.store.head
    error_of(await c.post("/todos/delete", json={"id": todo["id"]}), 404, "not_found")
    error_of(await c.post("/todos/toggle", json={"id": "nope"}), 404, "not_found")
    error_of(await c.post("/todos", json={"title": "   "}), 422)
    error_of(await c.post("/todos", json={"title": 3}), 422)
    error_of(await c.post("/todos", json={"name": "x"}), 422)
    error_of(await c.post("/todos", content=b"{", headers=JSON), 400)
    await live.unchanged(head)
    await live.store.set("todo-metrics", "global", {"total": 1, "completed": 0, "active": 1})
    assert (await c.get("/todos/metrics")).json() == {"total": 1, "completed": 0, "active": 1}


async def test_shutdown_answers_long_polls_and_finishes_in_flight_writes(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "stop.db") as store:
        server, task = await start_server(store)
        gate, inside = threading.Event(), threading.Event()

        def block(_txn: WriteTxn) -> None:
            inside.set()
            gate.wait(30 * SECOND)

        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30 * SECOND) as c:
                poll = asyncio.create_task(c.get("/v1/events", params={"wait": 30}))
                blocker = asyncio.ensure_future(store.writer.run_in_txn(block))
                await asyncio.wait_for(asyncio.to_thread(inside.wait), 10 * SECOND)
                submitted, real_submit = asyncio.Event(), store.writer.submit

                def submit(job: Any) -> Any:  # the real writer, observed: tells when the PUT reached its queue
                    fut = real_submit(job)
                    submitted.set()
                    return fut

                store.writer.submit = submit  # type: ignore[method-assign]
                put = asyncio.create_task(c.put("/v1/state/s/k", json=1))  # in flight behind the blocked writer
                await asyncio.wait_for(submitted.wait(), 10 * SECOND)
                started = time.monotonic()
                server.should_exit = True
                page = (await asyncio.wait_for(poll, 10 * SECOND)).json()
                assert page["events"] == [] and time.monotonic() - started < 10 * SECOND
                assert not put.done()
                gate.set()
                r = await asyncio.wait_for(put, 10 * SECOND)
                assert r.status_code == 201 and r.json()["offset"] == 1
                await blocker
            await asyncio.wait_for(task, 15 * SECOND)
        finally:
            gate.set()
            server.should_exit = True
            await asyncio.wait_for(task, 15 * SECOND)
        assert await store.get("s", "k") == 1
