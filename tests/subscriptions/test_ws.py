"""The WebSocket endpoints on a real uvicorn server: frames, filters, snapshots, heartbeats and every bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from ripple import Set
from ripple.subscriptions.hub import HubSettings
from tests.conftest import SECOND
from tests.subscriptions.conftest import LiveServer, recv_events, recv_json, ws_connect


async def closed_with(ws: Any) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 5 * SECOND)
    rcvd = info.value.rcvd
    return (rcvd.code, rcvd.reason) if rcvd is not None else (None, None)


@pytest.mark.conformance
async def test_hello_catch_up_live_and_packing(live: LiveServer) -> None:
    store = live.store
    assert store is not None
    for i in range(5):
        await store.set("a", f"k{i}", i)
    await store.set("b", "x", 1)
    async with await ws_connect(f"{live.url}/v1/subscribe?scope=a&after=2&batch=2") as ws:
        assert await recv_json(ws) == {"type": "hello", "version": 1, "head": 6, "after": 2, "earliest": 1}
        first = await recv_json(ws)
        assert first["type"] == "events" and [e["offset"] for e in first["events"]] == [3, 4]
        second = await recv_json(ws)
        assert second["type"] == "event" and second["offset"] == 5 and second["new_value"] == 4
        assert second["scope"] == "a" and second["key"] == "k4" and second["meta"] == {}
        assert await recv_json(ws) == {"type": "live", "through": 6}
        await store.batch([Set("a", "y", 1), Set("b", "z", 1), Set("a", "z", 2)])
        packed = await recv_json(ws)
        assert packed["type"] == "events" and [e["offset"] for e in packed["events"]] == [7, 9]
        await store.set("a", "solo", {"deep": [1, "é"]})
        solo = await recv_json(ws)
        assert solo["type"] == "event" and solo["new_value"] == {"deep": [1, "é"]}


@pytest.mark.conformance
async def test_live_only_keys_and_heartbeat(live: LiveServer) -> None:
    store = live.store
    assert store is not None
    await store.set("a", "x", 1)
    async with await ws_connect(f"{live.url}/v1/subscribe?key=x&key=y") as ws:
        assert (await recv_json(ws))["after"] == 1
        assert await recv_json(ws) == {"type": "live", "through": 1}
        await store.set("a", "z", 1)
        await store.set("q", "y", 2)
        event = await recv_json(ws)
        assert (event["offset"], event["scope"], event["key"]) == (3, "q", "y")
        await store.set("a", "z", 2)  # not matching: the heartbeat still moves `through` past it
        beat = await recv_json(ws, wait=5)
        assert beat == {"type": "heartbeat", "head": 4, "through": 4}


@pytest.mark.conformance
async def test_snapshot_then_tail_gives_final_state(live: LiveServer) -> None:
    store = live.store
    assert store is not None
    for i in range(50):
        await store.set("a", f"k{i % 7}", {"i": i})
    await store.delete("a", "k3")

    async def churn() -> None:
        for i in range(200):
            if i % 11 == 0:
                await store.delete("a", f"k{i % 7}")
            else:
                await store.update("a", f"k{i % 7}", [{"type": "set", "path": "n", "value": i}])
        await store.set("a", "end", True)

    task = asyncio.create_task(churn())
    state: dict[str, Any] = {}
    async with await ws_connect(f"{live.url}/v1/subscribe?scope=a&snapshot=true&batch=50") as ws:
        hello = await recv_json(ws)
        s = hello["after"]
        while (frame := await recv_json(ws))["type"] == "snapshot":
            assert frame["offset"] == s
            state.update({item["key"]: item["value"] for item in frame["items"]})
        assert frame == {"type": "snapshot_end", "offset": s}
        await task
        events, _ = await recv_events(ws, store.head)
        assert events[0]["offset"] > s
        for e in events:
            if e["event_type"] == "deleted":
                state.pop(e["key"])
            else:
                state[e["key"]] = e["new_value"]
    final = {e.key: e.value for e in (await store.list("a", limit=1000)).items}
    assert state == final


@pytest.mark.conformance
async def test_stream_endpoint(live: LiveServer) -> None:
    store = live.store
    assert store is not None
    await store.send("chat", "room/1", "msg", {"text": "hi"}, id="m1")
    await store.send("chat", "room/2", "msg", {"text": "other"})
    await store.set("chat", "room/1", 1)  # a state event with the same names is not a stream event
    async with await ws_connect(f"{live.url}/v1/streams/chat/room/1?after=0&batch=10") as ws:
        assert (await recv_json(ws))["type"] == "hello"
        event = await recv_json(ws)
        assert (event["offset"], event["kind"], event["event_type"], event["new_value"]) == (
            1,
            "stream",
            "msg",
            {"text": "hi"},
        )
        assert event["meta"] == {"id": "m1"}
        assert await recv_json(ws) == {"type": "live", "through": 3}
        await store.send("chat", "room/1", "msg", {"text": "again"})
        assert (await recv_json(ws))["offset"] == 4


BAD_QUERIES = [
    ("after=-1", "bad_request"),
    ("after=abc", "bad_request"),
    ("after=1.5", "bad_request"),
    ("after=", "bad_request"),
    ("after=1&after=2", "bad_request"),
    ("after=99", "offset_out_of_range"),
    ("bogus=1", "bad_request"),
    ("scopes=a", "bad_request"),
    ("after=0&snapshot=true", "bad_request"),
    ("snapshot=maybe", "bad_request"),
    ("batch=0", "bad_request"),
    ("batch=1001", "bad_request"),
    ("batch=ten", "bad_request"),
    ("kind=events", "bad_request"),
    ("scope=a/b", "bad_request"),
    ("scope=", "bad_request"),
    ("key=%00", "bad_request"),
]


@pytest.mark.conformance
async def test_bad_input_gets_error_frame_and_1008(live: LiveServer) -> None:
    store = live.store
    assert store is not None
    await store.set("a", "x", 1)
    async with await ws_connect(f"{live.url}/v1/subscribe?scope=a") as bystander:
        await recv_json(bystander)
        await recv_json(bystander)
        for query, code in BAD_QUERIES:
            async with await ws_connect(f"{live.url}/v1/subscribe?{query}") as ws:
                frame = await recv_json(ws)
                assert frame["type"] == "error" and frame["code"] == code, (query, frame)
                assert frame["message"]
                if code == "offset_out_of_range":
                    assert frame["earliest"] == 1
                assert await closed_with(ws) == (1008, code)
        for path in ["/v1/streams/s/g?scope=a", "/v1/streams/s/g?snapshot=true", "/v1/streams/s/g?after=-3"]:
            async with await ws_connect(f"{live.url}{path}") as ws:
                assert (await recv_json(ws))["code"] == "bad_request"
                assert (await closed_with(ws))[0] == 1008
        async with await ws_connect(f"{live.url}/v1/subscribe?after=0") as ws:
            await recv_json(ws)
            await ws.send("hello?")
            while (frame := await recv_json(ws))["type"] != "error":
                assert frame["type"] in ("event", "live")
            assert frame["code"] == "bad_request"
            assert await closed_with(ws) == (1008, "bad_request")
        await store.set("a", "y", 2)  # the server and the other subscriber are unaffected
        assert (await recv_json(bystander))["offset"] == 2
    await asyncio.wait_for(store.hub.wait_no_sessions(), 5 * SECOND)
    assert len(store.hub) == 0
    assert await store.get("a", "x") == 1


async def test_after_older_than_earliest(db_path: Path) -> None:
    server = await LiveServer(db_path).start()
    try:
        store = server.store
        assert store is not None
        for i in range(10):
            await store.set("a", f"k{i}", i)
        await store.compact(5)
        async with await ws_connect(f"{server.url}/v1/subscribe?after=2") as ws:
            frame = await recv_json(ws)
            assert (frame["code"], frame["earliest"]) == ("offset_out_of_range", 5)
            assert (await closed_with(ws))[0] == 1008
        async with await ws_connect(f"{server.url}/v1/subscribe?after=4") as ws:
            assert (await recv_json(ws))["earliest"] == 5
    finally:
        await server.stop()


async def test_fallback_without_sansio(db_path: Path) -> None:
    """Any other uvicorn protocol runs the same code through ASGI send (no fast path): still exactly once."""
    server = await LiveServer(db_path, ws="websockets", settings=HubSettings(max_buffer_events=5)).start()
    try:
        store = server.store
        assert store is not None
        for i in range(100):
            await store.set("a", f"k{i}", i)
        async with await ws_connect(f"{server.url}/v1/subscribe?after=10&batch=7") as ws:
            assert (await recv_json(ws))["type"] == "hello"
            task = asyncio.create_task(store.batch([Set("a", f"n{i}", i) for i in range(300)]))
            events, _ = await recv_events(ws, 400)
            await task
        assert [e["offset"] for e in events] == list(range(11, 401))
    finally:
        await server.stop()


async def test_close_subscribers_sends_1001(db_path: Path) -> None:
    server = await LiveServer(db_path).start()
    ws = await ws_connect(f"{server.url}/v1/subscribe")
    try:
        await recv_json(ws)
        await recv_json(ws)
    finally:
        await server.stop()
    frame = json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND))
    assert frame == {"type": "error", "code": "shutting_down", "message": "the server is shutting down"}
    assert await closed_with(ws) == (1001, "shutting_down")
