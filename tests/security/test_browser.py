"""The browser boundary from a real headless Chromium (DESIGN §15): a page on another origin cannot read a
subscription or the state, nor write (fetch, a cross-site form, a no-cors POST to rebuild); a listed origin
(``--cors-origin``) can; a DNS-rebound host name gets 421; a page cannot open the iii worker or RBAC port unless its
origin is listed. The "other origin" is a second local HTTP server on
another port. Skipped, saying what to install, where Chromium or playwright is missing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ripple import Store
from ripple.http.boundary import Boundary
from ripple.http.serve import ServeOptions
from ripple.iii.rbac import RbacConfig, RbacPort
from ripple.iii.server import IIIServer
from tests.conftest import SECOND
from tests.security.conftest import Served, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHROMIUM = os.environ.get("RIPPLE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP rebound.test 127.0.0.1",  # DNS rebinding, without DNS
]
MS = 1000 * SECOND
PAGE = b"<!doctype html><html><head><title>elsewhere</title></head><body><p>another origin</p></body></html>"

ATTACKS = """
async (target) => {
  const out = {};
  const attempt = async (name, fn) => {
    try { out[name] = await fn(); } catch (e) { out[name] = 'blocked: ' + e.name; }
  };
  await attempt('read', async () => (await fetch(target + '/v1/state/s/k')).status);
  await attempt('write', async () => (await fetch(target + '/v1/state/s/written', {
    method: 'PUT', headers: {'content-type': 'application/json'}, body: '{"by": "page"}'})).status);
  await attempt('rebuild', async () => (await fetch(target + '/v1/projections/metrics/rebuild',
    {method: 'POST', mode: 'no-cors'})).type);
  await attempt('subscribe', () => new Promise((resolve) => {
    const ws = new WebSocket(target.replace('http', 'ws') + '/v1/subscribe?scope=s&after=0');
    ws.onmessage = (m) => { resolve(JSON.parse(m.data).type); ws.close(); };
    ws.onerror = () => resolve('error');
    ws.onclose = (c) => resolve('closed ' + c.code);
  }));
  const posted = (action, enctype, name, value) => new Promise((resolve) => {
    const frame = document.createElement('iframe');
    frame.name = 'f' + Math.random();
    frame.onload = () => resolve('loaded');
    document.body.appendChild(frame);
    const form = document.createElement('form');
    Object.assign(form, {action: target + action, method: 'POST', enctype, target: frame.name});
    const input = document.createElement('input');
    Object.assign(input, {name, value});
    form.appendChild(input);
    document.body.appendChild(form);
    form.submit();
  });
  await attempt('form_todo', () => posted('/todos/', 'text/plain', '{"title":"pwned","x":"', '"}'));
  await attempt('form_rebuild', () => posted('/v1/projections/metrics/rebuild',
                                             'application/x-www-form-urlencoded', 'a', '1'));
  return out;
}
"""


def chromium_or_skip() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install chromium (see .ci/install-extras)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is missing: pip install -e '.[dev]'")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            await instance.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def elsewhere() -> AsyncIterator[str]:
    """The other origin: a minimal HTTP server on another port serving one page."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: %d\r\nconnection: close"
                         b"\r\n\r\n%s" % (len(PAGE), PAGE))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def run_attacks(browser: Any, origin: str, target: Served) -> dict[str, Any]:
    page = await browser.new_page()
    try:
        page.set_default_timeout(15 * MS)
        await page.goto(origin + "/page.html")
        result: dict[str, Any] = await page.evaluate(ATTACKS, target.url)
        return result
    finally:
        await page.close()


