//! The publish order with several relays: whatever instance commits an event and whichever
//! relay publishes it, every client hears events in the order a resume replays them, so a
//! resume from any event gets exactly what followed it.

use futures::future::join_all;
use serde_json::{Value, json};

use super::*;
use crate::helpers::{PASSWORD, spawn_app_with};

/// Price changes committed through each instance.
const PER_INSTANCE: usize = 20;
/// Changes each instance has in flight at once.
const CONCURRENCY: usize = 4;

/// Changes the prices of `products` `count` times through `app`, `CONCURRENCY` at a time.
async fn change_prices(app: &TestApp, admin: &Tokens, products: &[String], count: usize, base: i64) {
    for wave in (0..count).collect::<Vec<_>>().chunks(CONCURRENCY) {
        join_all(wave.iter().map(|&n| set_price(app, admin, &products[n % products.len()], base + n as i64))).await;
    }
}

/// Connections committing events straight into the outbox on PostgreSQL, and events each.
const LATE_COMMITTERS: usize = 10;
const LATE_EACH: usize = 10;

/// On PostgreSQL (`database_url`), commits `product.updated` events of `product` from several connections, each
/// transaction pausing a random moment before its commit, so events commit out of `seq` order
/// while the relays run (SQLite has one writer: its commits follow `seq`).
async fn commit_out_of_order(database_url: Option<&str>, product: &str) {
    use sqlx::Connection as _;
    let Some(url) = database_url else { return };
    join_all((0..LATE_COMMITTERS).map(|c| async move {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        for n in 0..LATE_EACH {
            let mut tx = conn.begin().await.unwrap();
            sqlx::query("INSERT INTO events (id, kind, data, created_at) VALUES ($1, 'product.updated', $2, now())")
                .bind(format!("evt_late_{c}_{n}"))
                .bind(json!({ "id": product, "n": n }).to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("SELECT pg_notify('keel_events', ''), pg_sleep(random() * 0.02)").execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        }
    }))
    .await;
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

/// Both instances with an admin signed in there (each instance signs with a key of its own).
struct Deployment {
    first: TestApp,
    second: TestApp,
    admins: [Tokens; 2],
    products: Vec<String>,
}

impl Deployment {
    /// Where a client hears every event: with NATS, the instance started second, which hears
    /// the leader (the first) through the bus; without, the leader itself, whose in-process bus
    /// is the only one that carries events.
    fn listening(&self) -> &TestApp {
        if self.first.shares_bus() { &self.second } else { &self.first }
    }

    /// Commits price changes through both instances at once and, with `late` on PostgreSQL,
    /// events that commit out of `seq` order; returns how many events that made.
    async fn burst(&self, per_instance: usize, base: i64, late: bool) -> usize {
        let late = if late { self.first.database_url.as_deref() } else { None };
        tokio::join!(
            change_prices(&self.first, &self.admins[0], &self.products, per_instance, base),
            change_prices(&self.second, &self.admins[1], &self.products, per_instance, base + 1000),
            commit_out_of_order(late, &self.products[1]),
        );
        2 * per_instance + if late.is_some() { LATE_COMMITTERS * LATE_EACH } else { 0 }
    }
}

#[tokio::test]
async fn with_two_relays_a_resume_from_any_event_replays_exactly_what_followed_it() {
    let first = spawn_app_with(&[("realtime_max_per_user", "1000")]).await;
    let second = first.same_database_instance().await;
    let admin = first.create_admin("root@example.com", PASSWORD).await;
    let admins = [admin.clone(), second.login("root@example.com", PASSWORD).await];
    let mut products = Vec::new();
    for sku in ["MUG", "CUP"] {
        products.push(product(&first, &admin, sku).await);
    }
    let mut deployment = Deployment { first, second, admins, products };
    let ada = deployment.listening().customer("ada@example.com").await;
    let channels: Vec<String> = deployment.products.iter().map(|p| format!("product:{p}")).collect();

    let mut live = follower(deployment.listening(), &ada, &channels, None).await;
    let mut committed = deployment.burst(PER_INSTANCE, 2000, true).await;
    if deployment.first.shares_bus() {
        // The leader stops and comes back: meanwhile the other relay takes over, and keeps leading.
        deployment.first = deployment.first.restart().await;
        committed += deployment.burst(PER_INSTANCE, 4000, false).await;
    }
    // One last change once all are committed: every stream below must end with it.
    set_price(&deployment.first, &deployment.admins[0], &deployment.products[0], 9999).await;
    let heard = event_ids(&mut live, committed + 1).await;
    let mut distinct = heard.clone();
    distinct.sort_by_key(|id| id.as_str().unwrap().to_owned());
    distinct.dedup();
    assert_eq!(distinct.len(), heard.len(), "each event once");

    for (i, last) in heard.iter().enumerate().take(heard.len() - 1) {
        let mut resumed = follower(deployment.listening(), &ada, &channels, last.as_str()).await;
        let replayed = event_ids(&mut resumed, heard.len() - 1 - i).await;
        assert_eq!(replayed, heard[i + 1..], "resumed after event {i} of {}", heard.len());
    }
}
