"""Backup beside a live writer: how much each method slows the writer, and how long the copy takes. One run.

A store with N events (default 300k) serves one producer writing single sets as fast as it can (full durability);
``ripple backup`` runs beside it as a separate process, once with SQLite's online backup API (``--method backup``,
the default: pages copied in steps inside one read transaction) and once with ``VACUUM INTO`` (``--method vacuum``).
Printed: the copy's time and size, and the writer's writes/s and latency p50/p99/max alone and during each backup.

    python bench/backup.py
    python bench/backup.py --events 50000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compact import fill
from ripple import Store


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


async def producer(store: Store, stop: asyncio.Event, lat: list[float]) -> None:
    i = 0
    while not stop.is_set():
        t = time.perf_counter()
        await store.set("w", f"k{i % 100}", {"i": i})
        lat.append(time.perf_counter() - t)
        i += 1


async def run(path: Path, folder: Path, seconds: float) -> list[tuple[str, float, int, list[float], float]]:
    out = []
    async with Store.open(path) as store:
        for method in ("none", "backup", "vacuum"):
            lat: list[float] = []
            stop = asyncio.Event()
            task = asyncio.create_task(producer(store, stop, lat))
            t0 = time.perf_counter()
            size = 0
            if method == "none":
                await asyncio.sleep(seconds)  # the baseline
            else:
                target = folder / f"copy-{method}.db"
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "ripple", "backup", "--db", str(path), str(target), "--method", method,
                    stdout=asyncio.subprocess.DEVNULL)
                assert await proc.wait() == 0
                size = target.stat().st_size
            took = time.perf_counter() - t0
            stop.set()
            await task
            out.append((method, took, size, lat, len(lat) / took))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="baseline of the writer alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "live.db"
        asyncio.run(fill(path, args.events, args.keys, 100))
        source = path.stat().st_size
        rows = asyncio.run(run(path, folder, args.seconds))
    print(f"machine: {os.cpu_count()} cores, sqlite {sqlite3.sqlite_version}; a {source / 1e6:,.1f} MB file "
          f"({args.events:,} events); one producer writing single sets meanwhile")
    print()
    print("| | copy | copy size | writes/s | write p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    labels = {"none": "writer alone", "backup": "`ripple backup` (backup API)", "vacuum": "`--method vacuum`"}
    for method, took, size, lat, rate in rows:
        copy = "" if method == "none" else f"{took:.2f} s"
        print(f"| {labels[method]} | {copy} | {size / 1e6:,.1f} MB | {rate:,.0f} | {pct(lat, 50) * 1e3:.2f} ms "
              f"| {pct(lat, 99) * 1e3:.2f} ms | {max(lat) * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
