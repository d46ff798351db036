"""Built-in projections. The current state (``state`` table) is folded by the writer itself; ``metrics`` is here."""

from __future__ import annotations

import functools
import sqlite3
from typing import Any

from ripple.core.events import Event
from ripple.projections.base import Projection, Statement, Tables

METRICS_SCHEMA = """
CREATE TABLE {scopes} (
    scope   TEXT    PRIMARY KEY,
    keys    INTEGER NOT NULL,
    creates INTEGER NOT NULL,
    updates INTEGER NOT NULL,
    deletes INTEGER NOT NULL
) WITHOUT ROWID;
"""

# One SQL text for every event type, so a page of events runs as one executemany.
_UPSERT = (
    "INSERT INTO {t} (scope, keys, creates, updates, deletes) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (scope) DO UPDATE SET keys = keys + excluded.keys, creates = creates + excluded.creates, "
    "updates = updates + excluded.updates, deletes = deletes + excluded.deletes"
)
_DELTAS = {"created": (1, 1, 0, 0), "updated": (0, 0, 1, 0), "deleted": (-1, 0, 0, 1)}


@functools.lru_cache(maxsize=64)
def _upsert(table: str) -> str:
    return _UPSERT.format(t=table)


def fold_metrics(event: Event, tables: Tables) -> list[Statement]:
    deltas = _DELTAS.get(event.event_type)
    if deltas is None:
        return []
    return [(_upsert(tables["scopes"]), (event.scope, *deltas))]


def read_metrics(conn: sqlite3.Connection, tables: Tables) -> dict[str, Any]:
    rows = conn.execute(
        f"SELECT scope, keys, creates, updates, deletes FROM {tables['scopes']} ORDER BY scope"
    ).fetchall()
    return {
        "scopes": {
            scope: {"keys": keys, "creates": creates, "updates": updates, "deletes": deletes}
            for scope, keys, creates, updates, deletes in rows
        }
    }


def metrics_projection() -> Projection:
    """Per scope: the number of keys now, and how many creates, updates and deletes the log holds (DESIGN §6)."""
    return Projection(
        name="metrics",
        version=1,
        schema=METRICS_SCHEMA,
        fold=fold_metrics,
        read=read_metrics,
        mode="inline",
        description="per scope: keys, creates, updates, deletes",
    )
