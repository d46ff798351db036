"""ripple.js in headless Chromium, on the browser's own WebSocket and fetch: the REST helper's results and errors, and a
subscription that survives 100 forced disconnects (a chaos TCP proxy between the page and ``ripple serve`` cuts the
connection, some cuts mid-frame) with every event exactly once and in order."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.browser.conftest import MS
from tests.browser.test_ripple_js_node import CUTS, chaos_run
from tests.fault.child import ServeChild
from tests.fault.proxy import Proxy

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServeChild]:
    child = await ServeChild(tmp_path_factory.mktemp("jsweb") / "jsweb.db", "--heartbeat", "0.5").start()
    try:
        yield child
    finally:
        await child.stop()


async def open_on(browser: Any, url: str) -> Any:
    """A page whose origin is ``url``: the page and its WebSocket are same-origin, as the server's Origin rule wants."""
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(30 * MS)
    await page.goto(url + "/ripple.js")
    # Loaded once: later imports come from the module map, not the network.
    await page.evaluate("import('/ripple.js').then(() => true)")
    return page


REST_IN_THE_BROWSER = """async () => {
  const { client, RippleError } = await import('/ripple.js');
  const api = client();  // the page's origin
  const scope = 'web-' + Math.random().toString(36).slice(2);
  const out = {};
  const first = await api.set(scope, 'k', { n: 1 }, { expectedOffset: 0 });
  out.created = first.created;
  const ops = [{ type: 'increment', path: 'n', by: 2 }];
  const next = await api.update(scope, 'k', ops, { expectedOffset: first.offset });
  out.value = (await api.get(scope, 'k')).value;
  out.past = (await api.get(scope, 'k', { at: first.offset })).value;
  try {
    await api.set(scope, 'k', { n: 0 }, { expectedOffset: first.offset });
  } catch (err) {
    out.stale = [err instanceof RippleError, err.status, err.code, typeof err.message];
  }
  out.deleted = await api.delete(scope, 'k', { expectedOffset: next.offset });
  out.missing = await api.get(scope, 'k');
  const sub = api.subscribe({ scopes: [scope], after: 0 });
  const seen = [];
  for await (const event of sub) {
    seen.push(event.event_type);
    if (seen.length === 3) break;
  }
  out.events = seen;
  out.state = sub.state;
  return out;
}"""


async def test_rest_helper_and_subscribe_in_the_browser(browser: Any, server: ServeChild) -> None:
    page = await open_on(browser, server.url)
    try:
        out = await page.evaluate(REST_IN_THE_BROWSER)
    finally:
        await page.context.close()
    assert out["created"] is True
    assert out["value"] == {"n": 3} and out["past"] == {"n": 1}
    assert out["stale"] == [True, 412, "precondition_failed", "string"]
    assert out["deleted"]["old_value"] == {"n": 3}
    assert out["missing"] is None
    assert out["events"] == ["created", "updated", "deleted"]
    assert out["state"] == "closed"


CHAOS_IN_THE_BROWSER = """async ({ scope }) => {
  const { subscribe, client } = await import('/ripple.js');
  const scopes = [scope, scope + '-end'];
  const sub = subscribe({ scopes, after: 0, backoff: { initial: 20, maximum: 200 } });
  const received = [];
  for await (const event of sub) {
    received.push([event.offset, event.key, event.new_value]);
    if (event.scope === scope + '-end') break;
  }
  const api = client();
  const log = [];
  for (let after = 0; ; ) {
    const page = await api.events({ after, scopes, kind: 'state', limit: 1000 });
    if (!page.events.length) break;
    for (const e of page.events) log.push([e.offset, e.key, e.new_value]);
    after = page.next_after;
  }
  return { received, log, stats: sub.stats };
}"""


async def test_a_browser_subscriber_survives_forced_disconnects(browser: Any, server: ServeChild) -> None:
    proxy = await Proxy(server.port).start()
    page = await open_on(browser, proxy.url)
    try:
        proxy.cut_all()  # the page's idle HTTP connection: from now on only the subscription crosses the proxy
        scope = f"chaos-web-{random.randrange(1 << 30)}"
        subscriber: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(
            page.evaluate(CHAOS_IN_THE_BROWSER, {"scope": scope})
        )
        out = await chaos_run(server, scope, subscriber, proxy)
    finally:
        await page.context.close()
        await proxy.close()
    assert len(out["received"]) == len(out["log"]) > 0
    assert out["received"] == out["log"], "every event exactly once, in order"
    assert out["stats"]["duplicatesDropped"] == 0
    assert out["stats"]["disconnects"] >= CUTS, out["stats"]
