"""III-PROTOCOL §8, one test per checklist item, plus the bad inputs of issue 8 — over real sockets.

A raw ``websockets`` client speaks the protocol by hand where the SDKs cannot isolate a behaviour; the SDK tests
(``test_sdk_todo.py``) cover the same ground with the real workers.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from ripple import Store
from ripple.iii.server import IIIServer
from tests.conftest import SECOND
from tests.iii.conftest import LogWatch, RawWorker


async def registered(iii: IIIServer, *function_ids: str, triggers: int = 0) -> None:
    reg = iii.engine.registry
    await iii.engine.wait_until(
        lambda: all(f in reg.functions for f in function_ids) and len(reg.triggers) >= triggers, 5 * SECOND
    )


async def pong(worker: RawWorker) -> None:
    """A round trip: every frame sent before it has been handled when the pong comes back."""
    await worker.send(type="ping")
    await worker.expect(lambda f: f["type"] == "pong")


# 1 ------------------------------------------------------------------------------------------------------------------
async def test_01_workerregistered_is_sent_first_before_reading(iii: IIIServer) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{iii.worker_port}/") as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND))  # we have sent nothing
        assert first["type"] == "workerregistered" and first["worker_id"] and first["reattach_token"]
        assert "features" not in first
    async with websockets.connect(f"ws://127.0.0.1:{iii.worker_port}/otel") as otel:
        await otel.send(b"OTLP" + b"x" * 100)
        await otel.ping()
    with pytest.raises(websockets.InvalidStatus) as err:
        await websockets.connect(f"ws://127.0.0.1:{iii.worker_port}/nope")
    assert err.value.response.status_code == 404


# 2 ------------------------------------------------------------------------------------------------------------------
async def test_02_unknown_fields_and_unknown_types_are_tolerated(iii: IIIServer, worker: RawWorker) -> None:
    await worker.send(type="registerfunction", id="f", message_type="registerfunction", surprise={"a": 1})
    await worker.send(type="teleport", to="mars")
    await pong(worker)  # still open and answering
    assert "f" in iii.engine.registry.functions
    assert iii.engine.counters["bad_frames.unknown_type"] == 1


# 3 ------------------------------------------------------------------------------------------------------------------
async def test_03_telemetry_only_connection_and_pings(iii: IIIServer) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{iii.worker_port}/") as ws:
        await ws.recv()  # workerregistered
        for prefix in (b"OTLP", b"MTRC", b"LOGS"):
            await ws.send(prefix + b'{"resourceSpans":[]}')
        latency = await asyncio.wait_for(await ws.ping(), 5 * SECOND)  # a WebSocket ping gets a pong
        assert latency >= 0
        await ws.send('{"type":"ping"}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND)) == {"type": "pong"}
    assert iii.engine.counters["telemetry_frames"] == 3


# 4 ------------------------------------------------------------------------------------------------------------------
async def test_04_registrations_in_any_order(iii: IIIServer, worker: RawWorker, http: httpx.AsyncClient) -> None:
    await worker.trigger("t1", "http", "late::fn", {"api_path": "/late", "http_method": "GET"})
    await pong(worker)
    r = await http.get("/late")  # the route exists, its function does not yet
    assert r.status_code == 500 and r.json()["error"]["code"] == "function_not_found"
    await worker.register("late::fn")
    await registered(iii, "late::fn")
    request = asyncio.create_task(http.get("/late"))
    invoke = await worker.expect(lambda f: f["type"] == "invokefunction")
    await worker.answer(invoke, {"status_code": 200, "body": {"ok": True}})
    assert (await request).json() == {"ok": True}


# 5 ------------------------------------------------------------------------------------------------------------------
async def test_05_worker_metadata_call_is_taken_silently(iii: IIIServer, worker: RawWorker) -> None:
    await worker.send(
        type="invokefunction",
        function_id="engine::workers::register",
        data={"runtime": "node", "version": "0.9.0", "name": "w", "os": "linux", "pid": 1, "telemetry": {}},
        action={"type": "void"},
    )
    await worker.send(type="ping")
    assert await worker.recv() == {"type": "pong"}  # nothing was sent back for the void call


# 6 ------------------------------------------------------------------------------------------------------------------
async def test_06_each_call_gets_exactly_one_result(iii: IIIServer, worker: RawWorker) -> None:
    for i in range(20):
        await worker.send(
            type="invokefunction",
            invocation_id=f"id-{i}",
            function_id="state::get",
            data={"scope": "s", "key": f"k{i}"},
        )
    results = [await worker.expect(lambda f: f["type"] == "invocationresult") for _ in range(20)]
    assert sorted(r["invocation_id"] for r in results) == sorted(f"id-{i}" for i in range(20))
    # A missing key: the current engine (0.22) leaves `result` out rather than sending null.
    assert all(r["function_id"] == "state::get" and "result" not in r and "error" not in r for r in results)
    await worker.send(type="ping")
    assert await worker.recv() == {"type": "pong"}  # and nothing more


# 7 ------------------------------------------------------------------------------------------------------------------
async def test_07_void_calls_are_never_answered_but_take_effect(
    store: Store, iii: IIIServer, worker: RawWorker
) -> None:
    await worker.send(
        type="invokefunction",
        invocation_id="v1",
        function_id="state::set",
        data={"scope": "s", "key": "k", "value": 1},
        action={"type": "void"},
    )
    await worker.send(type="invokefunction", function_id="state::set", data={"scope": "s", "key": "j", "value": 2})
    await worker.send(type="invokefunction", function_id="nope", data={}, action={"type": "void"})
    await worker.send(type="ping")
    assert await worker.recv() == {"type": "pong"}
    watch = LogWatch(store)
    try:
        if await store.get("s", "j") is None:
            await watch.wait_for(lambda e: e.key == "j")
    finally:
        watch.close()
    assert await store.get("s", "k") == 1 and await store.get("s", "j") == 2


# 8 ------------------------------------------------------------------------------------------------------------------
async def test_08_unknown_function_and_bad_builtin_input(iii: IIIServer, worker: RawWorker) -> None:
    reply = await worker.call("nope::fn", {})
    assert reply["error"] == {
        "code": "function_not_found",
        "message": "Function nope::fn not found in namespace default.",
    }
    reply = await worker.call("state::get", {"scope": "s"})
    assert reply["error"]["code"] == "deserialization_error"
    assert reply["error"]["message"] == "Failed to deserialize input for state::get: missing field `key`"
    reply = await worker.call("state::update", {"scope": "s", "key": "k", "ops": [{"type": "explode", "path": "a"}]})
    assert reply["error"]["code"] == "deserialization_error"
    for builtin in ("stream::set", "stream::get", "stream::list"):  # round 2: stored stream items are built in
        assert (await worker.call(builtin, {}))["error"]["code"] == "deserialization_error"


# 9 ------------------------------------------------------------------------------------------------------------------
async def test_09_state_set_and_get(store: Store, iii: IIIServer, worker: RawWorker) -> None:
    assert await worker.result("state::set", {"scope": "s", "key": "k", "value": {"a": 1}}) == {
        "old_value": None,
        "new_value": {"a": 1},
    }
    assert await worker.result("state::set", {"scope": "s", "key": "k", "data": {"a": 2}}) == {
        "old_value": {"a": 1},
        "new_value": {"a": 2},
    }
    assert await worker.result("state::get", {"scope": "s", "key": "k"}) == {"a": 2}
    assert await worker.result("state::get", {"scope": "s", "key": "missing"}) is None
    events = await store.read_events(0, 10)
    assert [(e.op, e.event_type) for e in events] == [("set", "created"), ("set", "updated")]  # logged events


# 10 -----------------------------------------------------------------------------------------------------------------
async def test_10_state_list_returns_every_value_in_first_insert_order(store: Store, worker: RawWorker) -> None:
    from ripple import Set

    await store.batch([Set("big", f"k{i:04}", i) for i in range(1000)])
    await store.batch([Set("big", f"z{i}", i) for i in range(5)])
    values = await worker.result("state::list", {"scope": "big"})
    assert values == list(range(1000)) + list(range(5))  # past the store's 1000-item page
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        await worker.result("state::set", {"scope": "s", "key": key, "value": value})
    await worker.result("state::set", {"scope": "s", "key": "a", "value": 10})  # an overwrite keeps its place
    await worker.result("state::delete", {"scope": "s", "key": "b"})
    await worker.result("state::set", {"scope": "s", "key": "b", "value": 20})  # re-created: moves to the end
    assert await worker.result("state::list", {"scope": "s"}) == [10, 3, 20]
    assert await worker.result("state::list", {"scope": "unknown"}) == []
    assert await worker.result("state::list_groups", {}) == {"groups": ["big", "s"]}


# 11 -----------------------------------------------------------------------------------------------------------------
async def test_11_state_update_ops(store: Store, worker: RawWorker) -> None:
    result = await worker.result(
        "state::update",
        {
            "scope": "m",
            "key": "g",
            "ops": [
                {"type": "increment", "path": "total", "by": 1},
                {"type": "decrement", "path": "neg", "by": 2},
                {"type": "set", "path": "a.b", "value": "literal"},
                {"type": "increment", "path": "total", "by": -3},
            ],
        },
    )
    assert result == {"old_value": None, "new_value": {"total": -2, "neg": -2, "a.b": "literal"}}
    result = await worker.result(
        "state::update",
        {
            "scope": "m",
            "key": "g",
            "ops": [{"type": "increment", "path": "a.b", "by": 1}, {"type": "merge", "value": {"x": 1}}],
        },
    )
    assert result["new_value"] == {"total": -2, "neg": -2, "a.b": "literal", "x": 1}
    assert result["errors"] == [
        {"op_index": 0, "code": "increment.not_number", "message": result["errors"][0]["message"]}
    ]
    # DESIGN §4: every op failed → nothing written, the old value comes back as both
    head = store.head
    result = await worker.result(
        "state::update", {"scope": "m", "key": "g", "ops": [{"type": "append", "path": "x", "value": 1}]}
    )
    assert result["old_value"] == result["new_value"] == {"total": -2, "neg": -2, "a.b": "literal", "x": 1}
    assert result["errors"][0]["code"] == "append.type_mismatch"
    assert store.head == head


# 12 -----------------------------------------------------------------------------------------------------------------
async def test_12_state_delete_returns_the_old_value_itself(store: Store, worker: RawWorker) -> None:
    await worker.result("state::set", {"scope": "s", "key": "k", "value": {"a": 1}})
    assert await worker.result("state::delete", {"scope": "s", "key": "k"}) == {"a": 1}
    head = store.head
    assert await worker.result("state::delete", {"scope": "s", "key": "k"}) is None
    assert store.head == head  # R-6: nothing appended


# 13 -----------------------------------------------------------------------------------------------------------------
async def test_13_state_triggers_get_the_engines_payload(iii: IIIServer, worker: RawWorker) -> None:
    await worker.register("on::change")
    await worker.trigger("t-scope", "state", "on::change", {"scope": "todos"})
    await worker.trigger("t-key", "state", "on::change", {"scope": "todos", "key": "b"})
    await registered(iii, "on::change", triggers=2)
    await worker.result("state::set", {"scope": "todos", "key": "a", "value": {"n": 1}})
    await worker.result("state::set", {"scope": "other", "key": "a", "value": 1})
    await worker.result(
        "state::update", {"scope": "todos", "key": "a", "ops": [{"type": "set", "path": "n", "value": 2}]}
    )
    await worker.result("state::delete", {"scope": "todos", "key": "a"})
    await worker.result("state::delete", {"scope": "todos", "key": "a"})  # R-6: fires nothing
    seen = []
    for _ in range(3):
        invoke = await worker.expect(lambda f: f["type"] == "invokefunction")
        seen.append(invoke["data"])
        await worker.answer(invoke, None)
    assert seen == [
        {
            "type": "state",
            "event_type": "state:created",
            "scope": "todos",
            "key": "a",
            "old_value": None,
            "new_value": {"n": 1},
        },
        {
            "type": "state",
            "event_type": "state:updated",
            "scope": "todos",
            "key": "a",
            "old_value": {"n": 1},
            "new_value": {"n": 2},
        },
        {
            "type": "state",
            "event_type": "state:deleted",
            "scope": "todos",
            "key": "a",
            "old_value": {"n": 2},
            "new_value": None,
        },
    ]
    await worker.result("state::set", {"scope": "todos", "key": "b", "value": 1})  # both triggers match
    calls = [await worker.expect(lambda f: f["type"] == "invokefunction") for _ in range(2)]
    assert [c["data"]["key"] for c in calls] == ["b", "b"]
    for c in calls:
        await worker.answer(c, None)


# 14 -----------------------------------------------------------------------------------------------------------------
async def test_14_fan_out_never_blocks_and_reenters_a_waiting_worker(
    store: Store, iii: IIIServer, worker: RawWorker
) -> None:
    await worker.register("slow::reaction")
    await worker.trigger("t", "state", "slow::reaction", {"scope": "a"})
    await registered(iii, "slow::reaction", triggers=1)
    # The worker writes and, before it reads its reply, the trigger call arrives on the same connection.
    await worker.send(
        type="invokefunction",
        invocation_id="w1",
        function_id="state::update",
        data={"scope": "a", "key": "k", "ops": [{"type": "increment", "path": "n", "by": 1}]},
    )
    reply = await worker.expect(lambda f: f.get("invocation_id") == "w1")
    assert reply["result"]["new_value"] == {"n": 1}  # answered although the trigger call is still unanswered
    invoke = await worker.expect(lambda f: f["type"] == "invokefunction")
    # While that reaction is unanswered, writes go on (the writer never waits for a trigger).
    for i in range(5):
        await asyncio.wait_for(store.set("b", f"k{i}", i), 5 * SECOND)
    nested = await worker.call(
        "state::update", {"scope": "a", "key": "k", "ops": [{"type": "increment", "path": "n", "by": 1}]}
    )
    assert nested["result"]["new_value"] == {"n": 2}  # a reaction can write while its own call is open
    await worker.answer(invoke, None)
    second = await worker.expect(lambda f: f["type"] == "invokefunction")
    assert second["data"]["new_value"] == {"n": 2}  # in offset order, after the first returned
    await worker.answer(second, None)


# 15 -----------------------------------------------------------------------------------------------------------------
async def test_15_condition_function_only_false_skips(iii: IIIServer, worker: RawWorker) -> None:
    await worker.register("cond")
    await worker.register("handler")
    await worker.trigger("t", "state", "handler", {"scope": "c", "condition_function_id": "cond"})
    await registered(iii, "cond", "handler", triggers=1)
    verdicts = {"false": False, "null": None, "zero": 0, "error": "raise", "true": True}
    for key in verdicts:
        await worker.result("state::set", {"scope": "c", "key": key, "value": 1})
    # The trigger handles one event at a time: cond(key) [then handler(key)], then the next key.
    outcomes: list[str] = []
    checked: list[str] = []
    while outcomes[-1:] != ["true"]:
        frame = await worker.expect(lambda f: f["type"] == "invokefunction")
        key = frame["data"]["key"]
        if frame["function_id"] == "handler":
            outcomes.append(key)
            await worker.answer(frame, None)
            continue
        checked.append(key)
        if verdicts[key] == "raise":
            await worker.send(
                type="invocationresult",
                invocation_id=frame["invocation_id"],
                function_id="cond",
                error={"code": "invocation_failed", "message": "no"},
            )
        else:
            await worker.answer(frame, verdicts[key])
    assert checked == list(verdicts)
    assert outcomes == ["null", "zero", "true"]


# 16 -----------------------------------------------------------------------------------------------------------------
async def test_16_http_routes_send_the_api_request(iii: IIIServer, worker: RawWorker, http: httpx.AsyncClient) -> None:
    await worker.register("get::item")
    await worker.trigger("r1", "http", "get::item", {"api_path": "items/:id", "http_method": "post"})
    await registered(iii, "get::item", triggers=1)
    request = asyncio.create_task(http.post("/items/42?q=x", json={"title": "milk"}, headers={"X-Trace": "t"}))
    invoke = await worker.expect(lambda f: f["type"] == "invokefunction")
    data = invoke["data"]
    assert data["path"] == "/items/:id" and data["method"] == "POST"
    assert data["path_params"] == {"id": "42"} and data["query_params"] == {"q": "x"}
    assert data["headers"]["x-trace"] == "t" and data["headers"]["content-type"] == "application/json"
    assert data["body"] == {"title": "milk"} and data["trigger"] == {
        "type": "http",
        "path": "/items/:id",
        "method": "POST",
    }
    await worker.answer(invoke, {"status_code": 200, "body": data["path_params"]})
    assert (await request).json() == {"id": "42"}
    request = asyncio.create_task(http.post("/items/1", content=b"plain", headers={"content-type": "text/plain"}))
    invoke = await worker.expect(lambda f: f["type"] == "invokefunction")
    assert invoke["data"]["body"] is None
    await worker.answer(invoke, {"body": "ok"})
    assert (await request).status_code == 200
    assert (await http.get("/items/1")).status_code == 404  # the method is part of the route


# 17 -----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("result", "status", "body"),
    [
        ({"status_code": 201, "headers": {"x-a": "1"}, "body": {"ok": 1}}, 201, {"ok": 1}),
        ({"status_code": 204, "headers": ["X-A: 1"]}, 204, None),
        ({"todo": 1}, 200, {"todo": 1}),  # R-4
        (None, 200, None),  # R-4: null is sent as null, never a hang
        ([1, 2], 200, [1, 2]),
    ],
)
async def test_17_http_responses(
    iii: IIIServer, worker: RawWorker, http: httpx.AsyncClient, result: object, status: int, body: object
) -> None:
    await worker.register("h")
    await worker.trigger("r", "http", "h", {"api_path": "/h"})
    await registered(iii, "h", triggers=1)
    request = asyncio.create_task(http.get("/h", headers={"Origin": "https://app.example"}))
    await worker.answer(await worker.expect(lambda f: f["type"] == "invokefunction"), result)
    r = await request
    assert r.status_code == status
    assert r.headers["access-control-allow-origin"] == "*"
    if status == 204:
        assert r.headers["x-a"] == "1"
    else:
        assert r.json() == body


async def test_17_http_errors_use_the_envelope(iii: IIIServer, worker: RawWorker, http: httpx.AsyncClient) -> None:
    r = await http.get("/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    await worker.register("boom")
    await worker.trigger("r", "http", "boom", {"api_path": "/boom", "http_method": "DELETE"})
    await registered(iii, "boom", triggers=1)
    request = asyncio.create_task(http.delete("/boom"))
    invoke = await worker.expect(lambda f: f["type"] == "invokefunction")
    await worker.send(
        type="invocationresult",
        invocation_id=invoke["invocation_id"],
        function_id="boom",
        error={"code": "invocation_failed", "message": "kaput", "stacktrace": "..."},
    )
    r = await request
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "invocation_failed" and r.json()["error"]["message"] == "kaput"
    assert r.json()["error"]["error_id"]
    preflight = await http.options("/boom", headers={"Origin": "x", "Access-Control-Request-Method": "DELETE"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"


async def test_17_strict_mode_follows_the_engine(store: Store, strict_iii: IIIServer) -> None:
    worker = await RawWorker.connect(strict_iii.worker_port)
    try:
        await worker.register("h")
        await worker.trigger("r", "http", "h", {"api_path": "/h", "http_method": "POST"})
        await registered(strict_iii, "h", triggers=1)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{strict_iii.http_port}") as http:
            request = asyncio.create_task(http.post("/h", json={"title": "x"}))
            invoke = await worker.expect(lambda f: f["type"] == "invokefunction")
            assert "title" not in invoke["data"]  # no R-3
            await worker.answer(invoke, {"todo": 1})
            r = await request
            assert (r.status_code, r.json()) == (200, {})  # no R-4
        reply = await worker.call("stream::send", {"stream_name": "s", "group_id": "g", "event_type": "x", "data": 1})
        assert reply["error"]["code"] == "deserialization_error"  # no R-5
    finally:
        await worker.close()


# 18 -----------------------------------------------------------------------------------------------------------------
async def test_18_stream_send_is_logged_and_pushed(store: Store, iii: IIIServer, worker: RawWorker) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{iii.stream_port}/") as client:
        await client.send(
            json.dumps({"type": "join", "data": {"subscriptionId": "s1", "streamName": "live", "groupId": "all"}})
        )
        assert json.loads(await client.recv())["event"]["type"] == "sync"
        reply = await worker.call("stream::send", {"stream_name": "live", "group_id": "all", "type": "a", "data": 1})
        assert "result" in reply and reply["result"] is None
        await worker.call(
            "stream::send", {"stream_name": "live", "group_id": "all", "event_type": "b", "data": 2, "id": "m2"}
        )  # R-5
        first = json.loads(await asyncio.wait_for(client.recv(), 5 * SECOND))
        second = json.loads(await asyncio.wait_for(client.recv(), 5 * SECOND))
        assert first["event"] == {"type": "event", "event": {"type": "a", "data": 1}} and first["id"] is None
        assert second["event"]["event"] == {"type": "b", "data": 2} and second["id"] == "m2"
    events = await store.read_events(0, 10, kind="stream")
    assert [(e.scope, e.key, e.event_type, e.new_value, e.meta.id) for e in events] == [
        ("live", "all", "a", 1, None),
        ("live", "all", "b", 2, "m2"),
    ]


# 19 -----------------------------------------------------------------------------------------------------------------
async def test_19_stream_join_leave_and_the_id_rule(store: Store, iii: IIIServer) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{iii.stream_port}/") as client:

        def join(sub: str, item: str | None = None) -> str:
            data = {"subscriptionId": sub, "streamName": "live", "groupId": "g"}
            if item:
                data["id"] = item
            return json.dumps({"type": "join", "data": data})

        await client.send(join("all"))
        await client.send(join("one", "m1"))
        await client.send("not json")  # ignored
        syncs = [json.loads(await client.recv()) for _ in range(2)]
        assert sorted(json.dumps(s["event"]) for s in syncs) == sorted(
            [json.dumps({"type": "sync", "data": []}), json.dumps({"type": "sync", "data": None})]
        )
        await store.send("live", "g", "t", 1, id="m1")  # matches both subscriptions: two frames
        await store.send("live", "g", "t", 2, id="m2")  # matches "all" only
        await store.send("live", "other", "t", 3)  # another group: nothing
        frames = [json.loads(await asyncio.wait_for(client.recv(), 5 * SECOND)) for _ in range(3)]
        assert sorted(f["event"]["event"]["data"] for f in frames) == [1, 1, 2]
        await client.send(
            json.dumps({"type": "leave", "data": {"subscriptionId": "all", "streamName": "live", "groupId": "g"}})
        )
        await client.send(join("probe", "m9"))  # a round trip: the leave was handled when its sync arrives
        assert json.loads(await client.recv())["id"] == "m9"
        await store.send("live", "g", "t", 4, id="m2")  # no subscription left for it
        await store.send("live", "g", "t", 5, id="m1")
        frame = json.loads(await asyncio.wait_for(client.recv(), 5 * SECOND))
        assert frame["event"]["event"]["data"] == 5


# 20 -----------------------------------------------------------------------------------------------------------------
async def test_20_stream_url_auto_join_and_resume(store: Store, iii: IIIServer) -> None:
    offsets = [(await store.send("todos-live", "all", "t", i)).offset for i in range(5)]
    url = f"ws://127.0.0.1:{iii.stream_port}/stream/todos-live/all"
    async with websockets.connect(f"{url}?after={offsets[1]}") as client:
        sync = json.loads(await client.recv())
        assert sync["event"]["type"] == "sync" and sync["offset"] == offsets[1]
        replay = [json.loads(await client.recv()) for _ in range(3)]
        assert [r["offset"] for r in replay] == offsets[2:]
        live = await store.send("todos-live", "all", "t", 99)
        frame = json.loads(await asyncio.wait_for(client.recv(), 5 * SECOND))
        assert frame["offset"] == live.offset and frame["event"]["event"]["data"] == 99
    with pytest.raises(websockets.InvalidStatus) as err:
        await websockets.connect(f"{url}?after=minus")
    assert err.value.response.status_code == 400
    with pytest.raises(websockets.InvalidStatus) as beyond:  # would silently skip events up to it
        await websockets.connect(f"{url}?after={store.head + 1}")
    assert beyond.value.response.status_code == 400 and b"offset_out_of_range" in beyond.value.response.body
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"ws://127.0.0.1:{iii.stream_port}/somewhere/else")


# 21 -----------------------------------------------------------------------------------------------------------------
async def test_21_disconnect_drops_everything_and_replay_does_not_duplicate(
    store: Store, iii: IIIServer, http: httpx.AsyncClient
) -> None:
    first = await RawWorker.connect(iii.worker_port)
    await first.register("f")
    await first.trigger("state-t", "state", "f", {"scope": "x"})
    await first.trigger("http-t", "http", "f", {"api_path": "/f"})
    await registered(iii, "f", triggers=2)
    await first.close()
    await iii.engine.wait_until(
        lambda: not iii.engine.registry.functions and not iii.engine.registry.triggers, 5 * SECOND
    )
    assert (await http.get("/f")).status_code == 404
    # The SDK reconnects and replays the same ids, twice over for good measure: one trigger each, not two.
    second = await RawWorker.connect(iii.worker_port)
    try:
        for _ in range(2):
            await second.register("f")
            await second.trigger("state-t", "state", "f", {"scope": "x"})
            await second.trigger("http-t", "http", "f", {"api_path": "/f"})
        await pong(second)
        assert len(iii.engine.registry.triggers) == 2 and len(iii.engine.pumps) == 1
        await store.set("x", "k", 1)
        call = await second.expect(lambda f: f["type"] == "invokefunction")
        await second.answer(call, None)
        await store.set("x", "k", 2)
        call = await second.expect(lambda f: f["type"] == "invokefunction")
        assert call["data"]["new_value"] == 2  # no duplicate of the first event came in between
        await second.answer(call, None)
    finally:
        await second.close()


async def test_21_reattach_retires_the_old_connection(iii: IIIServer) -> None:
    old = await RawWorker.connect(iii.worker_port)
    await old.register("f")
    await registered(iii, "f")
    new = await RawWorker.connect(iii.worker_port)
    try:
        await new.send(type="reattach", previous_worker_id=old.worker_id, reattach_token="wrong")
        await new.register("f")
        rejected = await new.expect(lambda f: f["type"] == "registrationrejected")
        assert rejected == {
            "type": "registrationrejected",
            "code": "FUNCTION_NAMESPACE_CONFLICT",
            "namespace": "default",
            "function_id": "f",
            "owner_worker_id": old.worker_id,
        }
        await new.send(type="reattach", previous_worker_id=old.worker_id, reattach_token=old.token)
        await new.register("f")
        await pong(new)
        assert iii.engine.registry.owner("f") == new.worker_id
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(old.ws.recv(), 5 * SECOND)
    finally:
        await new.close()


# 22 -----------------------------------------------------------------------------------------------------------------
async def test_22_many_calls_in_flight_between_workers(iii: IIIServer) -> None:
    server_side = await RawWorker.connect(iii.worker_port)
    caller = await RawWorker.connect(iii.worker_port)
    try:
        await server_side.register("math::double")
        await registered(iii, "math::double")
        n = 50
        for i in range(n):
            await caller.send(type="invokefunction", invocation_id=f"c{i}", function_id="math::double", data={"x": i})
        invokes = [await server_side.expect(lambda f: f["type"] == "invokefunction") for _ in range(n)]
        for invoke in reversed(invokes):  # answered out of order
            await server_side.answer(invoke, invoke["data"]["x"] * 2)
        results = {}
        for _ in range(n):
            reply = await caller.expect(lambda f: f["type"] == "invocationresult")
            results[reply["invocation_id"]] = reply["result"]
        assert results == {f"c{i}": 2 * i for i in range(n)}
        # void call to another worker's function: delivered without an id, never answered
        await caller.send(type="invokefunction", function_id="math::double", data={"x": 1}, action={"type": "void"})
        void = await server_side.expect(lambda f: f["type"] == "invokefunction")
        assert "invocation_id" not in void
    finally:
        await server_side.close()
        await caller.close()


# ---- bad inputs and the rest of issue 8 ----------------------------------------------------------------------------


async def test_bad_frames_get_clear_errors_and_the_connection_stays_usable(
    store: Store, iii: IIIServer, worker: RawWorker
) -> None:
    await worker.ws.send("{not json")
    error = await worker.recv()
    assert error["type"] == "error" and error["code"] == "invalid_message" and "JSON" in error["message"]
    await worker.send(type="registertrigger", id="t")  # missing fields
    error = await worker.recv()
    assert error["type"] == "error" and "registertrigger" in error["message"]
    await worker.send(type="invokefunction", invocation_id="x1", function_id=12)  # mistyped
    reply = await worker.recv()
    assert reply["type"] == "invocationresult" and reply["invocation_id"] == "x1"
    assert reply["error"]["code"] == "deserialization_error"
    assert await worker.result("state::set", {"scope": "s", "key": "k", "value": 1}) == {
        "old_value": None,
        "new_value": 1,
    }
    bad_value = await worker.call("state::set", {"scope": "s", "key": "k", "value": None})
    assert bad_value["error"]["code"] == "SET_ERROR" and "null" in bad_value["error"]["message"]
    bad_scope = await worker.call("state::set", {"scope": "a/b", "key": "k", "value": 1})
    assert bad_scope["error"]["code"] == "SET_ERROR" and "scope" in bad_scope["error"]["message"]
    assert [e.key for e in await store.read_events(0, 10)] == ["k"]  # bad input wrote nothing


async def test_unknown_trigger_type_waits_and_bad_configs_are_refused(iii: IIIServer, worker: RawWorker) -> None:
    # Round 2 retires R-1: as in the current engine, a type nobody provides yet parks the trigger (no error frame).
    await worker.trigger("c1", "nobody.provides.this", "f", {"anything": 1})
    await worker.trigger("s1", "state", "f", {"scope": 12})
    reply = await worker.recv()
    assert reply["type"] == "triggerregistrationresult" and reply["id"] == "s1"
    assert reply["error"]["code"] == "trigger_registration_failed"
    await worker.trigger("k1", "cron", "f", {"expression": "61 * * * * *"})
    reply = await worker.recv()
    assert reply["id"] == "k1" and reply["error"]["message"].startswith("Invalid cron expression '61 * * * * *'")
    await worker.trigger("ok", "state", "f", {"scope": "x"})
    await pong(worker)  # success sends nothing
    assert list(iii.engine.registry.triggers) == ["ok"]
    assert list(iii.engine.registry.pending) == ["c1"]


async def test_two_workers_registering_the_same_function(iii: IIIServer) -> None:
    a = await RawWorker.connect(iii.worker_port)
    b = await RawWorker.connect(iii.worker_port)
    try:
        await a.register("dup")
        await registered(iii, "dup")
        await b.register("dup")
        rejected = await b.expect(lambda f: f["type"] == "registrationrejected")
        assert rejected["owner_worker_id"] == a.worker_id and rejected["code"] == "FUNCTION_NAMESPACE_CONFLICT"
        await b.register("state::set")  # a built-in belongs to the engine
        assert (await b.expect(lambda f: f["type"] == "registrationrejected"))["owner_worker_id"] == "engine"
        await pong(b)  # b stays connected and usable
        await a.close()
        await iii.engine.wait_until(lambda: "dup" not in iii.engine.registry.functions, 5 * SECOND)
        await b.register("dup")  # the owner is gone: now it is b's
        await pong(b)
        assert iii.engine.registry.owner("dup") == b.worker_id
    finally:
        await b.close()


async def test_a_worker_that_never_answers_times_out(store: Store) -> None:
    async with IIIServer(store, worker_port=0, http_port=0, stream_port=0, call_timeout=0.3 * SECOND) as iii:
        silent = await RawWorker.connect(iii.worker_port)
        caller = await RawWorker.connect(iii.worker_port)
        try:
            await silent.register("silent")
            await silent.trigger("r", "http", "silent", {"api_path": "/silent"})
            await registered(iii, "silent", triggers=1)
            reply = await caller.call("silent", {})
            assert reply["error"]["code"] == "timeout"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{iii.http_port}") as http:
                r = await http.get("/silent")
            assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
            assert await caller.result("state::get", {"scope": "s", "key": "k"}) is None  # others unaffected
        finally:
            await silent.close()
            await caller.close()


async def test_enqueue_is_answered_with_a_receipt(store: Store, worker: RawWorker) -> None:
    # Round 2: ripple is its own queue provider (queues on the log); the engine answers with a receipt at once.
    watch = LogWatch(store)
    try:
        await worker.send(
            type="invokefunction",
            invocation_id="q1",
            function_id="state::set",
            data={"scope": "s", "key": "k", "value": 1},
            action={"type": "enqueue", "queue": "jobs"},
        )
        reply = await worker.expect(lambda f: f.get("invocation_id") == "q1")
        assert set(reply["result"]) == {"messageReceiptId"} and "error" not in reply
        queued = await watch.wait_for(lambda e: e.scope == "$queue:jobs")
        assert (queued.kind, queued.key, queued.meta.id) == (
            "stream",
            "state::set",
            reply["result"]["messageReceiptId"],
        )
        done = await watch.wait_for(lambda e: e.scope == "s")  # the queue's consumer called state::set
        assert done.new_value == 1
    finally:
        watch.close()


async def test_oversized_and_large_frames(store: Store) -> None:
    async with IIIServer(store, worker_port=0, http_port=0, stream_port=0, max_frame=256 * 1024) as iii:
        other = await RawWorker.connect(iii.worker_port)
        big = await RawWorker.connect(iii.worker_port)
        try:
            value = "x" * (200 * 1024)  # large but allowed
            assert (await big.result("state::set", {"scope": "s", "key": "big", "value": value}))["new_value"] == value
            await big.ws.send(b"OTLP" + b"x" * (300 * 1024))  # over the limit
            with pytest.raises(websockets.ConnectionClosed) as err:
                await asyncio.wait_for(big.ws.recv(), 5 * SECOND)
            assert err.value.rcvd is not None and err.value.rcvd.code == 1009  # "message too big"
            assert await other.result("state::get", {"scope": "s", "key": "big"}) == value  # others unaffected
        finally:
            await other.close()
            await big.close()


async def test_engine_listing_functions(iii: IIIServer, worker: RawWorker) -> None:
    await worker.register("mine")
    await worker.trigger("t", "state", "mine", {"scope": "s"})
    await registered(iii, "mine", triggers=1)
    functions = (await worker.result("engine::functions::list", {}))["functions"]
    assert {"state::set", "mine"} <= {f["function_id"] for f in functions}
    workers = (await worker.result("engine::workers::list", {}))["workers"]
    assert worker.worker_id in {w["id"] for w in workers}
    # The current engine: engine::triggers::list lists trigger *types*; instances are registered-triggers.
    types = (await worker.result("engine::triggers::list", {}))["triggers"]
    assert {
        "id": "state",
        "worker_name": "ripple",
        "description": types[[t["id"] for t in types].index("state")]["description"],
    } in types
    rows = (await worker.result("engine::registered-triggers::list", {}))["registered_triggers"]
    assert rows == [
        {
            "id": "t",
            "trigger_type": "state",
            "function_id": "mine",
            "worker_name": worker.worker_id,
            "config": {"scope": "s"},
            "config_summary": '{"scope":"s"}',
        }
    ]
