-- Orders keep their own copy of prices and adjustments at checkout: later price changes do not touch them.
CREATE TABLE orders (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users(id),
    status           TEXT NOT NULL,
    currency         TEXT NOT NULL,
    subtotal         BIGINT NOT NULL,
    total            BIGINT NOT NULL,
    adjustments      TEXT NOT NULL,
    shipping_address TEXT,
    payment_method   TEXT NOT NULL,
    payment_status   TEXT NOT NULL,
    provider_ref     TEXT,
    refunded         BIGINT NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= total),
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    version          BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX orders_user_created ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_created ON orders (created_at DESC, id DESC);

-- A line as sold; `reservation_id` is the stock hold checkout took for it.
CREATE TABLE order_lines (
    order_id       TEXT NOT NULL REFERENCES orders(id),
    position       BIGINT NOT NULL,
    product_id     TEXT NOT NULL REFERENCES products(id),
    name           TEXT NOT NULL,
    quantity       BIGINT NOT NULL,
    unit_price     BIGINT NOT NULL,
    line_total     BIGINT NOT NULL,
    reservation_id TEXT NOT NULL,
    PRIMARY KEY (order_id, position)
);
