//! One connection's stream of frames, whatever the transport: live frames from the hub and,
//! after a resume, the missed ones read back from the outbox first.
//!
//! Resume goes by publish order (`publish_seq`), not time or `seq`: a client has seen exactly
//! the events before the one it names, because every connection hears events in that order
//! (the relay publishes in it, the hub delivers in it: see `events::relay`). The connection is
//! registered with the hub before the replay reads the outbox, and an event is numbered (and
//! committed) before it is published, so an event is either in the replay (numbered before the
//! last read) or still to be heard live (numbered after it), or both; what the replay covered is
//! dropped when its live copy arrives, by place, so nothing is sent twice or skipped. Live
//! frames sent between (re)subscribing and the resume are left out of the replay.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::hub::{Close, Connection, Frame, Route, STAFF_CHANNEL, for_staff, route};
use super::repo::RealtimeRepo;
use crate::store::StoreError;

/// Missed events of this long ago are replayed; an older resume point gets `resync`.
pub const REPLAY_WINDOW: TimeDelta = TimeDelta::hours(24);
/// Events read from the outbox per query while replaying.
const PAGE: u32 = 500;
/// Live frames remembered until the first resume: a client resumes as soon as it has
/// (re)subscribed, and what it heard live in between must not come again in the replay.
const HEARD_BEFORE_RESUME: usize = 64;

pub enum Next {
    Frame(Frame),
    Closed(Close),
}

struct Replay {
    /// The last place read from the outbox (whether this connection wanted that event or not).
    after: i64,
    since: DateTime<Utc>,
    backlog: VecDeque<Frame>,
    exhausted: bool,
}

pub struct Feed {
    conn: Connection,
    repo: Arc<dyn RealtimeRepo>,
    channels: HashSet<String>,
    replay: Option<Replay>,
    /// Live frames up to this place were covered by the last replay.
    replayed_through: Option<i64>,
    /// Places of the live frames sent before the first resume (at most [`HEARD_BEFORE_RESUME`]).
    heard: Vec<i64>,
    resumed: bool,
}

impl Feed {
    pub fn new(conn: Connection, repo: Arc<dyn RealtimeRepo>) -> Feed {
        Feed { conn, repo, channels: HashSet::new(), replay: None, replayed_through: None, heard: Vec::new(), resumed: false }
    }

    pub fn id(&self) -> u64 {
        self.conn.id
    }

    pub fn channels(&mut self) -> &mut HashSet<String> {
        &mut self.channels
    }

    fn wants(&self, event: &crate::events::Event) -> bool {
        let routed = match route(event) {
            Some(Route::User(user)) => user == self.conn.user_id,
            Some(Route::Channel(channel)) => self.channels.contains(&channel),
            None => false,
        };
        routed || (for_staff(event) && self.channels.contains(STAFF_CHANNEL))
    }

    /// Starts replaying what followed `last_event_id`. `false`: the point is unknown or older
    /// than the replay window (purged, or never an event), and the client must resync.
    pub async fn resume(&mut self, last_event_id: &str) -> Result<bool, StoreError> {
        let since = Utc::now() - REPLAY_WINDOW;
        let position = self.repo.position(last_event_id).await?;
        // A client only ever hears numbered events, so an unnumbered point is not one it was sent.
        let Some((after, created_at)) = position.and_then(|p| Some((p.publish_seq?, p.created_at))) else { return Ok(false) };
        if created_at < since {
            return Ok(false);
        }
        self.replay = Some(Replay { after, since, backlog: VecDeque::new(), exhausted: false });
        self.resumed = true;
        Ok(true)
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
                    let page = self.repo.numbered_after(replay.after, replay.since, PAGE).await?;
                    let wanted: Vec<Frame> = page
                        .iter()
                        .filter(|e| self.wants(e) && !e.publish_seq.is_some_and(|place| self.heard.contains(&place)))
                        .map(|e| Frame::of(e, true))
                        .collect();
                    crate::telemetry::record_realtime_replayed(wanted.len());
                    let replay = self.replay.as_mut().expect("replaying");
                    if let Some(last) = page.last().and_then(|e| e.publish_seq) {
                        replay.after = last;
                    }
                    replay.backlog.extend(wanted);
                    replay.exhausted = page.len() < PAGE as usize;
                    continue;
                }
                self.replayed_through = Some(replay.after);
                self.replay = None;
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
                    if self.covered(&frame) {
                        continue;
                    }
                    self.hear(&frame);
                    return Ok(Next::Frame(frame));
                }
            }
        }
    }

    /// A frame that is ready now, without waiting, if any: the caller writes it with the one
    /// it has (one system call for several frames when they queue up).
    pub fn ready(&mut self) -> Option<Frame> {
        if self.conn.close.borrow().is_some() {
            return None;
        }
        if let Some(replay) = &mut self.replay {
            return replay.backlog.pop_front();
        }
        loop {
            let frame = self.conn.frames.try_recv().ok()?;
            if !self.covered(&frame) {
                self.hear(&frame);
                return Some(frame);
            }
        }
    }

    /// Remembers a live frame sent before the first resume.
    fn hear(&mut self, frame: &Frame) {
        if let Some(place) = frame.publish_seq.filter(|_| !self.resumed && self.heard.len() < HEARD_BEFORE_RESUME) {
            self.heard.push(place);
        }
    }

    /// Whether the last replay sent this live frame already.
    fn covered(&self, frame: &Frame) -> bool {
        frame.publish_seq.zip(self.replayed_through).is_some_and(|(place, through)| place <= through)
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
