-- Passkeys (WebAuthn credentials) and the state of their ceremonies (register, login).
CREATE TABLE passkeys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id),
    -- The raw credential id in URL-safe base64: one account per credential.
    credential_id TEXT NOT NULL UNIQUE,
    -- webauthn-rs's Passkey as JSON: the public key, counter and flags.
    credential    TEXT NOT NULL,
    -- The authenticator's signature counter, kept in a column so the update can refuse a step back.
    sign_count    INTEGER NOT NULL,
    name          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT
);
CREATE INDEX passkeys_user ON passkeys(user_id, id);

-- A ceremony between its start and its finish: single use, expires after 5 minutes.
CREATE TABLE passkey_challenges (
    id         TEXT PRIMARY KEY,
    ceremony   TEXT NOT NULL,
    -- The account a registration is for (NULL for a login).
    user_id    TEXT REFERENCES users(id),
    -- webauthn-rs's ceremony state as JSON (with the challenge).
    state      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX passkey_challenges_expiry ON passkey_challenges(expires_at);
