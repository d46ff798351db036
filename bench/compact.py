"""Compaction benchmark: rate, file size before/after, and what a live compaction costs the writer. One run.

1. Fill a file with N events over K keys (default 1M events, 10k keys: creates, updates, some deletes).
2. Offline: ``ripple compact`` (``maintenance.compact_file``) of the oldest 90 %: events/s, the time of each step
   (``retention.COMPACT_CHUNK`` events in one transaction: what a live writer is held for), file size before and
   after (incremental vacuum gives the pages back).
3. Live, on a copy: one producer writes as fast as it can, single sets, and we record each write's latency — first
   alone, then while ``store.compact`` moves the floor the same distance through the writer queue.

    python bench/compact.py                       # 1M events, 10k keys
    python bench/compact.py --events 100000 --keys 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ripple import Delete, IncrementOp, Set, Store, Update
from ripple.maintenance import compact_file
from ripple.projections.builtin import metrics_projection
from ripple.store import retention


async def fill(path: Path, n: int, keys: int, value_bytes: int) -> None:
    rng = random.Random(1)
    alive: set[str] = set()
    pad = "x" * value_bytes
    async with Store.open(path, durability="normal") as store:
        written = 0
        while written < n:
            cmds: list[Set | Update | Delete] = []
            seen: set[str] = set()
            while len(cmds) < min(1000, n - written, keys):
                key = f"k{rng.randrange(keys)}"
                if key in seen:
                    continue
                seen.add(key)
                roll = rng.random()
                if key in alive and roll < 0.05:
                    cmds.append(Delete("s", key))
                    alive.discard(key)
                elif key in alive and roll < 0.5:
                    cmds.append(Update("s", key, [IncrementOp("n", 1)]))
                else:
                    cmds.append(Set("s", key, {"n": written, "pad": pad}))
                    alive.add(key)
            await store.batch(cmds)
            written += len(cmds)


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def offline(path: Path, before: int) -> tuple[float, list[float], int, int]:
    steps: list[float] = []
    last = time.perf_counter()

    def progress(_n: int) -> None:
        nonlocal last
        now = time.perf_counter()
        steps.append(now - last)
        last = now

    t0 = time.perf_counter()
    report = compact_file(path, before, projections=[metrics_projection()], progress=progress)
    return time.perf_counter() - t0, steps, report.file_bytes_before, report.file_bytes_after


async def live(path: Path, before: int, seconds: float) -> dict[str, float]:
    steps: list[float] = []
    step = retention.compact_step

    def timed(conn: sqlite3.Connection, upto: int, chunk: int | None = None) -> tuple[retention.Floor, int]:
        t = time.perf_counter()
        try:
            return step(conn, upto, chunk)
        finally:
            steps.append(time.perf_counter() - t)

    retention.compact_step = timed  # type: ignore[assignment]  # the store looks it up at each step
    async with Store.open(path) as store:
        lat: list[float] = []
        stop = asyncio.Event()

        async def producer() -> None:
            i = 0
            while not stop.is_set():
                t = time.perf_counter()
                await store.set("w", f"k{i % 100}", {"i": i})
                lat.append(time.perf_counter() - t)
                i += 1

        task = asyncio.create_task(producer())
        await asyncio.sleep(seconds)  # baseline
        stop.set()
        await task
        baseline, lat[:] = list(lat), []
        stop.clear()
        task = asyncio.create_task(producer())
        t0 = time.perf_counter()
        result = await store.compact(before)
        took = time.perf_counter() - t0
        stop.set()
        await task
        during = list(lat)
    return {
        "seconds": took,
        "removed": result.removed,
        "base_p50": pct(baseline, 50), "base_p99": pct(baseline, 99), "base_max": max(baseline),
        "base_rate": len(baseline) / seconds,
        "p50": pct(during, 50), "p99": pct(during, 99), "max": max(during), "rate": len(during) / took,
        "step_p50": pct(steps, 50), "step_p99": pct(steps, 99), "step_max": max(steps),
    }


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0, help="baseline of the live writer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "fill.db"
        t0 = time.perf_counter()
        asyncio.run(fill(src, args.events, args.keys, args.value_bytes))
        filled = time.perf_counter() - t0
        conn = sqlite3.connect(src)
        head = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        conn.close()
        before = max(2, int(head * 0.9))
        copy = Path(tmp) / "live.db"
        shutil.copy(src, copy)
        took, steps, size_before, size_after = offline(src, before)
        result = asyncio.run(live(copy, before, args.seconds))
        live_after = size(copy)
    removed = before - 1
    print(f"machine: {os.cpu_count()} cores, sqlite {sqlite3.sqlite_version}; {head:,} events over {args.keys:,} keys "
          f"(filled in {filled:.1f}s), compacting the oldest {removed:,}")
    print()
    print("| | events/s | seconds | file before | file after |")
    print("|---|---:|---:|---:|---:|")
    print(f"| offline (`ripple compact`) | {removed / took:,.0f} | {took:.2f} | {size_before / 1e6:,.1f} MB "
          f"| {size_after / 1e6:,.1f} MB |")
    print(f"| live (`store.compact`, one writer busy) | {result['removed'] / result['seconds']:,.0f} "
          f"| {result['seconds']:.2f} | {size_before / 1e6:,.1f} MB | {live_after / 1e6:,.1f} MB |")
    print()
    print(f"offline step ({retention.OFFLINE_CHUNK:,} events, with its COMMIT): p50 {pct(steps, 50) * 1e3:.1f} ms, "
          f"max {max(steps) * 1e3:.1f} ms")
    print(f"live step ({retention.COMPACT_CHUNK:,} events, inside the writer's transaction): "
          f"p50 {result['step_p50'] * 1e3:.1f} ms, p99 {result['step_p99'] * 1e3:.1f} ms, "
          f"max {result['step_max'] * 1e3:.1f} ms; the writer is then left alone {retention.PACE:g}x as long")
    print()
    print("| one writer, single sets (full durability) | writes/s | p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    for label, prefix in (("alone", "base_"), ("during live compaction", "")):
        print(f"| {label} | {result[prefix + 'rate']:,.0f} | {result[prefix + 'p50'] * 1e3:.2f} ms "
              f"| {result[prefix + 'p99'] * 1e3:.2f} ms | {result[prefix + 'max'] * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
