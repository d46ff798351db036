"""The published iii SDKs as test drivers: PyPI ``iii-sdk`` in process, npm ``iii-sdk`` 0.22.1 as a child process.

The Python SDK runs its own thread and event loop; its blocking calls go through ``asyncio.to_thread`` and what its
handlers see is handed over through thread-safe :class:`Inbox` queues, so tests wait on events, never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from tests.conftest import SECOND
from tests.iii.conftest import NODE, SDK_DIR


class Inbox:
    """Values handed over from SDK handler threads; :meth:`get` waits without blocking the event loop."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()

    def put(self, value: Any) -> None:
        self._queue.put(value)

    async def get(self, within: float = 10.0) -> Any:
        return await asyncio.to_thread(self._queue.get, True, within * SECOND)

    def empty(self) -> bool:
        return self._queue.empty()


class PyWorker:
    """A connected PyPI SDK worker (``register_worker``)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def call(self, function_id: str, payload: Any, **extra: Any) -> Any:
        return await asyncio.to_thread(self.client.trigger, {"function_id": function_id, "payload": payload, **extra})


@contextlib.asynccontextmanager
async def py_worker(port: int, name: str = "py-test", headers: dict[str, str] | None = None) -> AsyncIterator[PyWorker]:
    from iii import InitOptions, register_worker  # type: ignore[import-untyped]

    options = InitOptions(worker_name=name, otel={"enabled": False}, enable_metrics_reporting=False, headers=headers)
    client = await asyncio.to_thread(register_worker, f"ws://127.0.0.1:{port}", options)
    try:
        await asyncio.to_thread(client._wait_until_connected)
        yield PyWorker(client)
    finally:
        await asyncio.to_thread(client.shutdown)


async def registered(engine: Any, predicate: Callable[[], bool], within: float = 10.0) -> None:
    await engine.wait_until(predicate, within * SECOND)


# ---- Node -------------------------------------------------------------------------------------------------------


class NodeScript:
    """A Node script on npm ``iii-sdk`` (latest, 0.22.1) that prints one JSON object per line."""

    def __init__(self, proc: asyncio.subprocess.Process, log: list[str]) -> None:
        self.proc = proc
        self.log = log

    async def line(self, within: float = 20.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), within * SECOND)
            if not raw:
                raise AssertionError("the node script ended early:\n" + "".join(self.log[-40:]))
            text = raw.decode()
            self.log.append(text)
            if text.startswith("{"):
                result: dict[str, Any] = json.loads(text)
                return result

    async def send(self, message: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()


@contextlib.asynccontextmanager
async def node_script(source: str, port: int, tmp: Path) -> AsyncIterator[NodeScript]:
    import pytest

    if NODE is None:
        pytest.skip("node is not installed: the Node iii SDK tests need node and npm (.ci/install-extras)")
    modules = SDK_DIR / "latest" / "node_modules"
    if not (modules / "iii-sdk" / "package.json").is_file():
        pytest.fail(f"npm iii-sdk is missing from {modules}: run .ci/install-extras")
    run_dir = tmp / f"node-{os.urandom(3).hex()}"
    run_dir.mkdir()
    (run_dir / "node_modules").symlink_to(modules)
    (run_dir / "package.json").write_text('{"type": "module"}')
    (run_dir / "script.mjs").write_text(source)
    env = dict(os.environ, III_URL=f"ws://127.0.0.1:{port}", OTEL_ENABLED="false")
    proc = await asyncio.create_subprocess_exec(
        shutil.which("node") or "node",
        str(run_dir / "script.mjs"),
        cwd=run_dir,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    script = NodeScript(proc, [])
    try:
        yield script
    finally:
        await script.stop()
