//! The Server-Sent Events stream: one frame per event, its `id` the event id (so the browser
//! resends it as `Last-Event-ID`), a comment heartbeat, and the end of the stream where a
//! WebSocket would get a close code.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures_util::Stream;

use super::feed::{Feed, Next};
use super::hub::Transport;
use crate::telemetry::RealtimeSent;

/// Frames as SSE events until the feed closes or the token expires, with a comment line every
/// `heartbeat` so proxies do not time the stream out.
pub fn stream(
    feed: Feed,
    resync: bool,
    expires_at: DateTime<Utc>,
    heartbeat: Duration,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let deadline = tokio::time::Instant::now() + (expires_at - Utc::now()).to_std().unwrap_or_default();
    let sent = RealtimeSent::new(Transport::Sse.label());
    let frames = futures_util::stream::unfold((feed, resync, sent), move |(mut feed, resync, sent)| async move {
        if resync {
            return Some((Ok(SseEvent::default().data(r#"{"type":"resync"}"#)), (feed, false, sent)));
        }
        let next = tokio::select! {
            next = feed.next() => next,
            // SSE cannot take a fresh token: the client reconnects with one and resumes.
            () = tokio::time::sleep_until(deadline) => return None,
        };
        match next {
            Ok(Next::Frame(frame)) => {
                sent.record(&frame);
                let event = SseEvent::default().id(&*frame.id).data(frame.json.as_str());
                Some((Ok(event), (feed, false, sent)))
            }
            Ok(Next::Closed(_)) => None,
            Err(e) => {
                tracing::error!(error = %e, "reading missed events failed; ending the stream");
                None
            }
        }
    });
    Sse::new(frames).keep_alive(KeepAlive::new().interval(heartbeat))
}
