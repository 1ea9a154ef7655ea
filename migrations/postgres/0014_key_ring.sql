-- The key ring: signing and field-encryption keys added by `keel keys rotate`, each sealed with the
-- key-encryption key from configuration and in use from `active_from` (a little after it was added,
-- so every instance has loaded it before any uses it). Keys are never removed: what they sealed
-- stays readable, and a signing key is simply no longer accepted once its tokens have expired.
CREATE TABLE key_ring (
    kid         TEXT PRIMARY KEY,
    purpose     TEXT NOT NULL CHECK (purpose IN ('signing', 'encryption')),
    sealed      TEXT NOT NULL,
    active_from TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
