//! Running a subscriber: it hears every event on the bus, in order. If it falls behind the
//! bus it catches up from the outbox, so a burst never makes it miss an event.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::{Bus, Event, EventRepo};

/// Reacts to events. `handle` must be idempotent: an event can arrive more than once.
#[async_trait::async_trait]
pub trait Subscriber: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn handle(&self, event: &Event) -> anyhow::Result<()>;
}

/// Attempts per event: 100 ms doubling, about 50 s in all.
const ATTEMPTS: u32 = 10;

/// Handles one event, retrying with backoff so a blink of the database does not skip an
/// effect; an event that still fails (it can never succeed, e.g. its user is gone) is
/// logged and passed over rather than blocking every later event.
async fn handle_until_done(sub: &dyn Subscriber, event: &Event, stop: &watch::Receiver<bool>) {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=ATTEMPTS {
        match sub.handle(event).await {
            Ok(()) => return,
            Err(e) if attempt == ATTEMPTS || *stop.borrow() => {
                tracing::error!(subscriber = sub.name(), event.id = %event.id, error = format!("{e:#}"), "subscriber gave up on an event");
                return;
            }
            Err(e) => {
                tracing::warn!(subscriber = sub.name(), event.id = %event.id, error = format!("{e:#}"), "subscriber failed; retrying")
            }
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}

pub async fn run(sub: Arc<dyn Subscriber>, bus: Arc<dyn Bus>, repo: Arc<dyn EventRepo>, mut stop: watch::Receiver<bool>) {
    let mut events = bus.subscribe();
    let mut last_id: Option<String> = None;
    loop {
        let received = tokio::select! {
            received = events.recv() => received,
            _ = stop.changed() => return,
        };
        match received {
            Ok(event) => {
                handle_until_done(sub.as_ref(), &event, &stop).await;
                last_id = Some(event.id.clone());
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(subscriber = sub.name(), missed, "subscriber fell behind; catching up from the outbox");
                let Some(after) = last_id.clone() else { continue };
                match repo.since(&after, 10_000).await {
                    Ok(missed) => {
                        for event in missed {
                            handle_until_done(sub.as_ref(), &event, &stop).await;
                            last_id = Some(event.id.clone());
                        }
                    }
                    Err(e) => tracing::error!(subscriber = sub.name(), error = %e, "catching up failed"),
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}
