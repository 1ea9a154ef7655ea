-- Payment provider webhook events already applied: the same event delivered twice has one effect.
CREATE TABLE provider_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
