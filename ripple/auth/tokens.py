"""Tokens (DESIGN §15): their text, their hash, and the ``tokens`` table.

A token is ``rpl_`` followed by 43 characters of URL-safe base64: 256 random bits from :func:`secrets.token_bytes`.
The database keeps only its SHA-256 (hex), so a copy of the file gives no working token; a 256-bit random secret needs
no slow hash (nothing to brute-force from a dictionary). Lookups go by hash, and the stored hash is then compared with
:func:`hmac.compare_digest`, so the comparison takes the same time whatever the guess.

The functions here take a ``sqlite3`` connection: the CLI (``ripple token create/list/revoke``) writes the table beside
a live server, and the server (:mod:`ripple.auth.book`) reads it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import sqlite3
import time
from typing import Any, Literal

import msgspec

from ripple.auth.grants import MAX_NAME_CHARS, Identity, parse_grant
from ripple.core.validate import validate_name
from ripple.errors import ConflictError, NotFoundError, ValidationError

PREFIX = "rpl_"
TOKEN_BYTES = 32
_DURATION = re.compile(r"^(\d{1,9})([smhdw])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}

Status = Literal["active", "expired", "revoked"]


def new_token() -> str:
    """A fresh token: ``rpl_`` + URL-safe base64 of 256 random bits (no padding)."""
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    """The hex SHA-256 of a token's text: what the database stores and lookups use."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_duration_ms(text: str) -> int:
    """``"30d"`` → milliseconds; units ``s``, ``m``, ``h``, ``d``, ``w``."""
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValidationError(f"a duration is a positive number with a unit s, m, h, d or w (e.g. 30d), not {text!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def now_ms() -> int:
    return int(time.time() * 1000)


class TokenRecord(msgspec.Struct, frozen=True):
    """A row of the ``tokens`` table, without its hash (what ``ripple token list`` prints)."""

    name: str
    scopes: list[str]
    streams: list[str]
    admin: bool
    worker: bool
    created_ts: int
    expires_ts: int | None
    revoked_ts: int | None
    status: Status

    def identity(self, token_id: str) -> Identity:
        return Identity(
            self.name,
            tuple(parse_grant(g) for g in self.scopes),
            tuple(parse_grant(g) for g in self.streams),
            self.admin,
            self.worker or self.admin,
            token_id,
            self.expires_ts,
        )


def status_of(expires_ts: int | None, revoked_ts: int | None, now: int) -> Status:
    if revoked_ts is not None:
        return "revoked"
    if expires_ts is not None and expires_ts <= now:
        return "expired"
    return "active"


_SELECT = "SELECT name, hash, scopes, streams, admin, worker, created_ts, expires_ts, revoked_ts FROM tokens"
_decode_list = msgspec.json.Decoder(list[str]).decode


def _record(row: tuple[Any, ...], now: int) -> tuple[str, TokenRecord]:
    name, digest, scopes, streams, admin, worker, created, expires, revoked = row
    record = TokenRecord(name, _decode_list(scopes), _decode_list(streams), bool(admin), bool(worker), created,
                         expires, revoked, status_of(expires, revoked, now))
    return digest, record


def read_tokens(conn: sqlite3.Connection, now: int | None = None) -> dict[str, TokenRecord]:
    """Every token, keyed by hash (the server's lookup table)."""
    at = now_ms() if now is None else now
    return dict(_record(row, at) for row in conn.execute(_SELECT + " ORDER BY created_ts, name"))


def create_token(
    conn: sqlite3.Connection,
    name: str,
    *,
    scopes: list[str] | tuple[str, ...] = (),
    streams: list[str] | tuple[str, ...] = (),
    admin: bool = False,
    worker: bool = False,
    expires_in_ms: int | None = None,
) -> tuple[str, TokenRecord]:
    """Create a token; returns its text (shown once, never stored) and its record."""
    validate_name("token name", name, MAX_NAME_CHARS, allow_slash=True)
    scope_grants = [str(parse_grant(g)) for g in scopes]
    stream_grants = [str(parse_grant(g)) for g in streams]
    if not (scope_grants or stream_grants or admin or worker):
        raise ValidationError("a token needs at least one grant: --allow, --stream, --worker or --admin")
    text = new_token()
    created = now_ms()
    expires = None if expires_in_ms is None else created + expires_in_ms
    encode = msgspec.json.encode
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM tokens WHERE name = ?", (name,)).fetchone() is not None:
            raise ConflictError(f"a token named {name!r} already exists (names are never reused: they name actors "
                                "in the log)", detail={"name": name})
        conn.execute(
            "INSERT INTO tokens (name, hash, scopes, streams, admin, worker, created_ts, expires_ts) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, token_hash(text), encode(scope_grants).decode(), encode(stream_grants).decode(), int(admin),
             int(worker), created, expires),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    record = TokenRecord(name, scope_grants, stream_grants, admin, worker, created, expires, None, "active")
    return text, record


def revoke_token(conn: sqlite3.Connection, name: str) -> TokenRecord:
    """Revoke a token by name (idempotent: a revoked token stays revoked at its first revocation time)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("SELECT revoked_ts FROM tokens WHERE name = ?", (name,)).fetchone()
        if found is None:
            raise NotFoundError(f"no token named {name!r}", detail={"name": name})
        if found[0] is None:
            conn.execute("UPDATE tokens SET revoked_ts = ? WHERE name = ?", (now_ms(), name))
        row = conn.execute(_SELECT + " WHERE name = ?", (name,)).fetchone()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return _record(row, now_ms())[1]

