"""Fan-out and catch-up: ripple's /v1/subscribe side by side with a bare ``websockets`` server, in one run.

    python bench/fanout.py [--subscribers 1000] [--seconds 4] [--rates 50,100,1000] [--catchup 500000]

1. Live fan-out: N subscribers on one scope (clients in a separate process). The server writes at a fixed rate
   (``store.set`` on uvicorn ``websockets-sansio``) or, for the bare server, broadcasts the same event frames with
   ``websockets.broadcast``. Latency = receipt time - the time the write was issued (so it includes the commit);
   p50/p99 over every delivery; delivered events/s = all deliveries / the window.
2. Catch-up: one client reads a log of K events with ``batch=100`` vs a bare ``websockets`` loop sending the same
   packed frames. Events/s at the client.

Everything runs on 127.0.0.1; every process started here is stopped before exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
import uvicorn
from litestar import Litestar
from websockets.asyncio.client import connect
from websockets.asyncio.server import broadcast, serve

from ripple import Set, Store
from ripple.core.events import Event
from ripple.http.ws import close_subscribers, websocket_handlers
from ripple.wire import event_body, event_frame, events_frame

logging.getLogger("websockets").setLevel(logging.WARNING)


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))


# ---- client process ---------------------------------------------------------------------------------------------


class _T(msgspec.Struct):
    t: float = 0.0


class _Ev(msgspec.Struct):
    new_value: _T | None = None


class _Frame(msgspec.Struct):
    type: str
    new_value: _T | None = None
    events: list[_Ev] = []


_decode = msgspec.json.Decoder(_Frame).decode


async def client_main(url: str, n: int, mode: str) -> None:
    raise_nofile()
    if mode == "catchup":
        await catchup_client(url)
        return
    lat: list[float] = []
    conns = []
    for start in range(0, n, 100):
        conns += await asyncio.gather(
            *(connect(url, max_size=None, compression=None, open_timeout=60) for _ in range(start, min(n, start + 100)))
        )
    if mode == "live-ripple":  # wait until every subscription is live (hello, then live)
        for ws in conns:
            for _ in range(2):
                await ws.recv()
    print("ready", flush=True)
    stop = asyncio.Event()

    async def reader(ws: Any) -> None:
        try:
            async for message in ws:
                now = time.time()
                f = _decode(message)
                if f.type == "event" and f.new_value is not None:
                    lat.append(now - f.new_value.t)
                elif f.type == "events":
                    lat.extend(now - e.new_value.t for e in f.events if e.new_value is not None)
                elif f.type == "stop":
                    return
        except Exception:
            return

    tasks = [asyncio.create_task(reader(ws)) for ws in conns]
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "stop" from the parent
    del line
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lat = [x for x in lat if x >= 0]
    print(json.dumps({"n": len(lat), "p50": _pct(lat, 50), "p99": _pct(lat, 99)}), flush=True)
    for ws in conns:
        ws.transport.abort()


async def catchup_client(url: str) -> None:
    decode = msgspec.json.Decoder(dict[str, Any]).decode  # a real client decodes the events
    started = time.perf_counter()
    n = 0
    async with connect(url, max_size=None, compression=None) as ws:
        async for message in ws:
            frame = decode(message)
            kind = frame["type"]
            if kind == "events":
                n += len(frame["events"])
            elif kind == "event":
                n += 1
            elif kind in ("live", "end"):
                break
    elapsed = time.perf_counter() - started
    print(json.dumps({"events": n, "seconds": elapsed}), flush=True)


def _pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] * 1000


def spawn_clients(url: str, n: int, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--client", url, "--subscribers", str(n), "--mode", mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


# ---- servers ----------------------------------------------------------------------------------------------------


async def start_ripple(path: Path) -> tuple[Store, uvicorn.Server, asyncio.Task[None], int]:
    store = await Store.open(path, durability="normal")
    app = Litestar(route_handlers=websocket_handlers())
    app.state.store = store
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, ws="websockets-sansio", ws_per_message_deflate=False,
        lifespan="off", log_level="warning", backlog=4096,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes no started event
        await asyncio.sleep(0.01)
    return store, server, task, server.servers[0].sockets[0].getsockname()[1]


async def stop_ripple(store: Store, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    await close_subscribers(store)
    server.should_exit = True
    await task
    await store.close()


def frame_for(i: int) -> bytes:
    ev = Event(i, int(time.time() * 1000), "state", "bench", f"k{i % 100}", "set", "updated", 2, None,
               {"t": time.time(), "i": i})
    return event_frame(event_body(ev))


async def paced(rate: int, seconds: float, fire: Any) -> int:
    """Call ``fire(i)`` ``rate`` times a second for ``seconds``; returns how many."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    total = int(rate * seconds)
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        fire(i)
    return total


async def wait_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return (await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)).strip()


async def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdin is not None
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    line = await wait_line(proc)
    proc.wait(timeout=30)
    result: dict[str, Any] = json.loads(line)
    return result


