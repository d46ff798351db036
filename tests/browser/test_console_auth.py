"""The console under ``ripple serve --auth`` in headless Chromium, against a real child process with real tokens: it
asks for a token (no views, no 401s before), keeps it in sessionStorage only, says when a token is wrong, expired or
revoked — also one revoked while the page is open (the live log is closed with 1008: the tab signs out instead of
reconnecting) — and shows only what the token may read: readable scopes in the state browser, a log that follows only
readable scopes, forbidden filters and read-only edits refused before anything is sent (a 403 shown if sent anyway),
and a health view that says what needs an admin."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio

from tests.browser.conftest import MS, screenshot_path
from tests.conftest import SECOND
from tests.fault.child import ServeChild
from tests.security.conftest import bearer, new_token, revoke

pytestmark = pytest.mark.asyncio(loop_scope="module")

VIEWER_GRANTS = ["notes:r", "shared*:r"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServeChild]:
    child = await ServeChild(tmp_path_factory.mktemp("console-auth") / "console-auth.db", "--auth").start()
    try:
        yield child
    finally:
        await child.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tokens(server: ServeChild) -> dict[str, str]:
    return {
        "admin": new_token(server.db_file, "ops", admin=True),
        "viewer": new_token(server.db_file, "viewer", scopes=VIEWER_GRANTS),
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admin(server: ServeChild, tokens: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's HTTP client, and the module's data: readable and unreadable scopes for the viewer."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10 * SECOND, headers=bearer(tokens["admin"])) as client:
        for scope, key, value in [("notes", "a", {"title": "read me"}), ("shared-docs", "d", 1),
                                  ("secret", "x", {"pin": 1234})]:
            await put(client, scope, key, value)
        yield client


async def put(client: httpx.AsyncClient, scope: str, key: str, value: Any) -> dict[str, Any]:
    response = await client.put(f"/v1/state/{scope}/{key}", json=value)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def open_console(browser: Any, server: ServeChild) -> Any:
    """A console in a fresh browser context (its own sessionStorage), recording what it asks and logs."""
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    page = await context.new_page()
    page.set_default_timeout(20 * MS)
    page.errors, page.answers, page.sockets, page.logged = [], [], [], []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("response", lambda r: page.answers.append((r.request.method, r.url, r.status, r.request.headers)))
    page.on("websocket", lambda ws: page.sockets.append(ws.url))
    page.on("console", lambda message: page.logged.append(message.text))
    await page.goto(server.url + "/")
    return page


async def sign_in(page: Any, token: str) -> None:
    await page.locator("#login-token").wait_for()
    await page.fill("#login-token", token)
    await page.click("#login-submit")
    await page.locator(".tabs").wait_for()  # the page started again with the token


async def live(page: Any) -> None:
    await page.wait_for_function("() => document.getElementById('conn').dataset.state === 'live'")


async def show_tab(page: Any, name: str) -> None:
    await page.click(f"#tab-{name}")
    await page.wait_for_selector(f"#panel-{name}:not([hidden])")


def api_paths(page: Any) -> list[str]:
    return [urlsplit(url).path for _, url, _, _ in page.answers if urlsplit(url).path.startswith("/v1/")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def viewer(browser: Any, server: ServeChild, tokens: dict[str, str], admin: httpx.AsyncClient) -> Any:
    """One console signed in with the viewer's token (notes:r, shared*:r) for the module."""
    page = await open_console(browser, server)
    await sign_in(page, tokens["viewer"])
    await live(page)
    yield page
    assert not page.errors, page.errors
    await page.context.close()


async def test_without_a_token_the_console_asks_for_one(browser: Any, server: ServeChild) -> None:
    page = await open_console(browser, server)
    try:
        await page.locator("#login-token").wait_for()
        assert await page.locator("#login-token").evaluate("el => el === document.activeElement")
        assert await page.locator(".tabs").is_hidden() and await page.locator("#panel-log").is_hidden()
        assert await page.locator("#conn").inner_text() == "signed out"
        await page.screenshot(path=screenshot_path("console-login"))
        assert api_paths(page) == ["/v1/whoami"], "nothing but whoami before a token is accepted"
        assert not [a for a in page.answers if a[2] == 401] and not page.sockets
        await page.click("#login-submit")  # empty: the browser's own "required" check keeps it
        assert api_paths(page) == ["/v1/whoami"]
        assert not page.errors, page.errors
    finally:
        await page.context.close()


