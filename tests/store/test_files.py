"""The file itself: new files, foreign files, schema versions, migrations, the writer lock, SQL failures."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from ripple import (
    DatabaseFileError,
    DatabaseFullError,
    NotARippleDatabaseError,
    SchemaVersionError,
    StorageError,
    Store,
    WriterLockedError,
)
from ripple import migrations as mig
from ripple.migrations import APPLICATION_ID, LATEST_VERSION
from tests.conftest import ROOT, SECOND


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_missing_and_empty_files_are_new_databases(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    for path in (tmp_path / "missing.db", empty):
        async with Store.open(path) as store:
            await store.set("s", "k", 1)
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        conn.close()


async def test_foreign_sqlite_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(NotARippleDatabaseError, match="not a ripple database"):
        await Store.open(path)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


async def test_non_sqlite_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"hello, this is not a database\n" * 100)
    before = digest(path)
    with pytest.raises(NotARippleDatabaseError, match="not a SQLite database"):
        await Store.open(path)
    assert digest(path) == before


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    async with Store.open(path) as store:
        await store.set("s", "k", 1)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    before = digest(path)
    with pytest.raises(SchemaVersionError, match="newer"):
        await Store.open(path)
    assert digest(path) == before


async def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseFileError, match="does not exist"):
        await Store.open(tmp_path / "nope" / "x.db")


def test_older_file_is_migrated_in_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing migration leaves the file at its old version with nothing half-applied."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    mig.migrate(conn, str(path))
    conn.execute("INSERT INTO events (seq, ts, kind, scope, key, op, event_type, version, new_value) "
                 "VALUES (1, 0, 'state', 's', 'k', 'set', 'created', 1, '1')")
    real = mig.migrations()
    extra = [(LATEST_VERSION + 1, "0099_x.sql", "CREATE TABLE added (x);\nCREATE TABLE broken (;\n")]
    monkeypatch.setattr(mig, "migrations", lambda: real + extra)
    monkeypatch.setattr(mig, "LATEST_VERSION", LATEST_VERSION + 1)
    with pytest.raises(sqlite3.OperationalError):
        mig.migrate(conn, str(path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'added'").fetchone()[0] == 0
    extra[0] = (LATEST_VERSION + 1, "0099_x.sql", "CREATE TABLE added (x);\n")
    assert mig.migrate(conn, str(path)) == LATEST_VERSION
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION + 1
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    conn.close()


async def test_second_writer_in_process_is_refused(db_path: Path) -> None:
    async with Store.open(db_path):
        with pytest.raises(WriterLockedError) as info:
            await Store.open(db_path)
        assert info.value.pid == os.getpid()
    async with Store.open(db_path):  # released on close
        pass


async def test_second_writer_in_another_process_names_the_pid(db_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from ripple import Store\n"
        "async def main():\n"
        "    async with Store.open(sys.argv[1]):\n"
        "        print('open', flush=True)\n"
        "        sys.stdin.readline()\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", code, str(db_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 20 * SECOND)
        assert line.strip() == "open"
        with pytest.raises(WriterLockedError, match=f"process {child.pid}") as info:
            await Store.open(db_path)
        assert info.value.pid == child.pid
    finally:
        child.kill()
        child.wait()


async def test_full_database_fails_writes_cleanly_and_recovers(db_path: Path) -> None:
    async with Store.open(db_path) as store:
        for i in range(20):
            await store.set("s", f"k{i}", i)
        pages = await store.writer.call(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        await store.writer.call(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))
        big = "x" * 100_000
        results = await asyncio.gather(*[store.set("s", f"big{i}", big) for i in range(5)], return_exceptions=True)
        assert all(isinstance(r, DatabaseFullError) for r in results)
        assert results[0].status == 507  # type: ignore[union-attr]
        assert store.head == 20
        assert await store.get("s", "k19") == 19
        await store.writer.call(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
        assert (await store.set("s", "after", 1)).offset == 21
        offsets = [e.offset for e in await store.read_events()]
        assert offsets == list(range(1, 22))


async def test_sql_failure_fails_only_its_own_job(store: Store) -> None:
    """A job whose SQL fails is retried alone; its group neighbours commit with gapless offsets."""
    def broken(txn: object) -> None:
        raise sqlite3.OperationalError("simulated failure")

    results = await asyncio.gather(
        *[store.set("s", f"a{i}", i) for i in range(10)],
        store.writer.run_in_txn(broken),
        *[store.set("s", f"b{i}", i) for i in range(10)],
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results].count("StorageError") == 1
    assert store.head == 20
    assert [e.offset for e in await store.read_events()] == list(range(1, 21))


class FlakyConnection:
    """Wraps the writer's sqlite3 connection: the next COMMITs raise a disk I/O error (before or after committing)."""

    def __init__(self, conn: sqlite3.Connection, failures: int, *, after_commit: bool = False) -> None:
        self.conn, self.failures, self.after_commit = conn, failures, after_commit

    def execute(self, sql: str, *args: Any) -> object:
        if sql == "COMMIT" and self.failures > 0:
            self.failures -= 1
            if self.after_commit:
                self.conn.execute(sql)
            raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)


async def flaky(store: Store, failures: int, *, after_commit: bool = False) -> FlakyConnection:
    def install(conn: sqlite3.Connection) -> FlakyConnection:
        store.writer._conn = FlakyConnection(conn, failures, after_commit=after_commit)  # type: ignore[assignment]
        return store.writer._conn  # type: ignore[return-value]
    return await store.writer.call(install)


async def test_io_error_reopens_the_connection_and_retries_nothing_twice(store: Store) -> None:
    await store.set("s", "before", 1)
    wrapper = await flaky(store, failures=1)
    results = await asyncio.gather(*[store.set("s", f"k{i}", i) for i in range(20)], return_exceptions=True)
    assert store.writer._conn is not cast(object, wrapper)  # never retried on the connection that failed
    assert all(not isinstance(r, BaseException) for r in results), results  # nothing reached the file: retried
    assert [e.offset for e in await store.read_events()] == list(range(1, 22))
    assert not store.degraded


async def test_io_error_after_the_commit_reached_the_file_acknowledges_once(store: Store) -> None:
    wrapper = await flaky(store, failures=1, after_commit=True)
    results = await asyncio.gather(*[store.set("s", f"k{i}", i) for i in range(10)])
    assert store.writer._conn is not cast(object, wrapper)
    assert sorted(r.offset for r in results) == list(range(1, 11))
    assert [e.offset for e in await store.read_events()] == list(range(1, 11))  # not applied twice


async def test_writer_that_cannot_reopen_is_degraded_then_recovers(store: Store,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from ripple.store import writer as writer_module

    real = writer_module.connect_writer  # type: ignore[attr-defined]
    def refuse(*args: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")
    await flaky(store, failures=1)
    monkeypatch.setattr(writer_module, "connect_writer", refuse)
    with pytest.raises(StorageError, match="degraded"):
        await store.set("s", "k", 1)
    assert store.degraded
    with pytest.raises(StorageError):
        await store.set("s", "k", 2)
    assert await store.read_events() == []  # reads go on
    monkeypatch.setattr(writer_module, "connect_writer", real)
    assert (await store.set("s", "k", 3)).offset == 1
    assert not store.degraded
