"""Every JSON-taking route decodes first and validates second (DESIGN §8): a body that is not JSON at all is 400
``bad_request`` whatever shape the route expects; well-formed JSON of the wrong shape is 422. Nothing is written."""

from __future__ import annotations

import pytest

from tests.http.conftest import JSON, Live, error_of

# Every route that reads a JSON body: the REST API and the todo example's routes (mounted by the fixture).
ROUTES = [
    ("PUT", "/v1/state/s/k"),
    ("PATCH", "/v1/state/s/k"),
    ("POST", "/v1/batch"),
    ("POST", "/v1/streams/chat/room"),
    ("POST", "/todos"),
    ("POST", "/todos/toggle"),
    ("POST", "/todos/delete"),
]

# Not JSON at all: truncated, a syntax error inside an otherwise expected container, trailing garbage, empty.
UNPARSEABLE = [b"[{", b"[1,", b"{", b'{"a":', b'{"a":1}x', b'{"ops": [}', b"nul", b"", b"   ", b"\xff"]

# Well-formed JSON that no route above accepts (PUT takes any value except null, so it gets its own list).
WRONG_SHAPE = [b"[]", b"[{}]", b"5", b'"x"', b'{"a":1}', b'{"ops": 5}', b'{"commands": {}}', b"true",
               b'{"ops": [{"type": "increment", "path": "n", "by": 99999999999999999999}]}']


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_unparseable_json_is_400_on_every_route(live: Live, method: str, path: str) -> None:
    for body in UNPARSEABLE:
        response = await live.client.request(method, path, content=body, headers=JSON)
        error = error_of(response, 400, "bad_request")
        assert "JSON" in error["message"] or "empty" in error["message"], (body, error)
    await live.unchanged(0)


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if r[0] != "PUT"])
async def test_wrong_shape_is_422_on_every_route(live: Live, method: str, path: str) -> None:
    for body in WRONG_SHAPE:
        response = await live.client.request(method, path, content=body, headers=JSON)
        assert response.status_code == 422, (body, response.text)
        error_of(response, 422)
    await live.unchanged(0)


async def test_put_refuses_only_null_among_well_formed_values(live: Live) -> None:
    error_of(await live.client.put("/v1/state/s/k", content=b"null", headers=JSON), 422, "invalid_value")
    error_of(await live.client.put("/v1/state/s/k", content=b"[99999999999999999999]", headers=JSON), 422)
    await live.unchanged(0)
    assert (await live.client.put("/v1/state/s/k", content=b"[{}]", headers=JSON)).status_code == 201


async def test_a_lone_surrogate_escape_is_named(live: Live) -> None:
    for body in (b'"\\ud800"', b'{"a": "x\\udc00"}', b'["\\uD83D", 1]'):
        response = await live.client.put("/v1/state/s/k", content=body, headers=JSON)
        error = error_of(response, 400, "bad_request")
        assert "surrogate pair" in error["message"], (body, error)
    paired = await live.client.put("/v1/state/s/k", content=b'"\\ud83d\\ude00"', headers=JSON)
    assert paired.status_code == 201 and paired.json()["new_value"] == "\U0001f600"
