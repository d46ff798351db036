"""The todo example served over HTTP with values in scope ``todos`` that are not todos (the REST API writes any JSON
there): no route answers 500 for data; ``GET /todos`` skips such values and counts them in ``Todos-Skipped``;
``POST /todos/toggle`` on one is a 422 naming the key; and the reaction's counters (``/todos/metrics``) never drift
from the ``todo_stats`` projection, under mixed writes of todos and other values."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.todo import setup
from ripple import Store
from tests.conftest import SECOND
from tests.http.conftest import JSON, Live, error_of, start_server, stop_server

NOT_TODOS: list[Any] = [5, {"foo": 1}, {"title": "buy milk"}, [1], "x", {"id": "y", "title": 1, "completed": False,
                                                                          "created_at": "2026"}]


@pytest.fixture
async def todo(tmp_path: Path) -> AsyncIterator[Live]:
    """A live server with the whole example: reaction, projection and routes."""
    async with Store.open(tmp_path / "todo.db") as store:
        setup(store)
        server, task = await start_server(store)
        url = f"http://127.0.0.1:{server.port}"
        try:
            async with httpx.AsyncClient(base_url=url, timeout=10 * SECOND) as client:
                yield Live(store, client, server, url)
        finally:
            await stop_server(server, task)


async def settled(live: Live) -> dict[str, int]:
    """Wait for the reaction; check counters == todo_stats == the todos ``GET /todos`` lists; return them."""
    await asyncio.wait_for(live.store.reactions.wait_idle(), 30 * SECOND)
    metrics = (await live.client.get("/todos/metrics")).json()
    stats = (await live.client.get("/v1/projections/todo_stats")).json()["data"]
    todos = (await live.client.get("/todos")).json()
    done = sum(t["completed"] for t in todos)
    assert metrics == stats == {"total": len(todos), "completed": done, "active": len(todos) - done}
    return dict(stats)


async def test_values_that_are_not_todos_are_skipped_and_counted(todo: Live) -> None:
    c = todo.client
    ids = [(await c.post("/todos", json={"title": f"t{i}"})).json()["id"] for i in range(3)]
    for i, value in enumerate(NOT_TODOS):
        assert (await c.put(f"/v1/state/todos/x{i}", json=value)).status_code == 201
    listed = await c.get("/todos")
    assert listed.status_code == 200, listed.text
    assert [t["id"] for t in listed.json()] == ids
    assert listed.headers["todos-skipped"] == str(len(NOT_TODOS))
    head = todo.store.head
    for i in range(len(NOT_TODOS)):
        error = error_of(await c.post("/todos/toggle", json={"id": f"x{i}"}), 422)
        assert f"todos/x{i}" in error["message"] and error["detail"]["key"] == f"x{i}", error
    await todo.unchanged(head)
    assert (await c.post("/todos/delete", json={"id": "x0"})).status_code == 200  # a way to clean up
    assert (await c.get("/todos")).headers["todos-skipped"] == str(len(NOT_TODOS) - 1)
    assert await settled(todo) == {"total": 3, "completed": 0, "active": 3}


async def test_counters_never_drift_from_todo_stats_under_mixed_writes(todo: Live) -> None:
    c, rng = todo.client, random.Random(11)
    keys: list[str] = []

    async def one() -> None:
        roll = rng.random()
        if roll < 0.3 or not keys:
            keys.append((await c.post("/todos", json={"title": "t"})).json()["id"])
            return
        key = rng.choice(keys)
        if roll < 0.55:
            r = await c.post("/todos/toggle", json={"id": key})
            assert r.status_code in (200, 404, 412, 422), r.text
        elif roll < 0.75:  # a todo becomes something else (or stays something else)
            assert (await c.put(f"/v1/state/todos/{key}", json=rng.choice(NOT_TODOS))).status_code in (200, 201)
        elif roll < 0.85:  # ... and something else becomes a todo again, written by hand
            value = {"id": key, "title": "by hand", "completed": rng.random() < 0.5, "created_at": "2026-01-01"}
            assert (await c.put(f"/v1/state/todos/{key}", json=value)).status_code in (200, 201)
        else:
            assert (await c.post("/todos/delete", json={"id": key})).status_code in (200, 404)

    for _ in range(25):
        await asyncio.gather(*(one() for _ in range(8)))
    stats = await settled(todo)
    assert stats["total"] > 0
    rebuilt = await asyncio.wait_for(todo.store.rebuild("todo_stats"), 30 * SECOND)
    assert rebuilt.data == stats


async def test_metrics_over_counters_that_are_not_counters_is_422(todo: Live) -> None:
    c = todo.client
    assert (await c.put("/v1/state/todo-metrics/global", content=b"5", headers=JSON)).status_code == 201
    error = error_of(await c.get("/todos/metrics"), 422)
    assert "todo-metrics/global" in error["message"]
