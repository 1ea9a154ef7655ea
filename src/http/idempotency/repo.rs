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
    /// The request's fingerprint, written with the key.
    pub fingerprint: String,
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
    /// The key's record, if it has one (a read, outside any transaction).
    async fn find(&self, user_id: &str, route: &str, key: &str) -> Result<Option<Record>, StoreError>;
    /// Writes the key in flight for `claim`; false when another request holds or answered it.
    async fn hold(&self, tx: &mut Tx, claim: &Claim, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Takes over a key whose holder's lease ran out before `now`; false when it is not (or no longer) so.
    async fn take_over(&self, tx: &mut Tx, claim: &Claim, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Stores the first response, held or not before; false when another request holds or
    /// answered the key (its hold ran out and was taken over, or it raced this one).
    async fn complete(&self, tx: &mut Tx, claim: &Claim, status: u16, body: &[u8], now: DateTime<Utc>) -> Result<bool, StoreError>;
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
            Arc::new(SqlKeys { db })
        }
    }
    store.build(Keys)
}

/// Writes run in the caller's transaction; the lookup reads on the reader pool.
struct SqlKeys<DB: Backend> {
    db: Db<DB>,
}

/// Writes a key, or updates the row `claim` holds: the row is ours only while it has no
/// response and still carries our hold. `$6`/`$7` are the status and body (NULL: in flight).
const UPSERT: &str = "INSERT INTO idempotency_keys (user_id, route, key, fingerprint, locked_until, status, body, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (user_id, route, key) DO UPDATE \
     SET status = excluded.status, body = excluded.body \
     WHERE idempotency_keys.status IS NULL AND idempotency_keys.locked_until = excluded.locked_until";

#[async_trait::async_trait]
impl<DB: Backend> IdempotencyRepo for SqlKeys<DB> {
    async fn find(&self, user_id: &str, route: &str, key: &str) -> Result<Option<Record>, StoreError> {
        let row = Sql::<DB>::new(
            "SELECT fingerprint, locked_until, status, body FROM idempotency_keys WHERE user_id = $1 AND route = $2 AND key = $3",
        )
        .bind(user_id)
        .bind(route)
        .bind(key)
        .fetch_optional(&mut *self.db.reader().await?)
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

    async fn hold(&self, tx: &mut Tx, claim: &Claim, now: DateTime<Utc>) -> Result<bool, StoreError> {
        upsert::<DB>(tx, claim, None, now).await
    }

    async fn complete(&self, tx: &mut Tx, claim: &Claim, status: u16, body: &[u8], now: DateTime<Utc>) -> Result<bool, StoreError> {
        upsert::<DB>(tx, claim, Some((status, body)), now).await
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

async fn upsert<DB: Backend>(tx: &mut Tx, claim: &Claim, answer: Option<(u16, &[u8])>, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let n = Sql::<DB>::new(UPSERT)
        .bind(claim.user_id.as_str())
        .bind(claim.route.as_str())
        .bind(claim.key.as_str())
        .bind(claim.fingerprint.as_str())
        .bind(claim.locked_until)
        .bind(answer.map(|(status, _)| i64::from(status)))
        .bind(answer.map(|(_, body)| body.to_vec()))
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
    Ok(n == 1)
}
