//! SQL of products, stock movements and reservations.

use chrono::{DateTime, Utc};

use super::model::{NewProduct, Product, ProductFilter, ProductPatch, Sort};
use crate::events::Effects;
use crate::money::Money;
use crate::store::{Arg, Backend, Columns, Db, Sql, StoreError};

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

/// What an optimistic update found.
#[derive(Debug)]
pub enum Updated {
    Done(Product),
    NotFound,
    /// The product is at another version than the caller's `If-Match`.
    Stale,
}

/// What a stock adjustment found.
#[derive(Debug)]
pub enum Adjusted {
    Done(Product),
    NotFound,
    /// On hand would fall below what is reserved.
    BelowReserved {
        available: i64,
    },
}

/// How a reservation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Commit,
    Release,
}

/// Effects that depend on the product as it is after the change.
pub type ProductEffects<'a> = &'a (dyn Fn(&Product) -> Effects + Sync);

#[async_trait::async_trait]
pub trait CatalogRepo: Send + Sync {
    /// `Conflict` when the SKU is taken.
    async fn create(
        &self,
        id: &str,
        p: &NewProduct,
        now: DateTime<Utc>,
        actor: &str,
        effects: ProductEffects<'_>,
    ) -> Result<Product, StoreError>;
    async fn get(&self, id: &str) -> Result<Option<Product>, StoreError>;
    /// Up to `limit + 1` products after `after` (sort key, id) in `sort` order.
    async fn list(
        &self,
        filter: &ProductFilter,
        sort: Sort,
        after: Option<&(String, String)>,
        limit: u32,
    ) -> Result<Vec<Product>, StoreError>;
    async fn update(
        &self,
        id: &str,
        patch: &ProductPatch,
        if_version: Option<i64>,
        now: DateTime<Utc>,
        effects: ProductEffects<'_>,
    ) -> Result<Updated, StoreError>;
    async fn adjust_stock(
        &self,
        id: &str,
        delta: i64,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
        effects: ProductEffects<'_>,
    ) -> Result<Adjusted, StoreError>;
    /// Holds `quantity` units until `until`; `None` when fewer are available (or the product is inactive).
    async fn reserve(
        &self,
        product_id: &str,
        quantity: i64,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        effects: ProductEffects<'_>,
    ) -> Result<Option<String>, StoreError>;
    /// Settles a held reservation: committed (the units are sold and leave on hand) or
    /// released (they are available again). Returns the product, or `None` when the
    /// reservation was not held.
    async fn settle(
        &self,
        id: &str,
        outcome: Settle,
        now: DateTime<Utc>,
        effects: ProductEffects<'_>,
    ) -> Result<Option<Product>, StoreError>;
    /// Held reservations past their expiry.
    async fn expired(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError>;
}

pub struct SqlCatalog<DB: Backend> {
    db: Db<DB>,
    currency: String,
}

impl<DB: Backend> SqlCatalog<DB> {
    pub fn new(db: Db<DB>, currency: &str) -> Self {
        Self { db, currency: currency.to_owned() }
    }

    async fn fetch(&self, conn: &mut DB::Connection, id: &str) -> Result<Option<Product>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM products WHERE id = $1");
        let row = Sql::<DB>::assembled(sql).bind(id).fetch_optional(conn).await?;
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
    async fn create(
        &self,
        id: &str,
        p: &NewProduct,
        now: DateTime<Utc>,
        actor: &str,
        effects: ProductEffects<'_>,
    ) -> Result<Product, StoreError> {
        let mut tx = self.db.begin().await?;
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
        .execute(&mut tx)
        .await?;
        if p.stock != 0 {
            insert_movement::<DB>(&mut tx, id, p.stock, "initial stock", actor, now).await?;
        }
        let product = self.fetch(&mut tx, id).await?.ok_or_else(|| StoreError::Corrupt("product vanished".into()))?;
        effects(&product).apply_in::<DB>(&mut tx, now).await?;
        tx.commit().await?;
        Ok(product)
    }

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

