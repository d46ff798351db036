"""Fixtures for the iii tests: a Store with an IIIServer on free ports, a raw protocol client, SDK workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from ripple import Event, Store
from ripple.iii.server import IIIServer
from tests.conftest import ROOT, SECOND

EXAMPLES = ROOT / "examples" / "iii-todo"
SDK_DIR = ROOT / ".iii-sdk"
NODE = shutil.which("node")


class RawWorker:
    """A worker that speaks the iii protocol by hand over a real WebSocket."""

    def __init__(self, ws: ClientConnection, registered: dict[str, Any]) -> None:
        self.ws = ws
        self.registered = registered
        self.worker_id: str = registered["worker_id"]
        self.token: str = registered["reattach_token"]
        self.inbox: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, port: int, path: str = "/") -> RawWorker:
        ws = await websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None)
        first = json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND))
        assert first["type"] == "workerregistered", first
        return cls(ws, first)

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        if self.inbox:
            return self.inbox.pop(0)
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), within * SECOND))
        return frame

    async def expect(self, predicate: Callable[[dict[str, Any]], bool], within: float = 5.0) -> dict[str, Any]:
        """The first frame matching ``predicate``; others are kept for later ``recv`` calls."""
        for i, frame in enumerate(self.inbox):
            if predicate(frame):
                return self.inbox.pop(i)
        async with asyncio.timeout(within * SECOND):
            while True:
                frame = json.loads(await self.ws.recv())
                if predicate(frame):
                    return cast(dict[str, Any], frame)
                self.inbox.append(frame)

    async def call(self, function_id: str, data: Any, invocation_id: str | None = None) -> dict[str, Any]:
        """Invoke a function and return its ``invocationresult`` frame."""
        iid = invocation_id or os.urandom(8).hex()
        await self.send(type="invokefunction", invocation_id=iid, function_id=function_id, data=data)
        return await self.expect(lambda f: f.get("type") == "invocationresult" and f.get("invocation_id") == iid)

    async def result(self, function_id: str, data: Any) -> Any:
        reply = await self.call(function_id, data)
        assert "error" not in reply or reply["error"] is None, reply
        return reply.get("result")

    async def register(self, function_id: str) -> None:
        await self.send(type="registerfunction", id=function_id)

    async def trigger(self, trigger_id: str, trigger_type: str, function_id: str, config: Any) -> None:
        await self.send(
            type="registertrigger", id=trigger_id, trigger_type=trigger_type, function_id=function_id, config=config
        )

    async def answer(self, invoke: dict[str, Any], result: Any) -> None:
        await self.send(
            type="invocationresult",
            invocation_id=invoke["invocation_id"],
            function_id=invoke["function_id"],
            result=result,
        )

    async def close(self) -> None:
        await self.ws.close()


class LogWatch:
    """Committed events as they happen (a writer listener feeding a queue), to wait on without polling."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.seen: list[Event] = []
        self._unsubscribe = store.commits.subscribe(self._on_commit)

    def _on_commit(self, events: list[Event]) -> None:
        for event in events:
            self.queue.put_nowait(event)

    async def wait_for(self, predicate: Callable[[Event], bool], within: float = 10.0) -> Event:
        for event in self.seen:
            if predicate(event):
                self.seen.remove(event)
                return event
        async with asyncio.timeout(within * SECOND):
            while True:
                event = await self.queue.get()
                if predicate(event):
                    return event
                self.seen.append(event)

    def close(self) -> None:
        self._unsubscribe()


@pytest.fixture
async def iii(store: Store) -> AsyncIterator[IIIServer]:
    server = IIIServer(store, worker_port=0, http_port=0, stream_port=0, call_timeout=5 * SECOND)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def strict_iii(store: Store) -> AsyncIterator[IIIServer]:
    server = IIIServer(store, worker_port=0, http_port=0, stream_port=0, strict=True, call_timeout=5 * SECOND)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def worker(iii: IIIServer) -> AsyncIterator[RawWorker]:
    w = await RawWorker.connect(iii.worker_port)
    try:
        yield w
    finally:
        await w.close()


@pytest.fixture
async def http(iii: IIIServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{iii.http_port}", timeout=10 * SECOND) as client:
        yield client


@pytest.fixture
def watch(store: Store) -> Any:
    w = LogWatch(store)
    yield w
    w.close()


# ---- real SDK workers -------------------------------------------------------------------------------------------

WORKERS = {
    # name: (runtime, sdk folder under .iii-sdk, example file)
    "node-0.9.0": ("node", "0.9.0", EXAMPLES / "node" / "reactive-backend.mjs"),
    "node-latest": ("node", "latest", EXAMPLES / "node-latest" / "todo-worker.mjs"),
    "python": ("python", None, EXAMPLES / "python" / "todo_worker.py"),
}


def require_sdk(name: str) -> None:
    runtime, folder, _ = WORKERS[name]
    if runtime == "node":
        if NODE is None:
            pytest.skip("node is not installed: the Node iii SDK tests need node and npm (.ci/install-extras)")
        if not (SDK_DIR / str(folder) / "node_modules" / "iii-sdk" / "package.json").is_file():
            pytest.fail(f"npm iii-sdk is missing from {SDK_DIR / str(folder)}: run .ci/install-extras")
    else:
        try:
            import iii  # type: ignore[import-untyped]  # noqa: F401
        except ImportError:
            pytest.fail("the PyPI iii-sdk is missing: pip install -e '.[dev]'")


class WorkerProcess:
    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 5 * SECOND)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()


async def start_worker(name: str, worker_port: int, tmp: Path, script: Path | None = None, *,
                       query: str = "", env: dict[str, str] | None = None) -> WorkerProcess:
    """Run an example worker (or ``script``) on its SDK as a child process, pointed at ``worker_port`` (the engine
    URL with ``query``, e.g. ``?token=…``), with ``env`` added to its environment."""
    require_sdk(name)
    runtime, folder, example = WORKERS[name]
    source = script or example
    run_dir = tmp / f"worker-{name}-{os.urandom(3).hex()}"
    run_dir.mkdir()
    url = f"ws://127.0.0.1:{worker_port}/{query}"
    env = dict(os.environ, III_ENGINE_URL=url, III_URL=url, **(env or {}))
    if runtime == "node":
        # Node resolves `iii-sdk` from the script's folder: a copy next to a link to that SDK version's modules.
        (run_dir / "node_modules").symlink_to(SDK_DIR / str(folder) / "node_modules")
        (run_dir / "package.json").write_text('{"type": "module"}')
        target = run_dir / source.name
        shutil.copy(source, target)
        argv = [str(NODE), str(target)]
    else:
        argv = [sys.executable, str(source)]
        env["PYTHONPATH"] = str(ROOT)
    log_path = run_dir / "output.log"
    with log_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=run_dir, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL
        )
    return WorkerProcess(proc, log_path)
