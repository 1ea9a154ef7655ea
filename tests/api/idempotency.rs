//! Idempotency keys on [idem] routes (Stripe's semantics): replay, reuse, in use, take-over.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app, spawn_app_with};
use crate::support::eventually;
use crate::wallet::{balance, idem_post, top_up, usd};

async fn funded_pair(app: &TestApp) -> (Tokens, Tokens) {
    let (ada, bob) = (app.customer("ada@example.com").await, app.customer("bob@example.com").await);
    top_up(app, &ada, 1000, "tok_visa").await.expect(201);
    (ada, bob)
}

fn send_100() -> serde_json::Value {
    json!({ "to_email": "bob@example.com", "amount": usd(100) })
}

#[tokio::test]
async fn the_same_key_and_body_replays_the_first_response_byte_for_byte_with_one_transfer() {
    let app = spawn_app().await;
    let (ada, bob) = funded_pair(&app).await;
    let first = idem_post(&app, "/v1/wallet/transfers", &ada, "trf-1", &send_100()).await.expect(201);
    assert_eq!(first.header("idempotent-replayed"), None);
    // The same body, laid out differently, is the same request.
    let again = json!({ "amount": usd(100), "to_email": "bob@example.com" });
    let second = idem_post(&app, "/v1/wallet/transfers", &ada, "trf-1", &again).await.expect(201);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.text, first.text, "byte-identical");
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!((balance(&app, &ada).await, balance(&app, &bob).await), (900, 100), "one transfer");
}

#[tokio::test]
async fn a_declined_top_up_is_replayed_too_and_the_card_is_not_charged_again() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let body = json!({ "amount": usd(500), "card_token": "tok_chargeDeclined" });
    let first = idem_post(&app, "/v1/wallet/top-ups", &ada, "top-1", &body).await;
    first.problem(402, "payment_declined");
    let second = idem_post(&app, "/v1/wallet/top-ups", &ada, "top-1", &body).await;
    assert_eq!((second.status.as_u16(), second.header("idempotent-replayed")), (402, Some("true")));
    assert_eq!(second.text, first.text);
}

#[tokio::test]
async fn another_body_under_the_same_key_is_422_idempotency_key_reuse() {
    let app = spawn_app().await;
    let (ada, _) = funded_pair(&app).await;
    idem_post(&app, "/v1/wallet/transfers", &ada, "trf-1", &send_100()).await.expect(201);
    let other = json!({ "to_email": "bob@example.com", "amount": usd(101) });
    idem_post(&app, "/v1/wallet/transfers", &ada, "trf-1", &other).await.problem(422, "idempotency_key_reuse");
    assert_eq!(balance(&app, &ada).await, 900);
}

#[tokio::test]
async fn keys_belong_to_one_user_and_one_route() {
    let app = spawn_app().await;
    let (ada, bob) = funded_pair(&app).await;
    top_up(&app, &bob, 1000, "tok_visa").await.expect(201);
    idem_post(&app, "/v1/wallet/transfers", &ada, "shared", &send_100()).await.expect(201);
    let to_ada = json!({ "to_email": "ada@example.com", "amount": usd(100) });
    let reply = idem_post(&app, "/v1/wallet/transfers", &bob, "shared", &to_ada).await.expect(201);
    assert_eq!(reply.header("idempotent-replayed"), None);
    let top = json!({ "amount": usd(100), "card_token": "tok_visa" });
    idem_post(&app, "/v1/wallet/top-ups", &ada, "shared", &top).await.expect(201);
}

#[tokio::test]
async fn a_missing_key_is_400_and_a_bad_one_422() {
    let app = spawn_app().await;
    let (ada, _) = funded_pair(&app).await;
    let reply = app.post_json_authed("/v1/wallet/transfers", &ada.access, &send_100()).await;
    reply.problem(400, "idempotency_key_required");
    let long = "k".repeat(256);
    idem_post(&app, "/v1/wallet/transfers", &ada, &long, &send_100()).await.field_error("Idempotency-Key");
    // Authentication comes first.
    let anonymous = app.send(app.request(Method::POST, "/v1/wallet/transfers").header("Idempotency-Key", "k").json(&send_100())).await;
    anonymous.problem(401, "unauthenticated");
    assert_eq!(balance(&app, &ada).await, 1000);
}

