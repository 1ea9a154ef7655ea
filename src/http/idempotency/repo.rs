//! SQL of idempotency keys: one row per (user, route, key).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Record, RecordState};
use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx};

/// The identity of a key and the hold its current request has on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub user_id: String,
    pub route: String,
    pub key: String,
    /// The hold: storing the response checks it, so a request whose key was taken over after
    /// its lease ran out cannot store (and its effect rolls back with the refusal).
    pub locked_until: DateTime<Utc>,
}

impl Claim {
    /// A key for a call the request makes to another system (the payment provider), derived
    /// from this one: the client's retry with the same key sends the same key onwards.
    pub fn derived_key(&self) -> String {
        format!("keel_{}", super::fingerprint("KEY", &self.route, &self.user_id, self.key.as_bytes()))
    }
}

/// Every write is one step of the caller's unit of work.
#[async_trait::async_trait]
pub trait IdempotencyRepo: Send + Sync {
    /// Inserts the key in flight; false when it already exists.
    async fn insert(&self, tx: &mut Tx, claim: &Claim, fingerprint: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// The key's record, read inside the transaction.
    async fn find(&self, tx: &mut Tx, user_id: &str, route: &str, key: &str) -> Result<Option<Record>, StoreError>;
    /// Takes over a key whose holder's lease ran out before `now`; false when it is not (or no longer) so.
    async fn take_over(&self, tx: &mut Tx, claim: &Claim, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Stores the first response; false when `claim` no longer holds the key.
    async fn complete(&self, tx: &mut Tx, claim: &Claim, status: u16, body: &[u8]) -> Result<bool, StoreError>;
    /// Forgets a key still held by `claim` (its request stored nothing: it may run again).
    async fn release(&self, tx: &mut Tx, claim: &Claim) -> Result<(), StoreError>;
    /// Removes keys created before `before`; returns how many.
    async fn purge(&self, tx: &mut Tx, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// The idempotency repository of `store`'s backend.
pub fn for_store(store: &Store) -> Arc<dyn IdempotencyRepo> {
    struct Keys;
    impl Build for Keys {
        type Output = Arc<dyn IdempotencyRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlKeys { _db: db })
        }
    }
    store.build(Keys)
}

/// Holds the pools only to fix its backend: every step runs in the caller's transaction.
struct SqlKeys<DB: Backend> {
    _db: Db<DB>,
}

#[async_trait::async_trait]
impl<DB: Backend> IdempotencyRepo for SqlKeys<DB> {
    async fn insert(&self, tx: &mut Tx, claim: &Claim, fingerprint: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new(
            "INSERT INTO idempotency_keys (user_id, route, key, fingerprint, locked_until, status, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6) ON CONFLICT (user_id, route, key) DO NOTHING",
        )
        .bind(claim.user_id.as_str())
        .bind(claim.route.as_str())
        .bind(claim.key.as_str())
        .bind(fingerprint)
        .bind(claim.locked_until)
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(n == 1)
    }

    async fn find(&self, tx: &mut Tx, user_id: &str, route: &str, key: &str) -> Result<Option<Record>, StoreError> {
        let row = Sql::<DB>::new(
            "SELECT fingerprint, locked_until, status, body FROM idempotency_keys WHERE user_id = $1 AND route = $2 AND key = $3",
        )
        .bind(user_id)
        .bind(route)
        .bind(key)
        .fetch_optional(tx.conn::<DB>()?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let state = match row.opt_int("status")? {
            Some(status) => RecordState::Done {
                status: u16::try_from(status).map_err(|_| StoreError::Corrupt("idempotency status out of range".into()))?,
                body: row.opt_bytes("body")?.unwrap_or_default(),
            },
            None => RecordState::InFlight { locked_until: row.time("locked_until")? },
        };
        Ok(Some(Record { fingerprint: row.text("fingerprint")?, state }))
    }

    async fn take_over(&self, tx: &mut Tx, claim: &Claim, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new(
            "UPDATE idempotency_keys SET locked_until = $4 \
             WHERE user_id = $1 AND route = $2 AND key = $3 AND status IS NULL AND locked_until <= $5",
        )
        .bind(claim.user_id.as_str())
        .bind(claim.route.as_str())
        .bind(claim.key.as_str())
        .bind(claim.locked_until)
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(n == 1)
    }

    async fn complete(&self, tx: &mut Tx, claim: &Claim, status: u16, body: &[u8]) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new(
            "UPDATE idempotency_keys SET status = $5, body = $6 \
             WHERE user_id = $1 AND route = $2 AND key = $3 AND status IS NULL AND locked_until = $4",
        )
        .bind(claim.user_id.as_str())
        .bind(claim.route.as_str())
        .bind(claim.key.as_str())
        .bind(claim.locked_until)
        .bind(i64::from(status))
        .bind(Some(body.to_vec()))
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(n == 1)
    }

    async fn release(&self, tx: &mut Tx, claim: &Claim) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "DELETE FROM idempotency_keys WHERE user_id = $1 AND route = $2 AND key = $3 AND status IS NULL AND locked_until = $4",
        )
        .bind(claim.user_id.as_str())
        .bind(claim.route.as_str())
        .bind(claim.key.as_str())
        .bind(claim.locked_until)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }

    async fn purge(&self, tx: &mut Tx, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Sql::<DB>::new("DELETE FROM idempotency_keys WHERE created_at < $1").bind(before).execute(tx.conn::<DB>()?).await
    }
}
