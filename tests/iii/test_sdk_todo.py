"""The todo pattern end to end with the real iii SDKs (npm 0.9.0, npm latest, PyPI) as child processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from ripple import Store
from ripple.iii.server import IIIServer
from tests.conftest import SECOND
from tests.iii.conftest import LogWatch, WorkerProcess, start_worker

ROUTES = 5
FUNCTIONS = ("todos::create", "todos::list", "todos::toggle", "todos::delete", "todos::get-metrics")


async def ready(server: IIIServer, proc: WorkerProcess) -> None:
    """Wait until the worker registered its routes and both state triggers."""
    registry = server.engine.registry

    def done() -> bool:
        return (
            sum(1 for _ in registry.of_type("http")) == ROUTES
            and sum(1 for _ in registry.of_type("state")) == 2
            and all(f in registry.functions for f in (*FUNCTIONS, "todos::on-change", "todos::update-metrics"))
        )

    try:
        await server.engine.wait_until(done, 30 * SECOND)
    except TimeoutError:
        pytest.fail(f"the worker never registered everything; its output:\n{proc.output()}")


def body(response: httpx.Response) -> Any:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()


async def next_push(ws: Any) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10 * SECOND))
    return frame


async def run_todo_scenario(store: Store, server: IIIServer, proc: WorkerProcess) -> None:
    watch = LogWatch(store)
    try:
        await ready(server, proc)
        stream_url = f"ws://127.0.0.1:{server.stream_port}/stream/todos-live/all"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=20 * SECOND) as http:
            client = await websockets.connect(stream_url)
            sync = await next_push(client)
            assert sync["event"] == {"type": "sync", "data": []}

            created = []
            for title in ("milk", "eggs", "bread"):
                r = await http.post("/todos", json={"title": title})
                assert r.status_code in (200, 201), r.text
                todo = body(r)
                assert todo["title"] == title and todo["completed"] is False
                created.append(todo)
            ids = [t["id"] for t in created]
            assert len(set(ids)) == 3

            pushes = [await next_push(client) for _ in range(3)]
            assert [p["event"]["event"]["data"]["action"] for p in pushes] == ["created"] * 3
            assert [p["event"]["event"]["data"]["key"] for p in pushes] == ids
            assert all(p["event"]["event"]["type"] == "todo_changed" for p in pushes)
            assert all(p["streamName"] == "todos-live" and p["groupId"] == "all" for p in pushes)
            last_offset = pushes[-1]["offset"]

            r = await http.get("/todos")
            assert r.status_code == 200
            assert [t["id"] for t in body(r)] == ids  # first-insert order

            # The client drops; while it is away a todo is toggled and one is deleted.
            await client.close()
            r = await http.post("/todos/toggle", json={"id": ids[0]})
            assert r.status_code == 200 and body(r) == {"id": ids[0], "completed": True}
            r = await http.post("/todos/delete", json={"id": ids[1]})
            assert r.status_code == 200 and body(r) == {"deleted": ids[1]}
            await watch.wait_for(lambda e: e.kind == "stream" and e.new_value["action"] == "deleted")

            # It comes back with ?after= and gets exactly what it missed, then live pushes.
            client = await websockets.connect(f"{stream_url}?after={last_offset}")
            assert (await next_push(client))["event"]["type"] == "sync"
            missed = [await next_push(client) for _ in range(2)]
            assert [(m["event"]["event"]["data"]["action"], m["event"]["event"]["data"]["key"]) for m in missed] == [
                ("updated", ids[0]),
                ("deleted", ids[1]),
            ]
            assert missed[0]["offset"] > last_offset and missed[1]["offset"] > missed[0]["offset"]
            assert missed[0]["event"]["event"]["data"]["todo"]["completed"] is True
            assert missed[1]["event"]["event"]["data"]["todo"] is None
            r = await http.post("/todos/toggle", json={"id": ids[2]})
            assert r.status_code == 200
            live = await next_push(client)
            assert live["event"]["event"]["data"]["key"] == ids[2] and live["offset"] > missed[1]["offset"]
            await client.close()

            # Metrics: 3 created, 1 deleted (not completed), 2 toggled to completed → total 2, completed 2.
            await watch.wait_for(lambda e: e.scope == "todo-metrics" and e.new_value == {"total": 2, "completed": 2})
            r = await http.get("/todos/metrics")
            assert r.status_code == 200 and body(r) == {"total": 2, "completed": 2}
            r = await http.get("/todos")
            assert sorted(t["id"] for t in body(r)) == sorted([ids[0], ids[2]])

        # Every iii state write is a logged event, in order: 3 creates, 2 updates, 1 delete of todos.
        events = await store.read_events(0, 1000, kind="state", scopes=["todos"])
        assert [(e.event_type, e.key) for e in events] == [
            ("created", ids[0]),
            ("created", ids[1]),
            ("created", ids[2]),
            ("updated", ids[0]),
            ("deleted", ids[1]),
            ("updated", ids[2]),
        ]
        metric_events = await store.read_events(0, 1000, kind="state", scopes=["todo-metrics"])
        assert len(metric_events) == 6  # one per todo change
        assert all(e.meta.cause is not None for e in metric_events)  # tagged with the change that caused them
        sends = await store.read_events(0, 1000, kind="stream", scopes=["todos-live"])
        assert len(sends) == 6 and all(e.event_type == "todo_changed" for e in sends)
    finally:
        watch.close()


@pytest.mark.parametrize("name", ["node-0.9.0", "node-latest", "python"])
async def test_todo_worker_end_to_end(name: str, store: Store, iii: IIIServer, tmp_path: Path) -> None:
    proc = await start_worker(name, iii.worker_port, tmp_path)
    try:
        await run_todo_scenario(store, iii, proc)
    finally:
        await proc.stop()


@pytest.mark.parametrize("name", ["node-latest", "python"])
async def test_engine_conformant_workers_run_strict(
    name: str, store: Store, strict_iii: IIIServer, tmp_path: Path
) -> None:
    """The workers that follow the engine's shapes need none of R-3..R-5."""
    proc = await start_worker(name, strict_iii.worker_port, tmp_path)
    try:
        await run_todo_scenario(store, strict_iii, proc)
    finally:
        await proc.stop()


