//! SQL of real-time: tickets, and reading the outbox by publish order for resume. Reads use
//! the reader pool; every write is one step of the caller's unit of work.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::events::Event;
use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx};

/// What a redeemed ticket stands for.
#[derive(Debug, Clone)]
pub struct TicketGrant {
    pub user_id: String,
    pub session_id: String,
    pub token_expires_at: DateTime<Utc>,
}

/// Where an event sits in the publish order.
#[derive(Debug, Clone, Copy)]
pub struct Position {
    /// `None` while the relay that published it has not committed (or before this column existed).
    pub publish_seq: Option<i64>,
    pub created_at: DateTime<Utc>,
}

#[async_trait::async_trait]
pub trait RealtimeRepo: Send + Sync {
    async fn insert_ticket(&self, tx: &mut Tx, hash: &str, grant: &TicketGrant, expires_at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Deletes the ticket and returns what it grants, if it exists and has not expired: a
    /// ticket is redeemed once, whichever instance the client reaches.
    async fn redeem_ticket(&self, tx: &mut Tx, hash: &str, now: DateTime<Utc>) -> Result<Option<TicketGrant>, StoreError>;
    async fn purge_tickets(&self, tx: &mut Tx, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// The outbox position of `event_id`, if the outbox still holds it.
    async fn position(&self, event_id: &str) -> Result<Option<Position>, StoreError>;
    /// The highest `seq` committed so far (0: none).
    async fn last_seq(&self) -> Result<i64, StoreError>;
    /// Whether an event with `seq` up to `seq` is not marked published yet (the relay may have
    /// sent it to the bus already and not yet numbered it).
    async fn unmarked_through(&self, seq: i64) -> Result<bool, StoreError>;
    /// Published events after `publish_seq` created since `since`, in publish order.
    async fn published_after(&self, publish_seq: i64, since: DateTime<Utc>, limit: u32) -> Result<Vec<(i64, Event)>, StoreError>;
}

/// The real-time repository of `store`'s backend.
pub fn for_store(store: &Store) -> Arc<dyn RealtimeRepo> {
    struct Repo;
    impl Build for Repo {
        type Output = Arc<dyn RealtimeRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlRealtime { db })
        }
    }
    store.build(Repo)
}

struct SqlRealtime<DB: Backend> {
    db: Db<DB>,
}

#[async_trait::async_trait]
impl<DB: Backend> RealtimeRepo for SqlRealtime<DB> {
    async fn insert_ticket(&self, tx: &mut Tx, hash: &str, grant: &TicketGrant, expires_at: DateTime<Utc>) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "INSERT INTO realtime_tickets (hash, user_id, session_id, token_expires_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash)
        .bind(grant.user_id.as_str())
        .bind(grant.session_id.as_str())
        .bind(grant.token_expires_at)
        .bind(expires_at)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }

    async fn redeem_ticket(&self, tx: &mut Tx, hash: &str, now: DateTime<Utc>) -> Result<Option<TicketGrant>, StoreError> {
        let row = Sql::<DB>::new(
            "DELETE FROM realtime_tickets WHERE hash = $1 AND expires_at > $2 RETURNING user_id, session_id, token_expires_at",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(tx.conn::<DB>()?)
        .await?;
        row.map(|r| {
            Ok(TicketGrant {
                user_id: r.text("user_id")?,
                session_id: r.text("session_id")?,
                token_expires_at: r.time("token_expires_at")?,
            })
        })
        .transpose()
    }

    async fn purge_tickets(&self, tx: &mut Tx, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Sql::<DB>::new("DELETE FROM realtime_tickets WHERE expires_at <= $1").bind(now).execute(tx.conn::<DB>()?).await
    }

    async fn position(&self, event_id: &str) -> Result<Option<Position>, StoreError> {
        let mut conn = self.db.reader().await?;
        let row =
            Sql::<DB>::new("SELECT publish_seq, created_at FROM events WHERE id = $1").bind(event_id).fetch_optional(&mut conn).await?;
        row.map(|r| Ok(Position { publish_seq: r.opt_int("publish_seq")?, created_at: r.time("created_at")? })).transpose()
    }

    async fn last_seq(&self) -> Result<i64, StoreError> {
        let mut conn = self.db.reader().await?;
        Sql::<DB>::new("SELECT COALESCE(MAX(seq), 0) AS n FROM events").fetch_one(&mut conn).await?.int("n")
    }

    async fn unmarked_through(&self, seq: i64) -> Result<bool, StoreError> {
        let mut conn = self.db.reader().await?;
        let row = Sql::<DB>::new("SELECT seq FROM events WHERE published_at IS NULL AND seq <= $1 LIMIT 1")
            .bind(seq)
            .fetch_optional(&mut conn)
            .await?;
        Ok(row.is_some())
    }

    async fn published_after(&self, publish_seq: i64, since: DateTime<Utc>, limit: u32) -> Result<Vec<(i64, Event)>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new(
            "SELECT publish_seq, id, kind, user_id, data, created_at FROM events \
             WHERE publish_seq > $1 AND created_at >= $2 ORDER BY publish_seq LIMIT $3",
        )
        .bind(publish_seq)
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&mut conn)
        .await?;
        rows.iter()
            .map(|r| {
                let data = r.text("data")?;
                Ok((
                    r.int("publish_seq")?,
                    Event {
                        id: r.text("id")?,
                        kind: r.text("kind")?,
                        user_id: r.opt_text("user_id")?,
                        data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(format!("event data: {e}")))?,
                        created_at: r.time("created_at")?,
                    },
                ))
            })
            .collect()
    }
}
