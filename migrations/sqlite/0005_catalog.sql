-- Catalog and stock. available = on_hand - reserved, never negative.
CREATE TABLE products (
    id          TEXT PRIMARY KEY,
    sku         TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    category    TEXT NOT NULL,
    price       INTEGER NOT NULL,
    on_hand     INTEGER NOT NULL,
    reserved    INTEGER NOT NULL,
    active      INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    CHECK (price >= 0 AND reserved >= 0 AND on_hand >= reserved)
);
CREATE INDEX products_by_created ON products(created_at, id);
CREATE INDEX products_by_price ON products(price, id);
CREATE INDEX products_by_name ON products(name, id);
CREATE INDEX products_by_category ON products(category, created_at, id);

-- Full-text search over name and description, kept in step by triggers.
CREATE VIRTUAL TABLE products_fts USING fts5(name, description, content='products', content_rowid='rowid');
CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
    INSERT INTO products_fts(rowid, name, description) VALUES (new.rowid, new.name, new.description);
END;
CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
    INSERT INTO products_fts(products_fts, rowid, name, description) VALUES ('delete', old.rowid, old.name, old.description);
END;
CREATE TRIGGER products_fts_update AFTER UPDATE OF name, description ON products BEGIN
    INSERT INTO products_fts(products_fts, rowid, name, description) VALUES ('delete', old.rowid, old.name, old.description);
    INSERT INTO products_fts(rowid, name, description) VALUES (new.rowid, new.name, new.description);
END;

CREATE TABLE stock_movements (
    id         TEXT PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES products(id),
    delta      INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    actor      TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX stock_movements_product ON stock_movements(product_id, id);

CREATE TABLE stock_reservations (
    id         TEXT PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES products(id),
    quantity   INTEGER NOT NULL,
    state      TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX stock_reservations_expiry ON stock_reservations(state, expires_at);
