"""A real server for subscription tests: a Store, a minimal Litestar app and ``uvicorn.Server`` on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import socket
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.config import WSProtocolType
from websockets.asyncio.client import ClientConnection, connect

from ripple import Store
from ripple.http.app import create_app
from ripple.http.ws import close_subscribers
from ripple.store.sqlite import Durability
from ripple.subscriptions.hub import HubSettings
from tests.conftest import SECOND


def raise_nofile(want: int = 8192) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(want, hard) if hard != resource.RLIM_INFINITY else want
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the test runner keeps SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class LiveServer:
    """``await LiveServer(path).start()``; ``stop()`` closes subscribers with 1001 first, like ``ripple serve``."""

    def __init__(
        self,
        path: Path | str,
        *,
        settings: HubSettings | None = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        ws: WSProtocolType = "websockets-sansio",
        port: int = 0,
        durability: Durability = "full",
        sndbuf: int | None = None,
    ) -> None:
        self.durability = durability
        self.sndbuf = sndbuf  # a small kernel send buffer makes a stalled client back up into the server quickly
        self.path = path
        self.settings = settings
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.ws = ws
        self.port = port
        self.store: Store | None = None
        self.server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> LiveServer:
        self.store = await Store.open(
            self.path,
            subscription_settings=self.settings,
            durability=self.durability,
        )
        app = create_app(self.store)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            ws=self.ws,
            ws_ping_interval=self.ping_interval,
            ws_ping_timeout=self.ping_timeout,
            ws_per_message_deflate=False,
            lifespan="on",
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        self.server = QuietServer(config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)  # inherited by accepted sockets
        sock.bind(("127.0.0.1", self.port))
        sock.listen(2048)
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]))
        async with asyncio.timeout(10 * SECOND):
            while not self.server.started:
                if self._task.done():
                    await self._task
                await asyncio.sleep(0.005)  # sleep-ok: uvicorn exposes no started event
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def cut_one(self, rng: random.Random) -> bool:
        """Abort one subscriber's connection from the server side (a crash or a proxy cut)."""
        assert self.store is not None
        sessions = [s for s in self.store.hub.sessions if getattr(s, "proto", None) is not None]
        if not sessions:
            return False
        rng.choice(sessions).proto.transport.abort()  # type: ignore[attr-defined]
        return True

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.store is not None:
            await close_subscribers(self.store)
        if self.server is not None and self._task is not None:
            self.server.should_exit = True
            await asyncio.wait_for(self._task, 15 * SECOND)
        if self.store is not None:
            await self.store.close()


@pytest.fixture
async def live(location: Path | str) -> AsyncIterator[LiveServer]:
    server = await LiveServer(location, settings=HubSettings(heartbeat_interval=0.5)).start()
    try:
        yield server
    finally:
        await server.stop()


async def ws_connect(url: str, **kw: Any) -> ClientConnection:
    return await connect(url, max_size=None, compression=None, open_timeout=10 * SECOND, **kw)


async def recv_json(ws: ClientConnection, wait: float = 5.0) -> dict[str, Any]:
    data = await asyncio.wait_for(ws.recv(), wait * SECOND)
    result: dict[str, Any] = json.loads(data)
    return result


async def recv_events(
    ws: ClientConnection, upto: int, wait: float = 10.0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read frames until an event with offset >= upto; returns (events, other frames)."""
    events: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    async with asyncio.timeout(wait * SECOND):
        while not events or events[-1]["offset"] < upto:
            frame = json.loads(await ws.recv())
            if frame["type"] == "event":
                events.append(frame)
            elif frame["type"] == "events":
                events.extend(frame["events"])
            else:
                other.append(frame)
    return events, other
