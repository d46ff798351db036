"""Fan-out and catch-up: ripple's ``/v1/subscribe`` side by side with a bare ``websockets`` server, in one run.

    python bench/fanout.py [--subscribers 1000] [--seconds 5] [--rates 50,100,200] [--catchup 500000]
                           [--rounds 3] [--pin] [--durability full] [--quick]

1. Live fan-out: N subscribers on one scope, in a separate client process (``bench/wsclient.py``: raw asyncio
   protocols and one msgspec decode per frame, so the load generator is not the bottleneck). The server writes at a
   fixed rate — ripple: ``store.set`` (durability ``full``, as ``ripple serve``) on Litestar + uvicorn
   ``websockets-sansio``; bare: ``websockets.broadcast`` of the same event frames. Latency = receipt time - the time
   the write was issued (so ripple's includes the commit); p50/p99 over every delivery.
2. Catch-up: one client reads K events with ``batch=100`` from ripple, and from a bare ``websockets`` loop sending
   the same packed frames, pre-encoded. Events/s at the client; ratio ripple / bare.

Both servers run in this process on the same event loop (uvloop when installed). With ``--pin`` this process runs on
CPU 0 and the clients on CPU 1 (``sched_setaffinity``), so server and clients do not share a core. Rounds alternate
ripple and bare; medians are printed. Everything binds 127.0.0.1 and every process started here is stopped before
exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn
from litestar import Litestar
from websockets.asyncio.server import broadcast, serve

from ripple import Set, Store
from ripple.core.events import Event
from ripple.http.serve import loop_factory
from ripple.http.ws import close_subscribers, websocket_handlers
from ripple.wire import event_body, event_frame, events_frame

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary import record

logging.getLogger("websockets").setLevel(logging.WARNING)
CLIENT = Path(__file__).with_name("wsclient.py")


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))


def pin(cpu: int) -> Callable[[], None] | None:
    def apply() -> None:
        os.sched_setaffinity(0, {cpu})

    return apply


def spawn_client(args: list[str], cpu: int | None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CLIENT), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=None if cpu is None else pin(cpu),
    )  # fmt: skip


async def read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return (await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)).strip()


async def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdin is not None
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    line = await read_line(proc)
    proc.wait(timeout=30)
    result: dict[str, Any] = json.loads(line)
    return result


# ---- servers ----------------------------------------------------------------------------------------------------


async def start_ripple(path: Path, durability: str = "full") -> tuple[Store, uvicorn.Server, asyncio.Task[None], int]:
    store = await Store.open(path, durability=durability)
    app = Litestar(route_handlers=websocket_handlers())
    app.state.store = store
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, ws="websockets-sansio", ws_per_message_deflate=False,
        lifespan="off", log_level="warning", backlog=4096,
    )  # fmt: skip
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


async def paced(rate: int, seconds: float, fire: Callable[[int], None]) -> int:
    """Call ``fire(i)`` ``rate`` times a second for ``seconds``; returns how many."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    total = int(rate * seconds)
    for i in range(total):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # sleep-ok: pacing the writes is what this benchmark does
        fire(i)
    return total


async def drain(seconds: float) -> None:
    await asyncio.sleep(seconds)  # sleep-ok: let the last deliveries arrive before the clients stop counting


async def live_ripple(n: int, rate: int, seconds: float, tmp: Path, cpu: int | None, durability: str
                      ) -> dict[str, Any]:
    store, server, task, port = await start_ripple(tmp / f"live-{rate}-{time.monotonic_ns()}.db", durability)
    proc = spawn_client(["live", f"ws://127.0.0.1:{port}/v1/subscribe?scope=bench&batch=100", str(n)], cpu)
    try:
        assert await read_line(proc) == "ready"
        pending: set[asyncio.Future[Any]] = set()
        commits: list[float] = []  # issue -> acknowledged: the server's own part of a delivery's latency

        async def write(i: int) -> None:
            t = time.time()
            await store.set("bench", f"k{i % 100}", {"t": t, "i": i})
            commits.append(time.time() - t)

        def fire(i: int) -> None:
            t = asyncio.ensure_future(write(i))
            pending.add(t)
            t.add_done_callback(pending.discard)

        cpu0, wall0 = time.process_time(), time.perf_counter()
        total = await paced(rate, seconds, fire)
        await asyncio.gather(*pending)
        await drain(1.0)
        result = await finish(proc)
        commits.sort()
        result.update(writes=total, server_cpu=(time.process_time() - cpu0) / (time.perf_counter() - wall0),
                      commit_p99=commits[int(len(commits) * 0.99)] * 1000,
                      overflows=store.counters["subscriber_overflows"])
        return result
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await stop_ripple(store, server, task)


