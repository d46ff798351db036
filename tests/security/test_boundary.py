"""The browser boundary without a browser (the same matrix from Chromium: test_browser.py): Host, Origin, CORS and
JSON-only bodies, on by default, with and without ``--auth`` (DESIGN §15)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from litestar import Request, post
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from examples.todo.api import TodoController
from ripple.http.access import ANY_BODY
from ripple.http.serve import ServeOptions
from tests.conftest import SECOND
from tests.http.conftest import error_of
from tests.security.conftest import Served, events_in, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

LISTED = "http://app.example:3000"
CORS = "http://cors.example:4000"
FOREIGN = "http://evil.example"


@post("/upload", opt={ANY_BODY: True}, status_code=200)
async def upload(request: Request[Any, Any, Any]) -> dict[str, int]:
    """A user route that opted out of the JSON-only rule."""
    return {"bytes": len(await request.body())}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    db: Path = tmp_path_factory.mktemp("boundary") / "b.db"
    options = ServeOptions(db=str(db), port=0, allow_hosts=("db.example",), allow_origins=(LISTED,),
                           cors_origins=(CORS,))
    async with serving(db, options=options, handlers=[TodoController, upload]) as s:
        yield s


@pytest.mark.parametrize(("host", "allowed"), [
    ("127.0.0.1:{port}", True), ("localhost:{port}", True), ("[::1]:{port}", True), ("LOCALHOST", True),
    ("db.example:{port}", True), ("evil.example:{port}", False), ("127.0.0.1.evil.example", False),
    ("localhost.evil.example:{port}", False),
])
async def test_host_is_checked_on_every_request(served: Served, host: str, allowed: bool) -> None:
    headers = {"host": host.format(port=served.port)}
    async with served.client() as client:
        for method, path, body in (("GET", "/v1/health", None), ("GET", "/nowhere", None),
                                   ("PUT", "/v1/state/s/k", b"1")):
            response = await client.request(method, path, headers={**headers, "content-type": "application/json"},
                                            content=body)
            if allowed:
                assert response.status_code in (200, 201, 404), response.text
            else:
                error_of(response, 421, "host_not_allowed")
    status, body = await raw_upgrade(served.port, "/v1/subscribe", headers["host"])
    if allowed:
        assert status == 101
    else:
        assert status == 421 and json.loads(body)["error"]["code"] == "host_not_allowed"


async def raw_upgrade(port: int, path: str, host: str) -> tuple[int, bytes]:
    """A WebSocket handshake with a chosen Host header (clients set their own): the status and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * SECOND)
        status = int(head.split(b" ", 2)[1])
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        body = await asyncio.wait_for(reader.readexactly(length), 5 * SECOND) if length else b""
        return status, body
    finally:
        writer.close()


@pytest.mark.parametrize(("origin", "allowed"), [
    (None, True), ("same", True), (LISTED, True), (CORS, True), (FOREIGN, False), ("null", False),
    ("http://127.0.0.1:1", False), ("https://app.example:3000", False),
])
async def test_websocket_upgrades_check_origin(served: Served, origin: str | None, allowed: bool) -> None:
    headers = {} if origin is None else {"origin": f"http://127.0.0.1:{served.port}" if origin == "same" else origin}
    url = f"ws://127.0.0.1:{served.port}/v1/subscribe?after=0"
    for path in ("/v1/subscribe?after=0", "/v1/streams/s/g?after=0"):
        url = f"ws://127.0.0.1:{served.port}{path}"
        if allowed:
            async with connect(url, additional_headers=headers) as ws:
                assert json.loads(await ws.recv())["type"] == "hello"
        else:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 403
            assert json.loads(refused.value.response.body)["error"]["code"] == "origin_not_allowed"


