-- One cart per user: its coupon and its lines.
CREATE TABLE carts (
    user_id     TEXT PRIMARY KEY REFERENCES users(id),
    coupon_code TEXT,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE cart_items (
    user_id    TEXT NOT NULL REFERENCES users(id),
    product_id TEXT NOT NULL REFERENCES products(id),
    quantity   BIGINT NOT NULL,
    added_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, product_id)
);