async def live_bare(n: int, rate: int, seconds: float, cpu: int | None) -> dict[str, Any]:
    async def handler(ws: Any) -> None:
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, backlog=4096) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        proc = spawn_client(["live", f"ws://127.0.0.1:{port}/", str(n)], cpu)
        try:
            assert await read_line(proc) == "ready"
            while len(server.connections) < n:  # noqa: ASYNC110 - the client said ready; the server may lag a tick
                await asyncio.sleep(0.01)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            total = await paced(rate, seconds, lambda i: broadcast(server.connections, frame_for(i).decode()))
            await drain(1.0)
            result = await finish(proc)
            result.update(writes=total, server_cpu=(time.process_time() - cpu0) / (time.perf_counter() - wall0))
            return result
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def fill(path: Path, count: int) -> list[bytes]:
    """Write ``count`` events; return the packed frames a catch-up with batch=100 carries (for the bare loop)."""
    async with Store.open(path, durability="normal") as store:
        for start in range(0, count, 1000):
            await store.batch(
                [Set("bench", f"k{i % 1000}", {"i": i, "name": f"item {i}", "done": i % 2 == 0})
                 for i in range(start, min(count, start + 1000))]
            )  # fmt: skip
        events: list[Event] = []
        after = 0
        while after < count:
            page = await store.read_events(after=after, limit=10_000, scopes=["bench"])
            events += page
            after = page[-1].offset
    return [events_frame([event_body(e) for e in events[i : i + 100]]) for i in range(0, len(events), 100)]


async def catchup_ripple(path: Path, cpu: int | None) -> dict[str, Any]:
    store, server, task, port = await start_ripple(path)
    try:
        cpu0 = time.process_time()
        proc = spawn_client(["catchup", f"ws://127.0.0.1:{port}/v1/subscribe?scope=bench&after=0&batch=100"], cpu)
        line = await read_line(proc)
        proc.wait(timeout=30)
        result: dict[str, Any] = json.loads(line)
        result["server_cpu_us"] = (time.process_time() - cpu0) / result["events"] * 1e6
        return result
    finally:
        await stop_ripple(store, server, task)


async def catchup_bare(frames: list[bytes], cpu: int | None) -> dict[str, Any]:
    texts = [f.decode() for f in frames]

    async def handler(ws: Any) -> None:
        for f in texts:
            await ws.send(f)
        await ws.send('{"type":"end"}')
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        cpu0 = time.process_time()
        proc = spawn_client(["catchup", f"ws://127.0.0.1:{port}/"], cpu)
        line = await read_line(proc)
        proc.wait(timeout=30)
        result: dict[str, Any] = json.loads(line)
        result["server_cpu_us"] = (time.process_time() - cpu0) / result["events"] * 1e6
        return result


# ---- driver -----------------------------------------------------------------------------------------------------


