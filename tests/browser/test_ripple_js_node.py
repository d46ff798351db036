"""ripple.js in Node against a real ``ripple serve``: its own ``node --test`` suites (REST helper, subscriptions) with
the ``ws`` package and with Node's global WebSocket, and 100 forced disconnects through a chaos proxy with no loss or
duplicate."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio

from tests.browser.conftest import CLIENT_JS, node_or_skip
from tests.conftest import SECOND, count
from tests.fault.child import ServeChild
from tests.fault.proxy import Proxy

T = TypeVar("T")

pytestmark = pytest.mark.asyncio(loop_scope="module")

CUTS = count(100, 1000)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServeChild]:
    child = await ServeChild(tmp_path_factory.mktemp("js") / "js.db", "--heartbeat", "0.5").start()
    try:
        yield child
    finally:
        await child.stop()


def ws_package_or_skip() -> None:
    if not (CLIENT_JS / "node_modules" / "ws" / "package.json").exists():
        pytest.skip("clients/js has no node_modules: run .ci/install-extras (npm ci --prefix clients/js)")


async def run_node(*args: str, env: dict[str, str], seconds: float) -> str:
    """Run node in clients/js; fail the test with node's output unless it exits 0. Returns stdout."""
    proc = await asyncio.create_subprocess_exec(
        node_or_skip(), *args, cwd=CLIENT_JS, env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds * SECOND)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        pytest.fail(f"node {' '.join(args)} timed out:\n{out.decode(errors='replace')[-4000:]}")
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"node {' '.join(args)} failed:\n{text[-6000:]}"
    assert "# fail 0" in text or "--test" not in args, text[-2000:]
    return text


@pytest.mark.parametrize("websocket", ["ws", "global"])
async def test_node_suites_against_a_live_server(server: ServeChild, websocket: str) -> None:
    """The REST helper and subscriptions; Node 20 has no global WebSocket unless asked, so `ws` is the fallback."""
    ws_package_or_skip()
    flags = ["--experimental-websocket"] if websocket == "global" else []
    probe = await run_node(*flags, "-e", "console.log(typeof WebSocket)", env={}, seconds=30)
    if websocket == "ws" and probe.strip() == "function":
        pytest.skip("this Node has a global WebSocket; the `ws` fallback cannot be exercised")
    env = {"RIPPLE_URL": server.url, "RIPPLE_EXPECT_WEBSOCKET": websocket}
    out = await run_node(*flags, "--test", "test/rest.test.js", "test/subscribe.test.js", env=env, seconds=120)
    assert "# pass 0" not in out, out[-2000:]


async def write_until(url: str, scope: str, stop: asyncio.Event) -> int:
    """Batches of sets in ``scope`` (straight to the server, not through the proxy) until ``stop``."""
    written = 0
    async with httpx.AsyncClient(base_url=url, timeout=10 * SECOND) as client:
        while not stop.is_set():
            commands = [{"op": "set", "scope": scope, "key": f"k{written + i}", "value": {"i": written + i}}
                        for i in range(10)]
            response = await client.post("/v1/batch", json={"commands": commands})
            assert response.status_code == 200, response.text
            written += 10
    return written


async def cut_repeatedly(proxy: Proxy, cuts: int, rng: random.Random) -> None:
    """``cuts`` times: wait for a new connection, let it run a random moment, cut it (some mid-frame)."""
    seen = 0
    for _ in range(cuts):
        await proxy.wait_for_link(seen, 30 * SECOND)
        seen = proxy.counters.connections
        await asyncio.sleep(rng.uniform(0, 0.03))  # sleep-ok: cut at a random moment of the connection's life
        if rng.random() < 0.25:
            proxy.cut(rng, mid_chunk=True)
        else:
            proxy.cut_all()
    await proxy.wait_for_link(seen, 30 * SECOND)  # the last cut happened (a mid-frame one waits for data): reconnected


async def chaos_run(server: ServeChild, scope: str, client: asyncio.Future[T], proxy: Proxy) -> T:
    """Write and cut while ``client`` (a subscriber through ``proxy``) runs; then write the end marker."""
    rng = random.Random(seed := random.randrange(1 << 30))
    stop = asyncio.Event()
    writer = asyncio.create_task(write_until(server.url, scope, stop))
    try:
        cutter = asyncio.create_task(cut_repeatedly(proxy, CUTS, rng))
        racing: set[asyncio.Future[Any]] = {cutter, client}
        done, _ = await asyncio.wait(racing, timeout=180 * SECOND, return_when=asyncio.FIRST_COMPLETED)
        assert cutter in done, f"the cuts did not finish (seed {seed}): {proxy.counters}"
        await cutter
    finally:
        stop.set()
        await writer
    proxy.calm()
    async with httpx.AsyncClient(base_url=server.url, timeout=10 * SECOND) as http:
        response = await http.put(f"/v1/state/{scope}-end/done", json=True)
        assert response.status_code == 201, response.text
    return await asyncio.wait_for(client, 60 * SECOND)


async def test_node_subscriber_survives_forced_disconnects(server: ServeChild) -> None:
    ws_package_or_skip()
    scope = f"chaos-node-{random.randrange(1 << 30)}"
    proxy = await Proxy(server.port).start()
    try:
        env = {
            "RIPPLE_URL": server.url,
            "RIPPLE_CHAOS_URL": proxy.url,
            "RIPPLE_CHAOS_SCOPE": scope,
            "RIPPLE_CHAOS_MIN_DISCONNECTS": str(CUTS),
        }
        node = asyncio.ensure_future(run_node("--test", "test/chaos.test.js", env=env, seconds=300))
        out = await chaos_run(server, scope, node, proxy)
    finally:
        await proxy.close()
    stats = [json.loads(line.split("# ", 1)[1]) for line in out.splitlines() if line.startswith("# {")]
    assert stats and stats[0]["disconnects"] >= CUTS, out[-2000:]
