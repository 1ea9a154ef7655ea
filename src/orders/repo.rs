//! SQL of orders and their lines. Reads use the reader pool; every write is one step of the
//! caller's unit of work.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::model::OrderStatus;
use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx, placeholders};

/// A line as sold: the product's name and price copied at checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRow {
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
    /// The stock hold checkout took for this line.
    pub reservation_id: String,
}

/// An order as stored (amounts in minor units of `currency`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: String,
    pub user_id: String,
    pub status: OrderStatus,
    pub currency: String,
    pub subtotal: i64,
    pub total: i64,
    /// The cart's adjustments at checkout, as JSON.
    pub adjustments: String,
    pub shipping_address: Option<String>,
    pub payment_method: String,
    pub payment_status: String,
    pub provider_ref: Option<String>,
    pub refunded: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub lines: Vec<LineRow>,
}

/// Which orders a list shows.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub user_id: Option<String>,
    pub status: Option<OrderStatus>,
}

#[async_trait::async_trait]
pub trait OrderRepo: Send + Sync {
    async fn get(&self, id: &str) -> Result<Option<OrderRow>, StoreError>;
    /// Newest first (ids are time-ordered), after the cursor id.
    async fn list(&self, filter: &OrderFilter, after: Option<&str>, limit: u32) -> Result<Vec<OrderRow>, StoreError>;
    async fn insert(&self, tx: &mut Tx, order: &OrderRow) -> Result<(), StoreError>;
    /// Reads the order and locks its row for the rest of the transaction, so two use cases on
    /// one order (a refund racing a refund, a cancel racing a settlement) run one after the other.
    async fn lock(&self, tx: &mut Tx, id: &str) -> Result<Option<OrderRow>, StoreError>;
    /// Writes the state the service computed for a locked order.
    async fn update(&self, tx: &mut Tx, order: &OrderRow) -> Result<(), StoreError>;
    /// Records a provider webhook event as applied; false when it already was.
    async fn record_provider_event(&self, tx: &mut Tx, id: &str, kind: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Orders placed at or after `since`, and what those that were paid brought in net of refunds.
    async fn sales_since(&self, since: DateTime<Utc>) -> Result<Sales, StoreError>;
}

/// Orders placed in a period and their takings (minor units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sales {
    pub orders: i64,
    pub revenue: i64,
}

/// The order repository of `store`'s backend.
pub fn for_store(store: &Store) -> Arc<dyn OrderRepo> {
    struct Orders;
    impl Build for Orders {
        type Output = Arc<dyn OrderRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlOrders { db })
        }
    }
    store.build(Orders)
}

struct SqlOrders<DB: Backend> {
    db: Db<DB>,
}

const COLUMNS: &str = "id, user_id, status, currency, subtotal, total, adjustments, shipping_address, payment_method, \
                       payment_status, provider_ref, refunded, created_at, updated_at, version";

fn order_from<R: Columns>(r: &R) -> Result<OrderRow, StoreError> {
    let status = r.text("status")?;
    Ok(OrderRow {
        id: r.text("id")?,
        user_id: r.text("user_id")?,
        status: OrderStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("order status {status}")))?,
        currency: r.text("currency")?,
        subtotal: r.int("subtotal")?,
        total: r.int("total")?,
        adjustments: r.text("adjustments")?,
        shipping_address: r.opt_text("shipping_address")?,
        payment_method: r.text("payment_method")?,
        payment_status: r.text("payment_status")?,
        provider_ref: r.opt_text("provider_ref")?,
        refunded: r.int("refunded")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        version: r.int("version")?,
        lines: Vec::new(),
    })
}

