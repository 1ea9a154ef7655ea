//! Leases: one process at a time among those sharing the database runs a singleton task (the
//! outbox relay). PostgreSQL: a session-level advisory lock on a connection of its own, held
//! until that session ends, so a crashed holder frees it at once. SQLite: an exclusive lock
//! on a file next to the database, freed when the process that holds it exits.

use std::path::Path;

use sqlx::Connection as _;
use sqlx::postgres::Postgres;

use super::{Columns as _, Sql, Store, StoreError};

/// What a lease is for: its advisory lock key (PostgreSQL) and its lock file's extension (SQLite).
#[derive(Debug, Clone, Copy)]
pub struct LeaseName {
    pub pg_key: i64,
    pub file: &'static str,
}

/// A held lease, given up when dropped.
pub enum Lease {
    /// The session that holds the advisory lock; closing it releases the lock.
    Postgres(sqlx::PgConnection),
    /// The open, locked file.
    Sqlite(std::fs::File),
}

impl Lease {
    /// Whether the lease still holds: a PostgreSQL session that broke took its lock with it,
    /// and another process may hold it now.
    pub async fn held(&mut self) -> bool {
        match self {
            Lease::Postgres(conn) => Sql::<Postgres>::new("SELECT 1 AS one").fetch_one(conn).await.is_ok(),
            Lease::Sqlite(_) => true,
        }
    }
}

fn lock_file(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

impl Store {
    /// Takes the lease `name` if no other process (or task) holds it; `None` when one does.
    pub async fn try_lease(&self, name: LeaseName) -> Result<Option<Lease>, StoreError> {
        match self {
            Store::Sqlite { path, .. } => {
                let path = path.with_extension(name.file);
                let locked = tokio::task::spawn_blocking(move || lock_file(&path))
                    .await
                    .map_err(|e| StoreError::Database(sqlx::Error::Io(std::io::Error::other(e))))?
                    .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
                Ok(locked.map(Lease::Sqlite))
            }
            Store::Postgres(db) => {
                // A connection of its own, out of the pool: returned to it, the session (and
                // its lock) would live on under another user.
                let mut conn = db.writer_pool().acquire().await?.detach();
                let row = Sql::<Postgres>::new("SELECT pg_try_advisory_lock($1) AS taken").bind(name.pg_key).fetch_one(&mut conn).await?;
                if row.flag("taken")? {
                    Ok(Some(Lease::Postgres(conn)))
                } else {
                    let _ = conn.close().await;
                    Ok(None)
                }
            }
        }
    }
}
