"""Every difference between SQLite's SQL and PostgreSQL's, in one place (DESIGN §11).

ripple's statements are written once, for SQLite (``ripple.store.sql``, the projection runner, reactions, tokens),
with ``?`` / ``?N`` / ``:name`` parameters. :func:`to_postgres` rewrites one statement for PostgreSQL (psycopg's
``%s`` / ``%(name)s``), mechanically where it can:

- placeholders, and ``%`` doubled outside them;
- ``INSERT OR REPLACE`` → ``INSERT … ON CONFLICT (primary key) DO UPDATE``, ``INSERT OR IGNORE`` → ``ON CONFLICT DO
  NOTHING`` (the primary keys of ripple's tables are listed in :data:`PRIMARY_KEYS`);
- ``json_extract(col, '$.field')`` becomes ``(col::json ->> 'field')``;
- SQLite's planner hints (``INDEXED BY``, ``NOT INDEXED``) and ``WITHOUT ROWID`` are dropped;
- ``INTEGER`` columns of a ``CREATE TABLE`` become ``BIGINT`` (SQLite's integers are 64-bit; offsets and
  millisecond times do not fit PostgreSQL's 32-bit ``INTEGER``);
- in an upsert's ``DO UPDATE SET``, a bare column name means the existing row in SQLite and is ambiguous in
  PostgreSQL: it is qualified with the table's name;
- ``BEGIN IMMEDIATE`` (a SQLite write transaction) becomes ``BEGIN`` plus the append lock
  (:data:`APPEND_LOCK`), so whatever SQLite serialised with its write lock PostgreSQL serialises with the advisory
  lock, across every node.

and by a table of whole statements where SQLite's syntax has no mechanical equivalent (:data:`REWRITTEN`): the head
(``max(a, b)`` is ``greatest`` in PostgreSQL), compound subqueries in ``FROM`` (PostgreSQL 15 wants each
branch with its own ``LIMIT`` wrapped and aliased), the event JSON
(SQLite's ``printf``/``json_quote`` vs ``format``/``to_json``, byte-identical: tests/store/test_event_json.py) and a
page of it joined (``group_concat`` vs ``string_agg``), the
catalogue (``sqlite_master`` vs ``pg_tables``).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

from ripple.store import sql

Style = Literal["plain", "positional", "numbered", "named"]

# The append lock: one transaction-level advisory lock per ripple schema, taken first by every writing transaction
# (appends, migrations) and released by its COMMIT/ROLLBACK. ``hashtext`` keeps two ripple logs in two schemas of one
# database independent.
APPEND_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.ripple.append'))"

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "state": ("scope", "key"),
    "projections": ("name",),
    "reactions": ("name",),
    "idempotency": ("actor", "key"),
    "tokens": ("name",),
    "log_floor": ("id",),
    "log_base": ("scope", "key"),
}

# One event as DESIGN §7's JSON object, the same bytes as SQLite's sql.EVENT_JSON and msgspec's live frames.
EVENT_JSON = (
    "format('{\"offset\":%s,\"ts\":%s,\"kind\":%s,\"scope\":%s,\"key\":%s,\"op\":%s,\"event_type\":%s,"
    "\"version\":%s,\"old_value\":%s,\"new_value\":%s,\"meta\":%s}', seq, ts, to_json(kind), to_json(scope), "
    "to_json(key), to_json(op), to_json(event_type), version, coalesce(old_value, 'null'), "
    "coalesce(new_value, 'null'), meta)"
)

# A page of event JSON objects joined by U+001F (sql.events_json_page), as bytes.
JOINED_EVENTS = "convert_to(string_agg(body, chr(31) ORDER BY seq), 'UTF8')"

REWRITTEN: dict[str, str] = {
    sql.HEAD: (
        "SELECT greatest(coalesce((SELECT max(seq) FROM events), 0), "
        "coalesce((SELECT earliest - 1 FROM log_floor), 0))"
    ),
    sql.SELECT_KEY_AT: """
SELECT * FROM (
  SELECT * FROM (
    SELECT new_value, version, seq, event_type FROM events
     WHERE scope = ?1 AND key = ?2 AND kind = 'state' AND seq <= ?3 ORDER BY seq DESC LIMIT 1) AS last_event
  UNION ALL
  SELECT value, version, last_seq, 'created' FROM log_base WHERE scope = ?1 AND key = ?2) AS found
ORDER BY 3 DESC LIMIT 1
""",
    sql.LIST_SCOPE_AT: """
WITH page(key, created) AS (
  SELECT key, created FROM (
    SELECT * FROM (
      SELECT b.key AS key, b.created_seq AS created FROM log_base b
       WHERE b.scope = :scope AND b.created_seq > :after
         AND NOT EXISTS (SELECT 1 FROM events l
                          WHERE l.scope = :scope AND l.key = b.key AND l.kind = 'state'
                            AND l.event_type IN ('created', 'deleted') AND l.seq <= :at)
       ORDER BY b.created_seq LIMIT :limit) AS base_keys
    UNION ALL
    SELECT * FROM (
      SELECT c.key AS key, c.seq AS created FROM events c
       WHERE c.scope = :scope AND c.kind = 'state' AND c.event_type = 'created' AND c.seq > :after AND c.seq <= :at
         AND c.seq = (SELECT l.seq FROM events l
                       WHERE l.scope = :scope AND l.key = c.key AND l.kind = 'state'
                         AND l.event_type IN ('created', 'deleted') AND l.seq <= :at
                       ORDER BY l.seq DESC LIMIT 1)
       ORDER BY c.seq LIMIT :limit) AS log_keys) AS both_keys
  ORDER BY created LIMIT :limit)
