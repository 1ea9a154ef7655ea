-- Durable jobs and the transactional outbox.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    queue        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    priority     INTEGER NOT NULL,
    state        TEXT NOT NULL,
    run_at       TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    unique_key   TEXT,
    lease_until  TEXT,
    worker_id    TEXT,
    last_error   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    finished_at  TEXT
);
CREATE UNIQUE INDEX jobs_unique_live ON jobs(unique_key) WHERE unique_key IS NOT NULL AND state NOT IN ('done', 'dead');
CREATE INDEX jobs_claim ON jobs(queue, state, run_at);
CREATE INDEX jobs_lease ON jobs(state, lease_until);

CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    user_id      TEXT,
    data         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    published_at TEXT
);
CREATE INDEX events_unpublished ON events(published_at, seq);