async def test_a_wrong_expired_or_revoked_token_is_refused_and_not_kept(browser: Any, server: ServeChild) -> None:
    expired = new_token(server.db_file, "expired-one", scopes=["notes:r"], expires_in_ms=1)
    revoked = new_token(server.db_file, "revoked-one", scopes=["notes:r"])
    revoke(server.db_file, "revoked-one")
    page = await open_console(browser, server)
    try:
        for token in ("rpl_" + "x" * 43, expired, revoked):
            await page.fill("#login-token", token)
            await page.click("#login-submit")
            message = page.locator("#login-message")
            await message.filter(has_text="refused this token").wait_for()
            assert "wrong, expired or revoked" in await message.inner_text()
            assert await page.evaluate("sessionStorage.length") == 0
            assert await page.locator(".tabs").is_hidden()
            await page.evaluate("document.getElementById('login-message').textContent = ''")
        # A token this tab had kept, refused since: the page says so and forgets it.
        await page.evaluate("t => sessionStorage.setItem('ripple.console.token', t)", revoked)
        await page.reload()
        await page.locator("#login-message", has_text="the token this tab had kept").wait_for()
        assert await page.evaluate("sessionStorage.length") == 0
        assert not page.sockets, "no subscription with a refused token"
        assert not page.errors, page.errors
    finally:
        await page.context.close()


async def test_the_token_lives_in_session_storage_only(viewer: Any, tokens: dict[str, str]) -> None:
    token = tokens["viewer"]
    assert await viewer.locator("#who").inner_text() == "viewer"
    assert await viewer.evaluate("sessionStorage.getItem('ripple.console.token')") == token
    assert await viewer.evaluate("localStorage.length") == 0
    assert not await viewer.context.cookies()
    assert token not in viewer.url
    assert not any(token in text for text in viewer.logged), "never logged"
    after_login = [a for a in viewer.answers if urlsplit(a[1]).path.startswith("/v1/")][1:]
    assert after_login and all(headers.get("authorization") == f"Bearer {token}" for _, _, _, headers in after_login)
    assert viewer.sockets and all(parse_qs(urlsplit(url).query)["token"] == [token] for url in viewer.sockets)


async def test_the_state_browser_lists_only_readable_scopes(viewer: Any, admin: httpx.AsyncClient) -> None:
    await show_tab(viewer, "state")
    await viewer.locator("#scope-list li[data-name='notes']").wait_for()
    listed = await viewer.eval_on_selector_all("#scope-list li[data-name]", "items => items.map(li => li.dataset.name)")
    assert "secret" not in listed and set(listed) == {"notes", "shared-docs"}
    assert "read-only" in await viewer.locator("#scope-list li[data-name='notes']").inner_text()
    await viewer.locator("#scope-list li[data-name='notes']").click()
    await viewer.locator("#key-list li[data-name='a']").click()
    await viewer.wait_for_function("() => document.getElementById('value-view').textContent.includes('read me')")
    assert "read-only for this token" in await viewer.locator("#value-meta").inner_text()


async def test_editing_a_read_only_value_is_refused_before_anything_is_sent(
    viewer: Any, admin: httpx.AsyncClient
) -> None:
    await show_tab(viewer, "state")
    await viewer.locator("#scope-list li[data-name='notes']").click()
    await viewer.locator("#key-list li[data-name='a']").click()
    writes = len([a for a in viewer.answers if a[0] != "GET"])
    await viewer.click("#edit-button")
    notice = viewer.locator("#value-notice")
    await notice.filter(has_text="Editing is refused").wait_for()
    text = await notice.inner_text()
    assert "“viewer”" in text and "may read scope “notes” but not write it" in text and "Nothing was sent" in text
    assert await viewer.locator("#edit-form").is_hidden()
    assert len([a for a in viewer.answers if a[0] != "GET"]) == writes, "nothing was sent"

    # Sent anyway (the page believes it may write): the server's 403 is shown, and nothing changes.
    await viewer.evaluate("() => { rippleConsole.access.mayWrite = () => true; }")
    try:
        await viewer.click("#edit-button")
        await viewer.fill("#edit-text", '{"title": "overwritten"}')
        await viewer.click("#edit-save")
        message = viewer.locator("#edit-message")
        await message.filter(has_text="403").wait_for()
        assert await message.inner_text() == "Refused (403): token 'viewer' may not write scope 'notes'."
    finally:
        await viewer.evaluate("delete rippleConsole.access.mayWrite")
        await viewer.click("#edit-cancel")
    assert (await admin.get("/v1/state/notes/a")).json() == {"title": "read me"}


