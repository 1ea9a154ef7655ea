//! SQL of the outbox.

use chrono::{DateTime, Utc};

use super::{Bus, Event, NewEvent};
use crate::store::{Backend, Columns, Db, Sql, StoreError};

/// Records `event` on the caller's connection, inside its transaction.
pub async fn record_in<DB: Backend>(conn: &mut DB::Connection, event: &NewEvent, now: DateTime<Utc>) -> Result<String, StoreError> {
    let id = crate::ids::new("evt");
    Sql::<DB>::new("INSERT INTO events (id, kind, user_id, data, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(id.as_str())
        .bind(event.kind)
        .bind(event.user_id.clone())
        .bind(event.data.to_string())
        .bind(now)
        .execute(conn)
        .await?;
    if let Some(notify) = DB::NOTIFY_EVENTS {
        Sql::<DB>::new(notify).execute(conn).await?;
    }
    Ok(id)
}

fn event_from<R: Columns>(r: &R) -> Result<(i64, Event), StoreError> {
    let data = r.text("data")?;
    Ok((
        r.int("seq")?,
        Event {
            id: r.text("id")?,
            kind: r.text("kind")?,
            user_id: r.opt_text("user_id")?,
            data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(format!("event data: {e}")))?,
            created_at: r.time("created_at")?,
        },
    ))
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

#[async_trait::async_trait]
pub trait EventRepo: Send + Sync {
    /// Records an event on its own (no other change commits with it).
    async fn record(&self, event: &NewEvent) -> Result<String, StoreError>;
    /// Publishes the oldest unpublished events in order to `bus`, then marks them,
    /// all in one write transaction that excludes other relays. Returns how many were sent.
    async fn relay_batch(&self, limit: u32, bus: &dyn Bus) -> anyhow::Result<usize>;
    /// Events after `after_id` (by id order), oldest first: what a resuming client missed.
    async fn since(&self, after_id: &str, limit: u32) -> Result<Vec<Event>, StoreError>;
    /// Deletes published events older than `before`.
    async fn purge(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// How many committed events wait for the relay.
    async fn lag(&self) -> Result<i64, StoreError>;
    /// The last event a durable subscriber recorded as handled (`""`: none yet).
    async fn offset(&self, subscriber: &str) -> Result<String, StoreError>;
    /// Moves a durable subscriber's offset forward (never back).
    async fn save_offset(&self, subscriber: &str, event_id: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
}

pub struct SqlEvents<DB: Backend> {
    db: Db<DB>,
}

impl<DB: Backend> SqlEvents<DB> {
    pub fn new(db: Db<DB>) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl<DB: Backend> EventRepo for SqlEvents<DB> {
    async fn record(&self, event: &NewEvent) -> Result<String, StoreError> {
        let mut tx = self.db.begin().await?;
        let id = record_in::<DB>(&mut tx, event, crate::store::now()).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn relay_batch(&self, limit: u32, bus: &dyn Bus) -> anyhow::Result<usize> {
        // Look before taking the write lock: most polls find nothing to do.
        let mut conn = self.db.reader().await?;
        let pending = Sql::<DB>::new("SELECT seq FROM events WHERE published_at IS NULL LIMIT 1").fetch_optional(&mut conn).await?;
        drop(conn);
        if pending.is_none() {
            return Ok(0);
        }
        let mut tx = self.db.begin().await?;
        if let Some(lock) = DB::RELAY_LOCK {
            let row = Sql::<DB>::new(lock).fetch_one(&mut tx).await?;
            if !row.flag("locked")? {
                return Ok(0);
            }
        }
        let rows =
            Sql::<DB>::new("SELECT seq, id, kind, user_id, data, created_at FROM events WHERE published_at IS NULL ORDER BY seq LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&mut tx)
                .await?;
        let events = rows.iter().map(event_from).collect::<Result<Vec<_>, _>>()?;
        if events.is_empty() {
            return Ok(0);
        }
        for (_, event) in &events {
            bus.publish(event).await?;
        }
        // Mark exactly the rows sent. A transaction that took a lower `seq` may commit while
        // this one runs (PostgreSQL): its event is not in `events` and must stay unpublished.
        // Each row also gets its place in the publish order (`publish_seq`), which real-time
        // resume goes by: unlike `seq`, it never puts a late-published event behind a resume point.
        let at = crate::store::now();
        let mut next = Sql::<DB>::new("SELECT COALESCE(MAX(publish_seq), 0) + 1 AS n FROM events").fetch_one(&mut tx).await?.int("n")?;
        for (first, last) in runs(events.iter().map(|(seq, _)| *seq)) {
            Sql::<DB>::new(
                "UPDATE events SET published_at = $3, publish_seq = $4 + (seq - $1) WHERE seq >= $1 AND seq <= $2 AND published_at IS NULL",
            )
            .bind(first)
            .bind(last)
            .bind(at)
            .bind(next)
            .execute(&mut tx)
            .await?;
            next += last - first + 1;
        }
        tx.commit().await?;
        Ok(events.len())
    }

    async fn since(&self, after_id: &str, limit: u32) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new(
            "SELECT seq, id, kind, user_id, data, created_at FROM events WHERE published_at IS NOT NULL AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&mut conn)
        .await?;
        rows.iter().map(|r| event_from(r).map(|(_, e)| e)).collect()
    }

    async fn purge(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let n =
            self.db.execute(Sql::<DB>::new("DELETE FROM events WHERE published_at IS NOT NULL AND created_at < $1").bind(before)).await?;
        Ok(n)
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

    async fn save_offset(&self, subscriber: &str, event_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = Sql::new(
            "INSERT INTO subscriber_offsets (name, last_event_id, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET last_event_id = excluded.last_event_id, updated_at = excluded.updated_at \
             WHERE subscriber_offsets.last_event_id < excluded.last_event_id",
        )
        .bind(subscriber)
        .bind(event_id)
        .bind(now);
        self.db.execute(sql).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_split_at_gaps() {
        assert_eq!(super::runs([1, 2, 3, 5, 6, 9].into_iter()), [(1, 3), (5, 6), (9, 9)]);
        assert!(super::runs(std::iter::empty()).is_empty());
    }
}
