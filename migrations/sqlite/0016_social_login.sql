-- Social login: identities at OAuth 2.0 / OpenID Connect providers, the single-use state of a
-- sign-in in progress, and the one-time login codes a finished sign-in hands to the app.
CREATE TABLE identities (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    provider   TEXT NOT NULL,
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    email      TEXT,
    created_at TEXT NOT NULL,
    CONSTRAINT identities_issuer_subject_key UNIQUE (issuer, subject)
);
CREATE INDEX identities_user ON identities(user_id, id);

CREATE TABLE oauth_states (
    state_hash    TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    verifier_enc  TEXT NOT NULL,
    nonce_hash    TEXT NOT NULL,
    redirect_to   TEXT NOT NULL,
    link_user_id  TEXT REFERENCES users(id),
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    used_at       TEXT
);
CREATE INDEX oauth_states_expiry ON oauth_states(expires_at);

CREATE TABLE login_codes (
    code_hash  TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT,
    -- Refused second factors so far: each gives the code back, up to a bound.
    attempts   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX login_codes_expiry ON login_codes(expires_at);
