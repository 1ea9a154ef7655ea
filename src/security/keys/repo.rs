//! The SQL of the key ring and of re-encryption. Adding keys is a step of the caller's unit of
//! work; reads use the reader pool.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::SealedColumn;
use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx};

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Signing,
    Encryption,
}

impl Purpose {
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Signing => "signing",
            Purpose::Encryption => "encryption",
        }
    }

    fn from_name(name: &str) -> Result<Purpose, StoreError> {
        match name {
            "signing" => Ok(Purpose::Signing),
            "encryption" => Ok(Purpose::Encryption),
            other => Err(StoreError::Corrupt(format!("key ring purpose {other:?}"))),
        }
    }
}

/// A key as stored: its material sealed with the key-encryption key.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    pub purpose: Purpose,
    pub sealed: String,
    pub active_from: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A value due for re-encryption: its row and its sealed text as read.
#[derive(Debug, Clone)]
pub struct SealedValue {
    pub id: String,
    pub sealed: String,
}

#[async_trait::async_trait]
pub trait KeyRingRepo: Send + Sync {
    /// Every key of the ring.
    async fn keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Up to `limit` values of `column` not starting with `fresh` (sealed by another key), in
    /// the order of their rows' ids, after row `after`.
    async fn stale(&self, column: &SealedColumn, fresh: &str, after: &str, limit: u32) -> Result<Vec<SealedValue>, StoreError>;
}

/// The key ring repository of `store`'s backend.
pub fn for_store(store: &Store) -> Arc<dyn KeyRingRepo> {
    struct Ring;
    impl Build for Ring {
        type Output = Arc<dyn KeyRingRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlKeyRing { db })
        }
    }
    store.build(Ring)
}

/// Adds `key` to the ring inside the caller's unit of work.
pub async fn insert(tx: &mut Tx, key: &StoredKey) -> Result<(), StoreError> {
    match tx {
        Tx::Sqlite(tx) => insert_in::<sqlx::Sqlite>(tx, key).await,
        Tx::Postgres(tx) => insert_in::<sqlx::Postgres>(tx, key).await,
    }
}

async fn insert_in<DB: Backend>(conn: &mut DB::Connection, key: &StoredKey) -> Result<(), StoreError> {
    Sql::<DB>::new("INSERT INTO key_ring (kid, purpose, sealed, active_from, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(key.kid.clone())
        .bind(key.purpose.name())
        .bind(key.sealed.clone())
        .bind(key.active_from)
        .bind(key.created_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces `value` with `resealed` inside the caller's unit of work, unless the row changed
/// since it was read (then a later pass finds it again, or it was sealed afresh meanwhile).
pub async fn reseal(tx: &mut Tx, column: &SealedColumn, value: &SealedValue, resealed: String) -> Result<bool, StoreError> {
    let sql = format!("UPDATE {} SET {} = $1 WHERE id = $2 AND {} = $3", column.table, column.column, column.column);
    let updated = match tx {
        Tx::Sqlite(tx) => reseal_in::<sqlx::Sqlite>(tx, sql, value, resealed).await?,
        Tx::Postgres(tx) => reseal_in::<sqlx::Postgres>(tx, sql, value, resealed).await?,
    };
    Ok(updated == 1)
}

/// `sql` is assembled from the compile-time names of `SEALED_COLUMNS` only; values are bound.
async fn reseal_in<DB: Backend>(conn: &mut DB::Connection, sql: String, value: &SealedValue, resealed: String) -> Result<u64, StoreError> {
    Sql::<DB>::assembled(sql).bind(resealed).bind(value.id.clone()).bind(value.sealed.clone()).execute(conn).await
}

struct SqlKeyRing<DB: Backend> {
    db: Db<DB>,
}

#[async_trait::async_trait]
impl<DB: Backend> KeyRingRepo for SqlKeyRing<DB> {
    async fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new("SELECT kid, purpose, sealed, active_from, created_at FROM key_ring ORDER BY active_from, kid")
            .fetch_all(&mut conn)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredKey {
                    kid: r.text("kid")?,
                    purpose: Purpose::from_name(&r.text("purpose")?)?,
                    sealed: r.text("sealed")?,
                    active_from: r.time("active_from")?,
                    created_at: r.time("created_at")?,
                })
            })
            .collect()
    }

    async fn stale(&self, column: &SealedColumn, fresh: &str, after: &str, limit: u32) -> Result<Vec<SealedValue>, StoreError> {
        let mut conn = self.db.reader().await?;
        let (table, name) = (column.table, column.column);
        let rows = Sql::<DB>::assembled(format!(
            "SELECT id, {name} AS sealed FROM {table} WHERE {name} IS NOT NULL AND {name} NOT LIKE $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(format!("{fresh}%"))
        .bind(after.to_owned())
        .bind(i64::from(limit))
        .fetch_all(&mut conn)
        .await?;
        rows.iter().map(|r| Ok(SealedValue { id: r.text("id")?, sealed: r.text("sealed")? })).collect()
    }
}
