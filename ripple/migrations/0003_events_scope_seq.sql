-- Catch-up filtered by scope (subscriptions, read_events, log --scope) reads one scope's events in offset order.
-- Without this index SQLite used (scope, key, seq) and sorted every page: a paged catch-up became quadratic.
CREATE INDEX events_scope_seq ON events (scope, seq);
