"""The todo app as a page (``/todo`` of ``ripple serve --app examples.todo:setup``) in two Chromium tabs: add, toggle,
edit and delete in one tab, and the list and the counters follow in the other, live, through ripple.js."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.browser.conftest import MS, screenshot_path
from tests.conftest import SECOND
from tests.fault.child import TODO_APP, ServeChild

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServeChild]:
    child = await ServeChild(tmp_path_factory.mktemp("todo") / "todo.db", "--app", TODO_APP).start()
    try:
        yield child
    finally:
        await child.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tabs(browser: Any, server: ServeChild) -> AsyncIterator[tuple[Any, Any]]:
    """Two tabs of the todo page (one browser context, like two tabs of one window)."""
    context = await browser.new_context(viewport={"width": 480, "height": 720})
    pages = []
    errors: list[str] = []
    for _ in range(2):
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_default_timeout(20 * MS)
        await page.goto(server.url + "/todo")
        await page.wait_for_function("() => document.getElementById('conn').dataset.state === 'live'")
        pages.append(page)
    yield pages[0], pages[1]
    await context.close()
    assert not errors, errors


def todo(page: Any, title: str) -> Any:
    return page.locator("li.todo", has_text=title)


async def counters(page: Any, total: int, active: int, completed: int) -> None:
    """Wait until the page shows these counters (kept by the example's reaction, so a moment after the list)."""
    await page.wait_for_function(
        """([t, a, c]) => ['c-total', 'c-active', 'c-completed'].map(id => document.getElementById(id).textContent)
             .join() === [t, a, c].join()""",
        arg=[str(total), str(active), str(completed)],
    )


async def test_two_tabs_stay_in_sync(tabs: tuple[Any, Any], server: ServeChild) -> None:
    first, second = tabs
    for title in ("buy milk", "write the docs", "water the plants"):
        await first.fill("#new-title", title)
        await first.press("#new-title", "Enter")
    await todo(second, "water the plants").wait_for()
    titles = await second.locator("li.todo .title").all_inner_texts()
    assert titles == ["buy milk", "write the docs", "water the plants"]
    await counters(second, 3, 3, 0)

    await todo(second, "buy milk").get_by_role("checkbox").check()  # toggle in the other tab
    await first.locator("li.todo.completed", has_text="buy milk").wait_for()
    await counters(first, 3, 2, 1)

    await todo(first, "write the docs").get_by_role("button", name="Edit write the docs").click()
    await first.fill("li.todo input.edit", "write the browser docs")
    await first.press("li.todo input.edit", "Enter")
    await todo(second, "write the browser docs").wait_for()

    await todo(second, "water the plants").get_by_role("button", name="Delete water the plants").click()
    await todo(first, "water the plants").wait_for(state="detached")
    await counters(first, 2, 1, 1)
    await counters(second, 2, 1, 1)
    await first.screenshot(path=screenshot_path("todo-tab-1"))
    await second.screenshot(path=screenshot_path("todo-tab-2"))

    async with httpx.AsyncClient(base_url=server.url, timeout=10 * SECOND) as http:
        listed = (await http.get("/todos")).json()  # the example's own API sees what the pages wrote
        assert sorted((t["title"], t["completed"]) for t in listed) == [
            ("buy milk", True), ("write the browser docs", False)]
        metrics = (await http.get("/todos/metrics")).json()
        assert metrics == {"total": 2, "completed": 1, "active": 1}


async def test_a_write_from_elsewhere_appears_and_bad_titles_are_refused(
    tabs: tuple[Any, Any], server: ServeChild
) -> None:
    first, second = tabs
    async with httpx.AsyncClient(base_url=server.url, timeout=10 * SECOND) as http:
        response = await http.post("/todos", json={"title": "from the API"})
        assert response.status_code == 201, response.text
    await todo(first, "from the API").wait_for()
    await todo(second, "from the API").wait_for()
    before = await first.locator("li.todo").count()
    await first.fill("#new-title", "   ")
    await first.press("#new-title", "Enter")
    assert "1 to 500 characters" in await first.locator("#message").inner_text()
    assert await first.locator("li.todo").count() == before


async def test_an_edit_based_on_an_old_version_is_not_lost_silently(tabs: tuple[Any, Any]) -> None:
    """Two tabs edit the same todo: the second save is refused (If-Match) and says so; the first one stays."""
    first, second = tabs
    await todo(first, "from the API").get_by_role("button", name="Edit from the API").click()
    await todo(second, "from the API").get_by_role("button", name="Edit from the API").click()
    await first.fill("li.todo input.edit", "first tab's title")
    await first.press("li.todo input.edit", "Enter")
    await todo(first, "first tab's title").wait_for()
    await second.fill("li.todo input.edit", "second tab's title")
    await second.press("li.todo input.edit", "Enter")
    await second.locator("#message", has_text="changed in another tab").wait_for()
    await todo(second, "first tab's title").wait_for()
