-- Whether the provider verified an identity's email when it was linked: once the mailbox's owner
-- proves it (password reset, email verification), identities without that proof are removed
-- (reverse hijack). Identities linked before are not known to have it, so they count as without.
ALTER TABLE identities ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;
