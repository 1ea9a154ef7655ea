//! The transactional outbox and the event bus.
//!
//! A state change writes its event row in its own unit of work (`Effects::write`). The relay
//! numbers committed rows in publish order and publishes them in that order to the bus;
//! subscribers hear them there. An event is
//! never lost (the row outlives a crash and is published after restart) and never sent for
//! a rolled-back change (the row was never committed). Delivery is at least once, so
//! subscribers are idempotent (they key their effects by event id).

pub mod bus;
pub mod catalogue;
pub mod nats;
pub mod relay;
pub mod repo;
pub mod subscriber;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{StoreError, Tx};

pub use bus::{Bus, LocalBus};
pub use catalogue::EventType;
pub use repo::{EventRepo, Outbox};

/// An event as clients, subscribers and webhook receivers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The user the event concerns, when there is one (not sent to webhook receivers).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_id: Option<String>,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// Its place in the publish order (`events.publish_seq`), given before the relay publishes
    /// it, so it travels on the bus; real-time delivery and resume go by it. Internal: not sent
    /// to clients or webhook receivers.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(ignore)]
    pub publish_seq: Option<i64>,
    /// The trace context of the unit of work that wrote it (on the bus: of its publication), so
    /// those that handle it continue that trace. Internal: NATS carries it as a header.
    #[serde(skip)]
    #[schema(ignore)]
    pub traceparent: Option<String>,
}

/// An event to record with a state change.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: &'static str,
    pub user_id: Option<String>,
    pub data: serde_json::Value,
}

/// What else commits with a state change: jobs to run, events to announce, audit entries to append.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    pub jobs: Vec<crate::jobs::NewJob>,
    pub events: Vec<NewEvent>,
    pub audit: Vec<crate::security::audit::NewEntry>,
}

impl Effects {
    pub fn job(mut self, job: crate::jobs::NewJob) -> Self {
        self.jobs.push(job);
        self
    }

    pub fn event(mut self, kind: EventType, user_id: &str, data: serde_json::Value) -> Self {
        self.events.push(NewEvent { kind: kind.name(), user_id: Some(user_id.to_owned()), data });
        self
    }

    /// An event for everyone (no user of its own), such as a product's new price.
    pub fn public_event(mut self, kind: EventType, data: serde_json::Value) -> Self {
        self.events.push(NewEvent { kind: kind.name(), user_id: None, data });
        self
    }

    /// An audit entry of the change (appended last: the chain's head is held until commit).
    pub fn audit(mut self, entry: crate::security::audit::NewEntry) -> Self {
        self.audit.push(entry);
        self
    }

    /// Writes the effects into the use case's unit of work.
    pub async fn write(&self, tx: &mut Tx, now: DateTime<Utc>) -> Result<(), StoreError> {
        match tx {
            Tx::Sqlite(tx) => self.apply_in::<sqlx::Sqlite>(tx, now).await,
            Tx::Postgres(tx) => self.apply_in::<sqlx::Postgres>(tx, now).await,
        }
    }

    /// Writes the effects on the caller's connection, inside its transaction.
    async fn apply_in<DB: crate::store::Backend>(&self, conn: &mut DB::Connection, now: DateTime<Utc>) -> Result<(), StoreError> {
        for job in &self.jobs {
            crate::jobs::repo::enqueue_in::<DB>(conn, job, now).await?;
        }
        for event in &self.events {
            repo::record_in::<DB>(conn, event, now).await?;
        }
        if !self.events.is_empty() {
            repo::wake_relays_in::<DB>(conn).await?;
        }
        for entry in &self.audit {
            crate::security::audit::repo::append_in::<DB>(conn, entry, now).await?;
        }
        Ok(())
    }
}
