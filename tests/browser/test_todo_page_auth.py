"""The todo page under ``ripple serve --auth --app examples.todo:setup`` in headless Chromium: a sign-in form first
(wrong tokens refused, nothing kept), two tabs with a ``todos:rw`` + ``todo-metrics:r`` token stay in sync, a
read-only token sees the todos but cannot change them (refused before sending; a 403 shown if sent anyway), and a
token revoked while the page is open signs the tab out instead of reconnecting."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio

from tests.browser.conftest import MS, screenshot_path
from tests.browser.test_todo_page import counters, todo
from tests.conftest import SECOND
from tests.fault.child import TODO_APP, ServeChild
from tests.security.conftest import bearer, new_token, revoke

pytestmark = pytest.mark.asyncio(loop_scope="module")

WRITER_GRANTS = ["todos:rw", "todo-metrics:r"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServeChild]:
    db = tmp_path_factory.mktemp("todo-auth") / "todo-auth.db"
    child = await ServeChild(db, "--auth", "--app", TODO_APP).start()
    try:
        yield child
    finally:
        await child.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tokens(server: ServeChild) -> dict[str, str]:
    return {
        "writer": new_token(server.db_file, "web", scopes=WRITER_GRANTS),
        "reader": new_token(server.db_file, "reader", scopes=["todos:r", "todo-metrics:r"]),
    }


async def open_page(context: Any, server: ServeChild) -> Any:
    page = await context.new_page()
    page.set_default_timeout(20 * MS)
    page.errors, page.sockets, page.writes = [], [], []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("websocket", lambda ws: page.sockets.append(ws.url))
    page.on("request", lambda r: page.writes.append(r.url) if r.method in ("PUT", "PATCH", "DELETE") else None)
    await page.goto(server.url + "/todo")
    return page


async def sign_in(page: Any, token: str) -> None:
    await page.locator("#login-token").wait_for()
    await page.fill("#login-token", token)
    await page.click("#login-submit")
    await live(page)


async def live(page: Any) -> None:
    await page.wait_for_function("() => document.getElementById('conn').dataset.state === 'live'")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def writer_tabs(browser: Any, server: ServeChild, tokens: dict[str, str]) -> AsyncIterator[tuple[Any, Any]]:
    """Two tabs of one window signed in with the writer's token (each tab signs in: sessionStorage is per tab)."""
    context = await browser.new_context(viewport={"width": 480, "height": 720})
    pages = [await open_page(context, server) for _ in range(2)]
    for page in pages:
        await sign_in(page, tokens["writer"])
    yield pages[0], pages[1]
    errors = [e for page in pages for e in page.errors]
    await context.close()
    assert not errors, errors


async def test_the_page_asks_for_a_token_and_refuses_a_wrong_one(browser: Any, server: ServeChild) -> None:
    context = await browser.new_context()
    try:
        page = await open_page(context, server)
        await page.locator("#login-token").wait_for()
        assert await page.locator("#todo-app").is_hidden() and await page.locator("#account").is_hidden()
        assert await page.locator("#conn").inner_text() == "signed out"
        assert not page.sockets
        await page.fill("#login-token", "rpl_" + "y" * 43)
        await page.click("#login-submit")
        message = page.locator("#login-message")
        await message.filter(has_text="refused this token").wait_for()
        assert "wrong, expired or revoked" in await message.inner_text()
        assert await page.evaluate("sessionStorage.length") == 0
        await page.screenshot(path=screenshot_path("todo-login"))
        assert not page.sockets and not page.errors, page.errors
    finally:
        await context.close()


async def test_two_signed_in_tabs_stay_in_sync(writer_tabs: tuple[Any, Any], server: ServeChild) -> None:
    first, second = writer_tabs
    assert await first.locator("#who").inner_text() == "web"
    assert await first.locator("#login").is_hidden() and await first.locator("#mode").is_hidden()
    for title in ("sign the form", "file the report"):
        await first.fill("#new-title", title)
        await first.press("#new-title", "Enter")
    await todo(second, "file the report").wait_for()
    await counters(second, 2, 2, 0)
    await todo(second, "sign the form").get_by_role("checkbox").check()
    await first.locator("li.todo.completed", has_text="sign the form").wait_for()
    await counters(first, 2, 1, 1)
    await todo(first, "file the report").get_by_role("button", name="Delete file the report").click()
    await todo(second, "file the report").wait_for(state="detached")
    await counters(second, 1, 0, 1)
    await second.screenshot(path=screenshot_path("todo-auth-tab-2"))
    async with httpx.AsyncClient(base_url=server.url, timeout=10 * SECOND) as http:
        admin = new_token(server.db_file, f"check-{random.randrange(1 << 30)}", admin=True)
        events = (await http.get("/v1/events", params={"scope": "todos"}, headers=bearer(admin))).json()["events"]
    assert {e["meta"]["actor"] for e in events} == {"web"}, "the log names the token that wrote"