async def alternate(rounds: int, a: Callable[[], Awaitable[dict[str, Any]]],
                    b: Callable[[], Awaitable[dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ra, rb = [], []
    for _ in range(rounds):
        ra.append(await a())
        rb.append(await b())
    return ra, rb


def med(rs: list[dict[str, Any]], k: str) -> float:
    return statistics.median(r[k] for r in rs)


async def main(args: argparse.Namespace) -> None:
    raise_nofile()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[1]) if args.pin and len(cpus) >= 2 else (None, None)
    if server_cpu is not None:
        os.sched_setaffinity(0, {server_cpu})
    rates = [int(r) for r in args.rates.split(",") if r]
    placement = (f"server on CPU {server_cpu}, clients on CPU {client_cpu}" if server_cpu is not None
                 else "server and clients unpinned")
    print(f"{os.cpu_count()} cores ({placement}), load {os.getloadavg()[0]:.1f}; {args.subscribers} subscribers on "
          f"one scope, {args.seconds:g} s per run, {args.rounds} rounds, medians; ripple writes with durability "
          f"{args.durability}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if rates:
            print("\n| writes/s | ripple p50 / p99 ms | of which commit p99 | ripple deliveries/s | bare p50 / p99 ms "
                  "| bare deliveries/s | ratio | server CPU ripple / bare | client CPU |")
            print("|---:|---|---:|---:|---|---:|---:|---|---|")
        for rate in rates:
            rs, bs = await alternate(
                args.rounds,
                lambda rate=rate: live_ripple(args.subscribers, rate, args.seconds, tmp, client_cpu,  # type: ignore[misc]
                                              args.durability),
                lambda rate=rate: live_bare(args.subscribers, rate, args.seconds, client_cpu),  # type: ignore[misc]
            )
            expected = rs[0]["writes"] * args.subscribers
            window = args.seconds + 1.0
            r_rate, b_rate = med(rs, "n") / window, med(bs, "n") / window
            missing = max(expected - r["n"] for r in rs)
            p99 = med(rs, "p99")
            record(args.summary, f"fan-out, {args.subscribers:,} subscribers, {rate} writes/s ({placement})",
                   f"p99 {p99:.1f} ms (bare {med(bs, 'p99'):.1f} ms), deliveries {r_rate:,.0f}/s vs {b_rate:,.0f}/s",
                   r_rate / b_rate, "p99 < 50 ms" if rate >= 200 else "—", p99 < 50 if rate >= 200 else None)
            print(f"| {rate} | {med(rs, 'p50'):.1f} / {med(rs, 'p99'):.1f} | {med(rs, 'commit_p99'):.1f} | "
                  f"{r_rate:,.0f} | {med(bs, 'p50'):.1f} / {med(bs, 'p99'):.1f} | {b_rate:,.0f} | "
                  f"{r_rate / b_rate:.2f}x | {med(rs, 'server_cpu'):.0%} / {med(bs, 'server_cpu'):.0%} | "
                  f"{med(rs, 'client_cpu'):.0%} / {med(bs, 'client_cpu'):.0%} |"
                  f"  (expected {expected:,} per run; ripple short by at most "
                  f"{missing:,}; overflows {max(r['overflows'] for r in rs)})", flush=True)
        if args.catchup:
            frames = await fill(tmp / "catchup.db", args.catchup)
            cs, bcs = await alternate(
                args.rounds,
                lambda: catchup_ripple(tmp / "catchup.db", client_cpu),
                lambda: catchup_bare(frames, client_cpu),
            )
            ratios = [c["events"] / c["seconds"] / (b["events"] / b["seconds"]) for c, b in zip(cs, bcs, strict=True)]
            rr = statistics.median(c["events"] / c["seconds"] for c in cs)
            br = statistics.median(b["events"] / b["seconds"] for b in bcs)
            each = ", ".join(f"{x:.2f}" for x in ratios)
            ratio = statistics.median(ratios)
            record(args.summary, f"packed catch-up, batch=100, {args.catchup:,} events",
                   f"{rr:,.0f} vs {br:,.0f} events/s (bare websockets loop, same frames)", ratio, ">= 0.6x",
                   ratio >= 0.6)
            print(f"\ncatch-up of {args.catchup:,} events, batch=100: ripple {rr:,.0f} events/s, bare loop "
                  f"{br:,.0f} events/s: {statistics.median(ratios):.2f}x (rounds {each}); target >= 0.6x; server CPU "
                  f"per event ripple {med(cs, 'server_cpu_us'):.2f} µs, bare {med(bcs, 'server_cpu_us'):.2f} µs; "
                  f"client CPU per event {med(cs, 'client_cpu_us'):.2f} µs")
    print(f"\nload after: {os.getloadavg()[0]:.1f}")


def run(args: argparse.Namespace) -> None:
    with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
        runner.run(main(args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="50,100,200")
    parser.add_argument("--catchup", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pin", action="store_true",
                        help="server on one CPU, clients on another (on a machine shared with other work, this can "
                             "lengthen the tails: the server may no longer move to an idle core)")
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    parser.add_argument("--durability", choices=["full", "normal"], default="full",
                        help="of ripple's writes in the live runs (full: each commit waits for fsync)")
    parser.add_argument("--quick", action="store_true",
                        help="100 subscribers, 2 s, 200 writes/s, 20k catch-up, 1 round")
    ns = parser.parse_args()
    if ns.quick:
        ns.subscribers, ns.seconds, ns.rates, ns.catchup, ns.rounds = 100, 2.0, "200", 20_000, 1
    run(ns)
