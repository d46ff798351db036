"""Embedded write throughput against raw ``sqlite3`` writing the same rows, side by side in one run.

    python bench/write_throughput.py [--events 40000] [--rounds 5] [--durability full] [--quick]

Rows (durability FULL unless told otherwise; every ripple run opens a fresh file):

- ``P producers``: ripple with P concurrent producers, one ``store.set`` at a time each (P = 1, 10, 200, 1000),
  against the raw group-commit ceiling at that concurrency: raw ``sqlite3`` committing the same rows (events and
  state upserts, ripple's schema, ``journal_mode=WAL``, the same ``synchronous``) P per transaction, back to back;
- ``batch of 1000``: ripple ``store.batch`` of 1,000 sets at a time, against raw ``sqlite3`` writing every row in
  one transaction (the target), and against raw ``sqlite3`` committing the same rows 1,000 per transaction (no
  target: the share of the gap that is the commit size itself);
- ``import``: ``ripple import`` of the same rows as JSON lines (validation, state, the metrics projection, indexes),
  against the same raw one-transaction write;
- ``eventsourcing``: the `eventsourcing` package (SQLite), one new aggregate saved per event — a peer, for scale.

``--metrics`` instead measures what the metrics cost a write: ripple embedded, 1 and 200 producers, durability normal
(the CPU is the limit, not the disk's fsync, so a per-write cost shows), with the metrics as ``ripple serve`` runs them
(the writer's group-commit histograms and the commit listener counting writes by op) against the same store with both
turned off, interleaved in one run; the best of each and the ratio.

``--indexes`` instead measures the write cost of the two partial indexes that make a time-travel list page O(page)
(``events_scope_creates``, ``events_lifecycle``, docs/retention.md): ripple, 200 producers, durability full, every
event a create (their worst case: each create enters both), with and without them, alternating in one run.

Each round runs the baseline and then ripple; a row's ratio is the median over rounds of that round's ripple/baseline
rate (rates are the medians too). The machine is shared: compare ratios, not absolute numbers. The CPU columns (every
thread of the process, per event) are steadier on a shared machine than wall time; their ratio is what a CPU-bound
run would show.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ripple import Set, Store, offline
from ripple.core.events import Meta
from ripple.migrations import migrate
from ripple.offline import ImportedEvent

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary import record

VALUE = {"title": "buy milk", "completed": False, "n": 0}
INSERT = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
UPSERT = "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?, ?, ?)"
Row = tuple[int, int, str, str, str, str, str, int, None, str, str]


def key(seq: int, producers: int) -> str:
    """The key of the ``seq``-th write (0-based) when ``producers`` producers write in turn: p{p}-{i}."""
    return f"p{seq % producers}-{seq // producers}"


def raw_rows(n: int, producers: int) -> list[Row]:
    """The event rows ripple appends for n creates by ``producers`` producers."""
    ts = int(time.time() * 1000)
    return [
        (seq + 1, ts, "state", "bench", key(seq, producers), "set", "created", 1, None,
         msgspec.json.encode({**VALUE, "n": seq // producers}).decode(), "{}")
        for seq in range(n)
    ]  # fmt: skip


def fresh_db(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    migrate(conn, str(path))
    return conn


class Run(msgspec.Struct, frozen=True):
    """One timed run: events/s (wall clock) and CPU microseconds per event (every thread of this process)."""

    rate: float
    cpu_us: float


def timer() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def done(n: int, started: tuple[float, float]) -> Run:
    wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    return Run(n / wall, cpu / n * 1e6)


def raw_groups(path: Path, rows: list[Row], group: int, synchronous: str) -> Run:
    """Raw sqlite3 committing ``rows`` (and their state upserts) ``group`` per transaction."""
    conn = fresh_db(path, synchronous)
    t = timer()
    for i in range(0, len(rows), group):
        chunk = rows[i : i + group]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, chunk)
        conn.executemany(UPSERT, [(r[3], r[4], r[9], 1, r[0], r[0]) for r in chunk])
        conn.execute("COMMIT")
    run = done(len(rows), t)
    conn.close()
    return run


TIME_TRAVEL_INDEXES = ("events_scope_creates", "events_lifecycle")


async def ripple_producers(path: Path, n: int, producers: int, durability: str, metrics: bool | None = None, *,
                           drop: tuple[str, ...] = ()) -> Run:
    """``metrics=None``: as shipped; ``True``: plus the write counter /metrics attaches; ``False``: no metrics at all
    (the writer's group-commit histograms replaced by a no-op). ``drop``: indexes dropped before the first write."""
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

        t = timer()
        await asyncio.gather(*[produce(p) for p in range(producers)])
        run = done(per * producers, t)
        assert store.head == per * producers
    return run


async def ripple_batches(path: Path, n: int, durability: str) -> Run:
    # the commands are made before the clock starts, as the baseline's rows are (raw_rows)
    batches = [[Set("bench", key(s, 200), {**VALUE, "n": s // 200}) for s in range(start, min(n, start + 1000))]
               for start in range(0, n, 1000)]
    async with Store.open(path, durability=durability) as store:
        t = timer()
        for commands in batches:
            await store.batch(commands)
        run = done(n, t)
        assert store.head == n
    return run


def import_lines(rows: list[Row]) -> bytes:
    encode = msgspec.json.Encoder().encode
    out = io.BytesIO()
    for r in rows:
        out.write(encode(ImportedEvent(r[0], r[1], "state", r[3], r[4], "set", "created", 1, None,
                                       msgspec.Raw(r[9].encode()), Meta())) + b"\n")
    return out.getvalue()


def ripple_import(path: Path, data: bytes) -> Run:
    """``ripple import`` as the CLI runs it: the events, the state, then the projections rebuilt in the same
    transaction."""
    t = timer()
    projections = offline.load_projections(path, None)
    n = offline.import_events(path, io.BytesIO(data), after_import=lambda conn: offline.rebuild_all(conn, projections))
    return done(n, t)


@functools.cache
def eventsourcing_app() -> Any:
    """The peer's application class (made once: eventsourcing registers each aggregate class under its topic)."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Todo(Aggregate):
        @event("Created")
        def __init__(self, title: str, n: int) -> None:
            self.title = title
            self.n = n

    class Todos(Application[Any]):
        pass

    return Todos, Todo


def eventsourcing_rate(folder: Path, n: int) -> Run:
    todos, todo = eventsourcing_app()
    os.environ["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
    os.environ["SQLITE_DBNAME"] = str(folder / "eventsourcing.db")
    app = todos()
    t = timer()
    for i in range(n):
        app.save(todo(title="buy milk", n=i))
    run = done(n, t)
    app.close()
    return run


class Measured(msgspec.Struct):
    """A row: ripple's runs and the baseline's, made in turn."""

    name: str
    baseline_name: str
    target: str
    ripple_runs: list[Run] = []
    baseline_runs: list[Run] = []

    @property
    def ripple(self) -> list[float]:
        return [r.rate for r in self.ripple_runs]

    @property
    def baseline(self) -> list[float]:
        return [r.rate for r in self.baseline_runs]

    def ratio(self) -> float:
        return statistics.median(r / b for r, b in zip(self.ripple, self.baseline, strict=True))

    def spread(self) -> str:
        ratios = sorted(r / b for r, b in zip(self.ripple, self.baseline, strict=True))
        return f"{ratios[0]:.2f}-{ratios[-1]:.2f}"

    def cpu_ratio(self) -> float:
        """Baseline CPU per event / ripple CPU per event: the ratio a CPU-bound run would show (steadier than wall
        time on a shared machine, but it counts fsync's CPU, not its wait)."""
        return statistics.median(b.cpu_us / r.cpu_us for r, b in zip(self.ripple_runs, self.baseline_runs,
                                                                           strict=True))


def measure(folder: Path, n: int, rounds: int, durability: str, progress: Callable[[str], None]) -> list[Measured]:
    sync = durability.upper()
    out: list[Measured] = []
    fresh = iter(range(1_000_000))

    def new_path() -> Path:
        p = folder / f"{next(fresh)}.db"
        return p

    def cleanup() -> None:
        for f in folder.iterdir():
            if f.is_file():
                f.unlink()

    for producers in (1, 10, 200, 1000):
        count = min(n, 2000) if producers == 1 else n
        count -= count % producers
        row = Measured(f"{producers} producer{'s' if producers > 1 else ''}",
                       f"raw, {producers} rows per transaction", ">= 0.9x")
        rows = raw_rows(count, producers)
        for _ in range(rounds):
            row.baseline_runs.append(raw_groups(new_path(), rows, producers, sync))
            row.ripple_runs.append(asyncio.run(ripple_producers(new_path(), count, producers, durability)))
            cleanup()
        progress(f"{row.name}: {row.ratio():.2f}x")
        out.append(row)
    rows = raw_rows(n, 200)
    batch = Measured("batch of 1000", "raw, one transaction", ">= 0.5x")
    # the same batches against raw sqlite3 committing the same rows 1000 per transaction: what a commit of 1000 costs
    # raw sqlite3 too (no target; it says how much of the gap to one transaction is the commit size itself)
    batch_commits = Measured("batch of 1000", "raw, 1000 rows per transaction", "")
    imported = Measured("ripple import", "raw, one transaction", ">= 0.5x")
    data = import_lines(rows)
    for _ in range(rounds):
        base = raw_groups(new_path(), rows, len(rows), sync)
        per_1000 = raw_groups(new_path(), rows, 1000, sync)
        batched = asyncio.run(ripple_batches(new_path(), n, durability))
        batch.baseline_runs.append(base)
        batch.ripple_runs.append(batched)
        batch_commits.baseline_runs.append(per_1000)
        batch_commits.ripple_runs.append(batched)
        imported.baseline_runs.append(base)
        imported.ripple_runs.append(ripple_import(new_path(), data))
        cleanup()
    progress(f"batch: {batch.ratio():.2f}x ({batch_commits.ratio():.2f}x raw 1000 per transaction), "
             f"import: {imported.ratio():.2f}x")
    out += [batch, batch_commits, imported]
    return out


def metrics_cost(n: int, rounds: int) -> None:
    """With and without metrics, alternating, ``rounds`` times each; the best of each (least disturbed by the
    machine's other work) and the ratio."""
    results: dict[tuple[int, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fresh = iter(range(1_000_000))
        for _ in range(rounds):
            for producers in (1, 200):
                for metrics in (False, True):
                    path = Path(tmp) / f"m{next(fresh)}.db"
                    run = asyncio.run(ripple_producers(path, n - n % producers, producers, "normal", metrics))
                    results.setdefault((producers, metrics), []).append(run.rate)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}; "
          f"best of {rounds} alternating runs, durability normal")
    print("| producers | without metrics | with metrics | with / without |")
    print("|---:|---:|---:|---:|")
    for producers in (1, 200):
        off, on = max(results[(producers, False)]), max(results[(producers, True)])
        print(f"| {producers} | {off:,.0f} events/s | {on:,.0f} events/s | {on / off:.3f} |")


def index_cost(n: int, rounds: int) -> None:
    rates: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        fresh = iter(range(1_000_000))
        for _ in range(rounds):
            for with_indexes in (True, False):
                drop = () if with_indexes else TIME_TRAVEL_INDEXES
                path = Path(tmp) / f"i{next(fresh)}.db"
                rates[with_indexes].append(asyncio.run(ripple_producers(path, n, 200, "full", drop=drop)).rate)
    with_ix, without = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}")
    print(f"time-travel indexes, ripple 200 producers, full, every event a create (median of {rounds} alternating):")
    print(f"  with    {with_ix:>10,.0f} events/s   {[round(x) for x in rates[True]]}")
    print(f"  without {without:>10,.0f} events/s   {[round(x) for x in rates[False]]}")
    print(f"  cost    {(1 - with_ix / without) * 100:>9.1f} %")


def progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=40_000, help="events per run (default 40000; 1 producer: 2000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--durability", default="full", help="comma-separated: full, normal")
    parser.add_argument("--quick", action="store_true", help="a small run: 4000 events, 2 rounds")
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    parser.add_argument("--metrics", action="store_true", help="measure what the metrics cost a write (see above)")
    parser.add_argument("--indexes", action="store_true", help="measure what the time-travel indexes cost a write")
    args = parser.parse_args()
    if args.metrics:
        metrics_cost(min(args.events, 20_000), args.rounds)
        return
    if args.indexes:
        index_cost(min(args.events, 20_000) // 200 * 200, args.rounds)
        return
    n, rounds = (4000, 2) if args.quick else (args.events, args.rounds)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, python {sys.version.split()[0]}, "
          f"sqlite {sqlite3.sqlite_version}; {n:,} events, {rounds} rounds")
    for durability in args.durability.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            rows = measure(Path(tmp), n, rounds, durability, progress)
        print(f"\ndurability {durability}\n")
        print("| ripple | events/s | baseline | events/s | ratio (median, range) | target | CPU µs/event ripple / "
              "baseline | CPU ratio |")
        print("|---|---:|---|---:|---:|---|---|---:|")
        for r in rows:
            cpu = (f"{statistics.median(x.cpu_us for x in r.ripple_runs):.1f} / "
                   f"{statistics.median(x.cpu_us for x in r.baseline_runs):.1f}")
            print(f"| {r.name} | {statistics.median(r.ripple):,.0f} | {r.baseline_name} | "
                  f"{statistics.median(r.baseline):,.0f} | {r.ratio():.2f}x ({r.spread()}) | {r.target} | {cpu} | "
                  f"{r.cpu_ratio():.2f}x |")
            record(args.summary, f"embedded writes, {r.name}, {durability}",
                   f"{statistics.median(r.ripple):,.0f} vs {statistics.median(r.baseline):,.0f} events/s "
                   f"({r.baseline_name})", r.ratio(), r.target,
                   r.ratio() >= float(r.target.split()[-1][:-1]) if r.target else None)
        with tempfile.TemporaryDirectory() as tmp:
            peer = eventsourcing_rate(Path(tmp), min(n, 2000)).rate
        print(f"\nfor scale: the eventsourcing package (SQLite, one aggregate saved per event) {peer:,.0f} events/s; "
              f"ripple with 200 producers {statistics.median(rows[2].ripple) / peer:.1f}x that")
    print(f"\nload after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
