"""Which storage engine a ripple location names: a file path (SQLite, the embedded default) or a
``postgresql://`` URL (PostgreSQL, several nodes; ripple.store.postgres). DESIGN §11."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from ripple.store import sqlite
from ripple.store.postgres import connect, is_postgres_url


def connect_reader(location: str | os.PathLike[str]) -> sqlite3.Connection:
    """A synchronous connection for reads made in a thread (projection state, the floor, the token book):
    ``sqlite3`` on a file, the sqlite3-shaped :class:`~ripple.store.postgres.PgConnection` on PostgreSQL."""
    if is_postgres_url(location):
        conn: Any = connect(str(location))
        return conn  # type: ignore[no-any-return]
    return sqlite.connect_reader(location)


__all__ = ["connect_reader", "is_postgres_url"]
