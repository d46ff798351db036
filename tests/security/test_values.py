"""One nesting limit at every entrance, and every accepted value readable by every reader (DESIGN §15).

Values may nest arrays and objects ``MAX_DEPTH`` (64) levels. The property: any value at or just below the limit,
written through REST or the embedded API, reads back equal through GET, list, ``/v1/events``, a WebSocket
subscription, ``export`` and ``verify``. Deeper values are refused at every entrance (REST, batch, PATCH, stream
send, embedded, iii, import) with a 4xx, never a 500, and nothing is appended.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from ripple import InvalidValueError, Store
from ripple.core.validate import MAX_DEPTH, check_depth
from ripple.iii.engine import Engine
from ripple.iii.protocol import IIIError
from ripple.offline import ImportError_, event_lines, import_events, verify
from ripple.store.sqlite import connect_reader
from tests.conftest import SECOND, count
from tests.security.conftest import BackgroundServer, Served

JSON = {"content-type": "application/json"}
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4),
)


@st.composite
def nested(draw: st.DrawFn, depth: int) -> Any:
    """A JSON value whose deepest path crosses exactly ``depth`` arrays and objects, in a random shape."""
    value: Any = draw(scalars)
    for _ in range(depth):
        siblings: list[Any] = draw(st.lists(scalars, max_size=2))
        if draw(st.booleans()):
            at = draw(st.integers(0, len(siblings)))
            value = [*siblings[:at], value, *siblings[at:]]
        else:
            names = draw(st.lists(st.text(max_size=3), min_size=len(siblings) + 1, max_size=len(siblings) + 1,
                                  unique=True))
            obj: dict[str, Any] = dict(zip(names, siblings, strict=False))
            obj[names[-1]] = value
            value = obj
    return value


def deep_list(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


@pytest.fixture(scope="module")
def background(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    server = BackgroundServer(tmp_path_factory.mktemp("values") / "v.db")
    with server:
        yield server


_numbers = itertools.count()


async def read_back_everywhere(served: Served, value: Any) -> None:
    n = next(_numbers)
    before = served.store.head
    async with httpx.AsyncClient(base_url=served.url, timeout=10 * SECOND) as client:
        put = await client.put(f"/v1/state/deep/r{n}", content=msgspec.json.encode(value), headers=JSON)
        assert put.status_code == 201, put.text
        await served.store.set("deep", f"e{n}", value)
        for key in (f"r{n}", f"e{n}"):
            got = await client.get(f"/v1/state/deep/{key}")
            assert got.status_code == 200 and got.json() == value
        listed = await client.get("/v1/state/deep", params={"limit": 1000})
        assert listed.status_code == 200
        items = {i["key"]: i["value"] for i in listed.json()["items"]}
        assert items[f"r{n}"] == items[f"e{n}"] == value
        events = await client.get("/v1/events", params={"after": before})
        assert events.status_code == 200
        assert [e["new_value"] for e in events.json()["events"]] == [value, value]
    async with connect(f"ws://127.0.0.1:{served.port}/v1/subscribe?scope=deep&after={before}&batch=10",
                       max_size=None) as ws:
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND)) for _ in range(3)]
    delivered = [e["new_value"] for f in frames if f["type"] == "events" for e in f["events"]]
    delivered += [f["new_value"] for f in frames if f["type"] == "event"]
    assert delivered == [value, value], frames

    def offline_readers() -> None:
        conn = connect_reader(served.db)
        try:
            exported = [json.loads(line)["new_value"] for line in event_lines(conn, after=before)]
            assert exported == [value, value]
            report = verify(conn)
            assert report.faults == [], report.faults
        finally:
            conn.close()

    await asyncio.to_thread(offline_readers)


@given(value=st.sampled_from([MAX_DEPTH - 1, MAX_DEPTH]).flatmap(nested))
@settings(max_examples=count(25, 500), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_values_at_and_below_the_limit_are_readable_by_every_reader(background: BackgroundServer, value: Any) -> None:
    assert depth_of(value) in (MAX_DEPTH - 1, MAX_DEPTH)
    assert background.served is not None
    background.run(read_back_everywhere(background.served, value))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100, 968, 970, 971, 2_000, 100_000])
def test_deeper_values_are_refused_at_every_entrance(background: BackgroundServer, depth: int) -> None:
    served = background.served
    assert served is not None
    background.run(refused_everywhere(served, depth))


async def refused_everywhere(served: Served, depth: int) -> None:
    head = served.store.head
    deep = deep_list(depth)
    body = b"[" * depth + b"1" + b"]" * depth
    shallow = deep_list(MAX_DEPTH - 5)
    async with httpx.AsyncClient(base_url=served.url, timeout=10 * SECOND) as client:
        await_put = await client.put("/v1/state/deep/base", json=shallow)
        assert await_put.status_code in (200, 201)
        head = served.store.head
        attempts = [
            ("PUT", "/v1/state/deep/x", body),
            ("PATCH", "/v1/state/deep/x", b'{"ops":[{"type":"set","path":"a","value":' + body + b"}]}"),
            # a shallow op whose result is too deep: the stored value is 59 deep, the path adds 6 levels
            ("PATCH", "/v1/state/deep/base", b'{"ops":[{"type":"set","path":["0"],"value":'
             + json.dumps(deep_list(7)).encode() + b"}]}"),
            ("POST", "/v1/batch", b'{"commands":[{"op":"set","scope":"deep","key":"y","value":' + body + b"}]}"),
            ("POST", "/v1/streams/deep/g", b'{"type":"t","data":' + body + b"}"),
        ]
        for method, path, content in attempts:
            response = await client.request(method, path, content=content, headers=JSON)
            assert 400 <= response.status_code < 500, (method, path, response.status_code, response.text[:200])
            error = response.json()["error"]
            assert error["code"] in ("invalid_value", "bad_request", "invalid_op", "update_rejected"), error
            if response.status_code == 200:
                assert response.json()["errors"]  # an update whose op failed reports it
    with pytest.raises(InvalidValueError):
        await served.store.set("deep", "z", deep)
    with pytest.raises(InvalidValueError):
        await served.store.send("deep", "g", "t", deep)
    with pytest.raises(IIIError):
        await Engine(served.store).invoke("state::set", {"scope": "deep", "key": "iii", "value": deep})
    assert served.store.head == head


def test_patch_results_past_the_limit_write_nothing(background: BackgroundServer) -> None:
    async def scenario(served: Served) -> None:
        await served.store.set("deep", "grow", deep_list(MAX_DEPTH - 1))
        head = served.store.head
        async with httpx.AsyncClient(base_url=served.url) as client:
            response = await client.patch("/v1/state/deep/grow", headers=JSON, content=json.dumps(
                {"ops": [{"type": "set", "path": "x", "value": 1}]}))
        assert response.status_code in (200, 422), response.text  # set on a list fails that op: nothing to write
        wrapped = await served.store.update("deep", "wrap", [{"type": "set", "path": ["a", "c"],
                                                              "value": deep_list(MAX_DEPTH - 2)}])
        assert depth_of(wrapped.new_value) == MAX_DEPTH  # {"a": {"c": [[…]]}}
        with pytest.raises(InvalidValueError):  # one level more through the same intermediate objects
            await served.store.update("deep", "wrap", [{"type": "set", "path": ["a", "b"],
                                                        "value": deep_list(MAX_DEPTH - 1)}])
        assert served.store.head == head + 1

    assert background.served is not None
    background.run(scenario(background.served))


def test_import_refuses_deeper_values(tmp_path: Path) -> None:
    def line(value: Any) -> bytes:
        event = {"offset": 1, "ts": 1, "kind": "state", "scope": "s", "key": "k", "op": "set",
                 "event_type": "created", "version": 1, "old_value": None, "new_value": value, "meta": {}}
        return json.dumps(event).encode() + b"\n"

    for depth in (MAX_DEPTH + 1, 5_000):
        text = line(deep_list(depth)) if depth < 900 else line(1).replace(b'"new_value": 1',
                                                                           b'"new_value": ' + b"[" * depth + b"1"
                                                                           + b"]" * depth)
        with pytest.raises(ImportError_, match="deeper than"):
            import_events(tmp_path / f"i{depth}.db", io.BytesIO(text))
        assert not (tmp_path / f"i{depth}.db").exists()
    assert import_events(tmp_path / "ok.db", io.BytesIO(line(deep_list(MAX_DEPTH)))) == 1


def test_check_depth_counts_containers() -> None:
    check_depth(deep_list(MAX_DEPTH))
    check_depth({"a": [{"b": deep_list(MAX_DEPTH - 3)}]})
    with pytest.raises(InvalidValueError):
        check_depth({"a": [{"b": deep_list(MAX_DEPTH - 2)}]})
    check_depth("[[[[" * 100)  # brackets inside strings are not nesting


async def test_embedded_values_at_the_limit(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "e.db") as store:
        await store.set("s", "k", deep_list(MAX_DEPTH))
        assert await store.get("s", "k") == deep_list(MAX_DEPTH)
