//! One connection's stream of frames, whatever the transport: live frames from the hub and,
//! after a resume, the missed ones read back from the outbox first.
//!
//! Resume goes by publish order (`publish_seq`), not time or `seq`: a client has seen exactly
//! the events published before the one it names. The connection is registered with the hub
//! before the replay reads the outbox, so nothing published meanwhile is missed; what the
//! replay sent is dropped when its live copy arrives, so nothing is sent twice. The relay
//! publishes an event a moment before it numbers it, so an event the hub had before this
//! connection registered may not be numbered yet when the replay reads: the replay ends only
//! once every event committed before it began is numbered (or after `POSITION_WAIT`).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

use super::hub::{Close, Connection, Frame, Route, route};
use super::repo::RealtimeRepo;
use crate::store::StoreError;

/// Missed events of this long ago are replayed; an older resume point gets `resync`.
pub const REPLAY_WINDOW: TimeDelta = TimeDelta::hours(24);
/// Events read from the outbox per query while replaying.
const PAGE: u32 = 500;
/// A live copy of a replayed event arrives within this long (the bus's delivery delay), so
/// the replayed ids are kept that long to drop it.
const DEDUP_HORIZON: Duration = Duration::from_secs(120);
/// The relay publishes an event to the bus a moment before it records the publish position;
/// a client resuming from an event it just got waits this long for that position.
const POSITION_WAIT: Duration = Duration::from_secs(3);

pub enum Next {
    Frame(Frame),
    Closed(Close),
}

struct Replay {
    after: i64,
    since: DateTime<Utc>,
    /// The last event committed when the replay began; the replay waits until it and every
    /// one before it are numbered, until `settle_by`.
    horizon: i64,
    settle_by: Instant,
    backlog: VecDeque<Frame>,
    exhausted: bool,
}

pub struct Feed {
    conn: Connection,
    repo: Arc<dyn RealtimeRepo>,
    channels: HashSet<String>,
    replay: Option<Replay>,
    replayed: HashSet<Arc<str>>,
    forget_replayed_at: Option<Instant>,
}

impl Feed {
    pub fn new(conn: Connection, repo: Arc<dyn RealtimeRepo>) -> Feed {
        Feed { conn, repo, channels: HashSet::new(), replay: None, replayed: HashSet::new(), forget_replayed_at: None }
    }

    pub fn id(&self) -> u64 {
        self.conn.id
    }

    pub fn channels(&mut self) -> &mut HashSet<String> {
        &mut self.channels
    }

    fn wants(&self, event: &crate::events::Event) -> bool {
        match route(event) {
            Some(Route::User(user)) => user == self.conn.user_id,
            Some(Route::Channel(channel)) => self.channels.contains(&channel),
            None => false,
        }
    }

    /// Starts replaying what followed `last_event_id`. `false`: the point is unknown or older
    /// than the replay window (purged, or never an event), and the client must resync.
    pub async fn resume(&mut self, last_event_id: &str) -> Result<bool, StoreError> {
        let deadline = Instant::now() + POSITION_WAIT;
        let position = loop {
            match self.repo.position(last_event_id).await? {
                Some(p) if p.publish_seq.is_none() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                other => break other,
            }
        };
        let since = Utc::now() - REPLAY_WINDOW;
        match position {
            Some(p) if p.created_at >= since => {
                let Some(after) = p.publish_seq else { return Ok(false) };
                let horizon = self.repo.last_seq().await?;
                let settle_by = Instant::now() + POSITION_WAIT;
                self.replay = Some(Replay { after, since, horizon, settle_by, backlog: VecDeque::new(), exhausted: false });
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The next frame to send, or why to close. Cancel-safe: state changes only after each await.
    pub async fn next(&mut self) -> Result<Next, StoreError> {
        loop {
            if let Some(why) = *self.conn.close.borrow() {
                return Ok(Next::Closed(why));
            }
            if let Some(replay) = &mut self.replay {
                if let Some(frame) = replay.backlog.pop_front() {
                    return Ok(Next::Frame(frame));
                }
                if !replay.exhausted {
                    let page = self.repo.published_after(replay.after, replay.since, PAGE).await?;
                    let replay = self.replay.as_mut().expect("replaying");
                    if let Some((last, _)) = page.last() {
                        replay.after = *last;
                    }
                    let (horizon, settle_by) = (replay.horizon, replay.settle_by);
                    let wanted: Vec<Frame> = page.iter().filter(|(_, e)| self.wants(e)).map(|(_, e)| Frame::of(e, true)).collect();
                    crate::telemetry::record_realtime_replayed(wanted.len());
                    self.replayed.extend(wanted.iter().map(|f| f.id.clone()));
                    self.replay.as_mut().expect("replaying").backlog.extend(wanted);
                    if page.len() < PAGE as usize {
                        let unnumbered = Instant::now() < settle_by && self.repo.unmarked_through(horizon).await?;
                        if !unnumbered {
                            self.replay.as_mut().expect("replaying").exhausted = true;
                        } else if self.replay.as_ref().is_some_and(|r| r.backlog.is_empty()) {
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                    }
                    continue;
                }
                self.replay = None;
                self.forget_replayed_at = Some(Instant::now() + DEDUP_HORIZON);
            }
            tokio::select! {
                changed = self.conn.close.changed() => {
                    if changed.is_err() {
                        // The hub dropped the sender: it is gone, as at shutdown.
                        return Ok(Next::Closed(Close::Restart));
                    }
                }
                frame = self.conn.frames.recv() => {
                    let Some(frame) = frame else { return Ok(Next::Closed(Close::Restart)) };
                    if self.forget_replayed_at.is_some_and(|at| Instant::now() >= at) {
                        self.replayed = HashSet::new();
                        self.forget_replayed_at = None;
                    }
                    if self.replayed.remove(&frame.id) {
                        continue;
                    }
                    return Ok(Next::Frame(frame));
                }
            }
        }
    }

    /// Waits until the hub asks this connection to close.
    pub async fn closing(&mut self) -> Close {
        loop {
            if let Some(why) = *self.conn.close.borrow_and_update() {
                return why;
            }
            if self.conn.close.changed().await.is_err() {
                return Close::Restart;
            }
        }
    }
}
