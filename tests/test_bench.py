"""Every benchmark in ``bench/`` runs once at a tiny size, so none of them can rot. No timing is ever asserted here:
the figures live in docs/benchmarks.md, measured by ``bench/all.py``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SECOND

BENCH = Path(__file__).resolve().parent.parent / "bench"

TINY: dict[str, list[str]] = {
    "write_throughput.py": ["--events", "1000", "--rounds", "1", "--durability", "normal"],
    "fanout.py": ["--subscribers", "5", "--seconds", "0.3", "--rates", "50", "--catchup", "1000", "--rounds", "1",
                  "--durability", "normal"],
    "rebuild.py": ["--events", "2000", "--rounds", "1", "--seconds", "0.2"],
    "offline.py": ["--events", "1000", "--keys", "100"],
    "paging.py": ["--events", "2000", "--scopes", "4", "--pages", "2"],
    "http_writes.py": ["--seconds", "1", "--rounds", "1", "--stack", "fast", "--targets", "hello,ripple-put"],
    "backup.py": ["--events", "2000", "--keys", "100", "--seconds", "0.3"],
    "compact.py": ["--events", "2000", "--keys", "100", "--value-bytes", "50", "--seconds", "0.3"],
    "time_travel.py": ["--keys", "300", "--samples", "2", "--requests", "20", "--clients", "2"],
    "postgres.py": ["--events", "600", "--subscribers", "3", "--rates", "20", "--seconds", "0.5"],
}
SUMMARIZED = {"write_throughput.py", "fanout.py", "rebuild.py", "http_writes.py", "time_travel.py"}
# Helpers of the benchmarks above, and scripts that are not throughput benchmarks and need what CI lacks (Chromium,
# a checkout of iii's SDK suites, matplotlib for the dashboard's picture).
NOT_BENCHMARKS = {"all.py", "summary.py", "wsclient.py", "console.py", "dashboard.py", "iii_suites.py"}


def test_every_benchmark_is_listed() -> None:
    scripts = {p.name for p in BENCH.glob("*.py")} - NOT_BENCHMARKS
    assert scripts <= set(TINY), f"add a tiny run of {sorted(scripts - set(TINY))} here"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_runs_at_a_tiny_size(script: str, tmp_path: Path) -> None:
    if script == "http_writes.py" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    if script == "postgres.py" and not os.environ.get("RIPPLE_TEST_PG"):
        pytest.skip("RIPPLE_TEST_PG is not set: run the PostgreSQL tests under .ci/postgres (CI always does)")
    summary = tmp_path / "summary.jsonl"
    extra = ["--summary", str(summary)] if script in SUMMARIZED else []
    done = subprocess.run([sys.executable, str(BENCH / script), *TINY[script], *extra], capture_output=True,
                          text=True, timeout=120 * SECOND, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "|" in done.stdout or "x" in done.stdout, done.stdout  # it printed its table of figures
    if script in SUMMARIZED:
        rows = [json.loads(line) for line in summary.read_text().splitlines()]
        assert rows and all({"work", "result", "ratio", "target", "met"} <= set(r) for r in rows)
