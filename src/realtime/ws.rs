//! One WebSocket connection, apart from the upgrade so tests can drive it with channels:
//! authentication by first message, channel subscriptions, resume, pings, token expiry and
//! the close codes of the contract.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use chrono::{DateTime, Utc};
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::feed::{Feed, Next};
use super::hub::{Close, Connection, Frame, MAX_CHANNELS, Transport, valid_channel};
use super::{Authed, Realtime};
use crate::telemetry::RealtimeSent;

/// A client that has not authenticated by then is closed.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a close frame may wait behind unread data before the connection is just dropped
/// (a slow reader that starts reading again still learns why it was closed).
const CLOSE_FLUSH: Duration = Duration::from_secs(15);

/// Frames written with the one at hand when they queue up: with the 4 KiB write buffer
/// (`routes.rs`), a system call carries up to 4 KiB of them instead of one each.
const BATCH: usize = 15;

/// Policy violations and auth failures that are not a `Close` of the hub.
const POLICY: u16 = 1008;
const UNAUTHORISED: u16 = 4401;
const TRY_AGAIN_LATER: u16 = 1013;
const INTERNAL: u16 = 1011;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Auth { token: String },
    Subscribe { channel: String },
    Unsubscribe { channel: String },
    Resume { last_event_id: String },
}

fn text(value: &serde_json::Value) -> Message {
    Message::text(value.to_string())
}

