//! The transactional outbox and the event bus.
//!
//! A state change writes its event row in the same transaction (`record_in`). The relay
//! publishes committed rows in order to the bus; subscribers hear them there. An event is
//! never lost (the row outlives a crash and is published after restart) and never sent for
//! a rolled-back change (the row was never committed). Delivery is at least once, so
//! subscribers are idempotent (they key their effects by event id).

pub mod bus;
pub mod relay;
pub mod repo;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use bus::{Bus, LocalBus};
pub use repo::{EventRepo, SqlEvents, record_in};

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
}

/// An event to record with a state change.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: &'static str,
    pub user_id: Option<String>,
    pub data: serde_json::Value,
}
