"""Every route by {no token, wrong, expired, revoked, read-only, write, admin} on one ``--auth`` server (DESIGN §15).

401 for a missing, wrong, expired or revoked token; 403 for a valid token without the grant; both with the JSON error
body and nothing appended; the grant's holder gets the route's ordinary answer. WebSocket endpoints answer with a
``hello`` frame, or an ``error`` frame (``unauthorized``/``forbidden``) and close 1008.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from examples.todo.api import TodoController
from ripple import Store
from tests.conftest import SECOND
from tests.http.conftest import error_of
from tests.security.conftest import KINDS, Served, bearer, high_limit_security, make_tokens, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    need: str  # read | write | stream_read | stream_write | admin | any | public
    ok: frozenset[int]
    body: Any = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


HTTP_ROUTES = [
    Route("GET", "/v1/state/notes/seed", "read", frozenset({200})),
    Route("GET", "/v1/state/notes/missing", "read", frozenset({404})),
    Route("PUT", "/v1/state/notes/put", "write", frozenset({200, 201}), {"v": 1}),
    Route("PATCH", "/v1/state/notes/patch", "write", frozenset({200, 201}),
          {"ops": [{"type": "increment", "path": "n", "by": 1}]}),
    Route("DELETE", "/v1/state/notes/gone", "write", frozenset({200, 404})),
    Route("GET", "/v1/state/notes", "read", frozenset({200})),
    Route("GET", "/v1/scopes", "any", frozenset({200})),
    Route("POST", "/v1/batch", "write", frozenset({200}),
          {"commands": [{"op": "set", "scope": "notes", "key": "b", "value": 1}]}),
    Route("POST", "/v1/streams/live/g", "stream_write", frozenset({201}), {"type": "ping", "data": 1}),
    # a stream's stored items (scope $stream:live:g) answer to the stream's grants (ripple.auth.grants)
    Route("GET", "/v1/state/$stream:live:g/seed", "stream_read", frozenset({200})),
    Route("PUT", "/v1/state/$stream:live:g/put", "stream_write", frozenset({200, 201}), {"v": 1}),
    Route("GET", "/v1/events?scope=notes&kind=state", "read", frozenset({200})),
    Route("GET", "/v1/events", "admin", frozenset({200})),
    Route("GET", "/v1/projections", "admin", frozenset({200})),
    Route("GET", "/v1/projections/metrics", "admin", frozenset({200})),
    Route("POST", "/v1/projections/metrics/rebuild", "admin", frozenset({202})),
    Route("GET", "/v1/health", "public", frozenset({200})),
    Route("GET", "/v1/whoami", "public", frozenset({200})),
    Route("GET", "/metrics", "admin", frozenset({200})),
    Route("POST", "/todos/", "write", frozenset({201}), {"title": "t"}),
    Route("GET", "/todos/", "read", frozenset({200})),
    Route("GET", "/todos/metrics", "read", frozenset({200})),
    Route("POST", "/todos/toggle", "write", frozenset({200}), {"id": "seedtodo"}),
    Route("POST", "/todos/delete", "write", frozenset({404}), {"id": "none"}),
]
WS_ROUTES = [
    Route("WS", "/v1/subscribe?scope=notes", "read", frozenset()),
    Route("WS", "/v1/subscribe?scope=notes&key=seed&snapshot=true", "read", frozenset()),
    Route("WS", "/v1/subscribe?kind=all", "admin", frozenset()),
    Route("WS", "/v1/subscribe?scope=live&kind=stream", "stream_read", frozenset()),
    Route("WS", "/v1/streams/live/g?after=0", "stream_read", frozenset()),
    Route("WS", "/v1/subscribe?scope=$stream:live:g&after=0", "stream_read", frozenset()),
]
GRANTED = {
    "read": {"read", "stream_read", "any", "public"},
    "write": {"read", "write", "stream_read", "stream_write", "any", "public"},
    "admin": {"read", "write", "stream_read", "stream_write", "admin", "any", "public"},
    "none": {"public"},
}


def expected_refusal(kind: str, need: str) -> int | None:
    """The status a ``kind`` token gets on a route that needs ``need``: None (served), 401 or 403."""
    if need in GRANTED.get(kind, set()):
        return None
    return 403 if kind in ("read", "write") else 401


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    db: Path = tmp_path_factory.mktemp("matrix") / "matrix.db"
    async with Store.open(db) as store:
        await store.set("notes", "seed", {"title": "seed"})
        todo = {"id": "seedtodo", "title": "seed", "completed": False, "created_at": "2026-01-01T00:00:00.000+00:00"}
        await store.set("todos", "seedtodo", todo)
        await store.set("$stream:live:g", "seed", {"item": 1})
        tokens = make_tokens(db)
        async with serving(db, store=store, security=high_limit_security()) as s:
            s.tokens = tokens
            yield s


@pytest.mark.parametrize("route", HTTP_ROUTES, ids=lambda r: r.id)
@pytest.mark.parametrize("kind", KINDS)
async def test_http_route(served: Served, kind: str, route: Route) -> None:
    head = served.store.head
    headers = bearer(served.tokens[kind])
    if route.body is not None:
        headers.update(JSON)
    async with served.client() as client:
        content = None if route.body is None else json.dumps(route.body)
        response = await client.request(route.method, route.path, headers=headers, content=content)
    refusal = expected_refusal(kind, route.need)
    if refusal is None:
        assert response.status_code in route.ok, (response.status_code, response.text)
        return
    error = error_of(response, refusal, "unauthorized" if refusal == 401 else "forbidden")
    token = served.tokens[kind]
    assert token is None or token not in response.text
    if refusal == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert error["detail"] is None  # wrong, expired and revoked look the same
    elif route.path.endswith("/rebuild"):
        assert "may not rebuild" in error["message"], error  # it said "may not read"
    assert served.store.head == head, "a refused request appended something"


@pytest.mark.parametrize("route", WS_ROUTES, ids=lambda r: r.id)
@pytest.mark.parametrize("kind", KINDS)
async def test_websocket_route(served: Served, kind: str, route: Route) -> None:
    token = served.tokens[kind]
    sep = "&" if "?" in route.path else "?"
    url = f"ws://127.0.0.1:{served.port}{route.path}" + ("" if token is None else f"{sep}token={token}")
    async with connect(url) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND))
        refusal = expected_refusal(kind, route.need)
        if refusal is None:
            assert first["type"] == "hello", first
            return
        assert first == {"type": "error", "code": "unauthorized" if refusal == 401 else "forbidden",
                         "message": first["message"]}, first
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5 * SECOND)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_websocket_takes_the_authorization_header(served: Served) -> None:
    url = f"ws://127.0.0.1:{served.port}/v1/subscribe?scope=notes"
    async with connect(url, additional_headers=bearer(served.tokens["read"])) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND))["type"] == "hello"


async def test_a_forbidden_key_and_a_missing_key_look_the_same(served: Served) -> None:
    await served.store.set("secret", "there", {"x": 1})
    async with served.client(headers=bearer(served.tokens["read"])) as client:
        there = await client.get("/v1/state/secret/there")
        missing = await client.get("/v1/state/secret/not-there")
        listed = await client.get("/v1/state/secret")
        unknown = await client.get("/v1/state/no-such-scope")
    assert there.status_code == missing.status_code == listed.status_code == unknown.status_code == 403
    assert there.json()["error"]["code"] == missing.json()["error"]["code"] == "forbidden"
    assert there.json()["error"]["detail"] == missing.json()["error"]["detail"]
    assert "there" not in there.text.replace("secret", "")


async def test_a_batch_with_one_forbidden_command_is_refused_whole(served: Served) -> None:
    head = served.store.head
    commands = [{"op": "set", "scope": "notes", "key": "ok", "value": 1},
                {"op": "set", "scope": "secret", "key": "no", "value": 1}]
    async with served.client(headers={**bearer(served.tokens["write"]), **JSON}) as client:
        response = await client.post("/v1/batch", content=json.dumps({"commands": commands}))
    error = error_of(response, 403, "forbidden")
    assert error["detail"]["index"] == 1
    assert served.store.head == head
    assert await served.store.get("notes", "ok") is None


async def test_scopes_list_only_what_the_token_may_read(served: Served) -> None:
    await served.store.set("secret", "s", 1)
    async with served.client() as client:
        mine = await client.get("/v1/scopes", headers=bearer(served.tokens["read"]))
        every = await client.get("/v1/scopes", headers=bearer(served.tokens["admin"]))
    assert "secret" not in mine.json()["groups"] and "notes" in mine.json()["groups"]
    assert "$stream:live:g" in mine.json()["groups"]  # readable through the stream grant live:r
    assert "secret" in every.json()["groups"]


async def test_health_details_are_for_admins(served: Served) -> None:
    async with served.client() as client:
        anonymous = (await client.get("/v1/health")).json()
        reader = (await client.get("/v1/health", headers=bearer(served.tokens["read"]))).json()
        admin = (await client.get("/v1/health", headers=bearer(served.tokens["admin"]))).json()
    assert anonymous["status"] == "ok" and anonymous["counters"] == {} and reader["counters"] == {}
    assert "commits" in admin["counters"]


async def test_writes_carry_the_token_name_as_actor(served: Served) -> None:
    async with served.client(headers={**bearer(served.tokens["write"]), **JSON}) as client:
        put = await client.put("/v1/state/notes/by-writer", content=b'{"a":1}')
        todo = await client.post("/todos/", content=b'{"title":"mine"}')
        sent = await client.post("/v1/streams/live/g", content=b'{"type":"t","data":1}')
    offsets = {put.json()["offset"], sent.json()["offset"]}
    events = await served.store.read_events(after=min(offsets) - 1, limit=100)
    written = [e for e in events if e.offset in offsets or (e.scope == "todos" and e.key == todo.json()["id"])]
    assert len(written) == 3 and all(e.meta.actor == "write" for e in written), written


async def test_the_matrix_covers_every_route(served: Served) -> None:
    """A route added later without a row here fails this test: every route is in the access matrix."""
    from litestar import Litestar

    from ripple.http.app import create_app

    app: Litestar = create_app(served.store, route_handlers=[TodoController])
    covered = set()
    for route in HTTP_ROUTES + WS_ROUTES:
        path = route.path.partition("?")[0].rstrip("/") or "/"
        method = None if route.method == "WS" else route.method
        _, _, _, _, template = app.asgi_router.handle_routing(path=path, method=method)
        covered.add((route.method, template))
    every = set()
    for r in app.routes:
        if not r.path.startswith(("/v1", "/todos", "/metrics")):
            continue
        for method in getattr(r, "methods", {"WS"}) - {"OPTIONS", "HEAD"}:
            every.add((method, re.sub(r"\{(\w+):\w+\}", r"{\1}", r.path)))  # the router's template drops types
    assert every <= covered, sorted(every - covered)


async def test_whoami_says_what_the_token_may_do(served: Served) -> None:
    async with served.client() as client:
        reader = (await client.get("/v1/whoami", headers=bearer(served.tokens["read"]))).json()
        admin = (await client.get("/v1/whoami", headers=bearer(served.tokens["admin"]))).json()
        anonymous = (await client.get("/v1/whoami")).json()
    assert reader == {"auth": True, "name": "read", "admin": False, "scopes": ["notes:r", "todos:r", "todo-metrics:r"],
                      "streams": ["live:r"], "readable": reader["readable"]}
    await served.store.set("secret", "w", 1)
    async with served.client() as client:
        reader = (await client.get("/v1/whoami", headers=bearer(served.tokens["read"]))).json()
        admin = (await client.get("/v1/whoami", headers=bearer(served.tokens["admin"]))).json()
    assert "notes" in reader["readable"] and "secret" not in reader["readable"]
    assert admin["admin"] is True and "secret" in admin["readable"]
    assert anonymous["auth"] is True and anonymous["name"] is None and anonymous["readable"] == []


async def test_a_refused_kind_all_says_which_kind_would_do(served: Served) -> None:
    async with served.client() as client:
        response = await client.get("/v1/events?scope=notes", headers=bearer(served.tokens["read"]))
        error = error_of(response, 403, "forbidden")
        assert "kind=state would be allowed" in error["message"], error
        allowed = await client.get("/v1/events?scope=notes&kind=state", headers=bearer(served.tokens["read"]))
        assert allowed.status_code == 200