async def test_a_read_only_token_sees_but_cannot_change(
    browser: Any, server: ServeChild, tokens: dict[str, str], writer_tabs: tuple[Any, Any]
) -> None:
    first, _ = writer_tabs
    await first.fill("#new-title", "only the writer adds")
    await first.press("#new-title", "Enter")
    await todo(first, "only the writer adds").wait_for()
    context = await browser.new_context(viewport={"width": 480, "height": 720})
    try:
        page = await open_page(context, server)
        await sign_in(page, tokens["reader"])
        row = todo(page, "only the writer adds")
        await row.wait_for()
        assert "Read-only" in await page.locator("#mode").inner_text()
        assert await page.locator("#new-title").is_disabled() and await page.locator("#add-button").is_disabled()
        assert await row.get_by_role("checkbox").is_disabled()
        assert await row.get_by_role("button", name="Delete only the writer adds").is_disabled()
        await page.screenshot(path=screenshot_path("todo-read-only"))
        # The page keeps up with the writer's changes.
        await first.fill("#new-title", "seen by the reader")
        await first.press("#new-title", "Enter")
        await todo(page, "seen by the reader").wait_for()
        assert page.writes == [], "nothing was sent"

        # Sent anyway (the page made to believe it may write): the server's 403 is shown, nothing is added.
        await page.evaluate("""() => {
          todoApp.access.mayWrite = () => true;
          document.getElementById('new-title').disabled = false;
          document.getElementById('add-button').disabled = false;
        }""")
        await page.fill("#new-title", "not allowed")
        await page.press("#new-title", "Enter")
        message = page.locator("#message")
        await message.filter(has_text="403").wait_for()
        assert await message.inner_text() == "Refused (403): token 'reader' may not write scope 'todos'."
        assert len(page.writes) == 1
        assert await todo(first, "not allowed").count() == 0
        assert not page.errors, page.errors
    finally:
        await context.close()


async def test_a_token_revoked_while_the_page_is_open_signs_out(browser: Any, server: ServeChild) -> None:
    name = f"doomed-{random.randrange(1 << 30)}"
    token = new_token(server.db_file, name, scopes=WRITER_GRANTS)
    context = await browser.new_context()
    try:
        page = await open_page(context, server)
        await sign_in(page, token)
        sockets = len(page.sockets)
        revoke(server.db_file, name)
        message = page.locator("#login-message")
        await message.filter(has_text="revoked").wait_for(timeout=10 * MS)
        assert await page.locator("#todo-app").is_hidden() and await page.locator("#account").is_hidden()
        assert await page.locator("#conn").inner_text() == "signed out"
        assert await page.evaluate("sessionStorage.length") == 0
        assert len(page.sockets) == sockets, "no reconnect with the revoked token"
        assert not page.errors, page.errors
    finally:
        await context.close()


async def test_a_token_that_may_not_read_the_counters_sees_the_list_only(
    browser: Any, server: ServeChild, writer_tabs: tuple[Any, Any]
) -> None:
    """The subscription names only the scopes the token may read (one it may not read would refuse it whole)."""
    token = new_token(server.db_file, f"list-only-{random.randrange(1 << 30)}", scopes=["todos:r"])
    context = await browser.new_context()
    try:
        page = await open_page(context, server)
        await sign_in(page, token)
        await todo(page, "only the writer adds").wait_for()
        assert await page.locator("#counters").is_hidden()
        (url,) = [u for u in page.sockets if "/v1/subscribe" in u]
        assert parse_qs(urlsplit(url).query)["scope"] == ["todos"]
        assert not page.errors, page.errors
    finally:
        await context.close()
