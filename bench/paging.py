"""Paging the log by filter shape: ripple's one paging strategy (``ripple.store.sql.events_page``) against SQLite's
own plan for the same query (no hint), in one run on one file.

A long catch-up reads many pages of ``LIMIT page`` after a moving ``seq`` cursor. With several scopes, ``scope IN
(...)`` over the ``(scope, seq)`` index makes SQLite sort every remaining matching row up to the upper bound for
each page, so the catch-up turns quadratic; the primary-key walk (``NOT INDEXED``) stays linear. With one scope the
``(scope, seq)`` index range is already in offset order, and is the better plan when the scope is a small part of
the log. Each shape reads ``--pages`` pages from offset 0 and from the middle of the log.

    python bench/paging.py --events 400000 --scopes 20
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ripple import Set, Store
from ripple.core.filter import Filter
from ripple.store import sql


async def fill(path: Path, events: int, scopes: int) -> None:
    rnd = random.Random(1)
    async with Store.open(path, durability="normal") as store:
        for start in range(0, events, 1000):
            n = min(1000, events - start)
            await store.batch([Set(f"s{rnd.randrange(scopes)}", f"k{rnd.randrange(5000)}", {"i": start + i})
                               for i in range(n)])


def read(conn: sqlite3.Connection, f: Filter, after: int, upto: int, pages: int, page: int, hinted: bool
         ) -> tuple[float, int]:
    """Seconds to read up to ``pages`` pages, and the rows read; ``hinted=False`` strips ripple's hint."""
    rows = 0
    started = time.perf_counter()
    for _ in range(pages):
        query, params = sql.events_page(f, after, upto, page)
        if not hinted:
            query = query.replace(" NOT INDEXED", "")
        found = conn.execute(query, params).fetchall()
        rows += len(found)
        if len(found) < page:
            break
        after = found[-1][0]
    return time.perf_counter() - started, rows


def best(conn: sqlite3.Connection, f: Filter, after: int, upto: int, pages: int, page: int, hinted: bool
         ) -> tuple[float, int]:
    """The best of three reads (the first one also warms the page cache for both plans)."""
    return min(read(conn, f, after, upto, pages, page, hinted) for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--scopes", type=int, default=20)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--page", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "paging.db"
        asyncio.run(fill(path, args.events, args.scopes))
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        head = sql.head(conn)
        shapes = {
            "every event": Filter("all"),
            "kind=state": Filter("state"),
            "1 scope": Filter.of("state", ["s1"]),
            "3 scopes": Filter.of("state", ["s1", "s2", "s3"]),
            f"{min(10, args.scopes)} scopes": Filter.of("state", [f"s{i}" for i in range(min(10, args.scopes))]),
            "1 scope + 1 key": Filter.of("state", ["s1"], ["k7"]),
        }
        print(f"{args.events} events over {args.scopes} scopes; up to {args.pages} pages of {args.page}")
        print(f"{'filter':18s} {'from':>6s} {'rows':>7s} {'ripple ms':>10s} {'sqlite plan ms':>15s} {'speed-up':>9s}")
        for name, f in shapes.items():
            for label, after in (("0", 0), ("middle", head // 2)):
                ours, rows = best(conn, f, after, head, args.pages, args.page, hinted=True)
                theirs, _ = best(conn, f, after, head, args.pages, args.page, hinted=False)
                print(f"{name:18s} {label:>6s} {rows:7d} {ours * 1000:10.1f} {theirs * 1000:15.1f} "
                      f"{theirs / ours:8.2f}x")
        conn.close()


if __name__ == "__main__":
    main()
