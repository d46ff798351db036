"""Offline tool rates on N events (default 1M), with a raw sqlite3 scan + JSON decode of the same rows as yardstick.

Usage: python bench/offline.py [--events N] [--keys K]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ripple import offline
from ripple.core.events import Meta
from ripple.offline import ImportedEvent

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rebuild import raw_scan

ROOT = Path(__file__).resolve().parent.parent


def make_jsonl(n: int, keys: int) -> bytes:
    """A valid log: creates, updates and some deletes over `keys` keys in scope `todos`."""
    encode = msgspec.json.Encoder().encode
    values: dict[str, tuple[bytes, int]] = {}
    out = io.BytesIO()
    ts = int(time.time() * 1000)
    for seq in range(1, n + 1):
        key = f"t{seq * 7919 % keys}"
        old = values.get(key)
        if old is not None and seq % 13 == 0:
            record = ImportedEvent(seq, ts, "state", "todos", key, "delete", "deleted", 0, msgspec.Raw(old[0]), None)
            del values[key]
        else:
            new = encode({"id": key, "title": f"todo {seq}", "completed": seq % 2 == 0})
            version = 1 if old is None else old[1] + 1
            record = ImportedEvent(seq, ts, "state", "todos", key, "set", "created" if old is None else "updated",
                                   version, None if old is None else msgspec.Raw(old[0]), msgspec.Raw(new), Meta())
            values[key] = (new, version)
        out.write(encode(record) + b"\n")
    return out.getvalue()


def raw_scan_rate(path: Path) -> float:
    """The yardstick, shared with bench/rebuild.py: raw sqlite3 scan + msgspec decode of the same rows."""
    elapsed, n = raw_scan(path)
    return n / elapsed


def timed(fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t


def main() -> None:
    os.chdir(ROOT)  # --app examples.todo:setup is imported from the project folder
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="20,000 events over 1,000 keys")
    args = parser.parse_args()
    if args.quick:
        args.events, args.keys = 20_000, 1_000
    n = args.events
    data = make_jsonl(n, args.keys)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        t_import = timed(lambda: offline.import_events(path, io.BytesIO(data)))
        raw = raw_scan_rate(path)

        def run_verify() -> None:
            conn = offline.open_readonly(path)
            report = offline.verify(conn)
            conn.close()
            assert report.ok, report.faults[:3]

        t_verify = timed(run_verify)

        def run_export() -> None:
            conn = offline.open_readonly(path)
            with open(os.devnull, "wb") as sink:
                for line in offline.event_lines(conn):
                    sink.write(line + b"\n")
            conn.close()

        t_export = timed(run_export)

        def run_rebuild() -> None:
            rebuilt = offline.rebuild_projections(path, None, "examples.todo:setup")
            assert sorted(rebuilt) == ["metrics", "todo_stats"], rebuilt

        t_rebuild = timed(run_rebuild)
    print(f"machine: {os.cpu_count()} cores; {n:,} events over {args.keys:,} keys")
    print("| work | events/s | vs raw sqlite3 scan + decode |")
    print("|---|---:|---:|")
    print(f"| raw sqlite3 scan + msgspec decode | {raw:,.0f} | 1.00x |")
    for name, seconds in (("import", t_import), ("verify", t_verify), ("export", t_export),
                          ("rebuild (metrics + todo_stats)", t_rebuild)):
        rate = n / seconds
        print(f"| ripple {name} | {rate:,.0f} | {rate / raw:.2f}x |")


if __name__ == "__main__":
    main()
