//! Real-time: tickets, the WebSocket and SSE streams, resume without loss, session rules,
//! slow consumers, and delivery across instances.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app, spawn_app_with};

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
        let mut request = app.request(reqwest::Method::GET, "/v1/events").bearer_auth(&who.access);
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Sse { response, buffer: String::new() }
    }

    /// The next event's `id` and JSON data; `None` when the stream ended.
    async fn next(&mut self) -> Option<(Option<String>, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str(v.trim()).unwrap());
                    }
                }
                match data {
                    Some(data) => return Some((id, data)),
                    // A heartbeat comment.
                    None => continue,
                }
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk()).await.expect("SSE data in time");
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    async fn event(&mut self) -> Value {
        let (id, data) = self.next().await.expect("an event");
        assert_eq!(id.as_deref(), data["id"].as_str(), "the SSE id is the event id");
        data
    }
}

#[tokio::test]
async fn a_ticket_opens_one_stream_once_and_not_after_it_expires() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let once = ticket(&app, &ada).await;
    let first = app.request(reqwest::Method::GET, &format!("/v1/events?ticket={once}")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    app.get(&format!("/v1/events?ticket={once}")).await.problem(401, "invalid_token");
    assert!(matches!(try_ws(&app, &format!("?ticket={once}"), None).await, Err(tungstenite::Error::Http(r)) if r.status() == 401));

    let stale = ticket(&app, &ada).await;
    // Expired: moved into the past (the same literal reads as a time on both backends).
    app.execute_sql("UPDATE realtime_tickets SET expires_at = '2000-01-01T00:00:00Z'").await;
    app.get(&format!("/v1/events?ticket={stale}")).await.problem(401, "invalid_token");
    app.post_json("/v1/realtime/tickets", &json!({})).await.problem(401, "unauthenticated");
}

#[tokio::test]
async fn a_websocket_authenticates_by_its_first_message_or_is_closed() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let mut ws = try_ws(&app, "", None).await.unwrap();
    send(&mut ws, json!({ "type": "auth", "token": ada.access })).await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "authenticated");
    assert_eq!(hello["user_id"], ada.user_id());

    let mut bad = try_ws(&app, "", None).await.unwrap();
    send(&mut bad, json!({ "type": "auth", "token": "not-a-token" })).await;
    assert_eq!(close_code(&mut bad).await, 4401);

    let started = std::time::Instant::now();
    let mut silent = try_ws(&app, "", None).await.unwrap();
    assert_eq!(close_code(&mut silent).await, 1008);
    assert!(started.elapsed() >= Duration::from_secs(4), "closed after the 5 s allowance, not before");
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_an_allowed_one_is_not() {
    let app = spawn_app_with(&[("cors_origins", "https://shop.example.com")]).await;
    match try_ws(&app, "", Some("https://evil.example.com")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    let ada = app.customer("ada@example.com").await;
    let mut ws = try_ws(&app, "", Some("https://shop.example.com")).await.unwrap();
    send(&mut ws, json!({ "type": "auth", "token": ada.access })).await;
    assert_eq!(next_json(&mut ws).await["type"], "authenticated");
}

#[tokio::test]
async fn each_user_receives_their_own_events_only() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    let mut ada_ws = ws(&app, &ada).await;
    let mut bob_ws = ws(&app, &bob).await;
    Passwords::new().change(&app, &ada).await;
    let event = next_json(&mut ada_ws).await;
    assert_eq!(event["type"], "notification.created");
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(event["data"]["title"], "Password changed");
    assert!(event["created_at"].is_string());
    assert!(event.get("user_id").is_none());
    // Bob's first event is his own: Ada's was never queued for him.
    Passwords::new().change(&app, &bob).await;
    let bobs = next_json(&mut bob_ws).await;
    assert_eq!(bobs["type"], "notification.created");
    notifications(&app, &ada, 1).await;
    let list = app.get_authed("/v1/notifications", &bob.access).await.expect(200).json();
    assert_eq!(bobs["data"]["id"], list["data"][0]["id"]);
}