#[tokio::test]
async fn a_refused_request_releases_its_key_for_a_corrected_one() {
    let app = spawn_app().await;
    let (ada, bob) = funded_pair(&app).await;
    let wrong = json!({ "to_email": "nobody@example.com", "amount": usd(100) });
    idem_post(&app, "/v1/wallet/transfers", &ada, "trf-1", &wrong).await.field_error("to_email");
    idem_post(&app, "/v1/wallet/transfers", &ada, "trf-1", &send_100()).await.expect(201);
    assert_eq!(balance(&app, &bob).await, 100);
}

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_have_one_effect() {
    let app = spawn_app().await;
    let (ada, bob) = funded_pair(&app).await;
    let body = send_100();
    let replies = futures::future::join_all((0..20).map(|_| idem_post(&app, "/v1/wallet/transfers", &ada, "burst", &body))).await;
    let firsts: Vec<_> = replies.iter().filter(|r| r.status == 201 && r.header("idempotent-replayed").is_none()).collect();
    assert_eq!(firsts.len(), 1, "exactly one ran");
    for reply in &replies {
        match reply.status.as_u16() {
            201 => assert_eq!(reply.text, firsts[0].text),
            409 => assert_eq!(reply.json()["code"], "idempotency_key_in_use"),
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert_eq!((balance(&app, &ada).await, balance(&app, &bob).await), (900, 100));
}

#[tokio::test]
async fn a_key_held_by_a_request_that_died_is_taken_over_after_its_lease() {
    let app = spawn_app().await;
    let (ada, bob) = funded_pair(&app).await;
    let fingerprint = keel::http::idempotency::fingerprint(
        "POST",
        "/v1/wallet/transfers",
        &ada.user_id(),
        serde_json::to_vec(&send_100()).unwrap().as_slice(),
    );
    // As a process that died mid-request leaves it: in flight, its lease already over.
    let sql = format!(
        "INSERT INTO idempotency_keys (user_id, route, key, fingerprint, locked_until, status, body, created_at) \
         VALUES ('{}', '/v1/wallet/transfers', 'orphan', '{fingerprint}', {past}, NULL, NULL, {past})",
        ada.user_id(),
        past = if app.database_url.is_some() { "now() - interval '1 minute'" } else { "'2020-01-01T00:00:00.000000Z'" },
    );
    assert_eq!(app.execute_sql(Box::leak(sql.into_boxed_str())).await, 1);
    let reply = idem_post(&app, "/v1/wallet/transfers", &ada, "orphan", &send_100()).await.expect(201);
    assert_eq!(reply.header("idempotent-replayed"), None);
    assert_eq!(balance(&app, &bob).await, 100);

    // A live hold is respected.
    let sql = format!(
        "INSERT INTO idempotency_keys (user_id, route, key, fingerprint, locked_until, status, body, created_at) \
         VALUES ('{}', '/v1/wallet/transfers', 'held', '{fingerprint}', {future}, NULL, NULL, {future})",
        ada.user_id(),
        future = if app.database_url.is_some() { "now() + interval '1 hour'" } else { "'2999-01-01T00:00:00.000000Z'" },
    );
    app.execute_sql(Box::leak(sql.into_boxed_str())).await;
    idem_post(&app, "/v1/wallet/transfers", &ada, "held", &send_100()).await.problem(409, "idempotency_key_in_use");
}

#[tokio::test]
async fn keys_are_kept_a_day_then_purged_by_the_hourly_job() {
    let app = spawn_app_with(&[("run_workers", "false")]).await;
    let (old, fresh) = if app.database_url.is_some() {
        ("now() - interval '25 hours'", "now() - interval '23 hours'")
    } else {
        ("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-25 hours')", "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-23 hours')")
    };
    for (key, at) in [("old", old), ("fresh", fresh)] {
        let sql = format!(
            "INSERT INTO idempotency_keys (user_id, route, key, fingerprint, locked_until, status, body, created_at) \
             VALUES ('usr_x', '/v1/wallet/transfers', '{key}', 'f', {at}, 201, NULL, {at})"
        );
        assert_eq!(app.execute_sql(Box::leak(sql.into_boxed_str())).await, 1);
    }
    // The scheduler enqueued the period's purge at start; workers run it now.
    let app = app.restart_with(&[("run_workers", "true")]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    eventually(30, "the purge to run", || async {
        let jobs = app.get_authed("/v1/admin/jobs?kind=maintenance.purge_idempotency_keys", &admin.access).await.expect(200).json();
        (jobs["data"][0]["state"] == "done").then_some(())
    })
    .await;
    let touched = |sql| app.execute_sql(sql);
    assert_eq!(touched("UPDATE idempotency_keys SET key = key WHERE key = 'old'").await, 0, "a key older than 24 h is gone");
    assert_eq!(touched("UPDATE idempotency_keys SET key = key WHERE key = 'fresh'").await, 1, "a younger one is kept");
}
