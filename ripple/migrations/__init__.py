"""Numbered SQL migrations (``NNNN_name.sql``), tracked by ``PRAGMA user_version``.

Each pending migration runs with its ``user_version`` bump in one transaction: a crash leaves the file at the old
version or the new one, never between. ``executescript`` is not used because it COMMITs first.
"""

from __future__ import annotations

import re
import sqlite3
from importlib import resources

from ripple.errors import SchemaVersionError

APPLICATION_ID = 0x52495050  # "RIPP": marks a ripple file (PRAGMA application_id)
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """All migrations shipped with ripple as ``(number, name, sql)``, in order."""
    found = []
    for entry in resources.files(__name__).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort()
    for expected, (number, name, _) in enumerate(found, start=1):
        if number != expected:
            raise RuntimeError(f"migration {name} is out of sequence (expected number {expected})")
    return found


LATEST_VERSION = len(migrations())


def statements(sql: str) -> list[str]:
    """Split a migration into complete statements (``sqlite3.complete_statement`` knows about strings)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            stmt = buf.strip()
            if stmt and stmt != ";":
                out.append(stmt)
            buf = ""
    if buf.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()):
        raise RuntimeError(f"incomplete SQL statement in migration: {buf.strip()[:80]!r}")
    return out


def check_version(version: int, path: str) -> None:
    if version > LATEST_VERSION:
        raise SchemaVersionError(
            f"{path} has schema version {version}, newer than this ripple supports ({LATEST_VERSION}); upgrade ripple",
            detail={"schema_version": version, "supported": LATEST_VERSION},
        )


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the database to ``LATEST_VERSION``; returns the version found. ``conn`` is in autocommit mode."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        check_version(current, path)
        if current == LATEST_VERSION and conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
            conn.execute("ROLLBACK")  # nothing to do: write nothing, not even the header
            return int(current)
        for number, _name, sql in migrations():
            if number <= current:
                continue
            for stmt in statements(sql):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(current)
