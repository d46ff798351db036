"""Round 2: stored stream items (``stream::set/get/update/delete/list/list_groups``) through the published SDKs, kept
in ripple's log and state, delivered to stream subscribers and ``stream`` triggers, and forwarded to a worker's own
``create_stream`` implementation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import websockets

from ripple import Store
from ripple.iii.server import IIIServer
from tests.conftest import SECOND
from tests.iii.conftest import LogWatch, RawWorker
from tests.iii.sdk import Inbox, node_script, py_worker, registered
from tests.subscriptions.conftest import LiveServer, recv_json


async def next_frame(ws: Any, within: float = 10.0) -> dict[str, Any]:
    import asyncio

    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within * SECOND))
    return frame


async def test_stream_items_live_in_the_log_with_the_engines_shapes(
    store: Store, iii: IIIServer, worker: RawWorker, db_path: Path
) -> None:
    async with py_worker(iii.worker_port) as py:
        key = {"stream_name": "todo", "group_id": "inbox", "item_id": "a"}
        assert await py.call("stream::set", {**key, "data": {"title": "milk"}}) == {
            "old_value": None,
            "new_value": {"title": "milk"},
        }
        assert await py.call("stream::set", {**key, "data": {"title": "oat milk"}}) == {
            "old_value": {"title": "milk"},
            "new_value": {"title": "oat milk"},
        }
        update = await py.call("stream::update", {**key, "ops": [{"type": "set", "path": "done", "value": True}]})
        assert update == {"old_value": {"title": "oat milk"}, "new_value": {"title": "oat milk", "done": True}}
        await py.call("stream::set", {"stream_name": "todo", "group_id": "inbox", "item_id": "b", "data": 2})
        await py.call("stream::set", {"stream_name": "todo", "group_id": "a/b:c", "item_id": "x", "data": 3})
        assert await py.call("stream::list", {"stream_name": "todo", "group_id": "inbox"}) == [
            {"title": "oat milk", "done": True},
            2,
        ]
        assert sorted(await py.call("stream::list_groups", {"stream_name": "todo"})) == ["a/b:c", "inbox"]
        assert await py.call("stream::get", key) == {"title": "oat milk", "done": True}
        assert await py.call("stream::delete", key) == {"old_value": {"title": "oat milk", "done": True}}
        assert await py.call("stream::delete", key) == {"old_value": None}  # missing: nothing logged
        listed = await py.call("stream::list_all", {})
        assert listed == {"stream": [{"id": "todo", "groups": ["a/b:c", "inbox"]}], "count": 1}
        # Stream groups are not iii state: state::list_groups leaves them out.
        await py.call("state::set", {"scope": "todo", "key": "k", "value": 1})
        assert (await py.call("state::list_groups", {}))["groups"] == ["todo"]

    # The current engine leaves `result` out for a missing item (the Python SDK then returns None).
    reply = await worker.call("stream::get", key)
    assert "result" not in reply and "error" not in reply

    # Each change is an ordinary state event in the group's scope; names with `/` and `:` are escaped.
    events = await store.read_events(0, 100, kind="state")
    assert [(e.scope, e.key, e.event_type) for e in events if e.scope.startswith("$stream:")] == [
        ("$stream:todo:inbox", "a", "created"),
        ("$stream:todo:inbox", "a", "updated"),
        ("$stream:todo:inbox", "a", "updated"),
        ("$stream:todo:inbox", "b", "created"),
        ("$stream:todo:a%2Fb%3Ac", "x", "created"),
        ("$stream:todo:inbox", "a", "deleted"),
    ]
    # Time travel and verify treat items like any key.
    created = events[0].offset
    assert await store.get("$stream:todo:inbox", "a", at=created) == {"title": "milk"}
    await store.close()
    done = subprocess.run(
        [sys.executable, "-m", "ripple", "verify", "--db", str(db_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_stream_port_and_v1_streams_deliver_item_changes_and_resume(db_path: Path) -> None:
    live = await LiveServer(db_path).start()
    assert live.store is not None
    try:
        async with IIIServer(live.store, worker_port=0, http_port=0, stream_port=0) as iii:
            async with py_worker(iii.worker_port) as py:
                item = {"stream_name": "board", "group_id": "g1"}
                await py.call("stream::set", {**item, "item_id": "first", "data": {"n": 1}})
                iii_ws = await websockets.connect(f"ws://127.0.0.1:{iii.stream_port}/")
                join = {"subscriptionId": "s", "streamName": "board", "groupId": "g1"}
                await iii_ws.send(json.dumps({"type": "join", "data": join}))
                sync = await next_frame(iii_ws)
                assert sync["event"] == {"type": "sync", "data": [{"n": 1}]} and sync["groupId"] == "g1"
                v1 = await websockets.connect(f"{live.url}/v1/streams/board/g1?after={sync['offset']}")
                assert (await recv_json(v1))["type"] == "hello"

                await py.call("stream::set", {**item, "item_id": "a", "data": {"n": 2}})
                bump = [{"type": "increment", "path": "n", "by": 1}]
                await py.call("stream::update", {**item, "item_id": "a", "ops": bump})
                await py.call("stream::send", {**item, "type": "ping", "data": "hi"})
                await py.call("stream::delete", {**item, "item_id": "a"})
                frames = [await next_frame(iii_ws) for _ in range(4)]
                assert [(f["id"], f["event"]) for f in frames] == [
                    ("a", {"type": "create", "data": {"n": 2}}),
                    ("a", {"type": "update", "data": {"n": 3}}),
                    (None, {"type": "event", "event": {"type": "ping", "data": "hi"}}),
                    ("a", {"type": "delete", "data": {"n": 3}}),  # a delete carries the old value
                ]
                offsets = [f["offset"] for f in frames]
                assert offsets == sorted(offsets)

                # /v1/streams/{stream}/{group} gets the same four changes as ripple events, in order.
                seen: list[dict[str, Any]] = []
                while len(seen) < 4:
                    frame = await recv_json(v1)
                    if frame["type"] == "event":
                        seen.append(frame)
                assert [(e["kind"], e["scope"], e["event_type"]) for e in seen] == [
                    ("state", "$stream:board:g1", "created"),
                    ("state", "$stream:board:g1", "updated"),
                    ("stream", "board", "ping"),
                    ("state", "$stream:board:g1", "deleted"),
                ]
                await v1.close()

                # A client that resumes after the create sees the rest, the sync taken at its offset.
                again = await websockets.connect(f"ws://127.0.0.1:{iii.stream_port}/stream/board/g1?after={offsets[0]}")
                sync = await next_frame(again)
                assert sync["event"] == {"type": "sync", "data": [{"n": 1}, {"n": 2}]}
                assert [(await next_frame(again))["event"]["type"] for _ in range(3)] == ["update", "event", "delete"]
                await again.close()
                await iii_ws.close()
    finally:
        await live.stop()


STREAM_TRIGGER = """
import { registerWorker } from 'iii-sdk'
const iii = registerWorker(process.env.III_URL)
const seen = iii.registerFunction('test::on-item', async (change) => {
  console.log(JSON.stringify({ change }))
  return {}
})
iii.registerTrigger({ type: 'stream', function_id: seen.id, config: { stream_name: 'todo', group_id: 'list' } })
iii.registerFunction('test::ready', async () => ({}))
console.log(JSON.stringify({ ready: true }))
"""


async def test_stream_trigger_fires_for_item_changes_node_sdk(iii: IIIServer, tmp_path: Path) -> None:
    async with node_script(STREAM_TRIGGER, iii.worker_port, tmp_path) as node:
        assert (await node.line())["ready"]
        await registered(iii.engine, lambda: any(True for _ in iii.engine.registry.of_type("stream")))
        async with py_worker(iii.worker_port) as py:
            item = {"stream_name": "todo", "group_id": "list", "item_id": "t1"}
            await py.call("stream::set", {**item, "data": {"title": "x"}})
            await py.call("stream::set", {"stream_name": "todo", "group_id": "other", "item_id": "t2", "data": 1})
            await py.call("stream::delete", item)
        changes = [(await node.line())["change"] for _ in range(2)]
    assert [(c["streamName"], c["groupId"], c["id"], c["event"]) for c in changes] == [
        ("todo", "list", "t1", {"type": "create", "data": {"title": "x"}}),
        ("todo", "list", "t1", {"type": "delete", "data": {"title": "x"}}),
    ]
    assert all(c["type"] == "stream" and isinstance(c["timestamp"], int) for c in changes)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # IStream/create_stream: deprecated in 0.25, still served
async def test_create_stream_forwards_to_the_worker_and_logs_its_changes(store: Store, iii: IIIServer) -> None:
    from iii.helpers import create_stream  # type: ignore[import-untyped]
    from iii.stream import IStream  # type: ignore[import-untyped]
    from iii_helpers.stream import StreamSetResult

    calls = Inbox()
    items: dict[str, Any] = {}

    class Todos(IStream[Any]):  # type: ignore[misc]
        async def get(self, input: Any) -> Any:
            calls.put(("get", input.item_id))
            return items.get(input.item_id)

        async def set(self, input: Any) -> Any:
            calls.put(("set", input.item_id))
            old = items.get(input.item_id)
            items[input.item_id] = input.data
            return StreamSetResult(old_value=old, new_value=input.data)

        async def delete(self, input: Any) -> Any:
            calls.put(("delete", input.item_id))
            items.pop(input.item_id, None)
            return None  # the engine fails a custom delete that answers nothing; ripple reads it as "nothing there"

        async def list(self, input: Any) -> Any:
            return list(items.values())

        async def list_groups(self, input: Any) -> Any:
            return ["mine"]

        async def update(self, input: Any) -> Any:
            return None

    watch = LogWatch(store)
    try:
        async with py_worker(iii.worker_port, "owner") as owner:
            create_stream(owner.client, "custom", Todos())
            await registered(iii.engine, lambda: "stream::set(custom)" in iii.engine.registry.functions)
            async with py_worker(iii.worker_port, "caller") as caller:
                key = {"stream_name": "custom", "group_id": "g", "item_id": "i"}
                assert await caller.call("stream::set", {**key, "data": {"v": 1}}) == {
                    "old_value": None,
                    "new_value": {"v": 1},
                }
                assert await calls.get() == ("set", "i")
                assert await caller.call("stream::get", key) == {"v": 1}
                assert await calls.get() == ("get", "i")
                assert await caller.call("stream::list_groups", {"stream_name": "custom"}) == ["mine"]
                assert await caller.call("stream::delete", key) == {"old_value": None}
                assert await calls.get() == ("delete", "i")
                # What the worker reported for its writes is in the log, so subscribers and triggers see it.
                created = await watch.wait_for(lambda e: e.scope == "$stream:custom:g")
                assert (created.key, created.event_type, created.new_value) == ("i", "created", {"v": 1})
                deleted = await watch.wait_for(lambda e: e.scope == "$stream:custom:g")
                assert (deleted.key, deleted.event_type) == ("i", "deleted")
                assert await store.get("$stream:custom:g", "i") is None
    finally:
        watch.close()
