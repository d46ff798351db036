-- ripple schema 1: the log, the current-state projection, checkpoints, cursors, idempotency records.
-- Column names avoid SQL reserved words (the log's offset is `seq`) so the same tables serve PostgreSQL.

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,     -- the event's offset: global, gapless, increasing in commit order
    ts          INTEGER NOT NULL,        -- commit time, unix epoch milliseconds
    kind        TEXT    NOT NULL,        -- 'state' | 'stream'
    scope       TEXT    NOT NULL,        -- state scope, or stream name
    key         TEXT    NOT NULL,        -- state key, or stream group id
    op          TEXT    NOT NULL,        -- 'set' | 'update' | 'delete' | 'send'
    event_type  TEXT    NOT NULL,        -- 'created' | 'updated' | 'deleted' | the stream message type
    version     INTEGER NOT NULL,
    old_value   TEXT,                    -- JSON; NULL = absent
    new_value   TEXT,                    -- JSON; NULL = absent
    meta        TEXT    NOT NULL DEFAULT '{}'
);
-- time travel (a key as of an offset) and catch-up filtered by scope
CREATE INDEX events_scope_key_seq ON events (scope, key, seq);

CREATE TABLE state (
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,        -- JSON
    version     INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,        -- the key's last event: its offset and concurrency token
    created_seq INTEGER NOT NULL,        -- the create event of this incarnation: list order
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX state_scope_created ON state (scope, created_seq);

CREATE TABLE projections (
    name        TEXT    PRIMARY KEY,
    version     INTEGER NOT NULL,
    checkpoint  INTEGER NOT NULL DEFAULT 0,
    status      TEXT    NOT NULL DEFAULT 'ok',
    error       TEXT
);

CREATE TABLE reactions (
    name        TEXT    PRIMARY KEY,
    cursor      INTEGER NOT NULL
);

CREATE TABLE idempotency (
    key          TEXT    PRIMARY KEY,
    request_hash TEXT    NOT NULL,
    seq          INTEGER,
    result       TEXT    NOT NULL,
    created_ts   INTEGER NOT NULL
);
CREATE INDEX idempotency_created ON idempotency (created_ts);
