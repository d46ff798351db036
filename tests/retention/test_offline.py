"""``ripple compact``, and every offline command on a compacted file, through a subprocess on real files."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ripple import Store
from ripple.migrations import migrate
from tests.cli.test_offline import digest, lines, ripple
from tests.retention.test_compact import history

FLOOR = 120


async def fill(path: Path, n: int = 240, seed: int = 11) -> int:
    async with Store.open(path) as store:
        await history(store, n, random.Random(seed))
        return store.head


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    asyncio.run(fill(path))
    return path


def state_hash(path: Path) -> str:
    done = ripple("verify", "--db", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.decode().split("state-hash: ")[1].strip()


def scope_at(path: Path, at: int) -> list[dict[str, Any]]:
    done = ripple("get", "--db", str(path), "s", "--at", str(at))
    assert done.returncode == 0, done.stderr
    return lines(done)


def compact(path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return ripple("compact", "--db", str(path), *args)


def test_compact_then_every_offline_command(db: Path, tmp_path: Path) -> None:
    head = json.loads(ripple("stats", "--db", str(db)).stdout)["head"]
    hash_before = state_hash(db)
    answers = {at: scope_at(db, at) for at in (FLOOR - 1, FLOOR + 30, head)}
    done = compact(db, "--before", str(FLOOR))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["earliest_before"], report["earliest"], report["removed"]) == (1, FLOOR, FLOOR - 1)
    assert report["file_bytes_after"] <= report["file_bytes_before"]
    assert state_hash(db) == hash_before
    for at, expected in answers.items():
        assert scope_at(db, at) == expected
    below = ripple("get", "--db", str(db), "s", "k1", "--at", str(FLOOR - 2))
    assert below.returncode == 2 and b"older than the earliest offset kept (120)" in below.stderr
    assert len(below.stderr.splitlines()) == 1
    assert lines(ripple("log", "--db", str(db)))[0]["offset"] == FLOOR
    assert ripple("log", "--db", str(db), "--after", "5").returncode == 2
    stats = json.loads(ripple("stats", "--db", str(db)).stdout)
    assert (stats["earliest"], stats["stream_earliest"], stats["head"]) == (FLOOR, FLOOR, head)
    assert stats["auto_vacuum"] == "incremental" and stats["bytes_per_event"] > 0
    assert stats["stored_events"] == head - FLOOR + 1 and stats["base_keys"] > 0

    # export → import: the floor and base travel with the events
    exported = ripple("export", "--db", str(db)).stdout
    first = json.loads(exported.splitlines()[0])
    assert first == {"floor": {"earliest": FLOOR, "stream_earliest": FLOOR}}
    copy = tmp_path / "copy.db"
    imported = ripple("import", "--db", str(copy), stdin=exported)
    assert imported.returncode == 0, imported.stderr
    assert state_hash(copy) == hash_before
    assert scope_at(copy, FLOOR + 30) == answers[FLOOR + 30]
    assert ripple("export", "--db", str(copy)).stdout == exported

    # replay at or after the floor
    for to in (FLOOR - 1, FLOOR + 30):
        into = tmp_path / f"replay-{to}.db"
        replayed = ripple("replay", "--db", str(db), "--to", str(to), "--into", str(into))
        assert replayed.returncode == 0, replayed.stderr
        assert json.loads(replayed.stdout)["head"] == to
        assert scope_at(into, to) == answers.get(to, scope_at(db, to))
        assert ripple("verify", "--db", str(into)).returncode == 0
    refused = ripple("replay", "--db", str(db), "--to", str(FLOOR - 2), "--into", str(tmp_path / "no.db"))
    assert refused.returncode == 2 and not (tmp_path / "no.db").exists()

    # rebuild from the base
    rebuilt = ripple("rebuild", "--db", str(db))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert ripple("verify", "--db", str(db)).returncode == 0


@pytest.mark.parametrize("before", ["0", "999999", "-4", "ten"])
def test_bad_floor_is_one_line_exit_2_and_changes_nothing(db: Path, before: str) -> None:
    before_digest = digest(db)
    done = compact(db, "--before", before)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stdout == b""
    assert digest(db) == before_digest


def test_a_floor_below_a_reaction_cursor_or_projection_checkpoint_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)  # a durable reaction and an async projection that are behind
    conn.execute("INSERT INTO reactions (name, cursor) VALUES ('mailer', 40)")
    conn.execute("INSERT INTO projections (name, version, checkpoint) VALUES ('search', 1, 90)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before_digest = digest(db)
    done = compact(db, "--before", str(FLOOR))
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    message = done.stderr.decode()
    assert "durable reaction 'mailer' (at offset 40)" in message and "projection 'search' (at offset 90)" in message
    assert "--force" in message
    assert digest(db) == before_digest
    only_mailer = compact(db, "--before", "42")  # offset 41 is the reaction's next event; the projection is past it
    assert only_mailer.returncode == 2 and b"mailer" in only_mailer.stderr and b"search" not in only_mailer.stderr
    assert compact(db, "--before", "41").returncode == 0  # nothing below 41 is needed by anyone
    forced = compact(db, "--before", str(FLOOR), "--force")
    assert forced.returncode == 0, forced.stderr
    report = json.loads(forced.stdout)
    assert {b["name"] for b in report["forced"]} == {"mailer", "search"}
    assert report["rebuild_pending"] == ["search"]  # its code is not loaded here: the next serve rebuilds it
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status FROM projections WHERE name = 'search'").fetchone() == ("rebuilding",)


def test_compact_converts_an_old_file_to_incremental_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)  # as ripple made files before: SQLite's default auto_vacuum=0
    conn.execute("PRAGMA journal_mode=WAL")
    migrate(conn, str(path))
    conn.close()
    asyncio.run(fill(path, n=1500, seed=3))
    assert json.loads(ripple("stats", "--db", str(path)).stdout)["auto_vacuum"] == "none"
    hash_before = state_hash(path)
    done = compact(path, "--before", "1400")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["converted_to_incremental_vacuum"] is True
    assert report["file_bytes_after"] < report["file_bytes_before"]
    assert json.loads(ripple("stats", "--db", str(path)).stdout)["auto_vacuum"] == "incremental"
    assert state_hash(path) == hash_before


def test_compact_is_refused_beside_a_live_writer(db: Path) -> None:
    async def run() -> subprocess.CompletedProcess[bytes]:
        async with Store.open(db):
            return await asyncio.to_thread(compact, db, "--before", "10")

    done = asyncio.run(run())
    assert done.returncode == 2 and b"already open for writing" in done.stderr
