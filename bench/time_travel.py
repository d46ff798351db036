"""Time-travel list pages and read fairness. One run.

1. Page cost: in one scope of K keys (default 100k; 20 % of them updated since, 1 % deleted), a list page now
   against the same page as of an offset (``store.list(at=)``: the O(page) query of ``ripple.store.sql``), at cursors
   spread over the scope, limit 1 and 100. For reference, the query this replaced (it folded the whole scope: O(scope
   size) per page) on a few pages.
2. Fairness, over HTTP against ``ripple serve``: latency of health, a point read, a point read as of an offset and a
   ``/v1/events`` page, alone and while 8 clients (another process) loop 1000-item time-travel pages.

    python bench/time_travel.py                 # 100k keys
    python bench/time_travel.py --keys 20000 --requests 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ripple import Delete, Set, Store
from ripple.store.reader import encode_cursor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary import record

# The time-travel list query before ripple.store.sql.LIST_SCOPE_AT: a correlated max() per event of the scope.
OLD_LIST_SCOPE_AT = """
SELECT * FROM (
  SELECT e.key, e.new_value, e.version, e.seq,
         (SELECT max(c.seq) FROM events c
           WHERE c.scope = e.scope AND c.key = e.key AND c.kind = 'state' AND c.event_type = 'created'
             AND c.seq <= e.seq) AS created
    FROM events e
   WHERE e.scope = ? AND e.kind = 'state' AND e.seq <= ? AND e.event_type != 'deleted'
     AND e.seq = (SELECT max(m.seq) FROM events m
                   WHERE m.scope = e.scope AND m.key = e.key AND m.kind = 'state' AND m.seq <= ?))
 WHERE created > ? ORDER BY created LIMIT ?
"""

LOAD = """
import asyncio, sys, httpx
url, at, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def loop(client):
    while True:
        r = await client.get("/v1/state/big", params={"limit": 1000, "at": at})
        assert r.status_code == 200, r.text
        print(1, flush=True)
