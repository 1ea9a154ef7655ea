//! SQL of the outbox.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::Instrument as _;

use super::{Bus, Event, NewEvent};
use crate::store::{Backend, Build, Columns, Db, Lease, Sql, Store, StoreError, Tx};

/// Records `event` on the caller's connection, inside its transaction, with the trace context
/// it is written in; the caller wakes the relays ([`wake_relays_in`]) once for all the events
/// it records.
pub(super) async fn record_in<DB: Backend>(conn: &mut DB::Connection, event: &NewEvent, now: DateTime<Utc>) -> Result<String, StoreError> {
    let id = crate::ids::new("evt");
    Sql::<DB>::new("INSERT INTO events (id, kind, user_id, data, created_at, traceparent) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(id.as_str())
        .bind(event.kind)
        .bind(event.user_id.clone())
        .bind(event.data.to_string())
        .bind(now)
        .bind(crate::telemetry::trace::current())
        .execute(conn)
        .await?;
    Ok(id)
}

/// Wakes the event relays of every process when the caller's transaction commits (PostgreSQL;
/// elsewhere relays are woken in-process and poll).
pub(super) async fn wake_relays_in<DB: Backend>(conn: &mut DB::Connection) -> Result<(), StoreError> {
    if let Some(notify) = DB::NOTIFY_EVENTS {
        Sql::<DB>::new(notify).execute(conn).await?;
    }
    Ok(())
}

/// An event from a row of `publish_seq, id, kind, user_id, data, created_at, traceparent`.
pub(crate) fn event_from<R: Columns>(r: &R) -> Result<Event, StoreError> {
    let data = r.text("data")?;
    Ok(Event {
        id: r.text("id")?,
        kind: r.text("kind")?,
        user_id: r.opt_text("user_id")?,
        data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(format!("event data: {e}")))?,
        created_at: r.time("created_at")?,
        publish_seq: r.opt_int("publish_seq")?,
        traceparent: r.opt_text("traceparent")?,
    })
}

/// Ascending numbers as runs of consecutive ones: `1 2 3 5 6` → `(1,3) (5,6)`.
fn runs(ascending: impl Iterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for n in ascending {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == n => *last = n,
            _ => runs.push((n, n)),
        }
    }
    runs
}

/// The SQL of the outbox. Reads use the reader pool; every write is one step of the caller's
/// unit of work.
#[async_trait::async_trait]
pub trait EventRepo: Send + Sync {
    /// Whether a committed event still waits for its place in the publish order.
    async fn any_unnumbered(&self) -> Result<bool, StoreError>;
    /// The first events in publish order that are numbered but not yet marked published.
    async fn numbered_unpublished(&self, limit: u32) -> Result<Vec<Event>, StoreError>;
    /// Events after `after_id` (by id order), oldest first: what a resuming client missed.
    async fn since(&self, after_id: &str, limit: u32) -> Result<Vec<Event>, StoreError>;
    /// How many committed events wait for the relay.
    async fn lag(&self) -> Result<i64, StoreError>;
    /// The last event a durable subscriber recorded as handled (`""`: none yet).
    async fn offset(&self, subscriber: &str) -> Result<String, StoreError>;
    /// Gives the oldest committed events that have no place in the publish order yet (up to
    /// `limit`, by `seq`) the next places (`publish_seq`), after every one numbered before,
    /// with no gap. Returns how many it numbered.
    async fn number(&self, tx: &mut Tx, limit: u32) -> Result<usize, StoreError>;
    /// Marks the events at places `first..=last` of the publish order published.
    async fn mark_published(&self, tx: &mut Tx, first: i64, last: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Deletes published events older than `before`.
    async fn purge(&self, tx: &mut Tx, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Moves a durable subscriber's offset forward (never back).
    async fn save_offset(&self, tx: &mut Tx, subscriber: &str, event_id: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
}

/// The outbox repository of `store`'s backend.
pub fn for_store(store: &Store) -> Arc<dyn EventRepo> {
    struct Events;
    impl Build for Events {
        type Output = Arc<dyn EventRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlEvents { db })
        }
    }
    store.build(Events)
}

struct SqlEvents<DB: Backend> {
    db: Db<DB>,
}

#[async_trait::async_trait]
impl<DB: Backend> EventRepo for SqlEvents<DB> {
    async fn any_unnumbered(&self) -> Result<bool, StoreError> {
        let mut conn = self.db.reader().await?;
        let row = Sql::<DB>::new("SELECT seq FROM events WHERE published_at IS NULL AND publish_seq IS NULL LIMIT 1")
            .fetch_optional(&mut conn)
            .await?;
        Ok(row.is_some())
    }

