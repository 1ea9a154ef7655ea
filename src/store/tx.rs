//! The unit of work: one write transaction per use case. A service opens it (`Store::begin`
//! or, with retries, `Store::transact`), its repositories do one step each inside it, its
//! effects (outbox events, jobs) are written into it, and it commits once. Dropping it
//! without committing rolls everything back.

use std::time::Duration;

use sqlx::postgres::Postgres;
use sqlx::sqlite::Sqlite;

use super::sql::{Backend, WriteTx};
use super::{Store, StoreError};

/// A write transaction on whichever backend the store runs. Repositories are written once,
/// generic over [`Backend`], and take `&mut Tx` through their `dyn` traits; [`Tx::conn`]
/// hands them the connection of their own backend.
pub enum Tx {
    Sqlite(WriteTx<Sqlite>),
    Postgres(WriteTx<Postgres>),
}

impl Tx {
    /// The transaction's connection, for a repository of backend `DB`. A store builds its
    /// repositories and transactions for one backend, so a mismatch is a wiring bug; it is
    /// reported as an error rather than a panic inside a request.
    pub fn conn<DB: Backend>(&mut self) -> Result<&mut DB::Connection, StoreError> {
        DB::write_tx(self).map(|tx| &mut **tx).ok_or(StoreError::OtherBackend)
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Errors that mean "the same work may succeed if run again": PostgreSQL chose this
/// transaction as a deadlock victim or could not serialise it. Domain errors that wrap a
/// [`StoreError`] delegate to it, so `Store::transact` can retry any use case.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for StoreError {
    fn is_transient(&self) -> bool {
        const DEADLOCK: &str = "40P01";
        const SERIALIZATION_FAILURE: &str = "40001";
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => matches!(e.code().as_deref(), Some(DEADLOCK | SERIALIZATION_FAILURE)),
            _ => false,
        }
    }
}

/// Job handlers and other edges report `anyhow` errors: transient if a [`StoreError`] caused it.
impl Transient for anyhow::Error {
    fn is_transient(&self) -> bool {
        self.downcast_ref::<StoreError>().is_some_and(StoreError::is_transient)
    }
}

/// How many times a use case runs at most when it keeps hitting transient failures.
const ATTEMPTS: u32 = 5;

/// The pause before attempt `attempt` (2, 3, …): doubling from 5 ms, with full jitter so
/// two transactions that just deadlocked do not collide again in step.
fn retry_pause(attempt: u32) -> Duration {
    let ceiling = Duration::from_millis(5) * 2u32.pow(attempt.saturating_sub(2).min(6));
    let [random] = crate::security::random_bytes::<1>();
    ceiling.mul_f64(f64::from(random) / 255.0)
}

impl Store {
    /// Opens the unit of work of one use case.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Store::Sqlite { db, .. } => Tx::Sqlite(db.begin().await?),
            Store::Postgres(db) => Tx::Postgres(db.begin().await?),
        })
    }

    /// Runs `work` in a fresh transaction and commits the transaction `work` hands back; on a
    /// transient failure (in a step or at commit) rolls back and runs it again, up to
    /// [`ATTEMPTS`] times. This is the one place deadlocks and serialization failures are
    /// retried, so `work` must have no effects outside the transaction.
    ///
    /// `work` owns the transaction and returns it with its result (rather than borrowing it),
    /// so its future is an ordinary `Send` future that axum handlers can await; an error drops
    /// the transaction, which rolls it back.
    pub async fn transact<T, E, Fut>(&self, mut work: impl FnMut(Tx) -> Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<(Tx, T), E>>,
        E: From<StoreError> + Transient,
    {
        let mut attempt = 1;
        loop {
            let result = match work(self.begin().await?).await {
                Ok((tx, value)) => tx.commit().await.map(|()| value).map_err(E::from),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(attempt, "transaction hit a deadlock or serialization failure; running it again");
                    tokio::time::sleep(retry_pause(attempt)).await;
                }
                done => return done,
            }
        }
    }
}