async def test_the_log_follows_only_readable_scopes(viewer: Any, admin: httpx.AsyncClient) -> None:
    await show_tab(viewer, "log")
    await live(viewer)
    (url,) = [u for u in viewer.sockets if "/v1/subscribe" in u and "scope=shared-docs" in u][-1:]
    query = parse_qs(urlsplit(url).query)
    assert sorted(query["scope"]) == ["notes", "shared-docs"] and query["kind"] == ["state"]
    assert "state events of the 2 scopes this token may read" in await viewer.locator("#log-status").inner_text()
    hidden = await put(admin, "secret", "y", {"pin": 5678})
    shown = await put(admin, "notes", "b", {"title": "also read me"})
    await viewer.locator(f"#log-viewport .row[data-offset='{shown['offset']}']").wait_for()
    scopes = await viewer.evaluate("rippleConsole.log.rows.map(r => r.scope)")
    offsets = await viewer.evaluate("rippleConsole.log.rows.map(r => r.offset)")
    assert "secret" not in scopes and hidden["offset"] not in offsets


async def test_a_forbidden_scope_typed_into_the_filter_says_so(viewer: Any) -> None:
    await show_tab(viewer, "log")
    sockets, asked = len(viewer.sockets), len(api_paths(viewer))
    status = viewer.locator("#log-status")

    async def apply(scope: str, kind: str) -> str:
        await viewer.fill("#f-scope", scope)
        await viewer.select_option("#f-kind", kind)
        before = await status.inner_text()
        await viewer.click("#log-filter button[type=submit]")
        await viewer.wait_for_function("() => document.getElementById('conn').dataset.state === 'idle'")
        # The state is already idle after the previous refusal: wait for this refusal's own words.
        changed = "(before) => document.getElementById('log-status').innerText !== before"
        await viewer.wait_for_function(changed, arg=before)
        return str(await status.inner_text())

    said = await apply("secret", "all")
    assert said == ("Token “viewer” (notes:r, shared*:r) may not read “secret”. Nothing was asked of the server.")
    said = await apply("notes, secret", "state")
    assert "may not read scope “secret”" in said and "“notes”" not in said
    said = await apply("notes", "all")
    assert "may not read the stream events of “notes”" in said and "choose kind “state”" in said
    said = await apply("", "stream")
    assert "Name the streams to follow" in said
    assert await viewer.locator("#conn").inner_text() == "not following"
    assert len(viewer.sockets) == sockets, "no subscription was opened"
    assert [p for p in api_paths(viewer)[asked:] if p not in ("/v1/health", "/v1/whoami")] == []
    # An allowed scope follows again.
    await viewer.fill("#f-scope", "notes")
    await viewer.select_option("#f-kind", "state")
    await viewer.click("#log-filter button[type=submit]")
    await live(viewer)
    assert "may not" not in await status.inner_text()
    await viewer.screenshot(path=screenshot_path("console-auth-log"))
    await viewer.fill("#f-scope", "")
    await viewer.select_option("#f-kind", "all")
    await viewer.click("#log-filter button[type=submit]")
    await live(viewer)