#[tokio::test]
async fn product_channels_can_be_followed_and_left() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let mug = product(&app, &admin, "MUG").await;
    let cup = product(&app, &admin, "CUP").await;
    let mut ws = ws(&app, &ada).await;
    send(&mut ws, json!({ "type": "subscribe", "channel": format!("product:{mug}") })).await;
    assert_eq!(next_json(&mut ws).await, json!({ "type": "subscribed", "channel": format!("product:{mug}") }));
    set_price(&app, &admin, &mug, 1200).await;
    let event = next_json(&mut ws).await;
    assert_eq!(event["type"], "product.updated");
    assert_eq!(event["data"]["id"], mug.as_str());
    assert_eq!(event["data"]["price"]["amount"], 1200);

    send(&mut ws, json!({ "type": "unsubscribe", "channel": format!("product:{mug}") })).await;
    assert_eq!(next_json(&mut ws).await["type"], "unsubscribed");
    send(&mut ws, json!({ "type": "subscribe", "channel": format!("product:{cup}") })).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    set_price(&app, &admin, &mug, 1300).await;
    set_price(&app, &admin, &cup, 500).await;
    // The mug changed first, but only the cup is followed now.
    assert_eq!(next_json(&mut ws).await["data"]["id"], cup.as_str());

    send(&mut ws, json!({ "type": "subscribe", "channel": "orders:everything" })).await;
    assert_eq!(next_json(&mut ws).await["code"], "invalid_channel");
}

#[tokio::test]
async fn sse_resumes_with_exactly_the_missed_events_in_order_once() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let mut passwords = Passwords::new();
    let mut sse = Sse::open(&app, &ada, None).await;
    passwords.change(&app, &ada).await;
    let first = sse.event().await;
    drop(sse);
    for _ in 0..3 {
        passwords.change(&app, &ada).await;
    }
    notifications(&app, &ada, 4).await;
    let mut sse = Sse::open(&app, &ada, first["id"].as_str()).await;
    let missed = [sse.event().await, sse.event().await, sse.event().await];
    passwords.change(&app, &ada).await;
    let live = sse.event().await;
    let list = app.get_authed("/v1/notifications", &ada.access).await.expect(200).json();
    // Notifications are newest first; the stream is oldest first, each once.
    let expected: Vec<Value> = list["data"].as_array().unwrap().iter().rev().skip(1).map(|n| n["id"].clone()).collect();
    let got: Vec<Value> = missed.iter().chain([&live]).map(|e| e["data"]["id"].clone()).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_websocket_resumes_with_exactly_the_missed_events_in_order_once() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let mug = product(&app, &admin, "MUG").await;
    let channel = format!("product:{mug}");
    let mut ws1 = ws(&app, &ada).await;
    send(&mut ws1, json!({ "type": "subscribe", "channel": channel })).await;
    next_json(&mut ws1).await;
    set_price(&app, &admin, &mug, 1001).await;
    let first = next_json(&mut ws1).await;
    drop(ws1);
    for amount in [1002, 1003, 1004] {
        set_price(&app, &admin, &mug, amount).await;
    }
    let mut ws2 = ws(&app, &ada).await;
    send(&mut ws2, json!({ "type": "subscribe", "channel": channel })).await;
    next_json(&mut ws2).await;
    send(&mut ws2, json!({ "type": "resume", "last_event_id": first["id"] })).await;
    let mut prices = Vec::new();
    for _ in 0..3 {
        prices.push(next_json(&mut ws2).await["data"]["price"]["amount"].as_i64().unwrap());
    }
    set_price(&app, &admin, &mug, 1005).await;
    prices.push(next_json(&mut ws2).await["data"]["price"]["amount"].as_i64().unwrap());
    assert_eq!(prices, [1002, 1003, 1004, 1005]);
}

#[tokio::test]
async fn a_resume_point_past_retention_gets_resync() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let mut sse = Sse::open(&app, &ada, None).await;
    Passwords::new().change(&app, &ada).await;
    let first = sse.event().await;
    drop(sse);
    let mut ws = ws(&app, &ada).await;
    send(&mut ws, json!({ "type": "resume", "last_event_id": "evt_never_was" })).await;
    assert_eq!(next_json(&mut ws).await, json!({ "type": "resync" }));
    // Older than the 24 h window.
    app.execute_sql("UPDATE events SET created_at = '2000-01-01T00:00:00Z'").await;
    send(&mut ws, json!({ "type": "resume", "last_event_id": first["id"] })).await;
    assert_eq!(next_json(&mut ws).await, json!({ "type": "resync" }));
    let mut sse = Sse::open(&app, &ada, first["id"].as_str()).await;
    let (id, data) = sse.next().await.unwrap();
    assert_eq!((id, data), (None, json!({ "type": "resync" })));
}

