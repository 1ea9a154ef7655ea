-- The double-entry ledger. An account's `balance` caches the sum of its entries (updated in the
-- transaction that inserts them; `keel ledger verify` checks it). A wallet can never go negative:
-- the CHECK refuses the update that would, whatever the concurrency, and the use case rolls back.
CREATE TABLE ledger_accounts (
    account    TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    balance    BIGINT NOT NULL CONSTRAINT ledger_wallet_not_negative CHECK (kind <> 'wallet' OR balance >= 0),
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE ledger_transactions (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    reference  TEXT,
    created_at TIMESTAMPTZ NOT NULL
);

-- Immutable: money is corrected by a new transaction, never by editing one.
CREATE TABLE ledger_entries (
    id             TEXT PRIMARY KEY,
    transaction_id TEXT NOT NULL REFERENCES ledger_transactions(id),
    account        TEXT NOT NULL REFERENCES ledger_accounts(account),
    amount         BIGINT NOT NULL,
    balance_after  BIGINT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX ledger_entries_by_account ON ledger_entries (account, id);
CREATE INDEX ledger_entries_by_transaction ON ledger_entries (transaction_id);

CREATE FUNCTION ledger_entries_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are immutable';
END;
$$;
CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries
FOR EACH ROW EXECUTE FUNCTION ledger_entries_immutable();

-- Idempotency keys of [idem] routes, per (user, route, key). In flight while `status` is NULL
-- (held until `locked_until`, then another request may take it over); done once the first
-- response (`status`, `body`) is stored, in the transaction of the request's effect.
CREATE TABLE idempotency_keys (
    user_id      TEXT NOT NULL,
    route        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    locked_until TIMESTAMPTZ NOT NULL,
    status       BIGINT,
    body         BYTEA,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, route, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