async def test_a_forbidden_subscription_is_shown_if_the_server_refuses_it(viewer: Any) -> None:
    """The server is the authority: a subscription it refuses (here the page is made to believe it may read
    `secret`) ends with its `forbidden` message on screen, and is not retried."""
    await show_tab(viewer, "log")
    believe = "Object.getPrototypeOf(rippleConsole.access)"  # every Access: the log asks whoami again on a filter
    await viewer.evaluate(f"() => {{ {believe}.realMayRead = {believe}.mayRead; {believe}.mayRead = () => true; }}")
    try:
        sockets = len(viewer.sockets)
        await viewer.fill("#f-scope", "secret")
        await viewer.select_option("#f-kind", "state")
        await viewer.click("#log-filter button[type=submit]")
        status = viewer.locator("#log-status")
        await status.filter(has_text="Refused (403)").wait_for()
        assert "token 'viewer' may not read state events of 'secret'" in await status.inner_text()
        await viewer.wait_for_function("() => document.getElementById('conn').dataset.state === 'closed'")
        assert len(viewer.sockets) == sockets + 1, "refused once, not retried"
    finally:
        await viewer.evaluate(f"() => {{ {believe}.mayRead = {believe}.realMayRead; }}")
    await viewer.fill("#f-scope", "")
    await viewer.select_option("#f-kind", "all")
    await viewer.click("#log-filter button[type=submit]")
    await live(viewer)


async def test_health_for_a_non_admin_says_what_needs_an_admin(viewer: Any) -> None:
    before = len(viewer.answers)
    await show_tab(viewer, "health")
    await viewer.locator("#health-cards .card", has_text="head").wait_for()
    assert "ok" in await viewer.locator("#health-cards").inner_text()
    note = viewer.locator("#counters-note")
    await note.wait_for()
    assert "Only an admin's token sees the server's counters" in await note.inner_text()
    assert await viewer.locator("#counters tbody tr").count() == 0
    projections = viewer.locator("#projections-note")
    await projections.wait_for()
    assert "shown to an admin's token only" in await projections.inner_text()
    assert "/v1/projections" not in api_paths(viewer) and not [a for a in viewer.answers[before:] if a[2] >= 400]
    await viewer.screenshot(path=screenshot_path("console-auth-health"))
    await show_tab(viewer, "log")


async def test_an_admin_sees_everything(browser: Any, server: ServeChild, tokens: dict[str, str],
                                        admin: httpx.AsyncClient) -> None:
    page = await open_console(browser, server)
    try:
        await sign_in(page, tokens["admin"])
        await live(page)
        assert await page.locator("#who").inner_text() == "ops · admin"
        (url,) = [u for u in page.sockets if "/v1/subscribe" in u]
        assert "scope" not in parse_qs(urlsplit(url).query), "the whole log"
        await show_tab(page, "state")
        await page.locator("#scope-list li[data-name='secret']").wait_for()
        await show_tab(page, "health")
        await page.locator("#counters td", has_text="subscriber overflows").wait_for()
        await page.locator(".projection[data-name='metrics']").wait_for()
        assert await page.locator("#counters-note").is_hidden()
        await page.click("#sign-out")
        await page.locator("#login-token").wait_for()
        assert await page.evaluate("sessionStorage.length") == 0
        assert not page.errors, page.errors
    finally:
        await page.context.close()


async def test_a_token_revoked_while_the_page_is_open_signs_the_tab_out(browser: Any, server: ServeChild) -> None:
    name = f"doomed-{random.randrange(1 << 30)}"
    token = new_token(server.db_file, name, scopes=["notes:r"])
    page = await open_console(browser, server)
    try:
        await sign_in(page, token)
        await live(page)
        sockets = len(page.sockets)
        revoke(server.db_file, name)  # the server rereads its tokens every second and closes the token's sessions
        message = page.locator("#login-message")
        await message.filter(has_text="revoked").wait_for(timeout=10 * MS)
        assert "the token was revoked or has expired" in await message.inner_text()
        assert "1008" in await message.inner_text()
        assert await page.locator("#conn").inner_text() == "signed out"
        assert await page.locator(".tabs").is_hidden() and await page.locator("#panel-log").is_hidden()
        assert await page.evaluate("sessionStorage.length") == 0
        assert len(page.sockets) == sockets, "no reconnect with the revoked token"
        await page.screenshot(path=screenshot_path("console-revoked"))
        refused_after = len([a for a in page.answers if a[2] == 401])
        assert refused_after <= 2, page.answers[-5:]  # at most the requests already on their way
        assert not page.errors, page.errors
    finally:
        await page.context.close()