    async fn numbered_unpublished(&self, limit: u32) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new(
            "SELECT publish_seq, id, kind, user_id, data, created_at, traceparent FROM events \
             WHERE published_at IS NULL AND publish_seq IS NOT NULL ORDER BY publish_seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut conn)
        .await?;
        rows.iter().map(event_from).collect()
    }

    async fn since(&self, after_id: &str, limit: u32) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new(
            "SELECT publish_seq, id, kind, user_id, data, created_at, traceparent FROM events \
             WHERE published_at IS NOT NULL AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&mut conn)
        .await?;
        rows.iter().map(event_from).collect()
    }

    async fn lag(&self) -> Result<i64, StoreError> {
        let mut conn = self.db.reader().await?;
        Sql::<DB>::new("SELECT COUNT(*) AS n FROM events WHERE published_at IS NULL").fetch_one(&mut conn).await?.int("n")
    }

    async fn offset(&self, subscriber: &str) -> Result<String, StoreError> {
        let mut conn = self.db.reader().await?;
        let row = Sql::<DB>::new("SELECT last_event_id FROM subscriber_offsets WHERE name = $1")
            .bind(subscriber)
            .fetch_optional(&mut conn)
            .await?;
        row.map_or(Ok(String::new()), |r| r.text("last_event_id"))
    }

    async fn number(&self, tx: &mut Tx, limit: u32) -> Result<usize, StoreError> {
        let conn = tx.conn::<DB>()?;
        // Relays of several instances may number at once (a deposed leader that has not noticed
        // yet): the lock, held to commit, makes them take turns, so each continues from the
        // highest place the previous one committed and the numbering stays dense.
        if let Some(lock) = DB::LOCK_PUBLISH_ORDER {
            Sql::<DB>::new(lock).execute(conn).await?;
        }
        let rows = Sql::<DB>::new("SELECT seq FROM events WHERE published_at IS NULL AND publish_seq IS NULL ORDER BY seq LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(conn)
            .await?;
        let seqs = rows.iter().map(|r| r.int("seq")).collect::<Result<Vec<i64>, _>>()?;
        let mut next = Sql::<DB>::new("SELECT COALESCE(MAX(publish_seq), 0) + 1 AS n FROM events").fetch_one(conn).await?.int("n")?;
        // Each run of consecutive `seq`s holds only rows read above, so one statement numbers it.
        for (first, last) in runs(seqs.iter().copied()) {
            Sql::<DB>::new("UPDATE events SET publish_seq = $3 + (seq - $1) WHERE seq >= $1 AND seq <= $2")
                .bind(first)
                .bind(last)
                .bind(next)
                .execute(conn)
                .await?;
            next += last - first + 1;
        }
        Ok(seqs.len())
    }

    async fn mark_published(&self, tx: &mut Tx, first: i64, last: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        Sql::<DB>::new("UPDATE events SET published_at = $3 WHERE publish_seq >= $1 AND publish_seq <= $2 AND published_at IS NULL")
            .bind(first)
            .bind(last)
            .bind(at)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(())
    }

    async fn purge(&self, tx: &mut Tx, before: DateTime<Utc>) -> Result<u64, StoreError> {
        // Numbering continues from the highest `publish_seq` there is: the row holding it stays
        // (until a newer one exists), so the publish order never starts over.
        Sql::<DB>::new(
            "DELETE FROM events WHERE published_at IS NOT NULL AND created_at < $1 \
             AND COALESCE(publish_seq, 0) < (SELECT COALESCE(MAX(publish_seq), 0) FROM events)",
        )
        .bind(before)
        .execute(tx.conn::<DB>()?)
        .await
    }

    async fn save_offset(&self, tx: &mut Tx, subscriber: &str, event_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "INSERT INTO subscriber_offsets (name, last_event_id, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET last_event_id = excluded.last_event_id, updated_at = excluded.updated_at \
             WHERE subscriber_offsets.last_event_id < excluded.last_event_id",
        )
        .bind(subscriber)
        .bind(event_id)
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }
}

/// The outbox's use cases: relaying committed events to the bus and recording how far a
/// durable subscriber got, each its own unit of work.
pub struct Outbox {
    store: Store,
    repo: Arc<dyn EventRepo>,
}

impl Outbox {
    pub fn new(store: Store) -> Self {
        Self { repo: for_store(&store), store }
    }

