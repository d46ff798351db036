"""The offline tool on a PostgreSQL log (docs/scaling.md): ``log``, ``get`` and ``export`` read it and print what they
print for a SQLite file; the commands that need a file refuse the URL with one line on stderr and exit 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ripple import RippleError, Store
from ripple.auth.book import TokenBook
from tests.conftest import RIPPLE, ROOT, SECOND, ripple_env


def ripple(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RIPPLE, *args], cwd=ROOT, env=ripple_env(), capture_output=True, text=True,
                          timeout=60 * SECOND)


async def fill(location: str | Path) -> None:
    async with Store.open(location) as store:
        await store.set("todos", "a", {"title": "milk"})
        await store.set("todos", "b", {"title": "bread", "note": "\"quoted\" é"})
        await store.update("todos", "a", [{"type": "set", "path": "done", "value": True}])
        await store.send("chat", "room", "msg", {"text": "hi"})
        await store.delete("todos", "b")


def without_ts(lines: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in lines.splitlines()]
    for event in events:
        event.pop("ts")
    return events


async def test_log_get_and_export_read_postgresql_like_a_file(pg_url: str, tmp_path: Path) -> None:
    await fill(pg_url)
    await fill(tmp_path / "same.db")
    for command in (["export"], ["log", "--scope", "todos"], ["log", "--after", "2", "--kind", "state"]):
        on_pg, on_file = ripple(*command, "--db", pg_url), ripple(*command, "--db", str(tmp_path / "same.db"))
        assert on_pg.returncode == 0 == on_file.returncode, on_pg.stderr
        assert without_ts(on_pg.stdout) == without_ts(on_file.stdout) != []
    got = ripple("get", "--db", pg_url, "todos", "a", "--at", "1")
    assert got.returncode == 0 and json.loads(got.stdout) == {"title": "milk"}, got.stderr


@pytest.mark.parametrize("command", [["verify"], ["stats"], ["projections"], ["compact", "--before", "2"],
                                     ["backup", "out.db"], ["import"], ["rebuild", "metrics"],
                                     ["replay", "--to", "1", "--into", "x.db"]])
async def test_file_commands_refuse_a_postgresql_url(pg_url: str, command: list[str]) -> None:
    await fill(pg_url)
    done = ripple(command[0], "--db", pg_url, *command[1:])
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1 and "docs/scaling.md" in done.stderr, done.stderr


async def test_tokens_live_in_postgresql(pg_url: str) -> None:
    await fill(pg_url)
    created = ripple("token", "create", "--db", pg_url, "--name", "alice", "--allow", "todos:rw")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    book = TokenBook(pg_url)
    await book.start()
    try:
        assert (await book.authenticate(token, "127.0.0.1")).name == "alice"
        assert ripple("token", "revoke", "--db", pg_url, "alice").returncode == 0
        await book.reload()
        with pytest.raises(RippleError):
            await book.authenticate(token, "127.0.0.1")
    finally:
        await book.close()
    listed = ripple("token", "list", "--db", pg_url)
    assert json.loads(listed.stdout)["status"] == "revoked", listed.stderr
