"""Scale-out (issue 19), in one run: writes/s on SQLite vs PostgreSQL with 1 and 3 nodes, and fan-out latency with
WebSocket subscribers spread over 3 nodes.

    RIPPLE_PG_FSYNC=on .ci/postgres python bench/postgres.py [--events 20000] [--subscribers 60] [--rates 50,200]

(``.ci/postgres`` starts a throwaway PostgreSQL 15 and sets RIPPLE_TEST_PG; ``RIPPLE_PG_FSYNC=on`` keeps fsync and
synchronous commit on, so both engines make every acknowledged write durable; or pass ``--url``.)

1. Writes: 200 concurrent producers calling ``store.set`` (embedded, durability full) — on a SQLite file; on
   PostgreSQL with one node; on PostgreSQL with three nodes (three processes, each with its own ``Store`` and 200
   producers, all on one log). Events/s = all events / the wall time of the slowest node.
2. Fan-out: three ``ripple serve postgresql://...`` nodes, ``--subscribers`` ``ripple.client`` subscribers spread
   over them (round robin), one writer putting each of ``--rates`` writes/s through node 0 for ``--seconds``.
   Latency = the time a subscriber receives an event - the time its write was issued (one machine, one clock):
   p50/p99 over every delivery. The same load on one ``ripple serve`` of a SQLite file, for comparison.

Every process started here is stopped before exit; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psycopg

from ripple import Store
from ripple.client import subscribe

ROOT = Path(__file__).resolve().parent.parent
PRODUCERS = 200
VALUE = {"title": "buy milk", "completed": False}
_STARTED = re.compile(r"^ripple serving .+ on (?P<url>http://[\d.]+:\d+) ")


def schema_url(url: str) -> str:
    """A fresh schema on ``url``'s database: each measurement starts from an empty log."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


async def produce(location: str, n: int, tag: str) -> float:
    """``n`` writes from 200 producers on one store; returns the seconds they took."""
    async with Store.open(location, durability="full") as store:
        per = n // PRODUCERS

        async def producer(p: int) -> None:
            for i in range(per):
                await store.set("bench", f"{tag}-{p}-{i}", VALUE)

        started = time.perf_counter()
        await asyncio.gather(*(producer(p) for p in range(PRODUCERS)))
        return time.perf_counter() - started


def three_nodes(url: str, n: int) -> float:
    """Three processes writing ``n`` events in all to one log; events/s over the slowest one's time."""
    children = [
        subprocess.Popen([sys.executable, __file__, "--child", url, "--events", str(n // 3), "--tag", f"n{i}"],
                         stdout=subprocess.PIPE, text=True)
        for i in range(3)
    ]
    seconds = [float(child.communicate(timeout=600)[0].strip()) for child in children]
    return (n // 3 // PRODUCERS * PRODUCERS * 3) / max(seconds)


# ---- fan-out --------------------------------------------------------------------------------------------------


class Node:
    def __init__(self, location: str, log: Path) -> None:
        self.location, self.log = location, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> Node:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ripple", "serve", self.location, "--port", "0", "--durability", "full"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log.open("ab"),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        match = _STARTED.match(line)
        assert match, line
        self.url = match.group("url")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


async def fan_out(urls: list[str], subscribers: int, rate: float, seconds: float) -> tuple[float, float, int]:
    """p50 and p99 delivery latency in ms, and the deliveries counted."""
    sent: dict[int, float] = {}
    latencies: list[float] = []
    ready = 0
    all_ready = asyncio.Event()
    delivered = asyncio.Event()

    async def subscriber(url: str) -> None:
        nonlocal ready
        first = True
        async for event in subscribe(url, scopes=["fan"], after=0):
            if first:
                ready += 1
                first = False
                if ready == subscribers:
                    all_ready.set()
            key = int(event.key)
            if key >= 0:
                latencies.append(time.perf_counter() - sent[key])
                delivered.set()

    tasks = [asyncio.create_task(subscriber(urls[i % len(urls)])) for i in range(subscribers)]
    async with httpx.AsyncClient(base_url=urls[0], timeout=30) as client:
        # a warm-up write every subscriber must see before the clock starts
        await client.put("/v1/state/fan/-1", json={"warm": True})
        await asyncio.wait_for(all_ready.wait(), 60)
        total = int(rate * seconds)
        started = time.perf_counter()
        pending = []
        for i in range(total):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # sleep-ok: a fixed write rate
            sent[i] = time.perf_counter()
            pending.append(asyncio.create_task(client.put(f"/v1/state/fan/{i}", json={"i": i})))
        await asyncio.gather(*pending)
        try:
            async with asyncio.timeout(30):
                while len(latencies) < total * subscribers:
                    delivered.clear()
                    await delivered.wait()
        except TimeoutError:
            print(f"fan-out: {total * subscribers - len(latencies)} deliveries missing after 30 s", file=sys.stderr)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ms = sorted(x * 1000 for x in latencies)
    return statistics.median(ms), ms[int(len(ms) * 0.99) - 1], len(ms)


async def fan_out_on(locations: list[str], folder: Path, subscribers: int, rate: float, seconds: float
                     ) -> tuple[float, float, int]:
    nodes = [Node(loc, folder / f"node{i}.log").start() for i, loc in enumerate(locations)]
    try:
        return await fan_out([n.url for n in nodes], subscribers, rate, seconds)
    finally:
        for node in nodes:
            node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("RIPPLE_TEST_PG"))
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--subscribers", type=int, default=60)
    parser.add_argument("--rates", default="50,200", help="write rates of the fan-out runs (writes/s)")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="x", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(asyncio.run(produce(args.child, args.events, args.tag)))
        return
    if not args.url:
        sys.exit("bench/postgres.py: give --url postgresql://... or run it under .ci/postgres")
    n = args.events // PRODUCERS * PRODUCERS
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sqlite = n / asyncio.run(produce(str(folder / "bench.db"), n, "s"))
        pg_one = n / asyncio.run(produce(schema_url(args.url), n, "p"))
        pg_three = three_nodes(schema_url(args.url), n)
        print(f"## writes: 200 producers, durability full, {n:,} events per run\n")
        print("| store | events/s | vs SQLite |")
        print("|---|---:|---:|")
        for name, rate in (("SQLite file, 1 node", sqlite), ("PostgreSQL, 1 node", pg_one),
                           ("PostgreSQL, 3 nodes (3 processes)", pg_three)):
            print(f"| {name} | {rate:,.0f} | {rate / sqlite:.2f}x |")
        print(f"\n## fan-out: {args.subscribers} subscribers, {args.seconds:g} s per rate\n")
        print("| setup | writes/s | p50 ms | p99 ms | deliveries |")
        print("|---|---:|---:|---:|---:|")
        rows: list[tuple[str, float, Any]] = []
        for rate in (float(r) for r in args.rates.split(",")):
            rows.append(("SQLite file, 1 node, every subscriber on it", rate,
                         asyncio.run(fan_out_on([str(folder / f"fan-{rate:g}.db")], folder, args.subscribers, rate,
                                                args.seconds))))
            shared = schema_url(args.url)
            rows.append(("PostgreSQL, 3 nodes, subscribers spread, writes on node 0", rate,
                         asyncio.run(fan_out_on([shared] * 3, folder, args.subscribers, rate, args.seconds))))
        for name, rate, (p50, p99, deliveries) in rows:
            print(f"| {name} | {rate:g} | {p50:.1f} | {p99:.1f} | {deliveries:,} |")


if __name__ == "__main__":
    main()
