-- ripple schema 5 on PostgreSQL, in one step: the tables of SQLite's migrations 0001-0005 (ripple/migrations/*.sql)
-- with the same names and columns. Differences: BIGINT for SQLite's 64-bit INTEGER; JSON stays TEXT so the stored
-- bytes are spliced into event frames unchanged; no WITHOUT ROWID. Later schema versions add a file here next to
-- SQLite's (same number). The version is kept in ripple_schema (SQLite keeps it in PRAGMA user_version).

CREATE TABLE ripple_schema (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    application_id  BIGINT  NOT NULL,
    version         INTEGER NOT NULL
);

CREATE TABLE events (
    seq         BIGINT  PRIMARY KEY,
    ts          BIGINT  NOT NULL,
    kind        TEXT    NOT NULL,
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    op          TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    old_value   TEXT,
    new_value   TEXT,
    meta        TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX events_scope_key_seq ON events (scope, key, seq);
CREATE INDEX events_scope_seq ON events (scope, seq);
CREATE INDEX events_scope_creates ON events (scope, seq) WHERE kind = 'state' AND event_type = 'created';
CREATE INDEX events_lifecycle ON events (scope, key, seq) WHERE kind = 'state' AND event_type IN ('created', 'deleted');

CREATE TABLE state (
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    last_seq    BIGINT  NOT NULL,
    created_seq BIGINT  NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX state_scope_created ON state (scope, created_seq);

CREATE TABLE projections (
    name        TEXT    PRIMARY KEY,
    version     BIGINT  NOT NULL,
    checkpoint  BIGINT  NOT NULL DEFAULT 0,
    status      TEXT    NOT NULL DEFAULT 'ok',
    error       TEXT,
    generation  BIGINT  NOT NULL DEFAULT 0,
    failed_at   BIGINT,
    folded_from BIGINT  NOT NULL DEFAULT 1
);

CREATE TABLE reactions (
    name        TEXT    PRIMARY KEY,
    cursor      BIGINT  NOT NULL
);

CREATE TABLE idempotency (
    actor        TEXT    NOT NULL DEFAULT '',
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    seq          BIGINT,
    result       TEXT    NOT NULL,
    created_ts   BIGINT  NOT NULL,
    PRIMARY KEY (actor, key)
);
CREATE INDEX idempotency_created ON idempotency (created_ts);

CREATE TABLE tokens (
    name        TEXT    PRIMARY KEY,
    hash        TEXT    NOT NULL UNIQUE,
    scopes      TEXT    NOT NULL DEFAULT '[]',
    streams     TEXT    NOT NULL DEFAULT '[]',
    admin       BIGINT  NOT NULL DEFAULT 0,
    worker      BIGINT  NOT NULL DEFAULT 0,
    created_ts  BIGINT  NOT NULL,
    expires_ts  BIGINT,
    revoked_ts  BIGINT
);

CREATE TABLE log_floor (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    earliest        BIGINT  NOT NULL,
    stream_earliest BIGINT  NOT NULL,
    compacted_ts    BIGINT  NOT NULL
);

CREATE TABLE log_base (
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    last_seq    BIGINT  NOT NULL,
    created_seq BIGINT  NOT NULL,
    ts          BIGINT  NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX log_base_scope_created ON log_base (scope, created_seq);
CREATE INDEX log_base_last ON log_base (last_seq);