async def test_reference_worker_needs_compat_rules(store: Store, strict_iii: IIIServer, tmp_path: Path) -> None:
    """Under --iii-strict the 0.9 reference pattern misbehaves exactly as on the engine (III-PROTOCOL §7)."""
    proc = await start_worker("node-0.9.0", strict_iii.worker_port, tmp_path)
    try:
        await ready(strict_iii, proc)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{strict_iii.http_port}") as http:
            r = await http.post("/todos", json={"title": "milk"})
            assert r.status_code == 200 and r.json() == {}  # a raw return value is not an ApiResponse: 200 {}
        todos = await store.list("todos")
        assert len(todos.items) == 1 and "title" not in todos.items[0].value  # data.title was undefined
    finally:
        await proc.stop()


async def test_worker_killed_mid_call(store: Store, iii: IIIServer, tmp_path: Path) -> None:
    """A worker killed while it handles a request: the request fails at once, its routes go, others keep working."""
    script = tmp_path / "hang.mjs"
    script.write_text(
        """
import { registerWorker } from 'iii-sdk'
const iii = registerWorker(process.env.III_ENGINE_URL, { workerName: 'hang' })
iii.registerFunction('hang::forever', async () => new Promise(() => {}))
iii.registerTrigger({ type: 'http', function_id: 'hang::forever', config: { api_path: '/hang', http_method: 'GET' } })
"""
    )
    proc = await start_worker("node-latest", iii.worker_port, tmp_path, script=script)
    try:
        await iii.engine.wait_until(lambda: "hang::forever" in iii.engine.registry.functions, 30 * SECOND)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{iii.http_port}", timeout=20 * SECOND) as http:
            request = asyncio.create_task(http.get("/hang"))
            worker = next(iter(iii.engine.workers.values()))
            await iii.engine.wait_until(lambda: bool(worker.pending), 10 * SECOND)  # the call reached the worker
            await proc.kill()
            r = await asyncio.wait_for(request, 5 * SECOND)  # well before the 5 s call timeout of this server
            assert r.status_code == 500
            assert r.json()["error"]["code"] == "worker_disconnected"
            await iii.engine.wait_until(lambda: not iii.engine.registry.functions, 5 * SECOND)
            r = await http.get("/hang")
            assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
        assert await store.set("still", "works", 1)
    finally:
        await proc.stop()


async def test_python_worker_reattaches_without_duplicates(store: Store, iii: IIIServer, tmp_path: Path) -> None:
    """Cut the worker's connection: the SDK reconnects, reattaches and replays the same trigger ids."""
    proc = await start_worker("python", iii.worker_port, tmp_path)
    watch = LogWatch(store)
    try:
        await ready(iii, proc)
        trigger_ids = set(iii.engine.registry.triggers)
        first = next(iter(iii.engine.workers.values()))
        await first.close()  # the server drops the connection
        await iii.engine.wait_until(
            lambda: (
                bool(iii.engine.workers)
                and first.id not in iii.engine.workers
                and len(iii.engine.registry.triggers) == 7
            ),
            30 * SECOND,
        )
        assert set(iii.engine.registry.triggers) == trigger_ids
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{iii.http_port}", timeout=20 * SECOND) as http:
            r = await http.post("/todos", json={"title": "again"})
            assert r.status_code == 201, r.text
        await watch.wait_for(lambda e: e.scope == "todo-metrics" and e.new_value == {"total": 1})
        await watch.wait_for(lambda e: e.kind == "stream")
        # Exactly one push and one metrics update: the replayed triggers did not double up.
        assert len(await store.read_events(0, 100, kind="stream")) == 1
        assert len(await store.read_events(0, 100, scopes=["todo-metrics"])) == 1
    finally:
        watch.close()
        await proc.stop()
