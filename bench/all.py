"""Every benchmark of the performance table in one run, then the table: each row with its baseline, its ratio and its
target.

    python bench/all.py --quick    # small sizes, one or two rounds: minutes
    python bench/all.py --full     # the sizes of the table in docs/benchmarks.md: about an hour on 2 cores

Each benchmark runs in its own process, one after the other (their output streams through), and appends its rows to
a summary file. ``bench/http_writes.py`` needs ``wrk`` (``apt-get install wrk``); without it that row is skipped.
``--only write,http,fanout,rebuild,time_travel`` picks benchmarks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary import table

BENCH = Path(__file__).resolve().parent

# name -> (script, quick arguments, full arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "write": ("write_throughput.py", ["--quick"], ["--events", "40000", "--rounds", "5"]),
    "http": ("http_writes.py", ["--quick"], ["--seconds", "10", "--rounds", "3"]),
    "fanout": ("fanout.py", ["--quick"], ["--rates", "50,100,200", "--catchup", "500000", "--rounds", "3"]),
    "rebuild": ("rebuild.py", ["--quick"], ["--events", "1000000", "--rounds", "3"]),
    "time_travel": ("time_travel.py", ["--quick"], []),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--quick", action="store_true")
    size.add_argument("--full", action="store_true")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated: " + ", ".join(BENCHMARKS))
    args = parser.parse_args()
    started = time.monotonic()
    load_before = os.getloadavg()
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.jsonl"
        summary.touch()
        for name in args.only.split(","):
            script, quick, full = BENCHMARKS[name]
            if not (BENCH / script).exists():
                skipped.append(f"{name} ({script} not in this checkout)")
                continue
            if name == "http" and shutil.which("wrk") is None:
                skipped.append("http (wrk is not installed)")
                continue
            print(f"\n===== {script} {' '.join(quick if args.quick else full)}", flush=True)
            subprocess.run([sys.executable, str(BENCH / script), *(quick if args.quick else full),
                            "--summary", str(summary)], check=True)
        print(f"\n===== the table ({'quick' if args.quick else 'full'} sizes; {os.cpu_count()} cores; load average "
              f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; "
              f"{(time.monotonic() - started) / 60:.0f} min)\n")
        print(table(str(summary)))
    for line in skipped:
        print(f"skipped: {line}")


if __name__ == "__main__":
    main()
