-- Real-time: tickets for clients that cannot send headers (EventSource, browser WebSocket),
-- and the order in which the relay published each event, which resume goes by.

-- A ticket is stored hashed and redeemed once, by whichever instance the client reaches.
CREATE TABLE realtime_tickets (
    hash             TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    session_id       TEXT NOT NULL,
    -- The access token that asked for the ticket expires then; so does what the ticket opens.
    token_expires_at TEXT NOT NULL,
    expires_at       TEXT NOT NULL
);
CREATE INDEX realtime_tickets_expiry ON realtime_tickets(expires_at);

-- Concurrent transactions can commit out of `seq` order, so the relay may publish a lower
-- `seq` after a higher one. `publish_seq` numbers events in the order they went to the bus.
ALTER TABLE events ADD COLUMN publish_seq INTEGER;
CREATE UNIQUE INDEX events_publish_seq ON events(publish_seq);
