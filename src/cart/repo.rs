//! SQL of carts: one per user, items by product, an optional coupon.

use chrono::{DateTime, Utc};

use crate::store::{Backend, Columns, Db, Sql, StoreError};

/// A cart as stored: its coupon and (product, quantity) lines in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredCart {
    pub coupon_code: Option<String>,
    pub items: Vec<(String, u32)>,
}

#[async_trait::async_trait]
pub trait CartRepo: Send + Sync {
    async fn load(&self, user_id: &str) -> Result<StoredCart, StoreError>;
    /// Sets a line's quantity; 0 removes the line.
    async fn set_quantity(&self, user_id: &str, product_id: &str, quantity: u32, now: DateTime<Utc>) -> Result<(), StoreError>;
    async fn clear(&self, user_id: &str) -> Result<(), StoreError>;
    async fn set_coupon(&self, user_id: &str, code: Option<&str>, now: DateTime<Utc>) -> Result<(), StoreError>;
}

pub struct SqlCarts<DB: Backend> {
    db: Db<DB>,
}

impl<DB: Backend> SqlCarts<DB> {
    pub fn new(db: Db<DB>) -> Self {
        Self { db }
    }
}

const TOUCH_CART_SQL: &str = "INSERT INTO carts (user_id, coupon_code, updated_at) VALUES ($1, NULL, $2) ON CONFLICT (user_id) DO UPDATE SET updated_at = excluded.updated_at";

#[async_trait::async_trait]
impl<DB: Backend> CartRepo for SqlCarts<DB> {
    async fn load(&self, user_id: &str) -> Result<StoredCart, StoreError> {
        let mut conn = self.db.reader().await?;
        let coupon = Sql::<DB>::new("SELECT coupon_code FROM carts WHERE user_id = $1").bind(user_id).fetch_optional(&mut conn).await?;
        let rows = Sql::<DB>::new("SELECT product_id, quantity FROM cart_items WHERE user_id = $1 ORDER BY added_at, product_id")
            .bind(user_id)
            .fetch_all(&mut conn)
            .await?;
        let items = rows
            .iter()
            .map(|r| Ok((r.text("product_id")?, u32::try_from(r.int("quantity")?).unwrap_or(0))))
            .collect::<Result<_, StoreError>>()?;
        Ok(StoredCart { coupon_code: coupon.map(|r| r.opt_text("coupon_code")).transpose()?.flatten(), items })
    }

    async fn set_quantity(&self, user_id: &str, product_id: &str, quantity: u32, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        Sql::<DB>::new(TOUCH_CART_SQL).bind(user_id).bind(now).execute(&mut tx).await?;
        if quantity == 0 {
            Sql::<DB>::new("DELETE FROM cart_items WHERE user_id = $1 AND product_id = $2")
                .bind(user_id)
                .bind(product_id)
                .execute(&mut tx)
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
            .execute(&mut tx)
            .await?;
        }
        Ok(tx.commit().await?)
    }

    async fn clear(&self, user_id: &str) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        Sql::<DB>::new("DELETE FROM cart_items WHERE user_id = $1").bind(user_id).execute(&mut tx).await?;
        Sql::<DB>::new("DELETE FROM carts WHERE user_id = $1").bind(user_id).execute(&mut tx).await?;
        Ok(tx.commit().await?)
    }

    async fn set_coupon(&self, user_id: &str, code: Option<&str>, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        Sql::<DB>::new(TOUCH_CART_SQL).bind(user_id).bind(now).execute(&mut tx).await?;
        Sql::<DB>::new("UPDATE carts SET coupon_code = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(code.map(str::to_owned))
            .execute(&mut tx)
            .await?;
        Ok(tx.commit().await?)
    }
}
