"""State endpoints of DESIGN §8 against a real uvicorn server: CRUD, ETags, preconditions, names, time travel, lists."""

from __future__ import annotations

import pytest

from tests.http.conftest import JSON, Live, error_of


async def test_put_get_created_then_updated(live: Live) -> None:
    c = live.client
    r = await c.put("/v1/state/todos/a", json={"title": "x"})
    assert r.status_code == 201
    assert r.json() == {"old_value": None, "new_value": {"title": "x"}, "version": 1, "offset": 1}
    assert r.headers["etag"] == '"1"'
    r = await c.put("/v1/state/todos/a", json={"title": "y"})
    assert r.status_code == 200
    assert r.json() == {"old_value": {"title": "x"}, "new_value": {"title": "y"}, "version": 2, "offset": 2}
    r = await c.get("/v1/state/todos/a")
    assert r.status_code == 200 and r.json() == {"title": "y"} and r.headers["etag"] == '"2"'
    r = await c.put("/v1/state/todos/n", json=3.5)
    assert r.status_code == 201
    assert (await c.get("/v1/state/todos/n")).json() == 3.5
    assert live.store.head == 3


async def test_get_missing_is_404(live: Live) -> None:
    error = error_of(await live.client.get("/v1/state/todos/nope"), 404, "not_found")
    assert error["detail"]["key"] == "nope"
    await live.unchanged(0)


async def test_if_none_match_on_get_gives_304(live: Live) -> None:
    c = live.client
    await c.put("/v1/state/s/k", json=1)
    r = await c.get("/v1/state/s/k", headers={"If-None-Match": '"1"'})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == '"1"'
    r = await c.get("/v1/state/s/k", headers={"If-None-Match": '"7", W/"1"'})
    assert r.status_code == 304
    r = await c.get("/v1/state/s/k", headers={"If-None-Match": "*"})
    assert r.status_code == 304
    r = await c.get("/v1/state/s/k", headers={"If-None-Match": '"2"'})
    assert r.status_code == 200 and r.json() == 1
    error_of(await c.get("/v1/state/s/k", headers={"If-None-Match": "garbage"}), 400, "bad_request")
    await live.unchanged(1)


async def test_if_match_on_writes(live: Live) -> None:
    c = live.client
    await c.put("/v1/state/s/k", json=1)
    error_of(await c.put("/v1/state/s/k", json=2, headers={"If-Match": '"9"'}), 412, "precondition_failed")
    error_of(await c.put("/v1/state/s/missing", json=2, headers={"If-Match": '"1"'}), 412, "precondition_failed")
    error_of(await c.put("/v1/state/s/missing", json=2, headers={"If-Match": "*"}), 412, "precondition_failed")
    error_of(await c.put("/v1/state/s/k", json=2, headers={"If-Match": 'W/"1"'}), 412, "precondition_failed")
    error_of(await c.put("/v1/state/s/k", json=2, headers={"If-None-Match": "*"}), 412, "precondition_failed")
    error_of(await c.delete("/v1/state/s/k", headers={"If-Match": '"5"'}), 412, "precondition_failed")
    patch = {"ops": [{"type": "set", "path": "a", "value": 1}]}
    error_of(await c.patch("/v1/state/s/k", json=patch, headers={"If-Match": '"5"'}), 412, "precondition_failed")
    await live.unchanged(1)
    for bad in ("1", '"1", "2"', '"x"', '"1'):
        error_of(await c.put("/v1/state/s/k", json=2, headers={"If-Match": bad}), 400, "bad_request")
    error_of(await c.put("/v1/state/s/k", json=2, headers={"If-None-Match": '"1"'}), 400, "bad_request")
    both = {"If-Match": '"1"', "If-None-Match": "*"}
    error_of(await c.put("/v1/state/s/k", json=2, headers=both), 400, "bad_request")
    await live.unchanged(1)
    r = await c.put("/v1/state/s/k", json=2, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["offset"] == 2
    r = await c.put("/v1/state/s/k", json=3, headers={"If-Match": "*"})
    assert r.status_code == 200 and r.json()["offset"] == 3
    r = await c.put("/v1/state/s/new", json=1, headers={"If-None-Match": "*"})
    assert r.status_code == 201
    r = await c.delete("/v1/state/s/k", headers={"If-Match": '"3"'})
    assert r.status_code == 200 and r.json() == {"old_value": 3, "offset": 5}


async def test_keys_with_slashes_and_unicode(live: Live) -> None:
    c = live.client
    r = await c.put("/v1/state/users/user/1", json={"n": 1})
    assert r.status_code == 201
    assert (await c.get("/v1/state/users/user%2F1")).json() == {"n": 1}  # %2F in a key is the same key
    r = await c.put("/v1/state/users/caf%C3%A9%20au%20lait", json=2)
    assert r.status_code == 201
    page = (await c.get("/v1/state/users")).json()
    assert [i["key"] for i in page["items"]] == ["user/1", "café au lait"]
    r = await c.put("/v1/state/users/a/b/", json=3)
    assert r.status_code == 201
    assert (await c.get("/v1/state/users/a/b/")).json() == 3
    error_of(await c.get("/v1/state/users/a/b"), 404, "not_found")


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/state/to%2Fdos/k", 422, "invalid_name"),
        ("/v1/state/to%2fdos/k", 422, "invalid_name"),
        ("/v1/state/todos/a%00b", 422, "invalid_name"),
        ("/v1/state/to%01dos/k", 422, "invalid_name"),
        ("/v1/state/todos/%7F", 422, "invalid_name"),
        ("/v1/state/todos/%FF", 400, "bad_request"),
        ("/v1/state/" + "s" * 257 + "/k", 422, "invalid_name"),
        ("/v1/state/s/" + "k" * 1025, 422, "invalid_name"),
    ],
)
async def test_bad_names_are_refused(live: Live, path: str, status: int, code: str) -> None:
    c = live.client
    error_of(await c.put(path, json=1), status, code)
    error_of(await c.patch(path, json={"ops": [{"type": "set", "path": "a", "value": 1}]}), status, code)
    error_of(await c.delete(path), status, code)
    error_of(await c.get(path), status, code)
    await live.unchanged(0)


