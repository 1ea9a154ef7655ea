-- Catalog and stock. available = on_hand - reserved, never negative.
CREATE TABLE products (
    id          TEXT PRIMARY KEY,
    sku         TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    category    TEXT NOT NULL,
    price       BIGINT NOT NULL,
    on_hand     BIGINT NOT NULL,
    reserved    BIGINT NOT NULL,
    active      BOOLEAN NOT NULL,
    version     BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    CHECK (price >= 0 AND reserved >= 0 AND on_hand >= reserved)
);
CREATE INDEX products_by_created ON products(created_at, id);
CREATE INDEX products_by_price ON products(price, id);
CREATE INDEX products_by_name ON products(name, id);
CREATE INDEX products_by_category ON products(category, created_at, id);

-- Full-text search over name and description.
CREATE INDEX products_search ON products USING GIN (to_tsvector('simple', name || ' ' || description));

CREATE TABLE stock_movements (
    id         TEXT PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES products(id),
    delta      BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    actor      TEXT,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX stock_movements_product ON stock_movements(product_id, id);

CREATE TABLE stock_reservations (
    id         TEXT PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES products(id),
    quantity   BIGINT NOT NULL,
    state      TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX stock_reservations_expiry ON stock_reservations(state, expires_at);