    async fn update(
        &self,
        id: &str,
        p: &ProductPatch,
        if_version: Option<i64>,
        now: DateTime<Utc>,
        effects: ProductEffects<'_>,
    ) -> Result<Updated, StoreError> {
        let mut tx = self.db.begin().await?;
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
        .execute(&mut tx)
        .await?;
        if n == 0 {
            let exists = self.fetch(&mut tx, id).await?.is_some();
            return Ok(if exists { Updated::Stale } else { Updated::NotFound });
        }
        let product = self.fetch(&mut tx, id).await?.ok_or_else(|| StoreError::Corrupt("product vanished".into()))?;
        effects(&product).apply_in::<DB>(&mut tx, now).await?;
        tx.commit().await?;
        Ok(Updated::Done(product))
    }

    async fn adjust_stock(
        &self,
        id: &str,
        delta: i64,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
        effects: ProductEffects<'_>,
    ) -> Result<Adjusted, StoreError> {
        let mut tx = self.db.begin().await?;
        let n = Sql::<DB>::new(
            "UPDATE products SET on_hand = on_hand + $2, version = version + 1, updated_at = $3 WHERE id = $1 AND on_hand + $2 >= reserved",
        )
        .bind(id)
        .bind(delta)
        .bind(now)
        .execute(&mut tx)
        .await?;
        if n == 0 {
            return Ok(match self.fetch(&mut tx, id).await? {
                None => Adjusted::NotFound,
                Some(p) => Adjusted::BelowReserved { available: p.stock_available },
            });
        }
        insert_movement::<DB>(&mut tx, id, delta, reason, actor, now).await?;
        let product = self.fetch(&mut tx, id).await?.ok_or_else(|| StoreError::Corrupt("product vanished".into()))?;
        effects(&product).apply_in::<DB>(&mut tx, now).await?;
        tx.commit().await?;
        Ok(Adjusted::Done(product))
    }

    async fn reserve(
        &self,
        product_id: &str,
        quantity: i64,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        effects: ProductEffects<'_>,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.db.begin().await?;
        // The conditional update is atomic on both backends: concurrent reservations can
        // never take more than is available.
        let n = Sql::<DB>::new("UPDATE products SET reserved = reserved + $2 WHERE id = $1 AND active = TRUE AND on_hand - reserved >= $2")
            .bind(product_id)
            .bind(quantity)
            .execute(&mut tx)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        let id = crate::ids::new("rsv");
        Sql::<DB>::new(
            "INSERT INTO stock_reservations (id, product_id, quantity, state, expires_at, created_at) VALUES ($1, $2, $3, 'held', $4, $5)",
        )
        .bind(id.as_str())
        .bind(product_id)
        .bind(quantity)
        .bind(until)
        .bind(now)
        .execute(&mut tx)
        .await?;
        let product = self.fetch(&mut tx, product_id).await?.ok_or_else(|| StoreError::Corrupt("product vanished".into()))?;
        effects(&product).apply_in::<DB>(&mut tx, now).await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    async fn settle(
        &self,
        id: &str,
        outcome: Settle,
        now: DateTime<Utc>,
        effects: ProductEffects<'_>,
    ) -> Result<Option<Product>, StoreError> {
        let state = match outcome {
            Settle::Commit => "committed",
            Settle::Release => "released",
        };
        let mut tx = self.db.begin().await?;
        let row =
            Sql::<DB>::new("UPDATE stock_reservations SET state = $2 WHERE id = $1 AND state = 'held' RETURNING product_id, quantity")
                .bind(id)
                .bind(state)
                .fetch_optional(&mut tx)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let (product_id, quantity) = (row.text("product_id")?, row.int("quantity")?);
        let sold = if outcome == Settle::Commit { quantity } else { 0 };
        Sql::<DB>::new("UPDATE products SET reserved = reserved - $2, on_hand = on_hand - $3 WHERE id = $1")
            .bind(product_id.as_str())
            .bind(quantity)
            .bind(sold)
            .execute(&mut tx)
            .await?;
        let product = self.fetch(&mut tx, &product_id).await?.ok_or_else(|| StoreError::Corrupt("product vanished".into()))?;
        effects(&product).apply_in::<DB>(&mut tx, now).await?;
        tx.commit().await?;
        Ok(Some(product))
    }

    async fn expired(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new("SELECT id FROM stock_reservations WHERE state = 'held' AND expires_at <= $1")
            .bind(now)
            .fetch_all(&mut conn)
            .await?;
        rows.iter().map(|r| r.text("id")).collect()
    }
}

async fn insert_movement<DB: Backend>(
    conn: &mut DB::Connection,
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
        .execute(conn)
        .await?;
    Ok(())
}
