//! The outbox relay: moves committed events to the bus, in publish order.
//!
//! Real-time clients resume by an event's place in the publish order (`events.publish_seq`):
//! "send me every event after this one". That is exact only if every client hears events in
//! that same order; a client that heard place 11 before place 10 and reconnects after 11 would
//! never get 10. So the order is fixed before anything is published, and publishing follows it:
//!
//! 1. **Number, then publish.** In a short transaction under the numbering lock, the relay gives
//!    the committed events that have no place yet the next places, densely (`MAX + 1`, `+ 2`, …),
//!    and commits. Only then does it publish, and it publishes every numbered event not yet
//!    marked published, its own and any a crashed relay left behind, in place order. An event
//!    therefore reaches the bus carrying its final place, and when place `n` is on the bus,
//!    places `1..n` are committed and readable: the replay (read from the outbox) and the live
//!    stream (from the bus) agree on one order. (Numbering when marking, after publishing, lets two
//!    relays publish in one order and number in the other.)
//! 2. **One leader.** Only the relay holding the lease ([`LEADER`]: a session-level advisory
//!    lock on PostgreSQL, a lock file on SQLite) publishes; the others wait to take over. A
//!    leader that loses its lease without noticing (its lock session broke) may still publish
//!    for a moment alongside the new one. That is harmless: both publish in place order from
//!    the oldest unmarked place, so the first copy of place `i` always reaches the bus before
//!    the first copy of any later place, and the later copies are repeats (JetStream drops them
//!    by message id, the hub by place).
//! 3. **The hub checks.** Each instance's real-time hub delivers in place order and fills a gap
//!    from the outbox before going on (`realtime::hub`), so even a bus that reorders or drops
//!    cannot make a client skip an event.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::{Bus, Outbox};
use crate::store::{Lease, LeaseName};

const BATCH: u32 = 256;

/// The relay's lease; the advisory lock key is b"keel/ldr".
pub(super) const LEADER: LeaseName = LeaseName { pg_key: 7_738_703_050_032_571_506, file: "relay-lock" };

/// How often a relay that is not the leader tries to take over.
const STANDBY_RETRY: Duration = Duration::from_secs(1);

/// Runs until `stop` turns true: leads when it can, then publishes. Woken by NOTIFY
/// (PostgreSQL) or local commits, or polls every `poll`.
pub async fn run(outbox: Arc<Outbox>, bus: Arc<dyn Bus>, wake: Arc<Notify>, poll: Duration, mut stop: watch::Receiver<bool>) {
    let mut lease: Option<Lease> = None;
    while !*stop.borrow() {
        let leading = match lease.as_mut() {
            Some(held) => held.held().await,
            None => match outbox.try_lead().await {
                Ok(taken) => {
                    lease = taken;
                    lease.is_some()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "taking the relay lease failed; will retry");
                    false
                }
            },
        };
        if !leading {
            if lease.take().is_some() {
                tracing::warn!("the relay lost its lease; another instance may publish now");
            }
            tokio::select! {
                () = tokio::time::sleep(STANDBY_RETRY) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
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