async fn close<W>(sink: &mut W, code: u16, reason: &'static str)
where
    W: Sink<Message, Error = axum::Error> + Unpin,
{
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = tokio::time::timeout(CLOSE_FLUSH, sink.send(Message::Close(Some(frame)))).await;
}

fn authenticated(who: &Authed) -> Message {
    text(&json!({ "type": "authenticated", "user_id": who.principal.user_id, "expires_at": who.expires_at }))
}

fn error(code: &str, message: &str) -> Message {
    text(&json!({ "type": "error", "code": code, "message": message }))
}

/// Writes `first`, then the frames of `more`, and flushes once.
async fn write_all<W>(sink: &mut W, first: Message, more: &[Frame]) -> Result<(), axum::Error>
where
    W: Sink<Message, Error = axum::Error> + Unpin,
{
    sink.feed(first).await?;
    for frame in more {
        sink.feed(Message::Text(frame.json.clone())).await?;
    }
    sink.flush().await
}

/// Waits for `{"type":"auth","token":…}` as the first message, at most `AUTH_TIMEOUT`.
async fn first_auth<R>(rt: &Realtime, stream: &mut R) -> Result<Authed, (u16, &'static str)>
where
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let first = tokio::time::timeout(AUTH_TIMEOUT, async {
        loop {
            match stream.next().await {
                // Control frames before the first message are fine.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => return other,
            }
        }
    })
    .await;
    let token = match first {
        Err(_) => return Err((POLICY, "no auth message within 5 s")),
        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<ClientMessage>(&t) {
            Ok(ClientMessage::Auth { token }) => token,
            _ => return Err((POLICY, "the first message must be {\"type\":\"auth\",\"token\":…}")),
        },
        Ok(_) => return Err((POLICY, "the first message must be {\"type\":\"auth\",\"token\":…}")),
    };
    rt.authenticate(&token).await.map_err(|_| (UNAUTHORISED, "the access token is invalid, expired or revoked"))
}

fn deadline_of(expires_at: DateTime<Utc>) -> Instant {
    Instant::now() + (expires_at - Utc::now()).to_std().unwrap_or_default()
}

/// Serves one upgraded socket. `opened` is the caller and its connection when the handshake
/// authenticated (by ticket); otherwise the first message must.
pub async fn handle_socket<W, R>(rt: Arc<Realtime>, mut sink: W, mut stream: R, opened: Option<(Authed, Connection)>)
where
    W: Sink<Message, Error = axum::Error> + Unpin,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let (mut who, conn) = match opened {
        Some(opened) => opened,
        None => {
            let who = match first_auth(&rt, &mut stream).await {
                Ok(who) => who,
                Err((code, reason)) => return close(&mut sink, code, reason).await,
            };
            match rt.hub.register(&who.principal, Transport::WebSocket) {
                Ok(conn) => (who, conn),
                Err(_) => return close(&mut sink, TRY_AGAIN_LATER, "too many real-time connections").await,
            }
        }
    };
    if sink.send(authenticated(&who)).await.is_err() {
        return;
    }
    let mut feed = Feed::new(conn, rt.repo.clone());
    let expiry = tokio::time::sleep_until(deadline_of(who.expires_at));
    tokio::pin!(expiry);
    // A peer silent for two pings is gone.
    let ping_every = rt.settings.ping;
    let mut pings = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();
    let sent = RealtimeSent::new(Transport::WebSocket.label());
    loop {
        let (outgoing, frame) = tokio::select! {
            next = feed.next() => match next {
                Ok(Next::Frame(frame)) => (Message::Text(frame.json.clone()), Some(frame)),
                Ok(Next::Closed(why)) => return close(&mut sink, why.code(), why.reason()).await,
                Err(e) => {
                    tracing::error!(error = %e, "reading missed events failed; closing the socket");
                    return close(&mut sink, INTERNAL, "internal error").await;
                }
            },
            incoming = stream.next() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ClientMessage>(&t) {
                        Ok(ClientMessage::Auth { token }) => match rt.authenticate(&token).await {
                            Ok(fresh) if fresh.principal.user_id == who.principal.user_id => {
                                rt.hub.reauthenticate(feed.id(), &fresh.principal);
                                expiry.as_mut().reset(deadline_of(fresh.expires_at));
                                who = fresh;
                                (authenticated(&who), None)
                            }
                            Ok(_) => return close(&mut sink, POLICY, "a token of another user").await,
                            Err(_) => (error("invalid_token", "the access token is invalid, expired or revoked"), None),
                        },
                        Ok(ClientMessage::Subscribe { channel }) if !valid_channel(&channel) => {
                            (error("invalid_channel", "channels are product:<id>"), None)
                        }
                        Ok(ClientMessage::Subscribe { channel }) => {
                            if rt.hub.subscribe(feed.id(), &channel) {
                                feed.channels().insert(channel.clone());
                                (text(&json!({ "type": "subscribed", "channel": channel })), None)
                            } else {
                                (error("too_many_channels", &format!("a connection follows at most {MAX_CHANNELS} channels")), None)
                            }
                        }
                        Ok(ClientMessage::Unsubscribe { channel }) => {
                            rt.hub.unsubscribe(feed.id(), &channel);
                            feed.channels().remove(&channel);
                            (text(&json!({ "type": "unsubscribed", "channel": channel })), None)
                        }
                        Ok(ClientMessage::Resume { last_event_id }) => match feed.resume(&last_event_id).await {
                            Ok(true) => continue,
                            Ok(false) => (text(&json!({ "type": "resync" })), None),
                            Err(e) => {
                                tracing::error!(error = %e, "looking up a resume point failed");
                                return close(&mut sink, INTERNAL, "internal error").await;
                            }
                        },
                        Err(_) => (error("invalid_message", "expected auth, subscribe, unsubscribe or resume"), None),
                    },
                    // Pings are answered by the protocol layer; pongs and binaries only show life.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                }
            },
            _ = pings.tick() => {
                if last_heard.elapsed() >= 2 * ping_every {
                    // A dead peer: no close handshake to wait for.
                    return;
                }
                (Message::Ping(Default::default()), None)
            }
            () = &mut expiry => return close(&mut sink, Close::TokenExpired.code(), Close::TokenExpired.reason()).await,
        };
        // Frames that are waiting already go out with this one, in one write. (Allocated only
        // then: an idle connection keeps no batch.)
        let mut more = Vec::new();
        if frame.is_some() {
            while more.len() < BATCH
                && let Some(next) = feed.ready()
            {
                more.push(next);
            }
        }
        // A reader too slow to take this is told to close by the hub; stop waiting for it then.
        tokio::select! {
            written = write_all(&mut sink, outgoing, &more) => match written {
                Err(_) => return,
                Ok(()) => frame.iter().chain(&more).for_each(|frame| sent.record(frame)),
            },
            why = feed.closing() => return close(&mut sink, why.code(), why.reason()).await,
        }
    }
}
