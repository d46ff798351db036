-- ripple schema 5: retention (compaction) and time travel that costs O(page).
--
-- Compaction removes the events below a floor after folding them into `log_base`: the state as of offset
-- `earliest - 1`, one row per key alive then (the same columns as `state`). Time travel, verify, replay, export and
-- projection rebuilds read the base first and the remaining events after it. Offsets are never renumbered.
CREATE TABLE log_floor (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    earliest        INTEGER NOT NULL,    -- the first offset kept; every event below it is folded into log_base
    stream_earliest INTEGER NOT NULL,    -- stream events below this offset are gone as well (>= earliest)
    compacted_ts    INTEGER NOT NULL     -- when a floor last moved, unix epoch milliseconds
);

CREATE TABLE log_base (
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,        -- JSON
    version     INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,        -- the key's last event before the floor
    created_seq INTEGER NOT NULL,        -- the create event of that incarnation (may itself be compacted)
    ts          INTEGER NOT NULL,        -- the commit time of that last event
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX log_base_scope_created ON log_base (scope, created_seq);  -- a scope as of an offset, in list order
CREATE INDEX log_base_last ON log_base (last_seq);                     -- the base as events, in offset order

-- A scope as of an offset, one page at a time: walk the creates after the page cursor in offset order, and keep a
-- create when it is its key's last create-or-delete at that offset (one seek in the second index).
CREATE INDEX events_scope_creates ON events (scope, seq) WHERE kind = 'state' AND event_type = 'created';
CREATE INDEX events_lifecycle ON events (scope, key, seq) WHERE kind = 'state' AND event_type IN ('created', 'deleted');

-- Where a projection's fold started: 1 = the whole log; F = the base at floor F (a rebuild after compaction). A
-- projection folded from before the floor holds history the log no longer has (metrics counts every update ever
-- made), so `verify` compares it with a fresh fold only once a rebuild has started it from the same base.
ALTER TABLE projections ADD COLUMN folded_from INTEGER NOT NULL DEFAULT 1;