    /// The outbox's reads, and its steps for other use cases (the purge job).
    pub fn repo(&self) -> &Arc<dyn EventRepo> {
        &self.repo
    }

    /// Numbers the events committed since the last batch, publishes the numbered ones to `bus`
    /// in publish order, then marks them published; returns how many it published. See
    /// [`super::relay`] for why this order makes real-time resume exact. Publishing is a network
    /// call (NATS), so no transaction is open while it runs: numbering and marking are short
    /// transactions of their own. A crash in between publishes an event twice; JetStream drops
    /// the repeat (the event id is its message id), the real-time hub drops it by its place in
    /// the publish order, and subscribers are idempotent.
    pub async fn relay_batch(&self, limit: u32, bus: &dyn Bus) -> anyhow::Result<usize> {
        // Looked at first with a read: an idle relay opens no write transaction.
        if self.repo.any_unnumbered().await? {
            self.store
                .transact(|mut tx| async move {
                    let numbered = self.repo.number(&mut tx, limit).await?;
                    Ok::<_, StoreError>((tx, numbered))
                })
                .await?;
        }
        let events = self.repo.numbered_unpublished(limit).await?;
        let (Some(first), Some(last)) = (events.first().and_then(|e| e.publish_seq), events.last().and_then(|e| e.publish_seq)) else {
            return Ok(0);
        };
        for event in &events {
            publish(bus, event).await?;
        }
        // Every place from `first` to `last` is in `events` or was marked before they were
        // read (numbering is dense and commits in order), so the range is exactly what was sent.
        let at = crate::store::now();
        self.store
            .transact(|mut tx| async move {
                self.repo.mark_published(&mut tx, first, last, at).await?;
                Ok::<_, StoreError>((tx, ()))
            })
            .await?;
        Ok(events.len())
    }

    /// The relay's lease if no other process holds it (see [`super::relay`]).
    pub async fn try_lead(&self) -> Result<Option<Lease>, StoreError> {
        self.store.try_lease(super::relay::LEADER).await
    }

    /// Moves a durable subscriber's offset forward (never back).
    pub async fn save_offset(&self, subscriber: &str, event_id: &str) -> Result<(), StoreError> {
        self.store
            .transact(|mut tx| async move {
                self.repo.save_offset(&mut tx, subscriber, event_id, crate::store::now()).await?;
                Ok((tx, ()))
            })
            .await
    }
}

/// Publishes `event` in a span that continues the trace it was written in; the copy on the bus
/// carries that span's context, so subscribers continue from the publication.
async fn publish(bus: &dyn Bus, event: &Event) -> anyhow::Result<()> {
    let span = tracing::info_span!(
        parent: None,
        "event.publish",
        otel.name = %format!("publish {}", event.kind),
        otel.kind = "producer",
        event.id = %event.id,
        "event.type" = %event.kind
    );
    let traceparent = crate::telemetry::trace::continue_trace(&span, event.traceparent.as_deref());
    bus.publish(&Event { traceparent, ..event.clone() }).instrument(span).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_split_at_gaps() {
        assert_eq!(super::runs([1, 2, 3, 5, 6, 9].into_iter()), [(1, 3), (5, 6), (9, 9)]);
        assert!(super::runs(std::iter::empty()).is_empty());
    }
}
