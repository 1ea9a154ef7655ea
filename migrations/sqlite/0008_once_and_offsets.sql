-- Jobs enqueued at most once per key, whatever happens to the job later: a recurring job's
-- period, a webhook delivery per (endpoint, event). (A unique key on a job holds only while
-- the job is live.)
CREATE TABLE enqueued_once (
    key        TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);

-- How far each durable subscriber got through the outbox, so one that stopped (or died)
-- catches up on what it missed when it starts.
CREATE TABLE subscriber_offsets (
    name          TEXT PRIMARY KEY,
    last_event_id TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

-- The durable subscribers start from what exists now rather than replaying it.
INSERT INTO subscriber_offsets (name, last_event_id, updated_at)
SELECT name, COALESCE((SELECT MAX(id) FROM events), ''), CURRENT_TIMESTAMP FROM (SELECT 'notifications' AS name UNION ALL SELECT 'webhooks') s;
