"""A real uvicorn server on a free port in the test's event loop, and an httpx client talking to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from examples.todo.api import TodoController
from ripple import Store
from ripple.http.app import create_app
from ripple.http.connections import ConnectionLimits, guarded_protocol
from ripple.http.serve import RippleServer
from tests.conftest import SECOND

JSON = {"content-type": "application/json"}


@dataclass
class Live:
    store: Store
    client: httpx.AsyncClient
    server: RippleServer
    url: str

    async def unchanged(self, head: int) -> None:
        """The bad request moved nothing and the server still answers."""
        assert self.store.head == head
        health = await self.client.get("/v1/health")
        assert health.status_code == 200, health.text
        assert health.json()["head"] == head


async def start_server(store: Store, **app_options: Any) -> tuple[RippleServer, asyncio.Task[None]]:
    app = create_app(store, route_handlers=[TodoController], **app_options)
    # ripple serve's HTTP protocol (ripple.http.connections): its answers to unparseable requests are JSON too
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                            http=guarded_protocol(ConnectionLimits()))
    server = RippleServer(config, store)
    task = asyncio.create_task(server.serve())
    ready = asyncio.ensure_future(server.ready.wait())
    done, _ = await asyncio.wait({ready, task}, timeout=10 * SECOND, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        raise RuntimeError(f"the server did not start: {task.exception() if task.done() else 'timeout'}")
    return server, task


async def stop_server(server: RippleServer, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await asyncio.wait_for(task, 15 * SECOND)


@pytest.fixture
async def live(location: Path | str) -> AsyncIterator[Live]:
    async with Store.open(location) as store:
        server, task = await start_server(store)
        url = f"http://127.0.0.1:{server.port}"
        try:
            async with httpx.AsyncClient(base_url=url, timeout=10 * SECOND) as client:
                yield Live(store, client, server, url)
        finally:
            await stop_server(server, task)


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert the DESIGN §8 error body and return its ``error`` object."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "detail"}, error
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error
