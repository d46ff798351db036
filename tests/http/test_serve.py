"""``ripple serve`` as a real child process: defaults, startup line, bad files, graceful SIGTERM under write load."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from ripple import Store
from tests.conftest import RIPPLE, SECOND, count, ripple_env

FAST_STACK = all(importlib.util.find_spec(m) is not None for m in ("uvloop", "httptools"))
_STARTED = re.compile(r"^ripple serving (?P<db>.+) on (?P<url>http://[\d.]+:\d+) ")


@asynccontextmanager
async def serving(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str, str]]:
    """Start ``ripple serve ARGS`` in ``cwd``; yield (process, base URL, database path from the startup line)."""
    proc = await asyncio.create_subprocess_exec(
        *RIPPLE, "serve", *args, cwd=cwd, env=env or ripple_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30 * SECOND)).decode()
        match = _STARTED.match(line)
        assert match, (line, proc.returncode)
        yield proc, match.group("url"), match.group("db")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 30 * SECOND)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_serve_defaults_to_ripple_db_on_localhost(tmp_path: Path) -> None:
    async with serving(tmp_path, "--port", "0") as (proc, url, db):
        assert db == str(tmp_path / "ripple.db")
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=url) as c:
            assert (await c.put("/v1/state/s/k", json={"a": 1})).status_code == 201
            assert (await c.get("/v1/health")).json()["head"] == 1
        code, out, err = await stop(proc)
    assert code == 0, err
    assert "ripple stopped" in out and "Traceback" not in err
    async with Store.open(tmp_path / "ripple.db") as store:
        assert await store.get("s", "k") == {"a": 1}


async def test_serve_takes_the_path_as_argument_or_option(tmp_path: Path) -> None:
    async with serving(tmp_path, "one.db", "--port", "0", "--durability", "normal") as (proc, _, db):
        assert db == str(tmp_path / "one.db")
        assert (await stop(proc))[0] == 0
    async with serving(tmp_path, "--db", "two.db", "--port", "0") as (proc, _, db):
        assert db == str(tmp_path / "two.db")
        assert (await stop(proc))[0] == 0


def test_serve_refuses_a_foreign_file_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not a database\n")
    result = subprocess.run(
        [*RIPPLE, "serve", "notes.db", "--port", "0"],
        cwd=tmp_path,
        env=ripple_env(),
        capture_output=True,
        text=True,
        timeout=30 * SECOND,
    )
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "notes.db").read_text() == "not a database\n"


def test_serve_help_lists_every_option() -> None:
    result = subprocess.run([*RIPPLE, "serve", "--help"], env=ripple_env(), capture_output=True, text=True)
    assert result.returncode == 0
    for option in (
        "--db",
        "--host",
        "--port",
        "--durability",
        "--app",
        "--access-log",
        "--iii",
        "--iii-strict",
        "--iii-host",
        "--iii-worker-port",
        "--iii-http-port",
        "--iii-stream-port",
    ):
        assert option in result.stdout, option


async def test_sigterm_under_write_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    clients, before_signal = 32, count(300, 3000)
    acked: dict[str, int] = {}
    enough = asyncio.Event()

    async def writer(url: str, n: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30 * SECOND) as c:
            i = 0
            while True:
                try:
                    r = await c.put(f"/v1/state/load/c{n}-{i}", json={"n": n, "i": i})
                except httpx.HTTPError:
                    return  # the server went away: this write was never acknowledged
                if r.status_code != 201:
                    assert r.status_code == 503, r.text  # refused while closing: not acknowledged either
                    return
                acked[f"c{n}-{i}"] = r.json()["offset"]
                if len(acked) >= before_signal:
                    enough.set()
                i += 1

    async with serving(tmp_path, "--port", "0") as (proc, url, _):
        tasks = [asyncio.create_task(writer(url, n)) for n in range(clients)]
        await asyncio.wait_for(enough.wait(), 60 * SECOND)
        code, out, err = await stop(proc)
        await asyncio.wait_for(asyncio.gather(*tasks), 30 * SECOND)
    assert code == 0, err
    assert "ripple stopped" in out
    assert len(acked) >= before_signal
    async with Store.open(tmp_path / "ripple.db") as store:
        assert store.head >= len(acked)
        for key, offset in acked.items():
            entry = await store.entry("load", key)
            assert entry is not None and entry.offset == offset, key


@pytest.mark.parametrize(
    "stack",
    [
        pytest.param(("--loop", "uvloop", "--http", "httptools"), id="uvloop-httptools",
                     marks=pytest.mark.skipif(not FAST_STACK, reason="uvloop or httptools not installed")),
        pytest.param(("--loop", "asyncio", "--http", "h11"), id="asyncio-h11"),
    ],
)
async def test_serve_takes_the_websocket_fast_path(tmp_path: Path, stack: tuple[str, ...]) -> None:
    """The fan-out fast path (DESIGN §13) needs uvicorn's sans-I/O protocol internals: fail loudly if a uvicorn
    upgrade or a config change silently sends every live event through ASGI instead — on the fast stack (uvloop,
    httptools) and on the pure-Python fallback alike."""
    import websockets

    async with serving(tmp_path, "--port", "0", *stack) as (proc, url, _db):
        async with websockets.connect(url.replace("http", "ws") + "/v1/subscribe?scope=s") as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10 * SECOND))
            assert hello["type"] == "hello"
            assert json.loads(await asyncio.wait_for(ws.recv(), 10 * SECOND))["type"] == "live"
            async with httpx.AsyncClient(base_url=url) as c:
                for i in range(3):
                    assert (await c.put(f"/v1/state/s/k{i}", json=i)).status_code == 201
                offsets = [json.loads(await asyncio.wait_for(ws.recv(), 10 * SECOND))["offset"] for _ in range(3)]
                assert offsets == [1, 2, 3]
                counters = (await c.get("/v1/health")).json()["counters"]
        assert counters["ws_fast_path_commits"] == 3
        code, _out, err = await stop(proc)
    assert code == 0, err
