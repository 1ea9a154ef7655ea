//! The publish order with several relays: whatever instance commits an event and whichever
//! relay publishes it, every client hears events in the order a resume replays them, so a
//! resume from any event gets exactly what followed it.

use futures::future::join_all;
use serde_json::{Value, json};

use super::*;
use crate::helpers::{PASSWORD, spawn_app_with};

/// Price changes committed through each instance.
const PER_INSTANCE: usize = 60;
/// Changes each instance has in flight at once.
const CONCURRENCY: usize = 4;

/// Changes the prices of `products` `count` times through `app`, `CONCURRENCY` at a time.
async fn change_prices(app: &TestApp, admin: &Tokens, products: &[String], count: usize, base: i64) {
    for wave in (0..count).collect::<Vec<_>>().chunks(CONCURRENCY) {
        join_all(wave.iter().map(|&n| set_price(app, admin, &products[n % products.len()], base + n as i64))).await;
    }
}

/// A socket of `who` on `listening` following `channels`, resumed after `last` when given.
async fn follower(listening: &TestApp, who: &Tokens, channels: &[String], last: Option<&str>) -> Ws {
    let mut socket = ws(listening, who).await;
    for channel in channels {
        send(&mut socket, json!({ "type": "subscribe", "channel": channel })).await;
        assert_eq!(next_json(&mut socket).await["type"], "subscribed");
    }
    if let Some(last) = last {
        send(&mut socket, json!({ "type": "resume", "last_event_id": last })).await;
    }
    socket
}

/// The ids of the next `n` events on `socket`.
async fn event_ids(socket: &mut Ws, n: usize) -> Vec<Value> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let event = next_json(socket).await;
        assert_eq!(event["type"], "product.updated", "{event}");
        ids.push(event["id"].clone());
    }
    ids
}

#[tokio::test]
async fn with_two_relays_a_resume_from_any_event_replays_exactly_what_followed_it() {
    let app = spawn_app_with(&[("realtime_max_per_user", "1000")]).await;
    let other = app.same_database_instance().await;
    // Both instances run a relay; the first one started leads. With NATS a client on the other
    // instance hears the leader through the bus; without, only the leader's own bus carries events.
    let listening = if app.shares_bus() { &other } else { &app };
    let admin_here = app.create_admin("root@example.com", PASSWORD).await;
    // Each instance signs with a key of its own: sign in there too.
    let admin_there = other.login("root@example.com", PASSWORD).await;
    let ada = listening.customer("ada@example.com").await;
    let mut products = Vec::new();
    for sku in ["MUG", "CUP"] {
        products.push(product(&app, &admin_here, sku).await);
    }
    let channels: Vec<String> = products.iter().map(|p| format!("product:{p}")).collect();

    let mut live = follower(listening, &ada, &channels, None).await;
    tokio::join!(
        change_prices(&app, &admin_here, &products, PER_INSTANCE, 2000),
        change_prices(&other, &admin_there, &products, PER_INSTANCE, 5000),
    );
    // One last change once all are committed: every stream below must end with it.
    set_price(&app, &admin_here, &products[0], 9999).await;
    let heard = event_ids(&mut live, 2 * PER_INSTANCE + 1).await;
    let mut distinct = heard.clone();
    distinct.sort_by_key(|id| id.as_str().unwrap().to_owned());
    distinct.dedup();
    assert_eq!(distinct.len(), heard.len(), "each event once");

    for (i, last) in heard.iter().enumerate().take(heard.len() - 1) {
        let mut resumed = follower(listening, &ada, &channels, last.as_str()).await;
        let replayed = event_ids(&mut resumed, heard.len() - 1 - i).await;
        assert_eq!(replayed, heard[i + 1..], "resumed after event {i} of {}", heard.len());
    }
}
