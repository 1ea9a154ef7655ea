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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::store::{StoreOptions, unique};

    /// A database error as a backend would report it.
    #[derive(Debug)]
    struct Reported {
        code: &'static str,
        message: &'static str,
        constraint: Option<&'static str>,
    }

    impl std::fmt::Display for Reported {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.message)
        }
    }

    impl std::error::Error for Reported {}

    impl sqlx::error::DatabaseError for Reported {
        fn message(&self) -> &str {
            self.message
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.code))
        }
        fn constraint(&self) -> Option<&str> {
            self.constraint
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            if self.code == "23505" || self.code == "2067" {
                sqlx::error::ErrorKind::UniqueViolation
            } else {
                sqlx::error::ErrorKind::Other
            }
        }
    }

    fn reported(code: &'static str, message: &'static str, constraint: Option<&'static str>) -> StoreError {
        sqlx::Error::Database(Box::new(Reported { code, message, constraint })).into()
    }

    async fn scratch_store() -> Store {
        let dir = std::env::temp_dir().join(crate::ids::new("keel-tx-test"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("keel.db").display());
        Store::connect(&StoreOptions { url, max_connections: 2 }).await.unwrap()
    }

    #[tokio::test]
    async fn a_deadlock_victim_runs_again_and_other_failures_do_not() {
        let store = scratch_store().await;
        let runs = AtomicU32::new(0);
        let done: Result<u32, StoreError> = store
            .transact(|tx| {
                let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if run == 1 {
                        return Err(reported("40P01", "deadlock detected", None));
                    }
                    Ok((tx, run))
                }
            })
            .await;
        assert_eq!(done.unwrap(), 2, "the second run committed");

        runs.store(0, Ordering::SeqCst);
        let refused: Result<(), StoreError> = store
            .transact(|_tx| {
                runs.fetch_add(1, Ordering::SeqCst);
                async { Err(reported("23505", "duplicate key", Some("users_email_key"))) }
            })
            .await;
        assert!(matches!(refused, Err(StoreError::Conflict { constraint: unique::USER_EMAIL })));
        assert_eq!(runs.load(Ordering::SeqCst), 1, "a conflict is an answer, not a reason to try again");

        runs.store(0, Ordering::SeqCst);
        let exhausted: Result<(), StoreError> = store
            .transact(|_tx| {
                runs.fetch_add(1, Ordering::SeqCst);
                async { Err(reported("40001", "could not serialize access", None)) }
            })
            .await;
        assert!(exhausted.unwrap_err().is_transient());
        assert_eq!(runs.load(Ordering::SeqCst), ATTEMPTS, "retries are bounded");
        store.close().await;
    }

    #[test]
    fn conflicts_name_their_constraint_on_both_backends() {
        let named = |e: StoreError| match e {
            StoreError::Conflict { constraint } => constraint,
            other => panic!("not a conflict: {other}"),
        };
        assert_eq!(named(reported("23505", "duplicate key value", Some("products_sku_key"))), unique::PRODUCT_SKU);
        assert_eq!(named(reported("2067", "UNIQUE constraint failed: products.sku", None)), unique::PRODUCT_SKU);
        assert_eq!(named(reported("2067", "UNIQUE constraint failed: users.email", None)), unique::USER_EMAIL);
        assert_eq!(named(reported("23505", "duplicate key value", Some("users_pkey"))), unique::OTHER);
    }
}
