-- Pricing rules, and one version counter for all of them (quotes carry it).
CREATE TABLE pricing_rules (
    id         TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE pricing_state (
    id            BIGINT PRIMARY KEY,
    rules_version BIGINT NOT NULL
);
INSERT INTO pricing_state (id, rules_version) VALUES (1, 1);