#[tokio::test]
async fn logging_out_closes_the_sessions_sockets_and_streams() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let mut ws = ws(&app, &ada).await;
    let mut sse = Sse::open(&app, &ada, None).await;
    app.logout(&ada.refresh).await.expect(204);
    assert_eq!(close_code(&mut ws).await, 1008);
    assert!(sse.next().await.is_none(), "the SSE stream ends");
}

#[tokio::test]
async fn an_expired_token_closes_the_socket_with_4401_unless_renewed() {
    let app = spawn_app_with(&[("access_token_ttl_secs", "4")]).await;
    let ada = app.customer("ada@example.com").await;
    let mut lapsing = ws(&app, &ada).await;
    let mut renewed = ws(&app, &ada).await;
    // Token times are whole seconds: renew late enough that the fresh token expires later.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fresh = Tokens::from_reply(app.refresh(&ada.refresh).await.expect(200));
    send(&mut renewed, json!({ "type": "auth", "token": fresh.access })).await;
    assert_eq!(next_json(&mut renewed).await["type"], "authenticated");
    assert_eq!(close_code(&mut lapsing).await, 4401);
    // The renewed socket outlived the first token and still delivers.
    Passwords::new().change(&app, &fresh).await;
    assert_eq!(next_json(&mut renewed).await["type"], "notification.created");
}

#[tokio::test]
async fn a_slow_reader_is_closed_with_1013_while_a_fast_one_keeps_receiving() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let channel = "product:prd_slow";
    // A reader that never reads, with a small receive window.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.address.trim_start_matches("http://").parse().unwrap()).await.unwrap();
    let url = ws_url(&app, &format!("?ticket={}", ticket(&app, &ada).await));
    let (mut slow, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await.unwrap();
    assert_eq!(next_json(&mut slow).await["type"], "authenticated");
    send(&mut slow, json!({ "type": "subscribe", "channel": channel })).await;
    assert_eq!(next_json(&mut slow).await["type"], "subscribed");
    let mut fast = ws(&app, &ada).await;
    send(&mut fast, json!({ "type": "subscribe", "channel": channel })).await;
    assert_eq!(next_json(&mut fast).await["type"], "subscribed");

    // More than the kernel's socket buffers (a few MiB) and the connection's queue hold, in
    // steps the fast reader keeps up with: 40 × 100 committed events of 2 KiB.
    for step in 0..40 {
        app.execute_sql(SLOW_EVENTS[usize::from(app.database_url.is_some())]).await;
        for n in 0..100 {
            let event = next_json(&mut fast).await;
            assert_eq!(event["data"]["id"], "prd_slow", "event {n} of step {step}");
        }
    }
    assert_eq!(close_code(&mut slow).await, 1013);
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

#[tokio::test]
async fn an_event_committed_on_one_instance_reaches_a_socket_on_another() {
    let app = spawn_app().await;
    let Some(other) = app.another_instance().await else { return };
    let ada = app.customer("ada@example.com").await;
    // A ticket from one instance opens a socket on the other (instances have keys of their own).
    let url = ws_url(&other, &format!("?ticket={}", ticket(&app, &ada).await));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "authenticated");
    Passwords::new().change(&app, &ada).await;
    assert_eq!(next_json(&mut ws).await["type"], "notification.created");
}

