"""Resume: random client- and server-side disconnects during concurrent writes lose nothing and repeat nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from pathlib import Path

from websockets.exceptions import ConnectionClosed

from ripple import Set, Store
from ripple.client import Backoff, subscribe, subscribe_stream
from tests.conftest import SECOND, count
from tests.subscriptions.conftest import LiveServer, raise_nofile, ws_connect


async def keep_writing(store: Store, stop: asyncio.Event, seed: int) -> None:
    rng = random.Random(seed)
    i = 0
    while not stop.is_set():
        i += 1
        r = rng.random()
        if r < 0.1:
            await store.send("chat", "room", "msg", {"i": i})
        elif r < 0.2:
            await store.batch([Set(rng.choice("ab"), f"k{j}", i) for j in range(rng.randint(2, 30))])
        else:
            await store.set(rng.choice("ab"), f"k{i % 17}", {"i": i})


async def expected_offsets(store: Store, after: int, *, scopes: list[str] | None, kind: str) -> list[int]:
    out: list[int] = []
    while True:
        page = await store.read_events(after=after, limit=10_000, scopes=scopes, kind=kind)  # type: ignore[arg-type]
        if not page:
            return out
        out.extend(e.offset for e in page)
        after = page[-1].offset


async def test_random_disconnects_raw_client(db_path: Path) -> None:
    rng = random.Random(5)
    cuts = count(100, 1000)
    server = await LiveServer(db_path, durability="normal").start()
    store = server.store
    assert store is not None
    stop = asyncio.Event()
    writers = [asyncio.create_task(keep_writing(store, stop, seed)) for seed in range(3)]
    got: list[int] = []
    position = 0
    sides = {"client": 0, "server": 0}
    try:
        async with asyncio.timeout(120 * SECOND):
            for n in range(cuts + 1):
                last_round = n == cuts
                if last_round:
                    stop.set()
                    await asyncio.gather(*writers)
                    final = (await expected_offsets(store, 0, scopes=["a"], kind="state"))[-1]
                batch = rng.choice(["", "&batch=1", "&batch=10", "&batch=1000"])
                ws = await ws_connect(f"{server.url}/v1/subscribe?scope=a&after={position}{batch}")
                frames = rng.randint(1, 25)
                cut_by_server = False
                with contextlib.suppress(ConnectionClosed):
                    while last_round or cut_by_server or frames > 0:
                        frame = json.loads(await ws.recv())
                        frames -= 1
                        events = frame["events"] if frame["type"] == "events" else [frame]
                        if frame["type"] in ("event", "events"):
                            got.extend(e["offset"] for e in events)
                            position = got[-1]
                        elif frame["type"] in ("live", "heartbeat"):
                            position = max(position, frame["through"])
                        if last_round and position >= final:
                            break
                        if frames == 0 and not last_round and not cut_by_server and rng.random() < 0.5:
                            # a server-side cut: the client reads what arrived until it sees the connection drop
                            cut_by_server = server.cut_one(rng)
                            sides["server"] += cut_by_server
                if last_round:
                    await ws.close()
                elif not cut_by_server:
                    sides["client"] += 1
                    ws.transport.abort()
    finally:
        stop.set()
        await asyncio.gather(*writers, return_exceptions=True)
        await server.stop()
    assert got == sorted(set(got)), "strictly increasing: nothing twice, nothing out of order"
    async with Store.open(db_path) as reopened:
        assert got == await expected_offsets(reopened, 0, scopes=["a"], kind="state")
    assert sides["client"] > 0 and sides["server"] > 0
    print(f"\nresume: {cuts} cuts ({sides}), {len(got)} events delivered exactly once")


async def test_client_resumes_across_server_cuts_and_restart(db_path: Path) -> None:
    """ripple.client: server-side cuts, then a graceful restart (1001), then more writes: exactly once."""
    raise_nofile()
    rng = random.Random(9)
    server = await LiveServer(db_path, durability="normal").start()
    port = server.port
    store = server.store
    assert store is not None
    await store.set("a", "before", 1)
    fast = Backoff(initial=0.01, maximum=0.2)
    got: list[int] = []
    streamed: list[int] = []
    progressed = asyncio.Event()

    async def consume() -> None:
        async for event in subscribe(server.url, scopes=["a"], after=0, backoff=fast):
            got.append(event.offset)
            progressed.set()
            if event.key == "end":
                return

    async def consume_stream() -> None:
        async for event in subscribe_stream(server.url, "chat", "room", after=0, backoff=fast):
            streamed.append(event.offset)
            if event.new_value == {"end": True}:
                return

    tasks = [asyncio.create_task(consume()), asyncio.create_task(consume_stream())]
    stop = asyncio.Event()
    writer = asyncio.create_task(keep_writing(store, stop, 1))
    try:
        async with asyncio.timeout(60 * SECOND):
            for _ in range(count(20, 200)):
                progressed.clear()
                await progressed.wait()
                server.cut_one(rng)
            stop.set()
            await writer
            await server.stop()  # close_subscribers: shutting_down + 1001, then the store closes
            server = await LiveServer(db_path, durability="normal", port=port).start()
            store = server.store
            assert store is not None
            await store.batch([Set("a", f"after-restart-{i}", i) for i in range(50)])
            await store.send("chat", "room", "msg", {"end": True})
            await store.set("a", "end", True)
            await asyncio.gather(*tasks)
        assert got == sorted(set(got)) and streamed == sorted(set(streamed))
        assert got == await expected_offsets(store, 0, scopes=["a"], kind="state")
        stream_log = [e.offset for e in await store.read_events(after=0, limit=10_000, kind="stream")]
        assert streamed == stream_log
    finally:
        for task in tasks:
            task.cancel()
        stop.set()
        await asyncio.gather(writer, *tasks, return_exceptions=True)
        await server.stop()
