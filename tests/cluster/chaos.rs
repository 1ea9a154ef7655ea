//! An instance killed (SIGKILL) during a burst of checkouts spread over the cluster: clients
//! retry what failed on the survivors with the same Idempotency-Key, and afterwards nothing is
//! lost, doubled or stuck; the killed instance rejoins.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::fixture::{Client, Tokens, WAIT_SECS, cluster, usd};
use crate::poll::eventually;

const SHOPPERS: usize = 12;
const CHECKOUTS_EACH: usize = 5;
const STOCK: i64 = 500;
const PRICE: i64 = 700;
const TOP_UP: i64 = 10_000;

/// One checkout of one unit, retried through the balancer with the same key until it has an
/// answer: a lost connection, a 5xx from the balancer, or the key still held by a request that
/// died with its instance (409 until its lease ends) are all tried again.
async fn checkout_until_answered(balancer: &Client, who: &Tokens, product: &str, key: &str, retried: &AtomicUsize) -> Value {
    for attempt in 0..120 {
        if attempt > 0 {
            retried.fetch_add(1, Ordering::SeqCst);
        }
        let put =
            balancer.request(Method::PUT, &format!("/v1/cart/items/{product}")).bearer_auth(&who.access).json(&json!({ "quantity": 1 }));
        if !matches!(balancer.try_send(put).await, Ok(r) if r.status == 200) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let request = balancer
            .request(Method::POST, "/v1/checkout")
            .bearer_auth(&who.access)
            .header("Idempotency-Key", key)
            .json(&json!({ "payment_method": "wallet" }));
        match balancer.try_send(request).await {
            Ok(reply) if reply.status == 201 => return reply.body,
            Ok(reply) if reply.status.is_server_error() || reply.body["code"] == "idempotency_key_in_use" => {}
            // The first attempt sold the cart's unit and died before answering; the retry found
            // the cart empty only if the key's answer was lost, which must not happen.
            Ok(reply) => panic!("checkout {key} answered {}: {}", reply.status, reply.body),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("checkout {key} got no answer in 30 s of retries");
}

#[tokio::test]
#[ignore = "needs the local cluster: run by .ci/run"]
async fn an_instance_killed_during_checkouts_loses_nothing_and_rejoins() {
    let c = cluster();
    let balancer = Client::new(&c.balancer);
    let admin = c.admin("chaos@example.com").await;
    let product = balancer.product(&admin, "CHAOS-1", PRICE, STOCK).await;
    let mut shoppers = Vec::new();
    for i in 0..SHOPPERS {
        let who = balancer.register(&format!("chaos-{i}@example.com")).await;
        let key = uuid::Uuid::new_v4().to_string();
        let top_up = balancer
            .request(Method::POST, "/v1/wallet/top-ups")
            .bearer_auth(&who.access)
            .header("Idempotency-Key", key)
            .json(&json!({ "amount": usd(TOP_UP), "card_token": "tok_visa" }));
        balancer.send(top_up).await.expect(201);
        shoppers.push(who);
    }

    let answered = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let mut burst = Vec::new();
    for who in shoppers.clone() {
        let (balancer, product, answered, retried) = (balancer.clone(), product.clone(), answered.clone(), retried.clone());
        burst.push(tokio::spawn(async move {
            let mut orders = Vec::new();
            for _ in 0..CHECKOUTS_EACH {
                let key = uuid::Uuid::new_v4().to_string();
                let order = checkout_until_answered(&balancer, &who, &product, &key, &retried).await;
                answered.fetch_add(1, Ordering::SeqCst);
                orders.push((key, order));
            }
            orders
        }));
    }
    eventually(WAIT_SECS, "a fifth of the checkouts", || async { (answered.load(Ordering::SeqCst) >= SHOPPERS).then_some(()) }).await;
    c.script_ok(&["kill", "2"]);
    let at_kill = answered.load(Ordering::SeqCst);
    let mut answers = Vec::new();
    for task in burst {
        answers.push(task.await.expect("a shopper's checkouts"));
    }

    assert!(at_kill < SHOPPERS * CHECKOUTS_EACH, "the instance died during the burst ({at_kill} checkouts had answers)");
    eprintln!(
        "{at_kill} of {} checkouts had answers when serve-2 was killed; {} attempts were retried",
        SHOPPERS * CHECKOUTS_EACH,
        retried.load(Ordering::SeqCst)
    );

    // Every paid order exists once: each key's answer names an order the shopper has, and the
    // shopper has no other.
    for (who, answers) in shoppers.iter().zip(&answers) {
        let listed = balancer.get("/v1/orders?limit=100", Some(&who.access)).await.expect(200);
        let mut listed: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
        let mut answered: Vec<&str> = answers.iter().map(|(_, o)| o["id"].as_str().unwrap()).collect();
        listed.sort_unstable();
        answered.sort_unstable();
        assert_eq!(listed, answered, "one order per checkout, none lost or doubled");
        assert!(answers.iter().all(|(_, o)| o["status"] == "paid"));
        // Wallet: what is left plus what was paid is what was topped up.
        let balance = balancer.get("/v1/wallet", Some(&who.access)).await.expect(200)["balance"]["amount"].as_i64().unwrap();
        let paid: i64 = answers.iter().map(|(_, o)| o["total"]["amount"].as_i64().unwrap()).sum();
        assert_eq!(balance + paid, TOP_UP);
    }
    // Stock: sold plus left is what there was.
    let sold = (SHOPPERS * CHECKOUTS_EACH) as i64;
    let left = balancer.get(&format!("/v1/products/{product}"), None).await.expect(200)["stock_available"].as_i64().unwrap();
    assert_eq!(left + sold, STOCK);
    let books = balancer.get("/v1/admin/ledger/verify", Some(&admin.access)).await.expect(200);
    assert_eq!(books["balanced"], true, "{books}");
    // No key stays stuck: each one replays its order (past any lease a dead request left).
    for (who, answers) in shoppers.iter().zip(&answers) {
        for (key, order) in answers {
            let replay = balancer
                .request(Method::POST, "/v1/checkout")
                .bearer_auth(&who.access)
                .header("Idempotency-Key", key.as_str())
                .json(&json!({ "payment_method": "wallet" }));
            let reply = balancer.send(replay).await;
            assert_eq!(reply.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"), "{}", reply.body);
            assert_eq!(reply.expect(201)["id"], order["id"]);
        }
    }

    // The killed instance rejoins: ready, and on the bus again.
    c.script_ok(&["start", "2"]);
    let rejoined = Client::new(&c.instances[1]);
    assert_eq!(rejoined.get("/readyz", None).await.expect(200)["status"], "ok");
    let who = &shoppers[0];
    let mut ws = rejoined.websocket(who).await;
    let change = json!({ "current_password": crate::fixture::PASSWORD, "new_password": "after the restart" });
    Client::new(&c.instances[0]).post("/v1/auth/password/change", Some(&who.access), &change).await.expect(204);
    assert_eq!(ws.next_json().await["type"], "notification.created");
    ws.close().await;
}