@pytest.mark.parametrize("origin", [FOREIGN, "null"])
async def test_a_cross_site_form_cannot_write_or_rebuild(served: Served, origin: str) -> None:
    before = events_in(served.db)
    form = {"content-type": "application/x-www-form-urlencoded", "origin": origin}
    async with served.client() as client:
        for path, body in (("/todos/", b"title=pwned"), ("/v1/projections/metrics/rebuild", b""),
                           ("/v1/state/s/k", b"x=1"), ("/v1/batch", b"commands=1")):
            method = "PUT" if path.startswith("/v1/state") else "POST"
            error_of(await client.request(method, path, headers=form, content=body), 403, "origin_not_allowed")
    assert events_in(served.db) == before


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                          "text/plain", None])
async def test_bodies_must_be_json_even_without_an_origin(served: Served, content_type: str | None) -> None:
    before = events_in(served.db)
    headers = {} if content_type is None else {"content-type": content_type}
    async with served.client() as client:
        for path, body in (("/todos/", b'{"title":"x"}'), ("/todos/toggle", b'{"id":"x"}'),
                           ("/v1/projections/metrics/rebuild", b"a=1")):
            error_of(await client.post(path, headers=headers, content=body), 415, "unsupported_media_type")
    assert events_in(served.db) == before


async def test_json_bodies_and_empty_posts_go_through(served: Served) -> None:
    async with served.client() as client:
        created = await client.post("/todos/", json={"title": "ok"})
        assert created.status_code == 201, created.text
        same_origin = await client.post("/todos/", json={"title": "ok"},
                                        headers={"origin": f"http://127.0.0.1:{served.port}"})
        assert same_origin.status_code == 201, same_origin.text
        assert (await client.post("/v1/projections/metrics/rebuild")).status_code == 202


async def test_a_route_may_opt_out_of_json_only(served: Served) -> None:
    async with served.client() as client:
        response = await client.post("/upload", content=b"a,b,c\n", headers={"content-type": "text/csv"})
    assert response.status_code == 200 and response.json() == {"bytes": 6}


async def test_no_cors_by_default(served: Served) -> None:
    async with served.client() as client:
        preflight = await client.options("/v1/state/s/k", headers={"origin": LISTED,
                                                                     "access-control-request-method": "PUT"})
        plain = await client.get("/v1/health", headers={"origin": LISTED})
    error_of(preflight, 403, "origin_not_allowed")
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in plain.headers


@pytest.mark.parametrize(("path", "methods"), [
    ("/v1/state/s/k", {"DELETE", "GET", "PATCH", "PUT"}),
    ("/v1/state/s", {"GET"}),
    ("/v1/batch", {"POST"}),
    ("/v1/projections/metrics/rebuild", {"POST"}),
    ("/todos/", {"GET", "POST"}),
])
async def test_cors_preflight_names_each_routes_real_methods(served: Served, path: str, methods: set[str]) -> None:
    async with served.client() as client:
        response = await client.options(path, headers={
            "origin": CORS, "access-control-request-method": sorted(methods)[0],
            "access-control-request-headers": "authorization, content-type"})
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == CORS
    assert set(response.headers["access-control-allow-methods"].split(", ")) == methods
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "if-match", "if-none-match", "idempotency-key", "x-request-id"} <= allowed
    assert "access-control-allow-credentials" not in response.headers


async def test_cors_answers_carry_the_origin(served: Served) -> None:
    async with served.client() as client:
        response = await client.put("/v1/state/s/cors", json={"a": 1}, headers={"origin": CORS})
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == CORS
    assert "etag" in response.headers["access-control-expose-headers"].lower()
    assert "origin" in response.headers["vary"].lower()


async def test_an_app_websocket_route_is_refused_before_the_upgrade_without_a_token(tmp_path: Path) -> None:
    from litestar import WebSocket, websocket

    @websocket("/echo")
    async def echo(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        await socket.send_text("hi")
        await socket.close()

    async with serving(tmp_path / "e.db", auth=True, handlers=[echo]) as s:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{s.port}/echo"):
                pass
        assert refused.value.response.status_code == 401
