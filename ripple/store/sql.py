"""The SQL that reads and writes ripple's tables, shared by the live store and the offline tool (one home each).

Statements are plain text with ``?`` parameters, so the same strings run on ``sqlite3`` (writer thread, offline tool)
and on ``aiosqlite`` (the reader pool). Column names avoid reserved words (``seq`` is the offset), DESIGN §3.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ripple.core.filter import Filter

EVENT_COLUMNS = "seq, ts, kind, scope, key, op, event_type, version, old_value, new_value, meta"

# One event as the JSON object of DESIGN §7 (``{"offset":…,…,"meta":{…}}``), built by SQLite from the stored row:
# the stored JSON columns are spliced as they are and names are quoted by json_quote, so a row costs Python one
# string instead of eleven objects. Catch-up and export use it; live frames encode the same bytes with msgspec
# (ripple.wire.event_body) — tests/store/test_event_json.py proves both give identical bytes.
EVENT_JSON = (
    "printf('{\"offset\":%d,\"ts\":%d,\"kind\":%s,\"scope\":%s,\"key\":%s,\"op\":%s,\"event_type\":%s,"
    "\"version\":%d,\"old_value\":%s,\"new_value\":%s,\"meta\":%s}', seq, ts, json_quote(kind), json_quote(scope), "
    "json_quote(key), json_quote(op), json_quote(event_type), version, coalesce(old_value, 'null'), "
    "coalesce(new_value, 'null'), meta)"
)

# A page of events as one value: their EVENT_JSON objects joined by U+001F, which JSON text never holds unescaped
# (control characters inside strings are escaped), so frames are cut and joined in C (bytes.split and join) rather
# than per event in Python. The aggregate reads the ordered LIMIT subquery in its order (SQLite keeps the ORDER BY
# of a subquery that has a LIMIT); from SQLite 3.44 the aggregate's own ORDER BY states it.
EVENT_SEPARATOR = b"\x1f"
_JOINED = "group_concat(body, char(31) ORDER BY seq)" if sqlite3.sqlite_version_info >= (3, 44) else (
    "group_concat(body, char(31))"
)

HEAD = "SELECT coalesce(max(seq), 0) FROM events"
EARLIEST = "SELECT min(seq) FROM events"

INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

# -- current state
SELECT_KEY = "SELECT value, version, last_seq, created_seq FROM state WHERE scope = ? AND key = ?"
SELECT_KEYS = "SELECT key, value, version, last_seq, created_seq FROM state WHERE scope = ? AND key IN ({})"
UPSERT_STATE = (
    "INSERT OR REPLACE INTO state (scope, key, value, version, last_seq, created_seq) VALUES (?, ?, ?, ?, ?, ?)"
)
DELETE_STATE = "DELETE FROM state WHERE scope = ? AND key = ?"
# a scope in first-insertion order, one page after a created_seq cursor: key, value, version, last_seq, created_seq
LIST_SCOPE = (
    "SELECT key, value, version, last_seq, created_seq FROM state "
    "WHERE scope = ? AND created_seq > ? ORDER BY created_seq LIMIT ?"
)
LIST_GROUPS = "SELECT DISTINCT scope FROM state ORDER BY scope"

# -- the state as of an offset (time travel), derived from the log
# A key as of offset ?: its last state event at or before it (a 'deleted' one means absent).
SELECT_KEY_AT = (
    "SELECT new_value, version, seq, event_type FROM events WHERE scope = ? AND key = ? AND kind = 'state' "
    "AND seq <= ? ORDER BY seq DESC LIMIT 1"
)
# Every key as of offset ?: scope, key, value, version, last_seq, created (an independent path from the writer's
# incremental upserts, which is what `verify` compares it with; `import` and `replay` rebuild the state table with it).
STATE_AT = """
SELECT scope, key, new_value AS value, version, seq AS last_seq, created FROM (
  SELECT scope, key, new_value, version, seq, event_type,
         max(CASE WHEN event_type = 'created' THEN seq END)
             OVER (PARTITION BY scope, key ORDER BY seq ROWS UNBOUNDED PRECEDING) AS created,
         row_number() OVER (PARTITION BY scope, key ORDER BY seq DESC) AS rn
    FROM events WHERE kind = 'state' AND seq <= ?)
 WHERE rn = 1 AND event_type != 'deleted'
