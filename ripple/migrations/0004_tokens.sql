-- ripple schema 4: access tokens, and idempotency keys per actor (DESIGN §15).
-- A token is stored only as the SHA-256 of its text; the text is shown once, by `ripple token create`.
-- Grant lists are JSON arrays of "PATTERN:r" / "PATTERN:rw" strings; times are unix epoch milliseconds.

CREATE TABLE tokens (
    name        TEXT    PRIMARY KEY,     -- the actor name its writes carry (meta.actor); never reused
    hash        TEXT    NOT NULL UNIQUE, -- hex SHA-256 of the token text
    scopes      TEXT    NOT NULL DEFAULT '[]',
    streams     TEXT    NOT NULL DEFAULT '[]',
    admin       INTEGER NOT NULL DEFAULT 0,
    worker      INTEGER NOT NULL DEFAULT 0,  -- may connect to the iii worker port
    created_ts  INTEGER NOT NULL,
    expires_ts  INTEGER,
    revoked_ts  INTEGER
);

-- Idempotency keys become per actor: two tokens may use the same key. '' is "no actor" (embedded writes).
CREATE TABLE idempotency_by_actor (
    actor        TEXT    NOT NULL DEFAULT '',
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    seq          INTEGER,
    result       TEXT    NOT NULL,
    created_ts   INTEGER NOT NULL,
    PRIMARY KEY (actor, key)
) WITHOUT ROWID;
INSERT INTO idempotency_by_actor (actor, key, request_hash, seq, result, created_ts)
    SELECT '', key, request_hash, seq, result, created_ts FROM idempotency;
DROP TABLE idempotency;
ALTER TABLE idempotency_by_actor RENAME TO idempotency;
CREATE INDEX idempotency_created ON idempotency (created_ts);
