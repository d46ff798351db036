"""``ripple log --after N`` with N beyond the head: one line on stderr and exit 2, with or without ``--follow``
(a follower started beyond the head would silently skip every event written up to N)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from ripple import Store
from tests.conftest import RIPPLE, ripple_env


async def three_events(path: Path) -> None:
    async with Store.open(path) as store:
        for i in range(3):
            await store.set("s", f"k{i}", i)


@pytest.mark.parametrize("follow", [[], ["--follow"]])
def test_log_after_beyond_the_head_exits_2(tmp_path: Path, follow: list[str]) -> None:
    db = tmp_path / "app.db"
    asyncio.run(three_events(db))
    done = subprocess.run([*RIPPLE, "log", "--db", str(db), "--after", "4", *follow], capture_output=True,
                          env=ripple_env(), timeout=30)
    assert done.returncode == 2, done
    assert done.stdout == b""
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "--after 4" in err and "head (3)" in err, err
    at_head = subprocess.run([*RIPPLE, "log", "--db", str(db), "--after", "3"], capture_output=True,
                             env=ripple_env(), timeout=30)
    assert (at_head.returncode, at_head.stdout, at_head.stderr) == (0, b"", b"")


def test_export_after_beyond_the_head_exits_2(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    asyncio.run(three_events(db))
    done = subprocess.run([*RIPPLE, "export", "--db", str(db), "--after", "9"], capture_output=True,
                          env=ripple_env(), timeout=30)
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr.decode().count("\n") == 1 and "beyond the head (3)" in done.stderr.decode()


@pytest.mark.parametrize("bad", [["--scope", ""], ["--scope", "a/b"], ["--key", "k\x01"], ["--key", ""]])
def test_log_refuses_bad_filter_names_like_the_api(tmp_path: Path, bad: list[str]) -> None:
    """``GET /v1/events?scope=`` is a 422; the same filter on the command line printed nothing and exited 0."""
    db = tmp_path / "app.db"
    asyncio.run(three_events(db))
    done = subprocess.run([*RIPPLE, "log", "--db", str(db), *bad], capture_output=True, env=ripple_env(), timeout=30)
    assert (done.returncode, done.stdout) == (2, b""), done
    assert done.stderr.count(b"\n") == 1 and (b"scope" in done.stderr or b"key" in done.stderr), done.stderr
