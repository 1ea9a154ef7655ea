-- One row per recurring job and period: the job of a period is enqueued once, however many
-- schedulers run and however often they tick (a done job frees its unique key).
CREATE TABLE recurring_runs (
    period_key TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