async def live_ripple(n: int, rate: int, seconds: float, tmp: Path) -> dict[str, Any]:
    store, server, task, port = await start_ripple(tmp / f"live-{rate}.db")
    proc = spawn_clients(f"ws://127.0.0.1:{port}/v1/subscribe?scope=bench&batch=100", n, "live-ripple")
    try:
        assert await wait_line(proc) == "ready"
        pending: set[asyncio.Task[Any]] = set()

        def fire(i: int) -> None:
            t = asyncio.ensure_future(store.set("bench", f"k{i % 100}", {"t": time.time(), "i": i}))
            pending.add(t)
            t.add_done_callback(pending.discard)

        started = time.perf_counter()
        total = await paced(rate, seconds, fire)
        await asyncio.gather(*pending)
        await asyncio.sleep(1.5)  # let deliveries drain before the clients stop counting
        elapsed = time.perf_counter() - started
        result = await finish(proc)
        result["writes"] = total
        result["rate"] = result["n"] / elapsed
        result["overflows"] = store.counters["subscriber_overflows"]
        return result
    finally:
        if proc.poll() is None:
            proc.kill()
        await stop_ripple(store, server, task)


async def live_bare(n: int, rate: int, seconds: float) -> dict[str, Any]:
    async def handler(ws: Any) -> None:
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, backlog=4096) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        proc = spawn_clients(f"ws://127.0.0.1:{port}/", n, "live")
        try:
            assert await wait_line(proc) == "ready"
            started = time.perf_counter()
            total = await paced(rate, seconds, lambda i: broadcast(server.connections, frame_for(i).decode()))
            await asyncio.sleep(1.5)
            elapsed = time.perf_counter() - started
            result = await finish(proc)
            result["writes"] = total
            result["rate"] = result["n"] / elapsed
            return result
        finally:
            if proc.poll() is None:
                proc.kill()


async def catchup_ripple(count: int, tmp: Path) -> tuple[dict[str, Any], list[bytes]]:
    store, server, task, port = await start_ripple(tmp / "catchup.db")
    try:
        for start in range(0, count, 1000):
            await store.batch(
                [Set("bench", f"k{i % 1000}", {"i": i, "name": f"item {i}", "done": i % 2 == 0})
                 for i in range(start, min(count, start + 1000))]
            )
        # the same packed frames for the bare loop, built from the stored events
        events: list[Event] = []
        after = 0
        while after < count:
            page = await store.read_events(after=after, limit=10_000, scopes=["bench"])
            events += page
            after = page[-1].offset
        frames = [events_frame([event_body(e) for e in events[i:i + 100]]) for i in range(0, len(events), 100)]
        proc = spawn_clients(f"ws://127.0.0.1:{port}/v1/subscribe?scope=bench&after=0&batch=100", 1, "catchup")
        line = await wait_line(proc)
        proc.wait(timeout=30)
        return json.loads(line), frames
    finally:
        await stop_ripple(store, server, task)


async def catchup_bare(frames: list[bytes]) -> dict[str, Any]:
    async def handler(ws: Any) -> None:
        for f in frames:
            await ws.send(f.decode())
        await ws.send('{"type":"end"}')
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        proc = spawn_clients(f"ws://127.0.0.1:{port}/", 1, "catchup")
        line = await wait_line(proc)
        proc.wait(timeout=30)
        result: dict[str, Any] = json.loads(line)
        return result


async def main(args: argparse.Namespace) -> None:
    raise_nofile()
    rates = [int(r) for r in args.rates.split(",")]
    print(f"fan-out: {args.subscribers} subscribers on one scope, {args.seconds:g} s per rate "
          f"(cpu count {os.cpu_count()}; clients in a separate process)")
    print(f"{'rate/s':>7} | {'ripple p50':>10} {'p99':>8} {'deliv/s':>9} | {'bare p50':>9} {'p99':>8} {'deliv/s':>9}"
          f" | ratio")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for rate in rates:
            r = await live_ripple(args.subscribers, rate, args.seconds, tmp)
            b = await live_bare(args.subscribers, rate, args.seconds)
            print(f"{rate:>7} | {r['p50']:>8.1f}ms {r['p99']:>6.1f}ms {r['rate']:>9,.0f} | {b['p50']:>7.1f}ms "
                  f"{b['p99']:>6.1f}ms {b['rate']:>9,.0f} | {r['rate'] / b['rate']:.2f}x"
                  f"  (expected {r['writes'] * args.subscribers:,}; ripple got {r['n']:,}, bare {b['n']:,};"
                  f" overflows {r['overflows']})", flush=True)
        c, frames = await catchup_ripple(args.catchup, tmp)
        bc = await catchup_bare(frames)
        rr, br = c["events"] / c["seconds"], bc["events"] / bc["seconds"]
        print(f"catch-up of {args.catchup:,} events, batch=100: ripple {rr:,.0f} events/s ({c['seconds']:.2f} s), "
              f"bare loop {br:,.0f} events/s ({bc['seconds']:.2f} s): {rr / br:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rates", default="50,100,1000")
    parser.add_argument("--catchup", type=int, default=500_000)
    parser.add_argument("--client")
    parser.add_argument("--mode", default="live")
    ns = parser.parse_args()
    if ns.client:
        asyncio.run(client_main(ns.client, ns.subscribers, ns.mode))
    else:
        asyncio.run(main(ns))
