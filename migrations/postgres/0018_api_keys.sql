-- API keys for servers. Only a keyed hash of each key is kept (`secret_hash`); `prefix` is the
-- beginning that the listing shows. A rotated key names its successor (`rotated_to`) and keeps
-- working until its shortened `expires_at`; a revoked key is refused from `revoked_at` on.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,
    created_by   TEXT NOT NULL REFERENCES users(id),
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    rotated_to   TEXT,
    revoked_at   TIMESTAMPTZ
);
