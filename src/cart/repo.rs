//! SQL of carts: one per user, items by product, an optional coupon.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx};

/// A cart as stored: its coupon and (product, quantity) lines in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredCart {
    pub coupon_code: Option<String>,
    pub items: Vec<(String, u32)>,
}

/// Reads use the reader pool; every write is one step of the caller's unit of work.
#[async_trait::async_trait]
pub trait CartRepo: Send + Sync {
    async fn load(&self, user_id: &str) -> Result<StoredCart, StoreError>;
    /// Creates the user's cart row or, if it exists, locks it for the rest of the transaction.
    /// Every cart write takes this first (`delete` locks the row by deleting it first), so two
    /// writes to one cart lock `carts` before `cart_items` in the same order and cannot deadlock.
    async fn lock(&self, tx: &mut Tx, user_id: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Sets a line's quantity; 0 removes the line.
    async fn set_quantity(&self, tx: &mut Tx, user_id: &str, product_id: &str, quantity: u32, now: DateTime<Utc>)
    -> Result<(), StoreError>;
    /// Removes the cart row (its first step, which takes the lock of [`CartRepo::lock`]), then
    /// every line.
    async fn delete(&self, tx: &mut Tx, user_id: &str) -> Result<(), StoreError>;
    async fn set_coupon(&self, tx: &mut Tx, user_id: &str, code: Option<&str>) -> Result<(), StoreError>;
}

/// The cart repository of `store`'s backend.
pub fn for_store(store: &Store) -> Arc<dyn CartRepo> {
    struct Carts;
    impl Build for Carts {
        type Output = Arc<dyn CartRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlCarts { db })
        }
    }
    store.build(Carts)
}

struct SqlCarts<DB: Backend> {
    db: Db<DB>,
}

#[async_trait::async_trait]
impl<DB: Backend> CartRepo for SqlCarts<DB> {
    async fn load(&self, user_id: &str) -> Result<StoredCart, StoreError> {
        let mut conn = self.db.reader().await?;
        // One read: every line is written after its cart row (`lock`), so a cart's lines are
        // all joined to it; a cart without lines is one row with no product.
        let rows = Sql::<DB>::new(
            "SELECT c.coupon_code, i.product_id, i.quantity FROM carts c LEFT JOIN cart_items i ON i.user_id = c.user_id \
             WHERE c.user_id = $1 ORDER BY i.added_at, i.product_id",
        )
        .bind(user_id)
        .fetch_all(&mut conn)
        .await?;
        let mut cart = StoredCart::default();
        for r in &rows {
            cart.coupon_code = r.opt_text("coupon_code")?;
            if let Some(product_id) = r.opt_text("product_id")? {
                cart.items.push((product_id, u32::try_from(r.int("quantity")?).unwrap_or(0)));
            }
        }
        Ok(cart)
    }

    async fn lock(&self, tx: &mut Tx, user_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "INSERT INTO carts (user_id, coupon_code, updated_at) VALUES ($1, NULL, $2) \
             ON CONFLICT (user_id) DO UPDATE SET updated_at = excluded.updated_at",
        )
        .bind(user_id)
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }

    async fn set_quantity(
        &self,
        tx: &mut Tx,
        user_id: &str,
        product_id: &str,
        quantity: u32,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let conn = tx.conn::<DB>()?;
        if quantity == 0 {
            Sql::<DB>::new("DELETE FROM cart_items WHERE user_id = $1 AND product_id = $2")
                .bind(user_id)
                .bind(product_id)
                .execute(conn)
                .await?;
        } else {
            Sql::<DB>::new(
                "INSERT INTO cart_items (user_id, product_id, quantity, added_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, product_id) DO UPDATE SET quantity = excluded.quantity",
            )
            .bind(user_id)
            .bind(product_id)
            .bind(i64::from(quantity))
            .bind(now)
            .execute(conn)
            .await?;
        }
        Ok(())
    }

    async fn delete(&self, tx: &mut Tx, user_id: &str) -> Result<(), StoreError> {
        let conn = tx.conn::<DB>()?;
        Sql::<DB>::new("DELETE FROM carts WHERE user_id = $1").bind(user_id).execute(conn).await?;
        Sql::<DB>::new("DELETE FROM cart_items WHERE user_id = $1").bind(user_id).execute(conn).await?;
        Ok(())
    }

    async fn set_coupon(&self, tx: &mut Tx, user_id: &str, code: Option<&str>) -> Result<(), StoreError> {
        Sql::<DB>::new("UPDATE carts SET coupon_code = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(code.map(str::to_owned))
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(())
    }
}
