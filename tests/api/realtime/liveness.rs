//! Liveness and limits: pings and dead peers, the SSE heartbeat, the instance's connection
//! cap, and the real-time metrics (those run `keel serve` as a process of their own: metrics
//! are process-wide).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};

use super::*;
use crate::helpers::{spawn_app_process, spawn_app_process_with, spawn_app_with};
use crate::support::eventually;

/// The value of the metric line `name` (with exactly these labels), if it is there.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until `/metrics` shows `name` at `value`; returns the whole text then.
async fn metrics_once(app: &TestApp, name: &str, value: f64) -> String {
    eventually(20, &format!("{name} at {value}"), || async {
        let text = app.get("/metrics").await.expect(200).text;
        (metric(&text, name) == Some(value)).then_some(text)
    })
    .await
}

const WEBSOCKETS: &str = "keel_realtime_connections{transport=\"websocket\"}";
const SSE_STREAMS: &str = "keel_realtime_connections{transport=\"sse\"}";

#[tokio::test]
async fn a_socket_that_answers_pings_stays_open_and_a_silent_one_is_dropped() {
    let app = spawn_app_process_with(&[("realtime_ping_secs", "2")]).await;
    let ada = app.customer("ada@example.com").await;
    let (mut answering, mut incoming) = ws(&app, &ada).await.split();
    let mut silent = ws(&app, &ada).await;
    metrics_once(&app, WEBSOCKETS, 2.0).await;

    // Reading answers each ping (the client library sends the pong); the other socket is not read.
    let pings = Arc::new(AtomicUsize::new(0));
    let (texts_tx, mut texts) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn({
        let pings = pings.clone();
        async move {
            while let Some(Ok(message)) = incoming.next().await {
                match message {
                    Message::Ping(_) => {
                        pings.fetch_add(1, Ordering::SeqCst);
                    }
                    Message::Text(t) => texts_tx.send(serde_json::from_str::<Value>(&t).unwrap()).unwrap(),
                    _ => {}
                }
            }
        }
    });
    metrics_once(&app, WEBSOCKETS, 1.0).await;
    assert!(pings.load(Ordering::SeqCst) >= 1, "the server pinged the socket that stayed");

    // The one that answered is still served.
    answering.send(Message::text(json!({ "type": "subscribe", "channel": "product:prd_1" }).to_string())).await.unwrap();
    let reply = tokio::time::timeout(WAIT, texts.recv()).await.expect("a reply in time").unwrap();
    assert_eq!(reply["type"], "subscribed");
    // The silent one was dropped without a close handshake: after its pings, the connection ends.
    loop {
        match tokio::time::timeout(WAIT, silent.next()).await.expect("the end in time") {
            Some(Ok(Message::Ping(_))) => continue,
            Some(Ok(Message::Close(frame))) => panic!("a dead peer gets no close frame: {frame:?}"),
            Some(Ok(other)) => panic!("only pings were sent: {other:?}"),
            Some(Err(_)) | None => break,
        }
    }
    reader.abort();
}

#[tokio::test]
async fn an_sse_stream_gets_a_comment_line_while_no_events_come() {
    let app = spawn_app_with(&[("realtime_heartbeat_secs", "1")]).await;
    let ada = app.customer("ada@example.com").await;
    let mut sse = Sse::open(&app, &ada, None).await;
    let block = sse.heartbeat().await;
    assert!(block.starts_with(':'), "a comment line: {block:?}");
    // Events still come after it.
    Passwords::new().change(&app, &ada).await;
    assert_eq!(sse.event().await["type"], "notification.created");
}

#[tokio::test]
async fn connections_over_the_instance_cap_are_refused_with_503_realtime_capacity() {
    let app = spawn_app_with(&[("realtime_max_connections", "2")]).await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    let _adas = Sse::open(&app, &ada, None).await;
    let mut bobs = ws(&app, &bob).await;

    let refused = app.get_authed("/v1/events", &bob.access).await;
    refused.problem(503, "realtime_capacity");
    assert_eq!(refused.header("retry-after"), Some("5"));
    // A WebSocket handshake gets the same problem, with a ticket or before its first message.
    for query in [format!("?ticket={}", ticket(&app, &bob).await), String::new()] {
        match try_ws(&app, &query, None).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 503);
                assert_eq!(response.headers()["retry-after"], "5");
                let body: Value = serde_json::from_slice(response.body().as_deref().expect("a problem body")).unwrap();
                assert_eq!((body["status"].clone(), body["code"].clone()), (json!(503), json!("realtime_capacity")));
            }
            other => panic!("expected 503 for {query:?}, got {:?}", other.map(|_| ())),
        }
    }

    // Closing one makes room for the next.
    bobs.close(None).await.unwrap();
    let reopened = eventually(20, "room after a close", || async {
        let response = app.request(reqwest::Method::GET, "/v1/events").bearer_auth(&bob.access).send().await.unwrap();
        (response.status() == 200).then_some(response)
    })
    .await;
    assert_eq!(reopened.headers()["content-type"], "text/event-stream");
}

#[tokio::test]
async fn metrics_count_connections_frames_slow_consumers_replays_and_fan_out_time() {
    let app = spawn_app_process().await;
    let ada = app.customer("ada@example.com").await;
    let mut sse = Sse::open(&app, &ada, None).await;
    let mut fast = ws(&app, &ada).await;
    let mut passwords = Passwords::new();
    passwords.change(&app, &ada).await;
    passwords.change(&app, &ada).await;
    let first = sse.event().await;
    sse.event().await;
    for _ in 0..2 {
        assert_eq!(next_json(&mut fast).await["type"], "notification.created");
    }
    // One resume that replays one event.
    let mut resumed = ws(&app, &ada).await;
    send(&mut resumed, json!({ "type": "resume", "last_event_id": first["id"] })).await;
    assert_ne!(next_json(&mut resumed).await["id"], first["id"]);
    resumed.close(None).await.unwrap();
    // One slow consumer.
    let mut slow = slow_reader(&app, &ada).await;
    overflow(&app, &mut fast).await;
    assert_eq!(close_code(&mut slow).await, 1013);

    // Open now: the fast socket and the SSE stream.
    metrics_once(&app, WEBSOCKETS, 1.0).await;
    let text = metrics_once(&app, SSE_STREAMS, 1.0).await;
    let value = |name: &str| metric(&text, name).unwrap_or_else(|| panic!("{name} in:\n{text}"));
    assert_eq!(value("keel_realtime_messages_sent_total{transport=\"sse\"}"), 2.0);
    // The fast socket's 2 + 4 000 events, the resumed one's replay, and what the slow one took.
    assert!(value("keel_realtime_messages_sent_total{transport=\"websocket\"}") >= 4003.0);
    assert_eq!(value("keel_realtime_slow_consumers_total"), 1.0);
    assert_eq!(value("keel_realtime_replayed_events_total"), 1.0);
    // Fan-out time is recorded for live frames only: at least the SSE's 2 and the fast socket's 4 002.
    assert!(value("keel_realtime_fanout_seconds_count") >= 4004.0);
    assert!(text.contains("keel_realtime_fanout_seconds_bucket{le="), "fan-out buckets in:\n{text}");
}