""" + sql.LIST_SCOPE_AT_VALUES,
    "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ?": (
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND substr(tablename, 1, ?) = ?"
    ),
}

_JSON_FIELD = re.compile(r"json_extract\((\w+), '\$\.(\w+)'\)")
_STRING = re.compile(r"('(?:[^']|'')*')")
_PLACEHOLDER = re.compile(r"\?(\d+)|\?|(?<![:\w]):([A-Za-z_]\w*)")
_HINT = re.compile(r"\s+(?:INDEXED\s+BY\s+\w+|NOT\s+INDEXED)\b", re.IGNORECASE)
_WITHOUT_ROWID = re.compile(r"\)\s*WITHOUT\s+ROWID", re.IGNORECASE)
_INSERT_OR = re.compile(r"^\s*INSERT\s+OR\s+(REPLACE|IGNORE)\s+INTO\s+(\w+)\s*\(([^)]*)\)", re.IGNORECASE)
_CREATE_TABLE = re.compile(r"^\s*CREATE\s+(?:TEMP\s+)?TABLE\b", re.IGNORECASE)
_INTEGER = re.compile(r"\bINTEGER\b", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def to_postgres(statement: str) -> tuple[str, Style]:
    """``statement`` (SQLite) as PostgreSQL text for psycopg, and the style its parameters must be passed in
    (:func:`bind` converts them)."""
    stripped = statement.strip().rstrip(";").strip()
    upper = stripped.upper()
    if upper == "BEGIN IMMEDIATE":
        return f"BEGIN; {APPEND_LOCK}", "plain"  # one round trip: without parameters, several statements may go
    if upper == "BEGIN":  # a read transaction: SQLite's reads see one snapshot until COMMIT
        return "BEGIN ISOLATION LEVEL REPEATABLE READ", "plain"
    if upper.startswith("PRAGMA"):
        raise NotImplementedError(f"SQLite-only statement on PostgreSQL: {stripped[:60]}")
    text = REWRITTEN.get(statement, statement)
    text = text.replace(sql.EVENT_JSON, EVENT_JSON)
    text = text.replace(sql.JOINED_EVENTS, JOINED_EVENTS)
    text = _JSON_FIELD.sub(r"(\1::json ->> '\2')", text)
    text = _HINT.sub("", text)
    text = _WITHOUT_ROWID.sub(")", text)
    if _CREATE_TABLE.match(text):
        text = _INTEGER.sub("BIGINT", text)
    text = _insert_or(text)
    text = _qualify_upsert(text)
    return _placeholders(text)


def _insert_or(text: str) -> str:
    match = _INSERT_OR.match(text)
    if match is None:
        return text
    verb, table, columns = match.group(1).upper(), match.group(2), match.group(3)
    text = f"INSERT INTO {table} ({columns})" + text[match.end():]
    if verb == "IGNORE":
        return f"{text} ON CONFLICT DO NOTHING"
    keys = PRIMARY_KEYS[table.lower()]
    others = [c.strip() for c in columns.split(",") if c.strip() not in keys]
    update = ", ".join(f"{c} = excluded.{c}" for c in others)
    return f"{text} ON CONFLICT ({', '.join(keys)}) DO " + (f"UPDATE SET {update}" if update else "NOTHING")


_UPSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\).*?\bDO\s+UPDATE\s+SET\s+", re.IGNORECASE | re.DOTALL)


def _qualify_upsert(text: str) -> str:
    match = _UPSERT.match(text)
    if match is None:
        return text
    table = match.group(1)
    columns = [c.strip() for c in match.group(2).split(",") if c.strip()]
    bare = re.compile(r"(?<![\w.\"])(" + "|".join(map(re.escape, columns)) + r")\b(?!\s*=[^=])")
    head, tail = text[: match.end()], text[match.end():]
    parts = _STRING.split(tail)
    parts = [p if i % 2 else bare.sub(lambda m: f"{table}.{m.group(1)}", p) for i, p in enumerate(parts)]
    return head + "".join(parts)


def _placeholders(text: str) -> tuple[str, Style]:
    style: Style = "plain"
    parts = []
    for i, part in enumerate(_STRING.split(text)):
        if i % 2:  # a string literal: only % needs escaping
            parts.append(part.replace("%", "%%"))
            continue
        part = part.replace("%", "%%")

        def one(match: re.Match[str]) -> str:
            nonlocal style
            if match.group(1) is not None:
                style = "numbered"
                return f"%(p{match.group(1)})s"
            if match.group(2) is not None:
                style = "named"
                return f"%({match.group(2)})s"
            style = "positional"
            return "%s"

        parts.append(_PLACEHOLDER.sub(one, part))
    if style == "plain":  # run without parameters: psycopg then sends the text as it is, % and all
        return text, style
    return "".join(parts), style


def bind(style: Style, params: Any) -> Any:
    """Parameters in the shape :func:`to_postgres`'s text expects."""
    if style == "numbered":
        return {f"p{i}": value for i, value in enumerate(params, start=1)}
    if style == "plain":
        return None
    return params