async def main():
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await asyncio.gather(*(loop(client) for _ in range(n)))
asyncio.run(main())
"""


async def fill(path: Path, keys: int) -> tuple[int, int]:
    """The scope, then updates and deletes after a mid point; returns (mid, head)."""
    rng = random.Random(1)
    async with Store.open(path, durability="normal") as store:
        for start in range(0, keys, 1000):
            await store.batch([Set("big", f"k{i}", {"i": i, "title": f"todo {i}"})
                               for i in range(start, min(keys, start + 1000))])
        mid = store.head
        changed = rng.sample(range(keys), keys // 5)
        for start in range(0, len(changed), 1000):
            await store.batch([Set("big", f"k{i}", {"i": i, "v": 2}) for i in changed[start:start + 1000]])
        gone = rng.sample(range(keys), keys // 100)
        for start in range(0, len(gone), 1000):
            await store.batch([Delete("big", f"k{i}") for i in gone[start:start + 1000]])
        return mid, store.head


async def page_costs(path: Path, keys: int, mid: int, head: int, samples: int) -> list[tuple[str, float]]:
    rng = random.Random(2)
    cursors = [encode_cursor(rng.randrange(keys)) for _ in range(samples)]
    out = []
    async with Store.open(path) as store:
        for limit in (1, 100):
            for label, at in (("now", None), (f"at={mid} (before the updates)", mid), (f"at={head} (head)", head)):
                await store.list("big", limit=limit, cursor=cursors[0], at=at)  # warm
                t = time.perf_counter()
                for cursor in cursors:
                    await store.list("big", limit=limit, cursor=cursor, at=at)
                out.append((f"limit={limit}, {label}", (time.perf_counter() - t) / samples))
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    t = time.perf_counter()
    for created in (0, keys // 2, keys - 10):
        conn.execute(OLD_LIST_SCOPE_AT, ("big", mid, mid, created, 2)).fetchall()
    out.append(("limit=1, the query this replaced", (time.perf_counter() - t) / 3))
    conn.close()
    return out


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


async def http_pages(url: str, keys: int, mid: int, samples: int) -> list[tuple[str, float]]:
    """The same list pages over HTTP (what the figures of the issue measured): ms per page, now and as of ``mid``."""
    rng = random.Random(3)
    cursors = [encode_cursor(rng.randrange(keys)) for _ in range(samples)]
    out = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for limit in (1, 100):
            for label, at in (("now", None), (f"at={mid}", mid)):
                params: dict[str, str | int] = {"limit": limit} if at is None else {"limit": limit, "at": at}
                t = time.perf_counter()
                for cursor in cursors:
                    response = await client.get("/v1/state/big", params={**params, "cursor": cursor})
                    assert response.status_code == 200, response.text
                out.append((f"GET /v1/state/big?limit={limit}, {label}", (time.perf_counter() - t) / samples))
    return out


async def latencies(url: str, head: int, mid: int, requests: int) -> dict[str, tuple[float, float]]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        calls: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
            "GET /v1/health": lambda: client.get("/v1/health"),
            "GET /v1/state/big/k42": lambda: client.get("/v1/state/big/k42"),
            f"GET /v1/state/big/k42?at={mid}": lambda: client.get("/v1/state/big/k42", params={"at": mid}),
            "GET /v1/events (10 events)": lambda: client.get("/v1/events", params={"after": head - 10}),
        }
        out = {}
        for label, call in calls.items():
            times = []
            for _ in range(requests):
                t = time.perf_counter()
                response = await call()
                times.append(time.perf_counter() - t)
                assert response.status_code == 200, response.text
            out[label] = (pct(times, 50), pct(times, 99))
        return out


def serve(path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "ripple", "serve", str(path), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "ripple serving PATH on http://127.0.0.1:PORT  (API docs: ...)"
    return proc, line.split(" on ")[1].split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200, help="pages per page-cost figure")
    parser.add_argument("--requests", type=int, default=300, help="requests per latency figure")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="a small run: 20k keys, fewer samples and requests")
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.keys, args.samples, args.requests = 20_000, 50, 100
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tt.db"
        mid, head = asyncio.run(fill(path, args.keys))
        costs = asyncio.run(page_costs(path, args.keys, mid, head, args.samples))
        proc, url = serve(path)
        try:
            over_http = asyncio.run(http_pages(url, args.keys, mid, args.samples))
            alone = asyncio.run(latencies(url, head, mid, args.requests))
            load = subprocess.Popen([sys.executable, "-c", LOAD, url, str(mid), str(args.clients)],
                                    stdout=subprocess.PIPE, text=True)
            assert load.stdout is not None
            load.stdout.readline()  # the load is running
            t = time.perf_counter()
            loaded = asyncio.run(latencies(url, head, mid, args.requests))
            elapsed = time.perf_counter() - t
            load.terminate()
            pages = sum(1 for _ in load.stdout)
            load.wait()
        finally:
            proc.terminate()
            proc.wait()
    print(f"machine: {os.cpu_count()} cores, sqlite {sqlite3.sqlite_version}; scope of {args.keys:,} keys, "
          f"head {head:,}")
    print()
    now = {label.split(",")[0]: cost for label, cost in costs if label.endswith("now")}
    print("| list page (embedded `store.list`) | ms per page | vs the same page now |")
    print("|---|---:|---:|")
    for label, cost in costs:
        base = now.get(label.split(",")[0])
        ratio = f"{cost / base:.2f}x" if base else ""
        print(f"| {label} | {cost * 1e3:.3f} | {ratio} |")
    print()
    print("| list page over HTTP | ms per page | vs the same page now |")
    print("|---|---:|---:|")
    for i, (label, cost) in enumerate(over_http):
        base = over_http[i - (i % 2)][1]
        print(f"| {label} | {cost * 1e3:.3f} | {cost / base:.2f}x |")
    print()
    print(f"| over HTTP, p50 / p99 ms | alone | while {args.clients} clients loop 1000-item time-travel pages |")
    print("|---|---:|---:|")
    for label in alone:
        print(f"| {label} | {alone[label][0] * 1e3:.2f} / {alone[label][1] * 1e3:.2f} "
              f"| {loaded[label][0] * 1e3:.2f} / {loaded[label][1] * 1e3:.2f} |")
    print(f"\nthe {args.clients} clients read {pages / elapsed:,.0f} pages/s meanwhile ({pages:,} pages of 1000 items)")
    now_ms, at_ms = over_http[2][1] * 1e3, over_http[3][1] * 1e3  # limit=100: now, as of the middle offset
    record(args.summary, f"time-travel list page, {args.keys:,}-key scope, HTTP, limit=100",
           f"{at_ms:.1f} vs {now_ms:.1f} ms per page (the same page now)", at_ms / now_ms, "<= 2x",
           at_ms / now_ms <= 2)


if __name__ == "__main__":
    main()