def generation(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT generation FROM projections WHERE name = 'metrics'").fetchone()[0])
    finally:
        conn.close()


async def test_another_origin_can_neither_read_nor_write(browser: Any, elsewhere: str, tmp_path: Path) -> None:
    async with serving(tmp_path / "b.db") as target:
        await target.store.set("s", "k", {"secret": True})
        before = generation(target.db)
        result = await run_attacks(browser, elsewhere, target)
        assert result["read"].startswith("blocked"), result  # no CORS: the answer is not readable
        assert result["write"].startswith("blocked"), result  # the preflight fails
        assert result["subscribe"] in ("error", "closed 1006"), result  # 403 before the upgrade
        assert result["form_todo"] == result["form_rebuild"] == "loaded", result
        assert result["rebuild"] == "opaque", result
        assert await target.store.get("s", "written") is None
        assert (await target.store.list("todos")).items == []
        assert target.store.head == 1
        assert generation(target.db) == before, "a cross-site POST started a rebuild"


async def test_a_listed_origin_can(browser: Any, elsewhere: str, tmp_path: Path) -> None:
    options = ServeOptions(db=str(tmp_path / "c.db"), port=0, cors_origins=(elsewhere,))
    async with serving(tmp_path / "c.db", options=options) as target:
        await target.store.set("s", "k", {"shared": True})
        result = await run_attacks(browser, elsewhere, target)
        assert result["read"] == 200, result
        assert result["write"] == 201, result
        assert result["subscribe"] == "hello", result
        assert await target.store.get("s", "written") == {"by": "page"}
        assert (await target.store.list("todos")).items == []  # forms are still not JSON: 415


async def test_a_rebound_host_name_gets_421(browser: Any, tmp_path: Path) -> None:
    async with serving(tmp_path / "r.db") as target:
        await target.store.set("s", "k", {"secret": True})
        page = await browser.new_page()
        try:
            response = await page.goto(f"http://rebound.test:{target.port}/v1/state/s/k")
            assert response is not None and response.status == 421
            assert "secret" not in await page.content()
            same = await page.goto(f"http://127.0.0.1:{target.port}/v1/state/s/k")
            assert same is not None and same.status == 200
        finally:
            await page.close()


WORKER_ATTACK = """
async (urls) => {
  const out = {};
  for (const url of urls) {
    out[url] = await new Promise((resolve) => {
      const ws = new WebSocket(url);
      ws.onopen = () => ws.send(JSON.stringify({type: 'invokefunction', invocation_id: crypto.randomUUID(),
        function_id: 'state::set', data: {scope: 'victim', key: 'k', value: {from: 'evil page'}}}));
      ws.onmessage = (m) => { const type = JSON.parse(m.data).type; if (type !== 'workerregistered') resolve(type); };
      ws.onerror = () => resolve('error');
      ws.onclose = (c) => resolve('closed ' + c.code);
    });
  }
  return out;
}
"""


@pytest.mark.parametrize("listed", [False, True])
async def test_a_page_cannot_open_the_iii_worker_ports(
    browser: Any, elsewhere: str, tmp_path: Path, listed: bool
) -> None:
    """Without --auth, a worker connection reads and writes everything: only a listed origin may open one."""
    boundary = Boundary.listed(allow_origins=(elsewhere,) if listed else ())
    async with Store.open(tmp_path / "iii.db") as store, IIIServer(
        store, worker_port=0, http_port=0, stream_port=0, rbac=RbacPort(0, RbacConfig()), boundary=boundary
    ) as iii:
        urls = [f"ws://127.0.0.1:{iii.worker_port}/", f"ws://127.0.0.1:{iii.rbac_port}/"]
        page = await browser.new_page()
        try:
            page.set_default_timeout(15 * MS)
            await page.goto(elsewhere + "/page.html")
            result: dict[str, str] = await page.evaluate(WORKER_ATTACK, urls)
        finally:
            await page.close()
        if listed:
            assert result == {urls[0]: "invocationresult", urls[1]: "invocationresult"}, result
            assert await store.get("victim", "k") == {"from": "evil page"}
        else:
            assert all(outcome in ("error", "closed 1006") for outcome in result.values()), result
            assert store.head == 0
