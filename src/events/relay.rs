//! The outbox relay: moves committed events to the bus, in order.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::{Bus, Outbox};

const BATCH: u32 = 256;

/// Runs until `stop` turns true. Woken by NOTIFY (PostgreSQL) or polls every `poll`.
pub async fn run(outbox: Arc<Outbox>, bus: Arc<dyn Bus>, wake: Arc<Notify>, poll: Duration, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match outbox.relay_batch(BATCH, bus.as_ref()).await {
            // A full batch means more may be waiting: go again at once.
            Ok(n) if n == BATCH as usize => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "relaying events failed; will retry"),
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(poll) => {}
            _ = stop.changed() => {}
        }
    }
}
