//! The SQL of the audit trail. Appending is a step of the caller's unit of work; reads use the
//! reader pool.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::model::{Action, NewEntry, StoredEntry};
use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError};

const COLUMNS: &str = "seq, id, at, actor, action, target, ip, request_id, details, hash";

/// What a list of entries is narrowed to; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<Action>,
    pub target: Option<String>,
    /// Entries at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Entries before this instant.
    pub until: Option<DateTime<Utc>>,
}

#[async_trait::async_trait]
pub trait AuditRepo: Send + Sync {
    /// Up to `limit + 1` entries matching `filter`, newest first, before place `before`.
    async fn list(&self, filter: &AuditFilter, before: Option<i64>, limit: u32) -> Result<Vec<StoredEntry>, StoreError>;
    /// The chain head: the last entry's place and hash (0 and the genesis hash when empty).
    async fn head(&self) -> Result<(i64, String), StoreError>;
    /// Up to `limit` entries after place `after` and up to place `until`, in chain order.
    async fn chain(&self, after: i64, until: i64, limit: u32) -> Result<Vec<StoredEntry>, StoreError>;
}

/// The audit repository of `store`'s backend.
pub fn for_store(store: &Store) -> Arc<dyn AuditRepo> {
    struct Audit;
    impl Build for Audit {
        type Output = Arc<dyn AuditRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlAudit { db })
        }
    }
    store.build(Audit)
}

/// Appends `entry` at the end of the chain, on the caller's connection inside its transaction.
/// Moving the head first takes its row lock on PostgreSQL until the transaction ends (SQLite's
/// one writer already excludes every other), so concurrent appends take turns and each links to
/// the entry committed before it: the chain stays linear. Keep it late in a unit of work, so the
/// head is held briefly.
pub(crate) async fn append_in<DB: Backend>(conn: &mut DB::Connection, entry: &NewEntry, at: DateTime<Utc>) -> Result<(), StoreError> {
    let head = Sql::<DB>::new("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash").fetch_one(&mut *conn).await?;
    let stored = StoredEntry::chained(entry, crate::ids::new("aud"), head.int("seq")?, at, &head.text("hash")?);
    Sql::<DB>::new(
        "INSERT INTO audit_log (seq, id, at, actor, action, target, ip, request_id, details, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(stored.seq)
    .bind(stored.id)
    .bind(stored.at)
    .bind(stored.actor)
    .bind(stored.action)
    .bind(stored.target)
    .bind(stored.ip)
    .bind(stored.request_id)
    .bind(stored.details)
    .bind(stored.hash.clone())
    .execute(&mut *conn)
    .await?;
    Sql::<DB>::new("UPDATE audit_head SET hash = $1 WHERE id = 1").bind(stored.hash).execute(conn).await?;
    Ok(())
}

struct SqlAudit<DB: Backend> {
    db: Db<DB>,
}

fn entry_from<R: Columns>(r: &R) -> Result<StoredEntry, StoreError> {
    Ok(StoredEntry {
        seq: r.int("seq")?,
        id: r.text("id")?,
        at: r.time("at")?,
        actor: r.opt_text("actor")?,
        action: r.text("action")?,
        target: r.opt_text("target")?,
        ip: r.opt_text("ip")?,
        request_id: r.opt_text("request_id")?,
        details: r.text("details")?,
        hash: r.text("hash")?,
    })
}

#[async_trait::async_trait]
impl<DB: Backend> AuditRepo for SqlAudit<DB> {
    async fn list(&self, filter: &AuditFilter, before: Option<i64>, limit: u32) -> Result<Vec<StoredEntry>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::assembled(format!(
            "SELECT {COLUMNS} FROM audit_log WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2) \
             AND ($3 IS NULL OR target = $3) AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at < $5) \
             AND ($6 IS NULL OR seq < $6) ORDER BY seq DESC LIMIT $7"
        ))
        .bind(filter.actor.clone())
        .bind(filter.action.map(|a| a.name().to_owned()))
        .bind(filter.target.clone())
        .bind(filter.since)
        .bind(filter.until)
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut conn)
        .await?;
        rows.iter().map(entry_from).collect()
    }

    async fn head(&self) -> Result<(i64, String), StoreError> {
        let mut conn = self.db.reader().await?;
        let row = Sql::<DB>::new("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&mut conn).await?;
        Ok((row.int("seq")?, row.text("hash")?))
    }

    async fn chain(&self, after: i64, until: i64, limit: u32) -> Result<Vec<StoredEntry>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::assembled(format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"))
            .bind(after)
            .bind(until)
            .bind(i64::from(limit))
            .fetch_all(&mut conn)
            .await?;
        rows.iter().map(entry_from).collect()
    }
}