"""
# One scope as of offset ?, a page after a created cursor: key, value, version, last_seq, created.
LIST_SCOPE_AT = """
SELECT * FROM (
  SELECT e.key, e.new_value, e.version, e.seq,
         (SELECT max(c.seq) FROM events c
           WHERE c.scope = e.scope AND c.key = e.key AND c.kind = 'state' AND c.event_type = 'created'
             AND c.seq <= e.seq) AS created
    FROM events e
   WHERE e.scope = ? AND e.kind = 'state' AND e.seq <= ? AND e.event_type != 'deleted'
     AND e.seq = (SELECT max(m.seq) FROM events m
                   WHERE m.scope = e.scope AND m.key = e.key AND m.kind = 'state' AND m.seq <= ?))
 WHERE created > ? ORDER BY created LIMIT ?
"""


def list_scope_at_params(scope: str, at: int, after_created: int, limit: int) -> tuple[Any, ...]:
    return (scope, at, at, after_created, limit)


def events_page(f: Filter, after: int, upto: int | None, limit: int, *, columns: str = EVENT_COLUMNS
                ) -> tuple[str, list[Any]]:
    """One page of the log: the events ``f`` matches in ``(after, upto]``, in offset order, at most ``limit``.

    The one paging strategy for every reader. Each page costs O(page), never O(what is left):
    - one scope (with or without keys): the ``(scope, seq)`` or ``(scope, key, seq)`` index range, already in
      offset order;
    - several scopes: the primary key walk (``NOT INDEXED``) — an ``IN`` over the scope index would make SQLite sort
      every remaining matching row up to ``upto`` for each page, which turns a long catch-up quadratic
      (``bench/paging.py`` measures both);
    - no scope: the primary key walk, which SQLite picks by itself.
    """
    where = ["seq > ?"]
    params: list[Any] = [after]
    if upto is not None:
        where.append("seq <= ?")
        params.append(upto)
    wanted: list[str] = []
    wanted_params: list[Any] = []
    if f.kind != "all":
        wanted.append("kind = ?")
        wanted_params.append(f.kind)
    if f.scopes:
        wanted.append(f"scope IN ({','.join('?' * len(f.scopes))})")
        wanted_params.extend(sorted(f.scopes))
    if f.keys:
        wanted.append(f"key IN ({','.join('?' * len(f.keys))})")
        wanted_params.extend(sorted(f.keys))
    if f.item_scopes:  # a stream group: its sends, or any state event of its items' scope (Filter.item_scopes)
        items = f"kind = 'state' AND scope IN ({','.join('?' * len(f.item_scopes))})"
        where.append(f"(({' AND '.join(wanted) or '1=1'}) OR ({items}))")
        params.extend([*wanted_params, *sorted(f.item_scopes)])
    else:
        where.extend(wanted)
        params.extend(wanted_params)
    hint = " NOT INDEXED" if len(f.scopes) + len(f.item_scopes) > 1 else ""
    params.append(limit)
    return f"SELECT {columns} FROM events{hint} WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", params


def events_json_page(f: Filter, after: int, upto: int | None, limit: int) -> tuple[str, list[Any]]:
    """:func:`events_page` as one row ``(count, last offset, the event JSON objects joined by EVENT_SEPARATOR)``."""
    inner, params = events_page(f, after, upto, limit, columns=f"seq, {EVENT_JSON} AS body")
    return f"SELECT count(*), max(seq), CAST({_JOINED} AS BLOB) FROM ({inner})", params


def head(conn: sqlite3.Connection) -> int:
    """The last offset in the file (a synchronous connection)."""
    return int(conn.execute(HEAD).fetchone()[0])


def earliest(conn: sqlite3.Connection) -> int:
    """The first offset still in the log (1 when nothing was ever trimmed)."""
    found = conn.execute(EARLIEST).fetchone()[0]
    return 1 if found is None else int(found)
