//! Real-time: tickets, the WebSocket and SSE streams, resume without loss, session rules,
//! slow consumers, liveness and limits, delivery across instances, and the publish order
//! that several relays keep. This file is the client side the tests share.

mod liveness;
mod order;
mod staff;
mod streams;

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{PASSWORD, TestApp, Tokens};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for something it expects.
const WAIT: Duration = Duration::from_secs(20);

fn ws_url(app: &TestApp, query: &str) -> String {
    format!("{}/v1/ws{query}", app.address.replacen("http://", "ws://", 1))
}

async fn try_ws(app: &TestApp, query: &str, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut request = ws_url(app, query).into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", origin.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.map(|(ws, _)| ws)
}

async fn ticket(app: &TestApp, who: &Tokens) -> String {
    let body = app.post_json_authed("/v1/realtime/tickets", &who.access, &json!({})).await.expect(201).json();
    assert_eq!(body["expires_in"], 30);
    body["ticket"].as_str().unwrap().to_owned()
}

/// A WebSocket opened with a ticket, once the server says it is authenticated.
async fn ws(app: &TestApp, who: &Tokens) -> Ws {
    let mut ws = try_ws(app, &format!("?ticket={}", ticket(app, who).await), None).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "authenticated");
    ws
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

/// The next JSON message, skipping control frames; fails on close or silence.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// The next announcement of a product change after its creation's: a product's creation is
/// announced on its channel too (version 1), and may still be on its way when a client that
/// subscribed right after creating it waits for its first change.
async fn price_change(ws: &mut Ws) -> Value {
    let frame = next_json(ws).await;
    if frame["type"] == "product.updated" && frame["data"]["version"] == 1 { next_json(ws).await } else { frame }
}

/// Reads until the close frame and returns its code.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a close in time") {
            Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => return code.into(),
            other @ (Some(Ok(Message::Close(None)) | Err(_)) | None) => panic!("closed without a code: {other:?}"),
            Some(Ok(_)) => continue,
        }
    }
}

/// Changes the password `n` times from `PASSWORD`, each change a `notification.created` for the owner.
struct Passwords {
    current: String,
    n: u32,
}

impl Passwords {
    fn new() -> Passwords {
        Passwords { current: PASSWORD.to_owned(), n: 0 }
    }

    async fn change(&mut self, app: &TestApp, who: &Tokens) {
        self.n += 1;
        let next = format!("a fresh passphrase number {}", self.n);
        app.post_json_authed("/v1/auth/password/change", &who.access, &json!({ "current_password": self.current, "new_password": next }))
            .await
            .expect(204);
        self.current = next;
    }
}

/// Waits until `who` has `n` notifications, so their events are committed.
async fn notifications(app: &TestApp, who: &Tokens, n: usize) {
    crate::support::eventually(20, &format!("{n} notifications"), || async {
        let list = app.get_authed("/v1/notifications", &who.access).await.expect(200).json();
        (list["data"].as_array().unwrap().len() >= n).then_some(())
    })
    .await;
}

async fn product(app: &TestApp, admin: &Tokens, sku: &str) -> String {
    let body = json!({ "sku": sku, "name": format!("Item {sku}"), "category": "misc", "price": { "amount": 1000, "currency": "USD" }, "stock": 100 });
    app.post_json_authed("/v1/admin/products", &admin.access, &body).await.expect(201).json()["id"].as_str().unwrap().to_owned()
}

async fn set_price(app: &TestApp, admin: &Tokens, id: &str, amount: i64) {
    app.patch_json_authed(&format!("/v1/admin/products/{id}"), &admin.access, &json!({ "price": { "amount": amount, "currency": "USD" } }))
        .await
        .expect(200);
}

/// A Server-Sent Events stream read frame by frame.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    async fn open(app: &TestApp, who: &Tokens, last_event_id: Option<&str>) -> Sse {
        Sse::open_at(app, "/v1/events", who, last_event_id).await
    }

    /// A stream of `path` (`/v1/events` or the staff feed).
    async fn open_at(app: &TestApp, path: &str, who: &Tokens, last_event_id: Option<&str>) -> Sse {
        let mut request = app.request(reqwest::Method::GET, path).bearer_auth(&who.access);
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Sse { response, buffer: String::new() }
    }

    /// The next block (up to a blank line); `None` when the stream ended.
    async fn block(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                return Some(self.buffer.drain(..end + 2).collect());
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk()).await.expect("SSE data in time");
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next event's `id` and JSON data, past heartbeat comments; `None` when the stream ended.
    async fn next(&mut self) -> Option<(Option<String>, Value)> {
        loop {
            let block = self.block().await?;
            let mut id = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str(v.trim()).unwrap());
                }
            }
            if let Some(data) = data {
                return Some((id, data));
            }
        }
    }

    /// The next block that is only comment lines (a heartbeat).
    async fn heartbeat(&mut self) -> String {
        loop {
            let block = self.block().await.expect("the stream goes on");
            if block.lines().all(|l| l.is_empty() || l.starts_with(':')) {
                return block;
            }
        }
    }

    async fn event(&mut self) -> Value {
        let (id, data) = self.next().await.expect("an event");
        assert_eq!(id.as_deref(), data["id"].as_str(), "the SSE id is the event id");
        data
    }
}

/// The public channel the slow-consumer tests flood.
const FLOODED: &str = "product:prd_slow";

/// A WebSocket of `who` on the flooded channel that never reads, with a small receive window.
async fn slow_reader(app: &TestApp, who: &Tokens) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.address.trim_start_matches("http://").parse().unwrap()).await.unwrap();
    let url = ws_url(app, &format!("?ticket={}", ticket(app, who).await));
    let (mut slow, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await.unwrap();
    assert_eq!(next_json(&mut slow).await["type"], "authenticated");
    send(&mut slow, json!({ "type": "subscribe", "channel": FLOODED })).await;
    assert_eq!(next_json(&mut slow).await["type"], "subscribed");
    slow
}

/// Floods the channel with more than the kernel's socket buffers (a few MiB) and a connection's
/// queue hold, in steps `fast` (subscribed here) keeps up with: 40 × 100 committed events of 2 KiB.
async fn overflow(app: &TestApp, fast: &mut Ws) {
    send(fast, json!({ "type": "subscribe", "channel": FLOODED })).await;
    assert_eq!(next_json(fast).await["type"], "subscribed");
    for step in 0..40 {
        app.execute_sql(SLOW_EVENTS[usize::from(app.database_url.is_some())]).await;
        for n in 0..100 {
            let event = next_json(fast).await;
            assert_eq!(event["data"]["id"], "prd_slow", "event {n} of step {step}");
        }
    }
}

/// 100 `product.updated` events of 2 KiB each, by the same statement on both backends but for
/// how each spells random ids and a run of 2 000 characters.
const SLOW_EVENTS: [&str; 2] = [
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
     INSERT INTO events (id, kind, user_id, data, created_at) \
     SELECT 'evt_slow_' || hex(randomblob(12)), 'product.updated', NULL, \
     '{\"id\":\"prd_slow\",\"pad\":\"' || replace(hex(zeroblob(1000)), '0', 'x') || '\"}', '2026-01-01T00:00:00Z' FROM n",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
     INSERT INTO events (id, kind, user_id, data, created_at) \
     SELECT 'evt_slow_' || md5(random()::text || i), 'product.updated', NULL, \
     '{\"id\":\"prd_slow\",\"pad\":\"' || repeat('x', 2000) || '\"}', '2026-01-01T00:00:00Z' FROM n",
];
