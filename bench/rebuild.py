"""Rebuild and reaction-latency benchmark (issue 4). One run, figures side by side.

1. Rebuild of ``metrics`` + ``todo_stats`` over N todo events (default 1M) against a raw ``sqlite3`` scan of the same
   rows with msgspec JSON decoding of ``old_value``/``new_value``/``meta`` (the floor any rebuild pays). Printed as a
   throughput ratio (raw time / rebuild time; targets: >= 0.5 offline, >= 0.4 live), the median over rounds that
   each run the scan and both rebuilds: live ``store.projections.rebuild_many`` (one pass, through the writer queue,
   writes could go on) and the offline one-pass ``rebuild_offline`` (one write transaction, as ``ripple rebuild``).
2. Reaction latency from COMMIT to the handler being called, p50/p99, under a steady 5k writes/s for a few seconds,
   for an ephemeral and a durable reaction at once.

    python bench/rebuild.py [--events 1000000] [--rounds 3] [--seconds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.todo import setup
from examples.todo.model import todo_stats
from ripple import ChangeEvent, Delete, Set, Store, Update, Writes
from ripple.projections.builtin import metrics_projection
from ripple.projections.runner import rebuild_offline
from ripple.store.sqlite import connect_writer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary import record


async def fill(path: Path, n: int) -> float:
    """Write ``n`` todo events (creates, toggles, deletes) in batches of 1000 through the store."""
    rng = random.Random(1)
    live: dict[str, bool] = {}
    t0 = time.perf_counter()
    async with Store.open(path, durability="normal", run_reactions=False) as store:
        store.register_projection(todo_stats())
        written = 0
        while written < n:
            batches = []
            for _ in range(4):
                cmds: list[Set | Update | Delete] = []
                seen: set[str] = set()
                while len(cmds) < min(1000, n - written - sum(len(b) for b in batches)):
                    key = f"t{rng.randrange(50_000)}"
                    if key in seen:
                        continue
                    seen.add(key)
                    if key not in live:
                        cmds.append(Set("todos", key, {"id": key, "title": f"todo {key}", "completed": False,
                                                       "created_at": str(written)}))
                        live[key] = False
                    elif rng.random() < 0.8:
                        live[key] = not live[key]
                        cmds.append(Update("todos", key, [{"type": "set", "path": "completed", "value": live[key]}]))
                    else:
                        cmds.append(Delete("todos", key))
                        del live[key]
                if cmds:
                    batches.append(cmds)
            await asyncio.gather(*(store.batch(b) for b in batches))
            written += sum(len(b) for b in batches)
            if written % 100_000 < 4000:
                print(f"  filled {written:,}", file=sys.stderr, flush=True)
    return time.perf_counter() - t0


def raw_scan(path: Path) -> tuple[float, int]:
    decode = msgspec.json.Decoder().decode
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    t0 = time.perf_counter()
    n = 0
    for row in conn.execute(
        "SELECT seq, ts, kind, scope, key, op, event_type, version, old_value, new_value, meta FROM events ORDER BY seq"
    ):
        old, new, meta = row[8], row[9], row[10]
        if old is not None:
            decode(old)
        if new is not None:
            decode(new)
        decode(meta)
        n += 1
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed, n


async def live_rebuild(path: Path) -> float:
    async with Store.open(path, run_reactions=False) as store:
        store.register_projection(todo_stats())
        await store.projections.wait_caught_up()
        t0 = time.perf_counter()
        a, b = await store.projections.rebuild_many(["metrics", "todo_stats"])
        elapsed = time.perf_counter() - t0
        assert a.status == b.status == "ok", (a, b)
    return elapsed


def offline_rebuild(path: Path) -> float:
    conn = connect_writer(path, "normal")
    try:
        t0 = time.perf_counter()
        rows = rebuild_offline(conn, [metrics_projection(), todo_stats()])
        assert all(r.status == "ok" for r in rows)
        return time.perf_counter() - t0
    finally:
        conn.close()


async def latency(path: Path, seconds: float, rate: int) -> tuple[list[float], list[float], int, float]:
    commit_at: dict[int, float] = {}
    ephemeral: list[float] = []
    durable: list[float] = []

    async with Store.open(path) as store:
        setup(store)  # the todo reaction and projection run too, as in production
        store.commits.subscribe(lambda events: commit_at.update((e.offset, time.perf_counter())
                                                                          for e in events))

        @store.on_change("load")
        async def eph(event: ChangeEvent) -> None:
            ephemeral.append(time.perf_counter() - commit_at[event.offset])

        @store.on_change("load", name="bench-durable", start="head")
        async def dur(event: ChangeEvent, writes: Writes) -> None:
            durable.append(time.perf_counter() - commit_at[event.offset])

        await asyncio.wait_for(store.reactions.wait_idle(), 60)
        tick = 0.01
        per_tick = max(1, int(rate * tick))
        pending: set[asyncio.Task[object]] = set()
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < seconds:
            for _ in range(per_tick):
                task = asyncio.ensure_future(store.set("load", f"k{i % 1000}", i))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            await asyncio.sleep(max(0.0, t0 + (i / per_tick) * tick - time.perf_counter()))
        await asyncio.gather(*pending)
        achieved = i / (time.perf_counter() - t0)
        await asyncio.wait_for(store.reactions.wait_idle(), 60)
    return ephemeral, durable, i, achieved


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] * 1000 if len(values) > 1 else float("nan")


async def rebuild_rounds(db: Path, rounds: int) -> tuple[list[float], list[float], list[float], int]:
    """Rounds of (raw scan, live rebuild, offline rebuild) on the same file: seconds of each, and the event count."""
    raws, lives, offs = [], [], []
    n = 0
    for _ in range(rounds):
        raw_s, n = raw_scan(db)
        raws.append(raw_s)
        lives.append(await live_rebuild(db))
        offs.append(offline_rebuild(db))
    return raws, lives, offs, n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="of the reaction latency run (0: skip it)")
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--quick", action="store_true", help="20,000 events, 1 round, 1 s of latency")
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.events, args.rounds, args.seconds = 20_000, 1, 1.0
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        db = Path(tmp) / "bench.db"
        fill_s = await fill(db, args.events)
        size = os.path.getsize(db) / 1e6
        print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; filled {args.events:,} events in {fill_s:.1f}s "
              f"({args.events / fill_s:,.0f} events/s, {size:.0f} MB)")
        raws, lives, offs, n = await rebuild_rounds(db, args.rounds)
        live_ratio = statistics.median(r / x for r, x in zip(raws, lives, strict=True))
        off_ratio = statistics.median(r / x for r, x in zip(raws, offs, strict=True))
        raw_s, live_s, off_s = statistics.median(raws), statistics.median(lives), statistics.median(offs)
        print(f"\nrebuild of metrics + todo_stats over {n:,} events, {args.rounds} rounds (medians; a round's ratio = "
              "its raw scan time / its rebuild time)")
        print(f"  {'raw sqlite3 scan + msgspec decode':<44} {raw_s:7.2f}s  {n / raw_s:>10,.0f} ev/s  1.00x")
        print(f"  {'live rebuild_many (one pass, writer open)':<44} {live_s:7.2f}s  {n / live_s:>10,.0f} ev/s  "
              f"{live_ratio:.2f}x   target >= 0.4x")
        print(f"  {'rebuild_offline (one pass, offline)':<44} {off_s:7.2f}s  {n / off_s:>10,.0f} ev/s  "
              f"{off_ratio:.2f}x   target >= 0.5x")
        work = f"projection rebuild (metrics + todo_stats), {n:,} events"
        record(args.summary, f"{work}, live", f"{n / live_s:,.0f} vs {n / raw_s:,.0f} events/s (raw scan + decode)",
               live_ratio, ">= 0.4x", live_ratio >= 0.4)
        record(args.summary, f"{work}, offline", f"{n / off_s:,.0f} vs {n / raw_s:,.0f} events/s (raw scan + decode)",
               off_ratio, ">= 0.5x", off_ratio >= 0.5)
        if args.seconds > 0:
            eph, dur, writes, achieved = await latency(Path(tmp) / "latency.db", args.seconds, args.rate)
            print(f"\nreaction latency, commit -> handler, {writes:,} writes over {args.seconds:.0f}s "
                  f"(target {args.rate:,}/s, achieved {achieved:,.0f}/s)")
            for name, values in (("ephemeral", eph), ("durable", dur)):
                print(f"  {name:<10} p50 {pct(values, 0.5):7.2f} ms   p99 {pct(values, 0.99):7.2f} ms   "
                      f"({len(values):,} events)")


if __name__ == "__main__":
    asyncio.run(main())
