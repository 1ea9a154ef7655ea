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
    /// `None` until the relay numbers it (or for events older than this column).
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
    /// Events numbered after `publish_seq` and created since `since`, in publish order. They
    /// may not be published yet: they will be, in this order, after every one before them.
    async fn numbered_after(&self, publish_seq: i64, since: DateTime<Utc>, limit: u32) -> Result<Vec<Event>, StoreError>;
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

    async fn numbered_after(&self, publish_seq: i64, since: DateTime<Utc>, limit: u32) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new(
            "SELECT publish_seq, id, kind, user_id, data, created_at, traceparent FROM events \
             WHERE publish_seq > $1 AND created_at >= $2 ORDER BY publish_seq LIMIT $3",
        )
        .bind(publish_seq)
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&mut conn)
        .await?;
        rows.iter().map(crate::events::repo::event_from).collect()
    }
}