async fn lines_of<DB: Backend>(conn: &mut DB::Connection, order: &mut OrderRow) -> Result<(), StoreError> {
    let rows = Sql::<DB>::new(
        "SELECT product_id, name, quantity, unit_price, line_total, reservation_id FROM order_lines \
         WHERE order_id = $1 ORDER BY position",
    )
    .bind(order.id.as_str())
    .fetch_all(conn)
    .await?;
    order.lines = rows
        .iter()
        .map(|r| {
            Ok(LineRow {
                product_id: r.text("product_id")?,
                name: r.text("name")?,
                quantity: r.int("quantity")?,
                unit_price: r.int("unit_price")?,
                line_total: r.int("line_total")?,
                reservation_id: r.text("reservation_id")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(())
}

#[async_trait::async_trait]
impl<DB: Backend> OrderRepo for SqlOrders<DB> {
    async fn get(&self, id: &str) -> Result<Option<OrderRow>, StoreError> {
        let mut conn = self.db.reader().await?;
        let row = Sql::<DB>::assembled(format!("SELECT {COLUMNS} FROM orders WHERE id = $1")).bind(id).fetch_optional(&mut conn).await?;
        let Some(row) = row else { return Ok(None) };
        let mut order = order_from(&row)?;
        lines_of::<DB>(&mut conn, &mut order).await?;
        Ok(Some(order))
    }

    async fn list(&self, filter: &OrderFilter, after: Option<&str>, limit: u32) -> Result<Vec<OrderRow>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::assembled(format!(
            "SELECT {COLUMNS} FROM orders WHERE ($1 IS NULL OR id < $1) AND ($2 IS NULL OR user_id = $2) \
             AND ($3 IS NULL OR status = $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(after.map(str::to_owned))
        .bind(filter.user_id.clone())
        .bind(filter.status.map(|s| s.as_str().to_owned()))
        .bind(i64::from(limit))
        .fetch_all(&mut conn)
        .await?;
        let mut orders = rows.iter().map(order_from).collect::<Result<Vec<_>, _>>()?;
        for order in &mut orders {
            lines_of::<DB>(&mut conn, order).await?;
        }
        Ok(orders)
    }

    async fn insert(&self, tx: &mut Tx, o: &OrderRow) -> Result<(), StoreError> {
        let conn = tx.conn::<DB>()?;
        Sql::<DB>::assembled(format!(
            "INSERT INTO orders ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(o.id.as_str())
        .bind(o.user_id.as_str())
        .bind(o.status.as_str())
        .bind(o.currency.as_str())
        .bind(o.subtotal)
        .bind(o.total)
        .bind(o.adjustments.as_str())
        .bind(o.shipping_address.clone())
        .bind(o.payment_method.as_str())
        .bind(o.payment_status.as_str())
        .bind(o.provider_ref.clone())
        .bind(o.refunded)
        .bind(o.created_at)
        .bind(o.updated_at)
        .bind(o.version)
        .execute(&mut *conn)
        .await?;
        for (position, line) in o.lines.iter().enumerate() {
            Sql::<DB>::new(
                "INSERT INTO order_lines (order_id, position, product_id, name, quantity, unit_price, line_total, reservation_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(o.id.as_str())
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(line.product_id.as_str())
            .bind(line.name.as_str())
            .bind(line.quantity)
            .bind(line.unit_price)
            .bind(line.line_total)
            .bind(line.reservation_id.as_str())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    async fn lock(&self, tx: &mut Tx, id: &str) -> Result<Option<OrderRow>, StoreError> {
        let conn = tx.conn::<DB>()?;
        // A no-op update takes the row lock on PostgreSQL (SQLite's writer already holds the database).
        let row = Sql::<DB>::assembled(format!("UPDATE orders SET version = version WHERE id = $1 RETURNING {COLUMNS}"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut order = order_from(&row)?;
        lines_of::<DB>(conn, &mut order).await?;
        Ok(Some(order))
    }

    async fn update(&self, tx: &mut Tx, o: &OrderRow) -> Result<(), StoreError> {
        let n = Sql::<DB>::new(
            "UPDATE orders SET status = $2, payment_status = $3, provider_ref = $4, refunded = $5, updated_at = $6, \
             version = version + 1 WHERE id = $1 AND version = $7",
        )
        .bind(o.id.as_str())
        .bind(o.status.as_str())
        .bind(o.payment_status.as_str())
        .bind(o.provider_ref.clone())
        .bind(o.refunded)
        .bind(o.updated_at)
        .bind(o.version)
        .execute(tx.conn::<DB>()?)
        .await?;
        if n == 1 { Ok(()) } else { Err(StoreError::Corrupt(format!("order {} changed while locked", o.id))) }
    }

    async fn sales_since(&self, since: DateTime<Utc>) -> Result<Sales, StoreError> {
        let mut conn = self.db.reader().await?;
        let mut query = Sql::<DB>::assembled(format!(
            "SELECT COUNT(*) AS orders, CAST(COALESCE(SUM(CASE WHEN status IN ({}) THEN total - refunded ELSE 0 END), 0) AS BIGINT) \
             AS revenue FROM orders WHERE created_at >= $1",
            placeholders(2, OrderStatus::PAID.len())
        ))
        .bind(since);
        for status in OrderStatus::PAID {
            query = query.bind(status.as_str().to_owned());
        }
        let row = query.fetch_one(&mut conn).await?;
        Ok(Sales { orders: row.int("orders")?, revenue: row.int("revenue")? })
    }

    async fn record_provider_event(&self, tx: &mut Tx, id: &str, kind: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new("INSERT INTO provider_events (id, type, received_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(kind)
            .bind(at)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(n == 1)
    }
}
