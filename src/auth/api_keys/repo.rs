//! SQL of API keys.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::model::{Scope, scopes_from, stored_scopes};
use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx};

/// A key as stored, without its secret.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub prefix: String,
    /// The admin who made it; the key acts for them, within its scopes.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key that replaced this one when it was rotated.
    pub rotated_to: Option<String>,
}

impl KeyRow {
    pub fn live_at(&self, at: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|end| end > at)
    }
}

#[async_trait::async_trait]
pub trait ApiKeyRepo: Send + Sync {
    /// The unrevoked key with this keyed hash, expired or not.
    async fn by_hash(&self, secret_hash: &str) -> Result<Option<KeyRow>, StoreError>;
    /// Unrevoked keys, newest first, after the id `after`.
    async fn list(&self, after: Option<&str>, limit: u32) -> Result<Vec<KeyRow>, StoreError>;
    async fn insert(&self, tx: &mut Tx, key: &KeyRow, secret_hash: &str) -> Result<(), StoreError>;
    /// The unrevoked key with this id.
    async fn get(&self, tx: &mut Tx, id: &str) -> Result<Option<KeyRow>, StoreError>;
    /// Marks a key replaced by `successor`, working until `until`; false when it was replaced already.
    async fn retire(&self, tx: &mut Tx, id: &str, successor: &str, until: DateTime<Utc>) -> Result<bool, StoreError>;
    /// False when there is no unrevoked key with this id.
    async fn revoke(&self, tx: &mut Tx, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Records a use at `at` unless one after `since` is recorded already.
    async fn touch(&self, tx: &mut Tx, id: &str, at: DateTime<Utc>, since: DateTime<Utc>) -> Result<(), StoreError>;
}

pub fn for_store(store: &Store) -> Arc<dyn ApiKeyRepo> {
    struct Keys;
    impl Build for Keys {
        type Output = Arc<dyn ApiKeyRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlApiKeys { db })
        }
    }
    store.build(Keys)
}

struct SqlApiKeys<DB: Backend> {
    db: Db<DB>,
}

const COLUMNS: &str = "id, name, scopes, prefix, created_by, created_at, expires_at, last_used_at, rotated_to";

fn key_row(r: &impl Columns) -> Result<KeyRow, StoreError> {
    Ok(KeyRow {
        id: r.text("id")?,
        name: r.text("name")?,
        scopes: scopes_from(&r.text("scopes")?),
        prefix: r.text("prefix")?,
        created_by: r.text("created_by")?,
        created_at: r.time("created_at")?,
        expires_at: r.opt_time("expires_at")?,
        last_used_at: r.opt_time("last_used_at")?,
        rotated_to: r.opt_text("rotated_to")?,
    })
}

#[async_trait::async_trait]
impl<DB: Backend> ApiKeyRepo for SqlApiKeys<DB> {
    async fn by_hash(&self, secret_hash: &str) -> Result<Option<KeyRow>, StoreError> {
        let mut conn = self.db.reader().await?;
        Sql::<DB>::assembled(format!("SELECT {COLUMNS} FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL"))
            .bind(secret_hash)
            .fetch_optional(&mut conn)
            .await?
            .as_ref()
            .map(key_row)
            .transpose()
    }

    async fn list(&self, after: Option<&str>, limit: u32) -> Result<Vec<KeyRow>, StoreError> {
        let mut conn = self.db.reader().await?;
        Sql::<DB>::assembled(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE revoked_at IS NULL AND ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
        ))
        .bind(after.map(str::to_owned))
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut conn)
        .await?
        .iter()
        .map(key_row)
        .collect()
    }

    async fn insert(&self, tx: &mut Tx, k: &KeyRow, secret_hash: &str) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "INSERT INTO api_keys (id, name, scopes, prefix, secret_hash, created_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(k.id.as_str())
        .bind(k.name.as_str())
        .bind(stored_scopes(&k.scopes))
        .bind(k.prefix.as_str())
        .bind(secret_hash)
        .bind(k.created_by.as_str())
        .bind(k.created_at)
        .bind(k.expires_at)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }

    async fn get(&self, tx: &mut Tx, id: &str) -> Result<Option<KeyRow>, StoreError> {
        Sql::<DB>::assembled(format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1 AND revoked_at IS NULL"))
            .bind(id)
            .fetch_optional(tx.conn::<DB>()?)
            .await?
            .as_ref()
            .map(key_row)
            .transpose()
    }

    async fn retire(&self, tx: &mut Tx, id: &str, successor: &str, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new(
            "UPDATE api_keys SET rotated_to = $2, expires_at = $3 WHERE id = $1 AND rotated_to IS NULL AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(successor)
        .bind(until)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(n == 1)
    }

    async fn revoke(&self, tx: &mut Tx, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(at)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(n == 1)
    }

    async fn touch(&self, tx: &mut Tx, id: &str, at: DateTime<Utc>, since: DateTime<Utc>) -> Result<(), StoreError> {
        Sql::<DB>::new("UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)")
            .bind(id)
            .bind(at)
            .bind(since)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(())
    }
}
