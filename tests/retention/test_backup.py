"""``ripple backup`` beside a writer that does not stop, rotation, and ``ripple restore``."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import subprocess
from pathlib import Path

import pytest

from ripple import Store
from ripple.maintenance import rotation_name
from ripple.store.sqlite import WriterLock
from tests.cli.test_offline import ripple
from tests.retention.test_compact import history, verify_file


def rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("method", ["backup", "vacuum"])
async def test_backup_during_writes_is_a_verified_prefix(db_path: Path, tmp_path: Path, method: str) -> None:
    out = tmp_path / f"copy-{method}.db"
    async with Store.open(db_path) as store:
        await history(store, 3000, random.Random(1))
        initial = store.head
        stop = asyncio.Event()

        async def writer() -> int:
            n = 0
            while not stop.is_set():
                await store.set("live", f"k{n % 50}", {"n": n, "pad": "x" * 200})
                n += 1
            return n

        task = asyncio.create_task(writer())
        done = await asyncio.to_thread(
            ripple, "backup", "--db", str(db_path), str(out), "--method", method
        )
        stop.set()
        written = await task
        head = store.head
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert written > 0 and initial <= report["head"] <= head
    assert {p.name for p in tmp_path.iterdir() if p.name.startswith(".")} == set()  # no partial file left
    assert not Path(f"{out}-wal").exists()  # one self-contained file
    copy = rows(out)
    assert copy == rows(db_path)[: len(copy)] and copy[-1][0] == report["head"]  # a prefix of the log
    checked = verify_file(out)
    assert checked.ok, checked.faults


def test_backup_refuses_an_existing_target_and_bad_options(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    asyncio.run(fill(db))
    out = tmp_path / "out.db"
    out.write_bytes(b"precious")
    for args in ([str(out)], [], [str(out), "--to", str(tmp_path)], ["--keep", "2", str(tmp_path / "x.db")],
                 ["--to", str(out), "--keep", "2"]):
        done = ripple("backup", "--db", str(db), *args)
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, (args, done.stderr)
    assert out.read_bytes() == b"precious"
    assert ripple("backup", "--db", str(tmp_path / "nope.db"), str(tmp_path / "y.db")).returncode == 2
    assert not (tmp_path / "y.db").exists()


def test_backup_rotation_creates_its_folder(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    asyncio.run(fill(db))
    folder = tmp_path / "backups" / "nightly"
    done = ripple("backup", "--db", str(db), "--to", str(folder), "--keep", "2")
    assert done.returncode == 0, done.stderr
    assert len(list(folder.glob("*.db"))) == 1


async def fill(path: Path) -> None:
    async with Store.open(path) as store:
        await history(store, 100, random.Random(2))


def test_rotation_keeps_the_newest(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    asyncio.run(fill(db))
    folder = tmp_path / "backups"
    folder.mkdir()
    old = [folder / f"app-2020010{i}T000000Z.db" for i in range(1, 4)]
    for path in old:
        path.write_bytes(b"")
    other = folder / "other-20200101T000000Z.db"  # another database's backup: never touched
    other.write_bytes(b"")
    done = ripple("backup", "--db", str(db), "--to", str(folder), "--keep", "2")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(report["removed"]) == [str(p) for p in old[:2]]
    assert sorted(p.name for p in folder.iterdir()) == sorted([old[2].name, Path(report["backup"]).name, other.name])
    assert verify_file(Path(report["backup"])).ok
    assert rotation_name("x/app.db").startswith("app-") and rotation_name("app.db").endswith("Z.db")


def test_restore_copies_and_verifies(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    asyncio.run(fill(db))
    backup = tmp_path / "b.db"
    assert ripple("backup", "--db", str(db), str(backup)).returncode == 0
    target = tmp_path / "restored.db"
    done = ripple("restore", str(backup), "--db", str(target))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state_hash"] == verify_file(db).state_hash
    again = ripple("restore", str(backup), "--db", str(target))  # an existing target is refused
    assert again.returncode == 2 and b"already exists" in again.stderr
    # a backup that does not verify: exit 1, no target
    conn = sqlite3.connect(backup, isolation_level=None)
    conn.execute("UPDATE events SET new_value = '{\"tampered\":1}' WHERE seq = 5")
    conn.close()
    bad_target = tmp_path / "bad.db"
    bad = ripple("restore", str(backup), "--db", str(bad_target))
    assert bad.returncode == 1 and b"does not verify" in bad.stderr
    assert not bad_target.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".bad.db")]


def test_copying_the_db_file_alone_loses_commits(tmp_path: Path) -> None:
    """What the docs warn about: with a live writer, recent commits live in the -wal file until a checkpoint."""
    db = tmp_path / "app.db"

    async def run() -> tuple[int, subprocess.CompletedProcess[bytes]]:
        async with Store.open(db) as store:
            await store.set("s", "first", 1)
            reader = sqlite3.connect(db, isolation_level=None)  # an open read snapshot: checkpoints stop behind it
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM events").fetchone()
            await history(store, 50, random.Random(3))
            (tmp_path / "cp.db").write_bytes(db.read_bytes())  # `cp app.db` beside the server
            reader.execute("COMMIT")
            reader.close()
            done = await asyncio.to_thread(ripple, "backup", "--db", str(db), str(tmp_path / "ok.db"))
            return store.head, done

    head, done = asyncio.run(run())
    assert done.returncode == 0
    assert json.loads(done.stdout)["head"] == head
    conn = sqlite3.connect(tmp_path / "cp.db")
    copied = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    conn.close()
    assert copied < head


def test_restore_refuses_a_name_a_writer_holds_and_leftovers_of_a_gone_database(tmp_path: Path) -> None:
    """A server whose file was deleted still holds ``DB.lock`` and would acknowledge writes into the old inode; a
    ``-wal``/``-shm`` left by a crashed database of that name would be applied to the restored file (malformed)."""
    db = tmp_path / "app.db"
    asyncio.run(fill(db))
    backup = tmp_path / "b.db"
    assert ripple("backup", "--db", str(db), str(backup)).returncode == 0
    target = tmp_path / "served.db"
    lock = WriterLock(target)
    lock.acquire()  # what a running `ripple serve served.db` holds
    try:
        held = ripple("restore", str(backup), "--db", str(target))
        assert held.returncode == 2 and b"already open for writing by process" in held.stderr, held.stderr
        assert len(held.stderr.splitlines()) == 1 and not target.exists()
    finally:
        lock.release()
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").write_bytes(b"left by a crash")
    left = ripple("restore", str(backup), "--db", str(target))
    assert left.returncode == 2 and b"remove them first" in left.stderr and len(left.stderr.splitlines()) == 1
    assert not target.exists()
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink()
    assert ripple("restore", str(backup), "--db", str(target)).returncode == 0
    assert verify_file(target).ok


def test_backup_and_restore_name_bad_targets_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    asyncio.run(fill(db))
    cases = [(["backup", "--db", str(db), ""], b"empty"),
             (["backup", "--db", str(db), "/proc/x.db"], b"cannot write a database in /proc"),
             (["restore", str(db), "--db", str(tmp_path / "no" / "x.db")], b"does not exist")]
    for args, said in cases:
        done = ripple(*args)
        assert done.returncode == 2 and said in done.stderr and len(done.stderr.splitlines()) == 1, (args, done.stderr)
        assert b"SQLite error" not in done.stderr
