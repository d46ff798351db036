"""The console at ``/`` in headless Chromium against a real ``ripple serve`` child: events appear live, the page resumes
across a kill -9 and restart with no missing or repeated rows, the time slider shows older values, edits are sent with
If-Match (invalid JSON refused, a 412 shows the newer value), large values are truncated, keyboard and phone-sized
screens work, and streaming does not move what the reader looks at."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.browser.conftest import MS, screenshot_path
from tests.conftest import SECOND
from tests.fault.child import ServeChild

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServeChild]:
    child = await ServeChild(tmp_path_factory.mktemp("console") / "console.db").start()
    try:
        yield child
    finally:
        await child.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(server: ServeChild) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10 * SECOND) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(browser: Any, server: ServeChild) -> AsyncIterator[Any]:
    """One console page for the module (tests use their own scopes); page errors fail the test that follows."""
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(20 * MS)
    page.errors = errors
    await page.goto(server.url + "/")
    await live(page)
    yield page
    await context.close()


@pytest.fixture(autouse=True)
def no_page_errors(request: pytest.FixtureRequest) -> Any:
    yield
    if "page" in request.fixturenames:
        page = request.getfixturevalue("page")
        assert not page.errors, page.errors


async def live(page: Any) -> None:
    await page.wait_for_function("() => document.getElementById('conn').dataset.state === 'live'")


def unique(prefix: str) -> str:
    return f"{prefix}-{random.randrange(1 << 30)}"


async def put(http: httpx.AsyncClient, scope: str, key: str, value: Any, **headers: str) -> dict[str, Any]:
    response = await http.put(f"/v1/state/{scope}/{key}", json=value, headers=headers)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def log_offsets(http: httpx.AsyncClient, after: int, through: int) -> list[int]:
    offsets: list[int] = []
    while after < through:
        page = (await http.get("/v1/events", params={"after": after, "limit": 1000})).json()
        if not page["events"]:
            break
        offsets += [e["offset"] for e in page["events"] if e["offset"] <= through]
        after = page["next_after"]
    return offsets


async def show_tab(page: Any, name: str) -> None:
    await page.click(f"#tab-{name}")
    await page.wait_for_selector(f"#panel-{name}:not([hidden])")


async def row_for(page: Any, offset: int) -> Any:
    row = page.locator(f"#log-viewport .row[data-offset='{offset}']:not([hidden])")
    await row.wait_for()
    return row


async def follow(page: Any) -> None:
    """Back to all the newest events (a test before may have filtered, scrolled, paused or jumped)."""
    await show_tab(page, "log")
    if await page.evaluate("rippleConsole.log.filter.scopes.length + rippleConsole.log.filter.keys.length"):
        await page.fill("#f-scope", "")
        await page.fill("#f-key", "")
        await page.click("#log-filter button[type=submit]")
    await page.click("#tail-button")
    await page.wait_for_function("() => rippleConsole.log.atTail && rippleConsole.log.stick")


# ---- live log ------------------------------------------------------------------------------------------------


async def test_a_write_through_rest_appears_live(page: Any, http: httpx.AsyncClient) -> None:
    await follow(page)
    scope = unique("live")
    written = await put(http, scope, "greeting", {"text": "hello, browser", "n": 1})
    row = await row_for(page, written["offset"])
    text = await row.inner_text()
    assert scope in text and "greeting" in text and "created" in text and "hello, browser" in text
    ops = [{"type": "increment", "path": "n", "by": 1}]
    updated = await http.patch(f"/v1/state/{scope}/greeting", json={"ops": ops})
    row = await row_for(page, updated.json()["offset"])
    assert "n: 1 → 2" in await row.inner_text()  # the diff of old → new
    assert await page.locator("#conn").inner_text() == "live · caught up"
    await page.screenshot(path=screenshot_path("console-log"))


async def test_an_event_opens_whole_and_a_large_value_is_truncated(page: Any, http: httpx.AsyncClient) -> None:
    await follow(page)
    big = {"blob": "x" * 300_000}
    written = await put(http, unique("big"), "huge", big)
    row = await row_for(page, written["offset"])
    await row.click()
    await page.keyboard.press("Enter")
    detail = page.locator("#log-detail")
    await detail.wait_for()
    new_value = detail.locator("pre.json").nth(1)
    shown = await new_value.inner_text()
    assert len(shown) < 110_000 and shown.endswith("…")
    await detail.get_by_role("button", name="Show the whole value").click()
    assert json.loads(await new_value.inner_text()) == big
    await page.keyboard.press("Escape")


async def test_filter_by_scope_and_jump_to_an_offset(page: Any, http: httpx.AsyncClient) -> None:
    await follow(page)
    scope, other = unique("only"), unique("other")
    mine = [(await put(http, scope, f"k{i}", i))["offset"] for i in range(5)]
    await put(http, other, "x", 1)
    await page.fill("#f-scope", scope)
    await page.click("#log-filter button[type=submit]")
    await page.wait_for_function("() => rippleConsole.log.rows.length === 5 && rippleConsole.log.atTail")
    await settled(page)
    scopes = await page.eval_on_selector_all(
        "#log-viewport .row:not([hidden]) .c-scope", "cells => cells.map(c => c.textContent)")
    assert set(scopes) == {scope}
    later = await put(http, scope, "k5", 5)  # live events keep the filter
    await put(http, other, "y", 2)
    await row_for(page, later["offset"])
    assert [r for r in await loaded(page)] == [*mine, later["offset"]]
    await page.fill("#f-scope", "")
    await page.click("#log-filter button[type=submit]")
    await page.fill("#f-jump", str(mine[2]))
    await page.press("#f-jump", "Enter")
    await page.locator(f"#log-viewport .row[data-offset='{mine[2]}'][aria-selected='true']").wait_for()
    assert await page.locator("#pause-button").get_attribute("aria-pressed") == "true"
    await page.click("#tail-button")  # follow again


async def loaded(page: Any) -> list[int]:
    offsets: list[int] = await page.evaluate("rippleConsole.log.rows.map(r => r.offset)")
    return offsets


async def test_pages_above_are_found_for_dense_and_sparse_filters(page: Any, http: httpx.AsyncClient) -> None:
    """The log has no "before" query: the console searches windows below an offset (readBefore), widening them for
    a sparse filter and narrowing them for a dense one, and must return exactly the matching events just before."""
    dense, sparse = unique("dense"), unique("sparse")
    offsets: dict[str, list[int]] = {dense: [], sparse: []}
    for round_ in range(3):
        commands: list[dict[str, Any]] = [
            {"op": "set", "scope": dense, "key": f"d{round_}-{i}", "value": i} for i in range(990)
        ]
        commands.insert(500, {"op": "set", "scope": sparse, "key": f"s{round_}", "value": round_})
        results = (await http.post("/v1/batch", json={"commands": commands})).json()["results"]
        for command, result in zip(commands, results, strict=True):
            offsets[command["scope"]].append(result["offset"])
    head = (await http.get("/v1/health")).json()["head"]
    found = await page.evaluate("""async ([dense, sparse, before, first]) => {
      const { readBefore } = await import('/console/log.js');
      const pick = (scope, n, at) => readBefore(at, n, { scopes: [scope], keys: [], kind: 'all' })
        .then(r => [r.events.map(e => e.offset), r.complete]);
      return [await pick(dense, 200, before), await pick(sparse, 200, before), await pick(dense, 5, first)];
    }""", [dense, sparse, head + 1, offsets[dense][0]])
    assert found[0] == [offsets[dense][-200:], False]
    assert found[1] == [offsets[sparse], True]
    assert found[2] == [[], True]


async def test_streaming_does_not_move_what_the_reader_looks_at(page: Any, http: httpx.AsyncClient) -> None:
    await follow(page)
    scope = unique("steady")
    response = await http.post("/v1/batch", json={"commands": [
        {"op": "set", "scope": scope, "key": f"k{i}", "value": i} for i in range(120)]})
    last = response.json()["results"][-1]["offset"]
    await row_for(page, last)
    await page.evaluate("document.getElementById('log-viewport').scrollTop = 600")
    await page.wait_for_function("() => !rippleConsole.log.stick")
    await settled(page)
    before = await page.evaluate(VISIBLE)
    assert before[0] is not None
    for burst in range(3):
        await http.post("/v1/batch", json={"commands": [
            {"op": "set", "scope": scope, "key": f"b{burst}-{i}", "value": i} for i in range(100)]})
    await page.wait_for_function("() => rippleConsole.log.rows.at(-1).key === 'b2-99'")
    await settled(page)
    assert await page.evaluate(VISIBLE) == before


async def settled(page: Any) -> None:
    """No page being fetched, and two frames rendered since."""
    await page.wait_for_function("() => !rippleConsole.log.loading.before && !rippleConsole.log.loading.after")
    await page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))")


VISIBLE = """(() => {
  const v = document.getElementById('log-viewport');
  const box = v.getBoundingClientRect();
  const at = document.elementFromPoint(box.left + 40, box.top + 40).closest('.row');
  return [at && at.dataset.offset, at && Math.round(at.getBoundingClientRect().top)];
})()"""


async def test_keyboard_moves_through_tabs_and_rows(page: Any, http: httpx.AsyncClient) -> None:
    await show_tab(page, "log")
    await page.focus("#tab-log")
    await page.keyboard.press("ArrowRight")
    assert await page.locator("#tab-state").get_attribute("aria-selected") == "true"
    await page.keyboard.press("ArrowLeft")
    assert await page.locator("#panel-log").is_visible()
    await page.focus("#log-viewport")
    await page.keyboard.press("End")
    await page.wait_for_function("() => rippleConsole.log.atTail")
    await page.keyboard.press("ArrowUp")
    await page.keyboard.press("ArrowUp")
    selected = await page.evaluate("rippleConsole.log.selected")
    rows = await loaded(page)
    assert selected in rows
    await page.keyboard.press("ArrowDown")
    assert await page.evaluate("rippleConsole.log.selected") == rows[rows.index(selected) + 1]
    await page.keyboard.press("Enter")
    assert await page.locator("#log-detail").is_visible()
    await page.keyboard.press("Escape")
    assert await page.locator("#log-detail").is_hidden()
    await follow(page)


# ---- state browser -------------------------------------------------------------------------------------------


async def open_key(page: Any, scope: str, key: str) -> None:
    await show_tab(page, "state")
    await page.locator(f"#scope-list li[data-name='{scope}']").click()
    await page.locator(f"#key-list li[data-name='{key}']").click()


async def test_the_time_slider_shows_the_older_value(page: Any, http: httpx.AsyncClient) -> None:
    scope = unique("travel")
    first = await put(http, scope, "doc", {"title": "first draft"})
    await put(http, scope, "doc", {"title": "second draft"})
    await put(http, scope, "later", 1)
    await open_key(page, scope, "doc")
    await page.wait_for_function("() => document.getElementById('value-view').textContent.includes('second draft')")
    await page.wait_for_function(f"() => Number(document.getElementById('at-range').max) >= {first['offset'] + 2}")
    await page.locator("#at-range").fill(str(first["offset"]))
    await page.wait_for_function("() => document.getElementById('value-view').textContent.includes('first draft')")
    assert f"as of offset {first['offset']}" in await page.locator("#at-label").inner_text()
    assert await page.locator("#key-list li[data-name='later']").count() == 0  # not written yet at that offset
    assert await page.locator("#edit-button").is_disabled()  # the past is read-only
    await page.focus("#at-range")
    await page.keyboard.press("ArrowLeft")  # one offset earlier: the key did not exist
    await page.wait_for_function("() => document.getElementById('value-meta').textContent.includes('does not exist')")
    await page.screenshot(path=screenshot_path("console-time-travel"))
    await page.click("#at-now")
    await page.wait_for_function("() => document.getElementById('value-view').textContent.includes('second draft')")


async def test_edit_refuses_invalid_json_and_a_412_shows_the_newer_value(page: Any, http: httpx.AsyncClient) -> None:
    scope = unique("edit")
    await put(http, scope, "cfg", {"limit": 1})
    await open_key(page, scope, "cfg")
    await page.click("#edit-button")
    head = (await http.get("/v1/health")).json()["head"]
    await page.fill("#edit-text", '{"limit": 2,')
    await page.click("#edit-save")
    assert "Not valid JSON, nothing was sent" in await page.locator("#edit-message").inner_text()
    await page.fill("#edit-text", "null")
    await page.click("#edit-save")
    assert "cannot be null" in await page.locator("#edit-message").inner_text()
    assert (await http.get("/v1/health")).json()["head"] == head, "nothing was written"

    newer = await put(http, scope, "cfg", {"limit": 5, "by": "someone else"})  # meanwhile, elsewhere
    await page.fill("#edit-text", '{"limit": 2}')
    await page.click("#edit-save")
    await page.locator("#edit-newer").wait_for()
    assert f"offset {newer['offset']}" in await page.locator("#edit-newer-text").inner_text()
    assert json.loads(await page.locator("#edit-newer-value").inner_text()) == {"limit": 5, "by": "someone else"}
    assert (await http.get(f"/v1/state/{scope}/cfg")).json() == {"limit": 5, "by": "someone else"}
    await page.screenshot(path=screenshot_path("console-412"))
    await page.click("#edit-save")  # a second save replaces the newer value, knowingly
    await page.wait_for_function("() => document.getElementById('value-notice').textContent.startsWith('Saved')")
    assert (await http.get(f"/v1/state/{scope}/cfg")).json() == {"limit": 2}


# ---- health, small screens, errors -------------------------------------------------------------------------


async def test_health_shows_counters_chart_and_projections(page: Any, http: httpx.AsyncClient) -> None:
    await show_tab(page, "health")
    await page.locator("#counters td", has_text="subscriber overflows").wait_for()
    metrics = page.locator(".projection[data-name='metrics']")
    await metrics.wait_for()
    text = await metrics.inner_text()
    assert "ok" in text and "checkpoint" in text and "lag" in text
    await page.wait_for_function("() => document.getElementById('rate-caption').textContent.includes('events/s')")
    await page.screenshot(path=screenshot_path("console-health"))
    await show_tab(page, "log")


async def test_access_errors_say_what_is_refused(page: Any) -> None:
    """The wording for 401, 403 and an unreachable server (with --auth: tests/browser/test_console_auth.py)."""
    said = await page.evaluate("""async () => {
      const { describeError } = await import('/console/api.js');
      const { ForbiddenError, UnauthorizedError } = await import('/ripple.js');
      return [describeError(new ForbiddenError("token 'viewer' may not read scope 'payroll'"), 'scope “payroll”'),
              describeError({ status: 403, code: 'forbidden' }, 'scope “payroll”'),
              describeError(new UnauthorizedError('a token is required'), 'the log'),
              describeError({ code: 'unreachable' }, 'the log')];
    }""")
    assert said[0] == "Refused (403): token 'viewer' may not read scope 'payroll'."
    assert said[1] == "This token may not read scope “payroll”."
    assert "wrong, expired or revoked" in said[2]
    assert said[3] == "The server is not answering."


async def test_without_auth_the_console_asks_for_no_token(page: Any) -> None:
    """A server without --auth: no sign-in form, no account, every view (whoami says auth is off)."""
    assert await page.locator("#login").is_hidden()
    assert await page.locator("#account").is_hidden()
    assert await page.locator(".tabs").is_visible()
    assert await page.evaluate("[rippleConsole.access.auth, rippleConsole.access.mayWrite('anything')]") == [
        False, True]


async def test_values_and_names_are_shown_as_text_never_as_markup(page: Any, http: httpx.AsyncClient) -> None:
    await follow(page)
    markup = "<img src=x onerror=\"window.injected=1\">"
    written = await put(http, unique("xss"), markup, {"html": markup})
    row = await row_for(page, written["offset"])
    assert markup in await row.inner_text()
    await row.click()
    await page.keyboard.press("Enter")
    await page.locator("#log-detail").wait_for()
    assert await page.evaluate("document.querySelectorAll('img').length") == 0
    assert await page.evaluate("window.injected") is None
    await page.keyboard.press("Escape")


async def test_the_state_lists_work_from_the_keyboard(page: Any, http: httpx.AsyncClient) -> None:
    scope = "aaa-keyboard"  # sorts first
    await put(http, scope, "first", 1)
    await put(http, scope, "second", {"n": 2})
    await show_tab(page, "state")
    await page.locator(f"#scope-list li[data-name='{scope}']").wait_for()
    await page.focus("#scope-list")
    await page.keyboard.press("Home")
    await page.keyboard.press("Enter")
    await page.locator("#key-list li[data-name='second']").wait_for()
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Enter")
    await page.wait_for_function("() => document.getElementById('value-title').textContent.endsWith('/ second')")
    assert json.loads(await page.locator("#value-view").inner_text()) == {"n": 2}
    await show_tab(page, "log")


async def test_a_refused_filter_is_explained(page: Any) -> None:
    await show_tab(page, "log")
    await page.fill("#f-scope", "not/a/scope")
    await page.click("#log-filter button[type=submit]")
    await page.wait_for_function("() => document.getElementById('log-status').textContent.includes('/')")
    assert "scope" in (await page.locator("#log-status").inner_text()).lower()
    await page.fill("#f-scope", "")
    await page.click("#log-filter button[type=submit]")
    await live(page)


async def test_readable_on_a_phone_sized_screen(browser: Any, server: ServeChild) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        phone = await context.new_page()
        await phone.goto(server.url + "/")
        await live(phone)
        await phone.wait_for_selector("#log-viewport .row:not([hidden])")
        overflow = await phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow}px wider than the screen"
        height = await phone.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--row-h')")
        assert height.strip() == "44px"  # two-line rows, big enough to tap
        await phone.screenshot(path=screenshot_path("console-phone"))
        await phone.click("#tab-state")
        overflow = await phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
    finally:
        await context.close()


# ---- the server goes away and comes back ---------------------------------------------------------------------


async def test_kill_and_restart_resume_with_no_missing_or_repeated_rows(
    page: Any, server: ServeChild, http: httpx.AsyncClient
) -> None:
    await follow(page)
    scope = unique("resume")
    before = [(await put(http, scope, f"a{i}", i))["offset"] for i in range(20)]
    await row_for(page, before[-1])
    await server.kill()  # kill -9: no goodbye frame
    await page.wait_for_function("() => document.getElementById('conn').dataset.state === 'reconnecting'")
    banner = page.locator("#banner")
    assert "not answering" in await banner.inner_text()
    await page.screenshot(path=screenshot_path("console-reconnecting"))
    # Events the page cannot have seen: written by a server on another port, on the same file, while it is away.
    elsewhere = await ServeChild(server.db).start()
    async with httpx.AsyncClient(base_url=elsewhere.url, timeout=10 * SECOND) as aside:
        for i in range(20):
            await put(aside, scope, f"gone{i}", i)
    assert await elsewhere.stop() == 0
    await server.start()  # the same file on the page's port again
    async with httpx.AsyncClient(base_url=server.url, timeout=10 * SECOND) as again:
        after = [(await put(again, scope, f"b{i}", i))["offset"] for i in range(20)]
        await row_for(page, after[-1])
        await live(page)
        assert await banner.is_hidden()
        rows = await loaded(page)
        expected = await log_offsets(again, rows[0] - 1, after[-1])
    assert rows[: len(expected)] == expected, "every event once, in order, across the restart"
    assert len(set(rows)) == len(rows)
    shown = await page.eval_on_selector_all(
        "#log-viewport .row:not([hidden])", "rows => rows.map(r => Number(r.dataset.offset))")
    assert len(shown) == len(set(shown))
