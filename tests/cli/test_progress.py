"""Progress bars (rich, on stderr) on a terminal: each long command shows a total, a formatted rate and an ETA, and
never ``None`` or ``?`` (rich treats ``FORCE_COLOR`` as a terminal, so a child process can be watched)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import pytest

from examples.todo import setup
from ripple import Set, Store
from tests.conftest import RIPPLE, ROOT, ripple_env

EVENTS = 6000
RATE = re.compile(r"\b\d{1,3}(,\d{3})* ev/s")  # 159,241 ev/s, not 159240.51641517773 ev/s
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


async def fill(path: Path) -> None:
    store = Store(path)
    setup(store)
    async with store:
        for start in range(0, EVENTS, 1000):
            await store.batch([Set("todos", f"t{i % 700}", {"id": f"t{i}", "title": "x", "completed": i % 2 == 0,
                                                            "created_at": "2026"}) for i in range(start, start + 1000)])


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "source.db"
    asyncio.run(fill(path))
    return path


def head(db: Path) -> int:
    done = subprocess.run([*RIPPLE, "stats", "--db", str(db)], capture_output=True, env=ripple_env(), check=True)
    value: int = json.loads(done.stdout)["head"]
    assert value >= EVENTS  # the todo reaction's counter writes come on top
    return value


def on_a_terminal(*args: str, stdin: Path | None = None) -> str:
    """Run ``ripple ARGS`` with stderr treated as a terminal; return what it drew there (escape codes removed)."""
    env = ripple_env(FORCE_COLOR="1", COLUMNS="160", TERM="xterm")
    with open(stdin or "/dev/null", "rb") as given:
        done = subprocess.run([*RIPPLE, *args], stdin=given, capture_output=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    return ANSI.sub("", done.stderr.decode())


def assert_good_bar(drawn: str, label: str, total: int) -> None:
    assert label in drawn, drawn
    assert f"/{total:,}" in drawn, drawn  # the total is known and shown
    assert RATE.search(drawn), drawn  # a formatted rate
    assert "None" not in drawn and "?" not in drawn, drawn
    assert "0:00:00" in drawn or "-:--:--" in drawn, drawn  # the ETA column


def test_import_shows_a_total_and_a_formatted_rate(source: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(subprocess.run([*RIPPLE, "export", "--db", str(source)], capture_output=True,
                                      env=ripple_env(), check=True).stdout)
    drawn = on_a_terminal("import", "--db", str(tmp_path / "copy.db"), stdin=events)
    assert_good_bar(drawn, "import", head(source))


def test_verify_shows_the_head_as_its_total(source: Path) -> None:
    drawn = on_a_terminal("verify", "--db", str(source), "--app", "examples.todo:setup")
    assert_good_bar(drawn, "verify", head(source))


def test_rebuild_shows_progress(source: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    copy.write_bytes(source.read_bytes())
    drawn = on_a_terminal("rebuild", "--db", str(copy), "--app", "examples.todo:setup")
    assert_good_bar(drawn, "rebuild", head(source))


def test_replay_shows_progress(source: Path, tmp_path: Path) -> None:
    drawn = on_a_terminal("replay", "--db", str(source), "--to", "5000", "--into", str(tmp_path / "out.db"),
                          "--app", "examples.todo:setup")
    assert_good_bar(drawn, "copy", 5000)
    assert_good_bar(drawn, "projections", 5000)


def test_no_bar_when_stderr_is_not_a_terminal(source: Path) -> None:
    done = subprocess.run([*RIPPLE, "verify", "--db", str(source), "--app", "examples.todo:setup"],
                          capture_output=True, env=ripple_env(), cwd=ROOT, timeout=120)
    assert done.returncode == 0 and done.stderr == b""
