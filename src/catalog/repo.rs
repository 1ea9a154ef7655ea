//! SQL of products, stock movements and reservations.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::model::{NewProduct, Product, ProductFilter, ProductPatch, Sort};
use crate::money::Money;
use crate::store::{Arg, Backend, Build, Columns, Db, Sql, Store, StoreError, Tx};

const COLUMNS: &str = "id, sku, name, description, category, price, on_hand, reserved, active, version, created_at, updated_at";

fn product_from<R: Columns>(r: &R, currency: &str) -> Result<Product, StoreError> {
    Ok(Product {
        id: r.text("id")?,
        sku: r.text("sku")?,
        name: r.text("name")?,
        description: r.text("description")?,
        category: r.text("category")?,
        price: Money::new(r.int("price")?, currency),
        stock_available: r.int("on_hand")? - r.int("reserved")?,
        active: r.flag("active")?,
        version: r.int("version")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// How a reservation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Commit,
    Release,
}

/// The SQL of products, stock and reservations. Reads use the reader pool; every write is one
/// step of the caller's unit of work.
#[async_trait::async_trait]
pub trait CatalogRepo: Send + Sync {
    async fn get(&self, id: &str) -> Result<Option<Product>, StoreError>;
    /// Up to `limit + 1` products after `after` (sort key, id) in `sort` order.
    async fn list(
        &self,
        filter: &ProductFilter,
        sort: Sort,
        after: Option<&(String, String)>,
        limit: u32,
    ) -> Result<Vec<Product>, StoreError>;
    /// Held reservations past their expiry.
    async fn expired(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError>;

    /// The product as this transaction sees it (after its own writes).
    async fn product_in(&self, tx: &mut Tx, id: &str) -> Result<Option<Product>, StoreError>;
    /// Like `product_in`, with the row locked until the unit of work ends (a no-op update locks
    /// it on PostgreSQL; SQLite's one writer holds the database already).
    async fn lock(&self, tx: &mut Tx, id: &str) -> Result<Option<Product>, StoreError>;
    /// A new active product at version 1 with `p.stock` on hand; `Conflict` on `unique::PRODUCT_SKU`.
    async fn insert(&self, tx: &mut Tx, id: &str, p: &NewProduct, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Applies `patch` and moves to the next version, if the product is at `if_version` (when
    /// given); false when no product matched.
    async fn update(
        &self,
        tx: &mut Tx,
        id: &str,
        patch: &ProductPatch,
        if_version: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Adds `delta` units on hand unless that would leave fewer than are reserved; false then
    /// (or when there is no such product).
    async fn add_on_hand(&self, tx: &mut Tx, id: &str, delta: i64, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Logs a change of stock on hand (the audit trail of stock).
    async fn record_movement(
        &self,
        tx: &mut Tx,
        product_id: &str,
        delta: i64,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Reserves `quantity` units of an active product if that many are available, and returns
    /// the product as it is then; `None` otherwise. The conditional update is atomic on both
    /// backends: concurrent holds never take more than is available.
    async fn hold(&self, tx: &mut Tx, product_id: &str, quantity: i64) -> Result<Option<Product>, StoreError>;
    /// Takes `quantity` available units off hand at once; `None` when fewer are available.
    async fn sell(&self, tx: &mut Tx, product_id: &str, quantity: i64) -> Result<Option<Product>, StoreError>;
    /// Records a reservation held until `until`, or (`None`) one committed as it is made.
    async fn insert_reservation(
        &self,
        tx: &mut Tx,
        id: &str,
        product_id: &str,
        quantity: i64,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Ends a held reservation; its (product id, quantity), or `None` when it was not held.
    async fn end_reservation(&self, tx: &mut Tx, id: &str, outcome: Settle) -> Result<Option<(String, i64)>, StoreError>;
    /// Gives back `quantity` reserved units, of which `sold` leave on hand, and returns the
    /// product as it is then (`None` when there is no such product).
    async fn unhold(&self, tx: &mut Tx, product_id: &str, quantity: i64, sold: i64) -> Result<Option<Product>, StoreError>;
}

/// The catalog repository of `store`'s backend, showing prices in `currency`.
pub fn for_store(store: &Store, currency: &str) -> Arc<dyn CatalogRepo> {
    struct Catalog<'a>(&'a str);
    impl Build for Catalog<'_> {
        type Output = Arc<dyn CatalogRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlCatalog { db, currency: self.0.to_owned() })
        }
    }
    store.build(Catalog(currency))
}

struct SqlCatalog<DB: Backend> {
    db: Db<DB>,
    currency: String,
}

impl<DB: Backend> SqlCatalog<DB> {
    async fn fetch(&self, conn: &mut DB::Connection, id: &str) -> Result<Option<Product>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM products WHERE id = $1");
        let row = Sql::<DB>::assembled(sql).bind(id).fetch_optional(conn).await?;
        row.map(|r| product_from(&r, &self.currency)).transpose()
    }

    /// Runs a stock update ending in `RETURNING` the product's columns: the product as the
    /// update left it, without reading it again.
    async fn update_returning(&self, conn: &mut DB::Connection, sql: Sql<DB>) -> Result<Option<Product>, StoreError> {
        let row = sql.fetch_optional(conn).await?;
        row.map(|r| product_from(&r, &self.currency)).transpose()
    }
}

impl Sort {
    /// (keyset predicate on `$5`/`$6`, ORDER BY) for this order.
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            Sort::CreatedAsc => ("(created_at, id) > ($5, $6)", "created_at, id"),
            Sort::CreatedDesc => ("(created_at, id) < ($5, $6)", "created_at DESC, id DESC"),
            Sort::PriceAsc => ("(price, id) > ($5, $6)", "price, id"),
            Sort::PriceDesc => ("(price, id) < ($5, $6)", "price DESC, id DESC"),
            Sort::Name => ("(name, id) > ($5, $6)", "name, id"),
        }
    }

    /// The cursor's sort key as a typed value; `None` when it does not parse.
    fn bind_key(self, key: Option<&str>) -> Option<Arg> {
        Some(match self {
            Sort::CreatedAsc | Sort::CreatedDesc => {
                Arg::Time(key.map(|k| DateTime::parse_from_rfc3339(k).map(|t| t.to_utc())).transpose().ok()?)
            }
            Sort::PriceAsc | Sort::PriceDesc => Arg::Int(key.map(str::parse).transpose().ok()?),
            Sort::Name => Arg::Text(key.map(str::to_owned)),
        })
    }
}

#[async_trait::async_trait]
impl<DB: Backend> CatalogRepo for SqlCatalog<DB> {
    async fn get(&self, id: &str) -> Result<Option<Product>, StoreError> {
        let mut conn = self.db.reader().await?;
        self.fetch(&mut conn, id).await
    }

    async fn list(&self, f: &ProductFilter, sort: Sort, after: Option<&(String, String)>, limit: u32) -> Result<Vec<Product>, StoreError> {
        let (keyset, order) = sort.sql();
        let sql = format!(
            "SELECT {COLUMNS} FROM products WHERE active = TRUE AND ($1 IS NULL OR category = $1) AND ($2 IS NULL OR price >= $2) \
             AND ($3 IS NULL OR price <= $3) AND ($4 IS NULL OR {search}) AND ($6 IS NULL OR {keyset}) ORDER BY {order} LIMIT $7",
            search = DB::PRODUCT_SEARCH,
        );
        let key = sort.bind_key(after.map(|(k, _)| k.as_str())).ok_or_else(|| StoreError::Corrupt("cursor key".into()))?;
        let words = (!f.words.is_empty()).then(|| DB::search_query(&f.words));
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::assembled(sql)
            .bind(f.category.clone())
            .bind(f.min_price)
            .bind(f.max_price)
            .bind(words)
            .bind(key)
            .bind(after.map(|(_, id)| id.clone()))
            .bind(i64::from(limit) + 1)
            .fetch_all(&mut conn)
            .await?;
        rows.iter().map(|r| product_from(r, &self.currency)).collect()
    }

    async fn expired(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new("SELECT id FROM stock_reservations WHERE state = 'held' AND expires_at <= $1")
            .bind(now)
            .fetch_all(&mut conn)
            .await?;
        rows.iter().map(|r| r.text("id")).collect()
    }

    async fn product_in(&self, tx: &mut Tx, id: &str) -> Result<Option<Product>, StoreError> {
        self.fetch(tx.conn::<DB>()?, id).await
    }

    async fn lock(&self, tx: &mut Tx, id: &str) -> Result<Option<Product>, StoreError> {
        let conn = tx.conn::<DB>()?;
        Sql::<DB>::new("UPDATE products SET version = version WHERE id = $1").bind(id).execute(&mut *conn).await?;
        self.fetch(conn, id).await
    }

    async fn insert(&self, tx: &mut Tx, id: &str, p: &NewProduct, now: DateTime<Utc>) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "INSERT INTO products (id, sku, name, description, category, price, on_hand, reserved, active, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, TRUE, 1, $8, $8)",
        )
        .bind(id)
        .bind(p.sku.as_str())
        .bind(p.name.as_str())
        .bind(p.description.as_str())
        .bind(p.category.as_str())
        .bind(p.price)
        .bind(p.stock)
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }

    async fn update(
        &self,
        tx: &mut Tx,
        id: &str,
        p: &ProductPatch,
        if_version: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new(
            "UPDATE products SET name = COALESCE($3, name), description = COALESCE($4, description), category = COALESCE($5, category), \
             price = COALESCE($6, price), active = COALESCE($7, active), version = version + 1, updated_at = $8 \
             WHERE id = $1 AND ($2 IS NULL OR version = $2)",
        )
        .bind(id)
        .bind(if_version)
        .bind(p.name.clone())
        .bind(p.description.clone())
        .bind(p.category.clone())
        .bind(p.price)
        .bind(p.active)
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(n == 1)
    }

    async fn add_on_hand(&self, tx: &mut Tx, id: &str, delta: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new(
            "UPDATE products SET on_hand = on_hand + $2, version = version + 1, updated_at = $3 WHERE id = $1 AND on_hand + $2 >= reserved",
        )
        .bind(id)
        .bind(delta)
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(n == 1)
    }

    async fn record_movement(
        &self,
        tx: &mut Tx,
        product_id: &str,
        delta: i64,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Sql::<DB>::new("INSERT INTO stock_movements (id, product_id, delta, reason, actor, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(crate::ids::new("stm"))
            .bind(product_id)
            .bind(delta)
            .bind(reason)
            .bind(actor)
            .bind(now)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(())
    }

    async fn hold(&self, tx: &mut Tx, product_id: &str, quantity: i64) -> Result<Option<Product>, StoreError> {
        let sql = format!(
            "UPDATE products SET reserved = reserved + $2 WHERE id = $1 AND active = TRUE AND on_hand - reserved >= $2 RETURNING {COLUMNS}"
        );
        self.update_returning(tx.conn::<DB>()?, Sql::<DB>::assembled(sql).bind(product_id).bind(quantity)).await
    }

    async fn sell(&self, tx: &mut Tx, product_id: &str, quantity: i64) -> Result<Option<Product>, StoreError> {
        let sql = format!(
            "UPDATE products SET on_hand = on_hand - $2 WHERE id = $1 AND active = TRUE AND on_hand - reserved >= $2 RETURNING {COLUMNS}"
        );
        self.update_returning(tx.conn::<DB>()?, Sql::<DB>::assembled(sql).bind(product_id).bind(quantity)).await
    }

    async fn insert_reservation(
        &self,
        tx: &mut Tx,
        id: &str,
        product_id: &str,
        quantity: i64,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "INSERT INTO stock_reservations (id, product_id, quantity, state, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(product_id)
        .bind(quantity)
        .bind(if until.is_some() { "held" } else { "committed" })
        .bind(until.unwrap_or(now))
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }

    async fn end_reservation(&self, tx: &mut Tx, id: &str, outcome: Settle) -> Result<Option<(String, i64)>, StoreError> {
        let state = match outcome {
            Settle::Commit => "committed",
            Settle::Release => "released",
        };
        let row =
            Sql::<DB>::new("UPDATE stock_reservations SET state = $2 WHERE id = $1 AND state = 'held' RETURNING product_id, quantity")
                .bind(id)
                .bind(state)
                .fetch_optional(tx.conn::<DB>()?)
                .await?;
        row.map(|r| Ok((r.text("product_id")?, r.int("quantity")?))).transpose()
    }

    async fn unhold(&self, tx: &mut Tx, product_id: &str, quantity: i64, sold: i64) -> Result<Option<Product>, StoreError> {
        let sql = format!("UPDATE products SET reserved = reserved - $2, on_hand = on_hand - $3 WHERE id = $1 RETURNING {COLUMNS}");
        self.update_returning(tx.conn::<DB>()?, Sql::<DB>::assembled(sql).bind(product_id).bind(quantity).bind(sold)).await
    }
}
