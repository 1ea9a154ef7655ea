//! Streams: tickets, authentication, origins, own events, channels, resume, session rules,
//! slow consumers, caps, and delivery across instances and restarts.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use super::*;
use crate::helpers::{PASSWORD, Tokens, spawn_app, spawn_app_with};

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
    let event = price_change(&mut ws).await;
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

/// A customer whose socket heard one price change of a product and closed, and an admin's
/// socket (the observer) subscribed to the product's channel.
struct Resumable {
    app: TestApp,
    admin: Tokens,
    ada: Tokens,
    mug: String,
    channel: String,
    first: Value,
    observer: Ws,
}

async fn resumable() -> Resumable {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let mug = product(&app, &admin, "MUG").await;
    let channel = format!("product:{mug}");
    let mut ws1 = ws(&app, &ada).await;
    send(&mut ws1, json!({ "type": "subscribe", "channel": channel })).await;
    next_json(&mut ws1).await;
    set_price(&app, &admin, &mug, 1001).await;
    let first = price_change(&mut ws1).await;
    drop(ws1);
    let mut observer = ws(&app, &admin).await;
    send(&mut observer, json!({ "type": "subscribe", "channel": channel })).await;
    next_json(&mut observer).await;
    Resumable { app, admin, ada, mug, channel, first, observer }
}

#[tokio::test]
async fn a_websocket_resumes_with_exactly_the_missed_events_in_order_once() {
    // The observer hears the three changes go out, so all three are missed, not live, for ws2.
    let Resumable { app, admin, ada, mug, channel, first, mut observer } = resumable().await;
    for amount in [1002, 1003, 1004] {
        set_price(&app, &admin, &mug, amount).await;
    }
    for amount in [1002, 1003, 1004] {
        assert_eq!(next_json(&mut observer).await["data"]["price"]["amount"], amount);
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
async fn an_event_heard_live_before_the_resume_is_not_replayed_again() {
    let Resumable { app, admin, ada, mug, channel, first, mut observer } = resumable().await;
    set_price(&app, &admin, &mug, 1002).await;
    assert_eq!(next_json(&mut observer).await["data"]["price"]["amount"], 1002);
    let mut ws2 = ws(&app, &ada).await;
    send(&mut ws2, json!({ "type": "subscribe", "channel": channel })).await;
    next_json(&mut ws2).await;
    set_price(&app, &admin, &mug, 1003).await;
    let price = |frame: Value| frame["data"]["price"]["amount"].as_i64().unwrap();
    assert_eq!(price(next_json(&mut ws2).await), 1003, "heard live");
    send(&mut ws2, json!({ "type": "resume", "last_event_id": first["id"] })).await;
    set_price(&app, &admin, &mug, 1004).await;
    // Up to the next live event: the replay, then 1004. Other changes of the product after
    // `first` may be replayed too (they were missed); the one heard live must not be.
    let mut rest = Vec::new();
    while rest.last() != Some(&1004) {
        rest.push(price(next_json(&mut ws2).await));
    }
    assert!(rest.contains(&1002), "the missed change is replayed: {rest:?}");
    assert!(!rest.contains(&1003), "the change heard live is not replayed again: {rest:?}");
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
    let mut slow = slow_reader(&app, &ada).await;
    let mut fast = ws(&app, &ada).await;
    overflow(&app, &mut fast).await;
    assert_eq!(close_code(&mut slow).await, 1013);
}

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
