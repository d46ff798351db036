"""Write throughput, side by side in one run (issue 3).

(a) raw sqlite3: the same event rows plus state upserts, all in one transaction — the limit;
(b) raw sqlite3: one transaction per row, synchronous=FULL;
(c) ripple embedded, 1 / 10 / 200 concurrent producers, durability full and normal;
(d) the `eventsourcing` package (SQLite module), one new aggregate saved per event.

Prints events/s and the ratios (c)/(a) and (c)/(d). Usage: python bench/write_throughput.py [--events N]

``--indexes`` instead measures the write cost of the two partial indexes that make a time-travel list page O(page)
(``events_scope_creates``, ``events_lifecycle``, docs/retention.md): ripple, 200 producers, durability full, every
event a create (their worst case: each create enters both), with and without them, alternating in one run.

``--metrics`` instead measures what the metrics cost a write (issue 17): ripple embedded, 1 and 200 producers,
durability normal (the CPU is the limit, not the disk's fsync, so a per-write cost shows), with
the metrics as ``ripple serve`` runs them (the writer's group-commit histograms and the commit listener counting
writes by op) against the same store with both turned off, interleaved in one run, and prints the ratio.
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

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ripple import Store
from ripple.migrations import migrate

VALUE = {"title": "buy milk", "completed": False, "n": 0}


PRODUCERS = 200


def raw_rows(n: int) -> list[tuple[object, ...]]:
    """The rows ripple writes with 200 producers: keys p{p}-{i}, interleaved across producers."""
    ts = int(time.time() * 1000)
    rows = []
    for seq in range(n):
        p, i = seq % PRODUCERS, seq // PRODUCERS
        value = msgspec.json.encode({**VALUE, "n": i}).decode()
        rows.append((seq + 1, ts, "state", "bench", f"p{p}-{i}", "set", "created", 1, None, value, "{}"))
    return rows


def fresh_db(folder: Path, name: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(folder / name, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    migrate(conn, str(folder / name))
    return conn


INSERT = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
UPSERT = "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?, ?, ?)"


def bench_raw_one_txn(folder: Path, n: int) -> float:
    conn = fresh_db(folder, "a.db", "FULL")
    rows = raw_rows(n)
    t = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(INSERT, rows)
    conn.executemany(UPSERT, [(r[3], r[4], r[9], 1, r[0], r[0]) for r in rows])
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    conn.close()
    return n / elapsed


def bench_raw_groups(folder: Path, n: int, group: int) -> float:
    """Raw sqlite3 committing the same rows `group` at a time: what group commit can reach with that many writers."""
    conn = fresh_db(folder, f"g{group}.db", "FULL")
    rows = raw_rows(n)
    t = time.perf_counter()
    for i in range(0, n, group):
        chunk = rows[i : i + group]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, chunk)
        conn.executemany(UPSERT, [(r[3], r[4], r[9], 1, r[0], r[0]) for r in chunk])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    conn.close()
    return n / elapsed


def bench_raw_txn_per_row(folder: Path, n: int) -> float:
    conn = fresh_db(folder, "b.db", "FULL")
    rows = raw_rows(n)
    t = time.perf_counter()
    for r in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT, r)
        conn.execute(UPSERT, (r[3], r[4], r[9], 1, r[0], r[0]))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    conn.close()
    return n / elapsed


TIME_TRAVEL_INDEXES = ("events_scope_creates", "events_lifecycle")


async def bench_ripple(folder: Path, n: int, producers: int, durability: str, metrics: bool | None = None, *,
                       drop: tuple[str, ...] = ()) -> float:
    """``metrics=None``: as shipped; ``True``: plus the write counter /metrics attaches; ``False``: no metrics at all
    (the writer's group-commit histograms replaced by a no-op). ``drop``: indexes dropped before the first write."""
    path = folder / f"c-{producers}-{durability}-{metrics}.db"
    if path.exists():
        path.unlink()
    if drop:
        async with Store.open(path, durability=durability):
            pass
        conn = sqlite3.connect(path)
        for index in drop:
            conn.execute(f"DROP INDEX {index}")
        conn.commit()
        conn.close()
    async with Store.open(path, durability=durability) as store:
        per = n // producers
        if metrics:
            from ripple.store.stats import WriteCounts

            store.commits.subscribe(WriteCounts())
        elif metrics is False:
            store.writer_stats.committed = lambda events, seconds: None  # type: ignore[method-assign]

        async def produce(p: int) -> None:
            for i in range(per):
                await store.set("bench", f"p{p}-{i}", {**VALUE, "n": i})

        t = time.perf_counter()
        await asyncio.gather(*[produce(p) for p in range(producers)])
        elapsed = time.perf_counter() - t
        assert store.head == per * producers
    return per * producers / elapsed


def bench_eventsourcing(folder: Path, n: int) -> float:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Todo(Aggregate):
        @event("Created")
        def __init__(self, title: str, n: int) -> None:
            self.title = title
            self.n = n

    class Todos(Application[object]):
        pass

    os.environ["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
    os.environ["SQLITE_DBNAME"] = str(folder / "d.db")
    app = Todos()
    t = time.perf_counter()
    for i in range(n):
        app.save(Todo(title="buy milk", n=i))
    elapsed = time.perf_counter() - t
    app.close()
    return n / elapsed


def bench_metrics_cost(n: int, rounds: int) -> None:
    """With and without metrics, alternating, ``rounds`` times each; the best of each (least disturbed by the
    machine's other work) and the ratio."""
    results: dict[tuple[int, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for producers in (1, 200):
                count = n
                for metrics in (False, True):
                    rate = asyncio.run(bench_ripple(Path(tmp), count, producers, "normal", metrics))
                    results.setdefault((producers, metrics), []).append(rate)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}; "
          f"best of {rounds} alternating runs, durability normal")
    print("| producers | without metrics | with metrics | with / without |")
    print("|---:|---:|---:|---:|")
    for producers in (1, 200):
        off, on = max(results[(producers, False)]), max(results[(producers, True)])
        print(f"| {producers} | {off:,.0f} events/s | {on:,.0f} events/s | {on / off:.3f} |")


def bench_index_cost(n: int, rounds: int) -> None:
    rates: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for with_indexes in (True, False):
                drop = () if with_indexes else TIME_TRAVEL_INDEXES
                rates[with_indexes].append(asyncio.run(bench_ripple(Path(tmp), n, 200, "full", drop=drop)))
    with_ix, without = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}")
    print(f"time-travel indexes, ripple 200 producers, full, every event a create (median of {rounds} alternating):")
    print(f"  with    {with_ix:>10,.0f} events/s   {[round(x) for x in rates[True]]}")
    print(f"  without {without:>10,.0f} events/s   {[round(x) for x in rates[False]]}")
    print(f"  cost    {(1 - with_ix / without) * 100:>9.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="events per ripple run (default 20000)")
    parser.add_argument("--metrics", action="store_true", help="measure what the metrics cost a write")
    parser.add_argument("--indexes", action="store_true", help="measure what the time-travel indexes cost a write")
    parser.add_argument("--rounds", type=int, default=3, help="with --metrics: alternating rounds (default 3)")
    args = parser.parse_args()
    n = args.events
    if args.metrics:
        bench_metrics_cost(n, args.rounds)
        return
    if args.indexes:
        bench_index_cost(n, args.rounds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        a = bench_raw_one_txn(folder, n)
        a200 = bench_raw_groups(folder, n, 200)
        b = bench_raw_txn_per_row(folder, min(n, 2_000))
        d = bench_eventsourcing(folder, min(n, 2_000))
        rows = []
        for durability in ("full", "normal"):
            for producers in (1, 10, 200, 1000):
                count = min(n, 2_000) if producers == 1 and durability == "full" else n
                rows.append((producers, durability, asyncio.run(bench_ripple(folder, count, producers, durability))))
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}")
    print(f"(a) raw sqlite3, one transaction, FULL           {a:>10,.0f} events/s")
    print(f"(a') raw sqlite3, groups of 200 rows, FULL       {a200:>10,.0f} events/s")
    print(f"(b) raw sqlite3, one transaction per row, FULL   {b:>10,.0f} events/s")
    print(f"(d) eventsourcing (sqlite), one aggregate each   {d:>10,.0f} events/s")
    print()
    print("| ripple producers | durability | events/s | vs (a) raw one txn | vs (a') raw groups of 200 "
          "| vs (b) raw txn/row | vs (d) eventsourcing |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for producers, durability, rate in rows:
        print(f"| {producers} | {durability} | {rate:,.0f} | {rate / a:.2f}x | {rate / a200:.2f}x | {rate / b:.1f}x "
              f"| {rate / d:.1f}x |")


if __name__ == "__main__":
    main()