async def test_scope_with_encoded_slash_on_list(live: Live) -> None:
    error_of(await live.client.get("/v1/state/a%2Fb"), 422, "invalid_name")
    await live.unchanged(0)


async def test_bad_bodies(live: Live) -> None:
    c = live.client
    error_of(await c.put("/v1/state/s/k", content=b'{"a":', headers=JSON), 400, "bad_request")
    error_of(await c.put("/v1/state/s/k", content=b"", headers=JSON), 400, "bad_request")
    error_of(await c.put("/v1/state/s/k", content=b"null", headers=JSON), 422, "invalid_value")
    error_of(await c.put("/v1/state/s/k", content=b'{"n": 1e999}', headers=JSON), 422, "invalid_value")
    error_of(await c.put("/v1/state/s/k", content=b'{"n": 99999999999999999999}', headers=JSON), 422)
    error_of(await c.put("/v1/state/s/k", content=b"1"), 415, "unsupported_media_type")
    error_of(await c.put("/v1/state/s/k", content=b"1", headers={"content-type": "text/plain"}), 415)
    error_of(await c.put("/v1/state/s/k", data={"a": "1"}), 415, "unsupported_media_type")
    await live.unchanged(0)
    r = await c.put("/v1/state/s/k", content=b"1", headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 201
    r = await c.put("/v1/state/s/k", content=b"2", headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200


async def test_patch(live: Live) -> None:
    c = live.client
    ops = [{"type": "set", "path": "title", "value": "x"}, {"type": "increment", "path": "n", "by": 2}]
    r = await c.patch("/v1/state/s/k", json={"ops": ops})
    assert r.status_code == 201 and r.headers["etag"] == '"1"'
    assert r.json() == {"old_value": None, "new_value": {"title": "x", "n": 2}, "version": 1, "offset": 1, "errors": []}
    r = await c.patch("/v1/state/s/k", json={"ops": [{"type": "increment", "path": "title", "by": 1}, ops[1]]})
    assert r.status_code == 200
    body = r.json()
    assert body["new_value"] == {"title": "x", "n": 4} and body["errors"][0]["op_index"] == 0
    failing = {"ops": [{"type": "increment", "path": "title", "by": 1}]}
    error = error_of(await c.patch("/v1/state/s/k", json=failing), 422)
    assert error["code"] == "update_rejected" and error["detail"]["errors"][0]["op_index"] == 0
    error_of(await c.patch("/v1/state/s/k", json={"ops": []}), 422, "update_rejected")
    error = error_of(await c.patch("/v1/state/s/k", json={"ops": [{"type": "explode"}]}), 422, "invalid_op")
    assert error["detail"]["path"] == "$.ops[0].type"
    bad_by = {"ops": [{"type": "increment", "path": "n", "by": "1"}]}
    error_of(await c.patch("/v1/state/s/k", json=bad_by), 422, "invalid_op")
    error_of(await c.patch("/v1/state/s/k", json={"opz": []}), 422)
    error_of(await c.patch("/v1/state/s/k", json=[1]), 422)
    error_of(await c.patch("/v1/state/s/k", content=b"{", headers=JSON), 400, "bad_request")
    await live.unchanged(2)


async def test_delete(live: Live) -> None:
    c = live.client
    await c.put("/v1/state/s/k", json={"a": 1})
    r = await c.delete("/v1/state/s/k")
    assert r.status_code == 200 and r.json() == {"old_value": {"a": 1}, "offset": 2}
    error_of(await c.delete("/v1/state/s/k"), 404, "not_found")
    error_of(await c.get("/v1/state/s/k"), 404, "not_found")
    await live.unchanged(2)


async def test_time_travel(live: Live) -> None:
    c = live.client
    for value in (1, 2, 3):
        await c.put("/v1/state/s/k", json=value)
    await c.delete("/v1/state/s/k")
    r = await c.get("/v1/state/s/k", params={"at": 2})
    assert r.json() == 2 and r.headers["etag"] == '"2"'
    error_of(await c.get("/v1/state/s/k", params={"at": 4}), 404, "not_found")
    assert [i["value"] for i in (await c.get("/v1/state/s", params={"at": 1})).json()["items"]] == [1]
    error_of(await c.get("/v1/state/s/k", params={"at": 99}), 422)
    error_of(await c.get("/v1/state/s/k", params={"at": -1}), 422)
    error_of(await c.get("/v1/state/s/k", params={"at": "x"}), 400, "bad_request")
    error_of(await c.get("/v1/state/s", params={"at": 99}), 422)
    await live.unchanged(4)


async def test_list_pages_and_bad_parameters(live: Live) -> None:
    c = live.client
    for i in range(25):
        await c.put(f"/v1/state/s/k{i:02}", json=i)
    seen, cursor = [], None
    while True:
        params = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        page = (await c.get("/v1/state/s", params=params)).json()
        seen += [item["key"] for item in page["items"]]
        assert set(page["items"][0]) == {"key", "value", "version", "offset"}
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"k{i:02}" for i in range(25)]
    assert len((await c.get("/v1/state/s")).json()["items"]) == 25
    assert (await c.get("/v1/state/unknown")).json() == {"items": [], "next_cursor": None}
    assert (await c.get("/v1/scopes")).json() == {"groups": ["s"]}
    error_of(await c.get("/v1/state/s", params={"limit": 0}), 422)
    error_of(await c.get("/v1/state/s", params={"limit": 1001}), 422)
    error_of(await c.get("/v1/state/s", params={"limit": "ten"}), 400, "bad_request")
    error_of(await c.get("/v1/state/s", params={"cursor": "!!not-a-cursor"}), 400, "bad_request")
    error_of(await c.get("/v1/state/s%00"), 422, "invalid_name")
    await live.unchanged(25)


async def test_idempotency_key(live: Live) -> None:
    c = live.client
    h = {"Idempotency-Key": "req-1"}
    first = await c.put("/v1/state/s/k", json=1, headers=h)
    again = await c.put("/v1/state/s/k", json=1, headers=h)
    assert first.status_code == 201 and again.json() == first.json()
    assert live.store.head == 1
    error_of(await c.put("/v1/state/s/k", json=2, headers=h), 409, "idempotency_key_reused")
    error_of(await c.put("/v1/state/s/k", json=2, headers={"Idempotency-Key": "x" * 300}), 400, "bad_request")
    error_of(await c.put("/v1/state/s/k", json=2, headers={"Idempotency-Key": ""}), 400, "bad_request")
    await live.unchanged(1)
    ops = {"ops": [{"type": "increment", "path": "n", "by": 1}]}
    a = await c.patch("/v1/state/s/m", json=ops, headers={"Idempotency-Key": "p"})
    b = await c.patch("/v1/state/s/m", json=ops, headers={"Idempotency-Key": "p"})
    assert a.json() == b.json() and live.store.head == 2
    d1 = await c.delete("/v1/state/s/m", headers={"Idempotency-Key": "d"})
    d2 = await c.delete("/v1/state/s/m", headers={"Idempotency-Key": "d"})
    assert d1.status_code == d2.status_code == 200 and d1.json() == d2.json()
    await live.unchanged(3)
