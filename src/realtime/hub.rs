//! The hub: which connection of this instance wants which event. Every instance's hub hears
//! the whole bus and routes each event to its owner's connections and to the subscribers of
//! its public channel. Routing never waits on a socket: each connection has a bounded queue,
//! and a connection whose queue is full is told to close (1013) instead of slowing the rest.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};

use super::order::{Order, Verdict};
use super::repo::RealtimeRepo;
use crate::auth::service::Principal;
use crate::events::{Bus, Event, EventType};

/// Per-user event types that reach their owner in real time (the contract's list).
const USER_TYPES: [EventType; 3] = [EventType::NotificationCreated, EventType::WalletUpdated, EventType::OrderUpdated];

/// The back office's channel: every user's order changes and every product change, for the
/// staff feed (`GET /v1/admin/events`). Not a public channel: only that route subscribes to it.
pub const STAFF_CHANNEL: &str = "staff";

/// Channels one WebSocket connection may follow at once.
pub const MAX_CHANNELS: usize = 100;

/// The widest gap in the publish order the hub fills from the outbox; past it, clients resume.
const FILL_MAX: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Sse,
}

impl Transport {
    pub const fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
        }
    }
}

/// Why the server ends a connection. WebSocket sends the code; SSE just ends the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The client read too slowly and its queue filled (or the instance fell behind the bus).
    SlowConsumer,
    /// Logged out, session revoked, user disabled or a role taken away.
    SessionEnded,
    /// The access token expired and no fresh one was sent.
    TokenExpired,
    /// The instance is shutting down: reconnect (elsewhere) and resume.
    Restart,
}

impl Close {
    pub const fn code(self) -> u16 {
        match self {
            Close::SlowConsumer => 1013,
            Close::SessionEnded => 1008,
            Close::TokenExpired => 4401,
            Close::Restart => 1012,
        }
    }

    pub const fn reason(self) -> &'static str {
        match self {
            Close::SlowConsumer => "too slow to read; reconnect and resume",
            Close::SessionEnded => "the session ended",
            Close::TokenExpired => "the access token expired",
            Close::Restart => "the server is restarting; reconnect and resume",
        }
    }
}

/// One event as written to clients: `{"id","type","data","created_at"}`, encoded once for all.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: Arc<str>,
    /// Shared bytes: cloning a frame for another connection copies no text.
    pub json: Utf8Bytes,
    pub created_at: DateTime<Utc>,
    /// Read back from the outbox on resume rather than heard live.
    pub replayed: bool,
    /// The event's place in the publish order, by which a resume's seam drops live repeats.
    pub publish_seq: Option<i64>,
}

impl Frame {
    pub fn of(event: &Event, replayed: bool) -> Frame {
        let json = serde_json::json!({ "id": event.id, "type": event.kind, "data": event.data, "created_at": event.created_at });
        Frame {
            id: event.id.as_str().into(),
            json: Utf8Bytes::from(json.to_string()),
            created_at: event.created_at,
            replayed,
            publish_seq: event.publish_seq,
        }
    }
}

/// Who an event is for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    User(&'a str),
    Channel(String),
}

pub fn route(event: &Event) -> Option<Route<'_>> {
    if event.kind == EventType::ProductUpdated.name() {
        return event.data.get("id").and_then(|id| id.as_str()).map(|id| Route::Channel(format!("product:{id}")));
    }
    match &event.user_id {
        Some(user) if USER_TYPES.iter().any(|t| t.name() == event.kind) => Some(Route::User(user)),
        _ => None,
    }
}

/// Whether the staff channel hears `event` besides its owner or public channel.
pub fn for_staff(event: &Event) -> bool {
    event.kind == EventType::OrderUpdated.name() || event.kind == EventType::ProductUpdated.name()
}

/// `product:<id>` with a product id's shape; the only public channels there are.
pub fn valid_channel(channel: &str) -> bool {
    channel.strip_prefix("product:prd_").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_user: usize,
    /// Frames a connection may have waiting before it counts as a slow consumer.
    pub queue: usize,
}

/// Why a connection was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This user has `max_per_user` open already.
    UserLimit,
    /// This instance has `max_connections` open already.
    Full,
}

struct Entry {
    user_id: String,
    session_id: String,
    roles: i64,
    queue: mpsc::Sender<Frame>,
    close: watch::Sender<Option<Close>>,
    channels: HashSet<String>,
}

impl Entry {
    /// The first reason wins; later ones change nothing.
    fn close(&self, why: Close) {
        self.close.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(why);
            }
            first
        });
    }
}

#[derive(Default)]
struct Registry {
    conns: HashMap<u64, Entry>,
    users: HashMap<String, Vec<u64>>,
    channels: HashMap<String, HashSet<u64>>,
    per_transport: [usize; 2],
}

