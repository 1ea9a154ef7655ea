//! Running a subscriber: it hears every event on the bus, in order. If it falls behind the
//! bus it catches up from the outbox, so a burst never makes it miss an event. A durable
//! subscriber (one whose effects are stored) also records how far it got, and on start
//! catches up on what it missed while stopped, or dead, from the outbox (kept 24 h).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::{Bus, Event, Outbox};

/// Reacts to events. `handle` must be idempotent: an event can arrive more than once.
#[async_trait::async_trait]
pub trait Subscriber: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn handle(&self, event: &Event) -> anyhow::Result<()>;

    /// Whether its progress is recorded (under `name`) and resumed on start. Subscribers
    /// that only keep this process's memory in step (caches) need not be.
    fn durable(&self) -> bool {
        false
    }
}

/// A durable subscriber records its offset after this many events, when the bus is idle (at
/// most once per [`SAVE_INTERVAL`]), and when it stops. Each save is a write transaction, so
/// under a steady stream of events saving at every idle moment would cost several commits for
/// every use case that emits an event; a crash re-handles what came after the last save.
const SAVE_EVERY: u32 = 100;
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// Handles the outbox's published events after `after`, oldest first; returns the last
/// handled id (or `after` when there were none).
async fn catch_up(sub: &dyn Subscriber, outbox: &Outbox, after: String, stop: &watch::Receiver<bool>) -> String {
    let mut last = after;
    loop {
        match outbox.repo().since(&last, 1000).await {
            Ok(missed) if missed.is_empty() => return last,
            Ok(missed) => {
                for event in missed {
                    handle_until_done(sub, &event, stop).await;
                    last = event.id;
                }
                if sub.durable() {
                    save(sub, outbox, &last).await;
                }
            }
            Err(e) => {
                tracing::error!(subscriber = sub.name(), error = %e, "catching up failed");
                return last;
            }
        }
    }
}

async fn save(sub: &dyn Subscriber, outbox: &Outbox, last: &str) {
    if let Err(e) = outbox.save_offset(sub.name(), last).await {
        // Not fatal: a later save moves it on; a crash first means some events run twice.
        tracing::warn!(subscriber = sub.name(), error = %e, "recording the subscriber's offset failed");
    }
}

/// Attempts per event: 100 ms doubling, about 50 s in all.
const ATTEMPTS: u32 = 10;

/// Handles one event, retrying with backoff so a blink of the database does not skip an
/// effect; an event that still fails (it can never succeed, e.g. its user is gone) is
/// logged and passed over rather than blocking every later event. All in one span that
/// continues the event's trace.
async fn handle_until_done(sub: &dyn Subscriber, event: &Event, stop: &watch::Receiver<bool>) {
    let span = tracing::info_span!(
        parent: None,
        "event.handle",
        otel.name = %format!("{} {}", sub.name(), event.kind),
        otel.kind = "consumer",
        subscriber = sub.name(),
        event.id = %event.id,
        "event.type" = %event.kind
    );
    crate::telemetry::trace::continue_trace(&span, event.traceparent.as_deref());
    handle_with_retries(sub, event, stop).instrument(span).await;
}

async fn handle_with_retries(sub: &dyn Subscriber, event: &Event, stop: &watch::Receiver<bool>) {
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

pub async fn run(sub: Arc<dyn Subscriber>, bus: Arc<dyn Bus>, outbox: Arc<Outbox>, mut stop: watch::Receiver<bool>) {
    // Subscribe before catching up, so nothing published meanwhile is missed (what arrives
    // twice is handled twice, harmlessly).
    let mut events = bus.subscribe();
    let mut last_id: Option<String> = None;
    if sub.durable() {
        match outbox.repo().offset(sub.name()).await {
            Ok(offset) => last_id = Some(catch_up(sub.as_ref(), outbox.as_ref(), offset, &stop).await),
            Err(e) => tracing::error!(subscriber = sub.name(), error = %e, "reading the subscriber's offset failed"),
        }
    }
    let mut unsaved = 0u32;
    let mut saved_at = Instant::now();
    loop {
        // Handled events not yet recorded are recorded once the interval since the last save
        // is over, even if no other event comes.
        let save_due = (sub.durable() && unsaved > 0).then(|| saved_at + SAVE_INTERVAL);
        let received = tokio::select! {
            received = events.recv() => received,
            () = tokio::time::sleep_until(save_due.unwrap_or_else(Instant::now)), if save_due.is_some() => {
                if let Some(last) = &last_id {
                    save(sub.as_ref(), outbox.as_ref(), last).await;
                }
                (unsaved, saved_at) = (0, Instant::now());
                continue;
            }
            _ = stop.changed() => {
                if let Some(last) = last_id.as_deref().filter(|_| sub.durable() && unsaved > 0) {
                    save(sub.as_ref(), outbox.as_ref(), last).await;
                }
                return;
            }
        };
        match received {
            Ok(event) => {
                handle_until_done(sub.as_ref(), &event, &stop).await;
                last_id = Some(event.id.clone());
                unsaved += 1;
                let idle = events.is_empty() && saved_at.elapsed() >= SAVE_INTERVAL;
                if sub.durable() && (idle || unsaved >= SAVE_EVERY) {
                    save(sub.as_ref(), outbox.as_ref(), &event.id).await;
                    (unsaved, saved_at) = (0, Instant::now());
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(subscriber = sub.name(), missed, "subscriber fell behind; catching up from the outbox");
                let Some(after) = last_id.clone() else { continue };
                last_id = Some(catch_up(sub.as_ref(), outbox.as_ref(), after, &stop).await);
            }
            Err(RecvError::Closed) => return,
        }
    }
}