#[tokio::test]
async fn clients_resuming_after_a_restart_lose_nothing() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let mut passwords = Passwords::new();
    let mut sse = Sse::open(&app, &ada, None).await;
    let mut ws1 = ws(&app, &ada).await;
    passwords.change(&app, &ada).await;
    let first = sse.event().await;
    assert_eq!(next_json(&mut ws1).await["id"], first["id"]);
    let (app, ()) = tokio::join!(app.restart(), async {
        assert!(sse.next().await.is_none(), "the stream ends at shutdown");
        assert_eq!(close_code(&mut ws1).await, 1012);
    });
    passwords.change(&app, &ada).await;
    // As a browser's new EventSource resumes: a ticket and the resume point in the query.
    let query = format!("/v1/events?ticket={}&last_event_id={}", ticket(&app, &ada).await, first["id"].as_str().unwrap());
    let response = app.request(reqwest::Method::GET, &query).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut sse = Sse { response, buffer: String::new() };
    let second = sse.event().await;
    assert_eq!(second["type"], "notification.created");
    assert_ne!(second["id"], first["id"]);
    let mut ws2 = ws(&app, &ada).await;
    send(&mut ws2, json!({ "type": "resume", "last_event_id": first["id"] })).await;
    assert_eq!(next_json(&mut ws2).await["id"], second["id"]);
}

#[tokio::test]
async fn disabling_a_user_or_taking_a_role_away_closes_their_sockets() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let support = app.create_staff("sue@example.com", PASSWORD, "support").await;
    let ada = app.customer("ada@example.com").await;
    let mut sues = ws(&app, &support).await;
    let mut adas = ws(&app, &ada).await;
    let patch = |id: String, body: Value| {
        let (app, token) = (&app, admin.access.clone());
        async move { app.patch_json_authed(&format!("/v1/admin/users/{id}"), &token, &body).await.expect(200) }
    };
    patch(support.user_id(), json!({ "roles": ["customer"] })).await;
    assert_eq!(close_code(&mut sues).await, 1008);
    patch(ada.user_id(), json!({ "disabled": true })).await;
    assert_eq!(close_code(&mut adas).await, 1008);
}

#[tokio::test]
async fn connections_over_the_per_user_cap_are_refused_with_a_problem() {
    let app = spawn_app_with(&[("realtime_max_per_user", "1")]).await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    let _open = Sse::open(&app, &ada, None).await;
    let refused = app.get_authed("/v1/events", &ada.access).await;
    refused.problem(429, "too_many_connections");
    assert!(refused.header("retry-after").is_some());
    match try_ws(&app, &format!("?ticket={}", ticket(&app, &ada).await), None).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    // Others are not affected.
    let _bobs = Sse::open(&app, &bob, None).await;
}

#[tokio::test]
async fn resuming_does_not_skip_an_event_committed_late_with_a_lower_seq() {
    let app = spawn_app().await;
    // Only PostgreSQL lets transactions commit out of `seq` order (SQLite has one writer).
    let Some(url) = app.database_url.clone() else { return };
    use sqlx::Connection as _;
    let ada = app.customer("ada@example.com").await;
    let subscribe = json!({ "type": "subscribe", "channel": "product:prd_late" });
    let mut watching = ws(&app, &ada).await;
    send(&mut watching, subscribe.clone()).await;
    next_json(&mut watching).await;

    // The slow transaction takes the lower seq; the quick one commits and is published first.
    let mut slow = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut slow).await.unwrap();
    sqlx::query(
        "INSERT INTO events (id, kind, data, created_at) VALUES ('evt_late', 'product.updated', '{\"id\":\"prd_late\",\"n\":1}', now())",
    )
    .execute(&mut slow)
    .await
    .unwrap();
    app.execute_sql(
        "INSERT INTO events (id, kind, data, created_at) VALUES ('evt_quick', 'product.updated', '{\"id\":\"prd_late\",\"n\":2}', now())",
    )
    .await;
    let quick = next_json(&mut watching).await;
    assert_eq!(quick["id"], "evt_quick");
    sqlx::query("COMMIT").execute(&mut slow).await.unwrap();
    assert_eq!(next_json(&mut watching).await["id"], "evt_late", "published after the quick one");

    // A client that saw only the quick one resumes from it and gets the late one.
    let mut resuming = ws(&app, &ada).await;
    send(&mut resuming, subscribe).await;
    next_json(&mut resuming).await;
    send(&mut resuming, json!({ "type": "resume", "last_event_id": "evt_quick" })).await;
    assert_eq!(next_json(&mut resuming).await["id"], "evt_late");
}