pub struct Hub {
    limits: Limits,
    registry: RwLock<Registry>,
    next_id: AtomicU64,
}

/// A registered connection: its queue, its close signal, and its place in the hub (given back on drop).
pub struct Connection {
    pub id: u64,
    pub user_id: String,
    pub frames: mpsc::Receiver<Frame>,
    pub close: watch::Receiver<Option<Close>>,
    transport: Transport,
    hub: Arc<Hub>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.hub.remove(self.id, self.transport);
    }
}

impl Hub {
    pub fn new(limits: Limits) -> Hub {
        Hub { limits, registry: RwLock::new(Registry::default()), next_id: AtomicU64::new(1) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        // A panic while holding the lock leaves plain maps behind, still usable.
        self.registry.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether another connection would fit at all (checked before a WebSocket upgrade whose
    /// user is not known yet).
    pub fn has_room(&self) -> bool {
        self.read().conns.len() < self.limits.max_connections
    }

    pub fn register(self: &Arc<Self>, who: &Principal, transport: Transport) -> Result<Connection, Refused> {
        let (queue, frames) = mpsc::channel(self.limits.queue);
        let (close_tx, close) = watch::channel(None);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut reg = self.write();
        if reg.conns.len() >= self.limits.max_connections {
            return Err(Refused::Full);
        }
        let mine = reg.users.entry(who.user_id.clone()).or_default();
        if mine.len() >= self.limits.max_per_user {
            return Err(Refused::UserLimit);
        }
        mine.push(id);
        reg.conns.insert(
            id,
            Entry {
                user_id: who.user_id.clone(),
                session_id: who.session_id.clone(),
                roles: who.roles.bits(),
                queue,
                close: close_tx,
                channels: HashSet::new(),
            },
        );
        reg.per_transport[transport as usize] += 1;
        crate::telemetry::record_realtime_connections(transport.label(), reg.per_transport[transport as usize]);
        drop(reg);
        Ok(Connection { id, user_id: who.user_id.clone(), frames, close, transport, hub: self.clone() })
    }

    fn remove(&self, id: u64, transport: Transport) {
        let mut reg = self.write();
        let Some(entry) = reg.conns.remove(&id) else { return };
        if let Some(ids) = reg.users.get_mut(&entry.user_id) {
            ids.retain(|c| *c != id);
            if ids.is_empty() {
                reg.users.remove(&entry.user_id);
            }
        }
        for channel in &entry.channels {
            if let Some(ids) = reg.channels.get_mut(channel) {
                ids.remove(&id);
                if ids.is_empty() {
                    reg.channels.remove(channel);
                }
            }
        }
        reg.per_transport[transport as usize] -= 1;
        crate::telemetry::record_realtime_connections(transport.label(), reg.per_transport[transport as usize]);
    }

    /// Adds `channel` to the connection's; `false` when it already follows `MAX_CHANNELS`.
    pub fn subscribe(&self, id: u64, channel: &str) -> bool {
        let mut reg = self.write();
        let Some(entry) = reg.conns.get_mut(&id) else { return false };
        if entry.channels.len() >= MAX_CHANNELS && !entry.channels.contains(channel) {
            return false;
        }
        entry.channels.insert(channel.to_owned());
        reg.channels.entry(channel.to_owned()).or_default().insert(id);
        true
    }

    pub fn unsubscribe(&self, id: u64, channel: &str) {
        let mut reg = self.write();
        if let Some(entry) = reg.conns.get_mut(&id) {
            entry.channels.remove(channel);
        }
        if let Some(ids) = reg.channels.get_mut(channel) {
            ids.remove(&id);
            if ids.is_empty() {
                reg.channels.remove(channel);
            }
        }
    }

    /// A fresh token was presented: the connection now belongs to its session and roles.
    pub fn reauthenticate(&self, id: u64, who: &Principal) {
        if let Some(entry) = self.write().conns.get_mut(&id) {
            entry.session_id.clone_from(&who.session_id);
            entry.roles = who.roles.bits();
        }
    }

    /// Queues `event` for every connection it is for, without waiting on any.
    pub fn dispatch(&self, event: &Event) {
        let reg = self.read();
        let mut targets: HashSet<u64> = match route(event) {
            Some(Route::User(user)) => reg.users.get(user).into_iter().flatten().copied().collect(),
            Some(Route::Channel(channel)) => reg.channels.get(&channel).cloned().unwrap_or_default(),
            None => HashSet::new(),
        };
        // A staff connection hears its owner's orders once, not once as owner and once as staff.
        if for_staff(event) {
            targets.extend(reg.channels.get(STAFF_CHANNEL).into_iter().flatten().copied());
        }
        if targets.is_empty() {
            return;
        }
        let frame = Frame::of(event, false);
        for id in targets {
            let Some(entry) = reg.conns.get(&id) else { continue };
            if let Err(mpsc::error::TrySendError::Full(_)) = entry.queue.try_send(frame.clone()) {
                if entry.close.borrow().is_none() {
                    crate::telemetry::record_realtime_slow_consumer();
                }
                entry.close(Close::SlowConsumer);
            }
        }
    }

    /// Every (user, session, roles) with a connection open here, each once.
    pub fn sessions(&self) -> Vec<(String, String)> {
        let reg = self.read();
        let set: HashSet<(&str, &str)> = reg.conns.values().map(|e| (e.user_id.as_str(), e.session_id.as_str())).collect();
        set.into_iter().map(|(u, s)| (u.to_owned(), s.to_owned())).collect()
    }

    /// Closes the session's connections: all of them when it ended (`roles_now` is `None`),
    /// else those opened with a role the user no longer has.
    pub fn end_session(&self, session_id: &str, roles_now: Option<i64>) {
        let reg = self.read();
        for entry in reg.conns.values().filter(|e| e.session_id == session_id) {
            let lost_a_role = roles_now.is_none_or(|now| entry.roles & now != entry.roles);
            if lost_a_role {
                entry.close(Close::SessionEnded);
            }
        }
    }

    pub fn close_all(&self, why: Close) {
        for entry in self.read().conns.values() {
            entry.close(why);
        }
    }

    /// Feeds the hub from the bus until `stop`, in publish order (see [`super::order`]): a
    /// repeat is dropped, a gap filled from the outbox first. If the hub falls behind the bus,
    /// the next event shows the gap and the missed ones come from the outbox.
    pub async fn run(self: Arc<Self>, bus: Arc<dyn Bus>, repo: Arc<dyn RealtimeRepo>, mut stop: watch::Receiver<bool>) {
        let mut events = bus.subscribe();
        let mut order = Order::default();
        loop {
            let received = tokio::select! {
                received = events.recv() => received,
                _ = stop.changed() => return,
            };
            match received {
                Ok(event) => {
                    match order.check(event.publish_seq) {
                        Verdict::Seen => continue,
                        Verdict::Gap { from, to } => self.fill(repo.as_ref(), from, to).await,
                        Verdict::Next => {}
                    }
                    self.dispatch(&event);
                    order.delivered(event.publish_seq);
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the real-time hub fell behind the bus; filling in from the outbox");
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Delivers places `from..to` from the outbox. When the gap is too wide or the read fails,
    /// every connection is told to reconnect and resume instead, which the outbox serves exactly.
    async fn fill(&self, repo: &dyn RealtimeRepo, from: i64, to: i64) {
        let missing = to - from;
        if missing > FILL_MAX {
            tracing::warn!(missing, "the real-time hub missed too many events; asking every client to resume");
            return self.close_all(Close::SlowConsumer);
        }
        // However old their `created_at`, these were just published.
        match repo.numbered_after(from - 1, DateTime::UNIX_EPOCH, missing as u32).await {
            Ok(events) => {
                for event in events.iter().filter(|e| e.publish_seq.is_some_and(|p| p < to)) {
                    self.dispatch(event);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reading missed events failed; asking every client to resume");
                self.close_all(Close::SlowConsumer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, user: Option<&str>, data: serde_json::Value) -> Event {
        Event {
            id: "evt_1".into(),
            kind: kind.into(),
            user_id: user.map(str::to_owned),
            data,
            created_at: Utc::now(),
            publish_seq: None,
            traceparent: None,
        }
    }

    #[test]
    fn events_route_to_their_owner_or_their_product_channel() {
        let n = event("notification.created", Some("usr_1"), serde_json::json!({}));
        assert_eq!(route(&n), Some(Route::User("usr_1")));
        let p = event("product.updated", None, serde_json::json!({ "id": "prd_9" }));
        assert_eq!(route(&p), Some(Route::Channel("product:prd_9".into())));
        // Account events are not part of the real-time contract.
        assert_eq!(route(&event("account.password_changed", Some("usr_1"), serde_json::json!({}))), None);
    }

    #[test]
    fn channels_are_product_ids() {
        assert!(valid_channel("product:prd_01JAB"));
        assert!(!valid_channel("product:"));
        assert!(!valid_channel("user:usr_1"));
        assert!(!valid_channel("product:prd_a/b"));
    }

    #[test]
    fn close_codes_are_the_contracts() {
        assert_eq!(Close::SlowConsumer.code(), 1013);
        assert_eq!(Close::SessionEnded.code(), 1008);
        assert_eq!(Close::TokenExpired.code(), 4401);
        assert_eq!(Close::Restart.code(), 1012);
    }
}
