-- A sign-in is bound to the browser that started it (login and link CSRF): its state keeps the
-- hash of the random value of that browser's `keel_oauth_state` cookie. States started before
-- had none; they live minutes and are dropped.
DELETE FROM oauth_states;
ALTER TABLE oauth_states ADD COLUMN browser_hash TEXT NOT NULL DEFAULT '';

-- A signed-in account's linking, handed to its browser as a link to Keel's authorize route
-- (single use, minutes), where the browser gets its binding before going to the provider.
CREATE TABLE oauth_link_tokens (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    provider    TEXT NOT NULL,
    redirect_to TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX oauth_link_tokens_expiry ON oauth_link_tokens(expires_at);
