"""Resume, catch-up-to-live and slow consumers on the iii stream port; overflow of a trigger's queue."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from ripple import Store
from ripple.iii.server import IIIServer
from ripple.subscriptions.cursor import Limits
from tests.conftest import SECOND, count
from tests.iii.conftest import RawWorker


async def frame(ws: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10 * SECOND))
    return data


async def test_resume_after_disconnects_loses_nothing_while_writes_go_on(store: Store, iii: IIIServer) -> None:
    rounds = count(100, 1000)
    total = rounds * 3
    url = f"ws://127.0.0.1:{iii.stream_port}/stream/s/g"

    async def writer() -> None:
        for i in range(total):
            await store.send("s", "g", "t", i)
            if i % 7 == 0:
                await store.send("s", "other", "t", -1)  # another group: never delivered here

    task = asyncio.create_task(writer())
    received: list[int] = []
    last = 0
    try:
        for _ in range(rounds):
            # max_queue=None: a client that stops reading with a full queue could not see the close handshake.
            async with websockets.connect(f"{url}?after={last}", max_queue=None) as ws:
                sync = await frame(ws)
                assert sync["event"]["type"] == "sync" and sync["offset"] == last
                for _ in range(2):  # take a couple, then drop the connection mid-stream
                    if len(received) == total:
                        break
                    f = await frame(ws)
                    received.append(f["event"]["event"]["data"])
                    assert f["offset"] > last
                    last = f["offset"]
        async with websockets.connect(f"{url}?after={last}") as ws:
            await frame(ws)
            while len(received) < total:
                f = await frame(ws)
                assert f["offset"] > last
                last = f["offset"]
                received.append(f["event"]["event"]["data"])
    finally:
        await task
    assert received == list(range(total))  # every message once, in order


async def test_catch_up_switches_to_live_without_gap_or_duplicate(store: Store, iii: IIIServer) -> None:
    n = count(2000, 20000)
    for i in range(n // 2):
        await store.send("s", "g", "t", i)

    async def writer() -> None:
        for i in range(n // 2, n):
            await store.send("s", "g", "t", i)

    async with websockets.connect(f"ws://127.0.0.1:{iii.stream_port}/stream/s/g?after=0") as ws:
        task = asyncio.create_task(writer())  # writes race the catch-up
        await frame(ws)
        got = [(await frame(ws))["event"]["event"]["data"] for _ in range(n)]
        await task
    assert got == list(range(n))


async def test_a_slow_client_falls_back_to_the_log_and_loses_nothing(store: Store, iii: IIIServer) -> None:
    iii.streams.max_buffer = 16 * 1024
    iii.streams.limits = Limits(max_buffer_events=8, max_buffer_bytes=None)
    n = count(400, 4000)
    payload = "x" * 65536  # 25 MB in all: more than loopback socket buffers hold
    # max_queue=1: the client stops reading its socket, so the server's buffer for it fills up.
    async with websockets.connect(f"ws://127.0.0.1:{iii.stream_port}/stream/s/g", max_queue=1) as ws:
        await frame(ws)
        for i in range(n):
            await store.send("s", "g", "t", {"i": i, "pad": payload})
        other = await websockets.connect(f"ws://127.0.0.1:{iii.stream_port}/stream/s/g?after=0")
        try:  # another client is not held back by the slow one
            await frame(other)
            assert [(await frame(other))["event"]["event"]["data"]["i"] for _ in range(n)] == list(range(n))
        finally:
            await other.close()
        got = [(await frame(ws))["event"]["event"]["data"]["i"] for _ in range(n)]
    assert got == list(range(n))
    assert store.counters["iii_stream_overflows"] >= 1


async def test_a_trigger_whose_queue_overflows_reads_the_log(store: Store, iii: IIIServer) -> None:
    iii.engine.trigger_limits = Limits(max_buffer_events=5, max_buffer_bytes=None)
    worker = await RawWorker.connect(iii.worker_port)
    try:
        await worker.register("slow")
        await worker.trigger("t", "state", "slow", {"scope": "a"})
        await iii.engine.wait_until(lambda: "t" in iii.engine.pumps, 5 * SECOND)
        n = 60
        for i in range(n):
            await store.set("a", f"k{i}", i)
            await store.set("b", "noise", i)  # other scopes do not count against the queue
        seen = []
        for _ in range(n):
            invoke = await worker.expect(lambda f: f["type"] == "invokefunction")
            seen.append(invoke["data"]["new_value"])
            await worker.answer(invoke, None)
        assert seen == list(range(n))  # all of them, in order, once
        assert store.counters["iii_trigger_overflows"] >= 1
        await store.set("a", "after", -1)  # and it is live again
        invoke = await worker.expect(lambda f: f["type"] == "invokefunction")
        assert invoke["data"]["key"] == "after"
    finally:
        await worker.close()


async def test_stream_triggers_receive_the_envelope(store: Store, iii: IIIServer) -> None:
    worker = await RawWorker.connect(iii.worker_port)
    try:
        await worker.register("on::stream")
        await worker.trigger("t", "stream", "on::stream", {"stream_name": "live", "group_id": "g"})
        await iii.engine.wait_until(lambda: "t" in iii.engine.pumps, 5 * SECOND)
        await store.send("live", "other", "t", 0)
        sent = await store.send("live", "g", "changed", {"x": 1}, id="m1")
        invoke = await worker.expect(lambda f: f["type"] == "invokefunction")
        data = invoke["data"]
        assert (data["streamName"], data["groupId"], data["id"], data["offset"]) == ("live", "g", "m1", sent.offset)
        assert data["event"] == {"type": "event", "event": {"type": "changed", "data": {"x": 1}}}
        await worker.answer(invoke, None)
    finally:
        await worker.close()
