"""The retention benchmarks run at a small size, so they cannot rot (their figures come from full-size runs)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, ripple_env


def bench(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / name), *args], capture_output=True, text=True,
                          env=ripple_env(), cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_compact_bench() -> None:
    out = bench("compact.py", "--events", "3000", "--keys", "100", "--seconds", "0.2")
    assert "| offline (`ripple compact`) |" in out and "| during live compaction |" in out


@pytest.mark.slow
def test_time_travel_bench() -> None:
    out = bench("time_travel.py", "--keys", "2000", "--samples", "5", "--requests", "10", "--clients", "2")
    assert "limit=100, at=" in out and "| GET /v1/health |" in out


@pytest.mark.slow
def test_backup_bench() -> None:
    out = bench("backup.py", "--events", "3000", "--keys", "100", "--seconds", "0.2")
    assert "| `ripple backup` (backup API) |" in out and "| `--method vacuum` |" in out
