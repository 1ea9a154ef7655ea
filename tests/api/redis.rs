//! Redis, when configured: one rate-limit budget and one second cache tier for every instance,
//! readiness, and what happens while Redis does not answer. Tests that need a real Redis run
//! when `KEEL_TEST_REDIS_URL` is set (each under a key prefix of its own) and say so otherwise;
//! those about an unreachable Redis point Keel at a closed port and run everywhere.

use serde_json::json;

use crate::checkout::product;
use crate::helpers::{PASSWORD, TestApp, spawn_app, spawn_app_process_with, spawn_app_with};
use crate::rate_limit::{assert_rate_limited, number};

/// A `redis://` URL of a loopback port where nothing listens.
fn unreachable_redis() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("its address").port();
    format!("redis://127.0.0.1:{port}")
}

/// Whether this app has a real Redis; tells why a test is skipped when not.
fn redis_configured(app: &TestApp) -> bool {
    let configured = app.uses_redis();
    if !configured {
        eprintln!("no Redis for tests: this test needs one (run with KEEL_TEST_REDIS_URL=redis://127.0.0.1:6379)");
    }
    configured
}

#[tokio::test]
async fn readyz_reports_redis_when_it_is_configured() {
    let app = spawn_app().await;
    if !redis_configured(&app) {
        return;
    }
    let body = app.get("/readyz").await.expect(200).json();
    assert_eq!(body["checks"]["redis"], "ok", "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
}

#[tokio::test]
async fn readyz_answers_503_degraded_naming_redis_while_it_is_unreachable() {
    let redis = unreachable_redis();
    let app = spawn_app_with(&[("redis_url", &redis)]).await;
    let reply = app.get("/readyz").await.expect(503);
    let body = reply.json();
    assert_eq!(body["status"], "degraded", "the database answers: the instance still serves; {body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert!(body["checks"]["redis"].as_str().is_some_and(|s| s != "ok"), "{body}");
}

#[tokio::test]
async fn an_unreachable_redis_leaves_every_limit_on_per_instance_and_counts_the_fallbacks() {
    // A process of its own: the fallback count is a process-wide metric.
    let redis = unreachable_redis();
    let app = spawn_app_process_with(&[("redis_url", &redis), ("rate_limit_auth_ip", "3/h")]).await;
    for _ in 0..3 {
        app.try_login("ada@example.com", PASSWORD).await.problem(401, "invalid_credentials");
    }
    assert_rate_limited(&app.try_login("ada@example.com", PASSWORD).await);
    let text = app.get("/metrics").await.expect(200).text;
    let metric = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(metric("keel_rate_limit_fallback_total") >= 4.0, "every decision was made here");
    assert_eq!(metric("keel_redis_up"), 0.0);
}

#[tokio::test]
async fn catalog_reads_stay_correct_while_redis_is_unreachable() {
    let redis = unreachable_redis();
    let app = spawn_app_with(&[("redis_url", &redis)]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let id = product(&app, &admin, "SKU-1", 1000, 5).await;
    let path = format!("/v1/products/{id}");
    assert_eq!(app.get(&path).await.expect(200).json()["price"]["amount"], 1000);
    let patch = json!({ "price": { "amount": 1500, "currency": "USD" } });
    app.patch_json_authed(&format!("/v1/admin/products/{id}"), &admin.access, &patch).await.expect(200);
    assert_eq!(app.get(&path).await.expect(200).json()["price"]["amount"], 1500);
    assert_eq!(app.get(&format!("{path}/quote")).await.expect(200).json()["unit_price"]["amount"], 1500);
}

#[tokio::test]
async fn two_instances_spend_one_budget_through_redis() {
    let app = spawn_app_with(&[("rate_limit_anonymous", "4/h")]).await;
    if !redis_configured(&app) {
        return;
    }
    let other = app.same_database_instance().await;
    for (instance, remaining) in [(&app, 3), (&other, 2), (&app, 1), (&other, 0)] {
        let reply = instance.get("/v1/products").await.expect(200);
        assert_eq!(number(&reply, "ratelimit-remaining"), remaining, "{:?}", reply.headers);
    }
    assert_rate_limited(&app.get("/v1/products").await);
    assert_rate_limited(&other.get("/v1/products").await);
}

#[tokio::test]
async fn a_price_changed_through_one_instance_is_what_another_serves_next() {
    let app = spawn_app().await;
    if !redis_configured(&app) {
        return;
    }
    let other = app.same_database_instance().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let id = product(&app, &admin, "SKU-1", 1000, 5).await;
    let (path, quote) = (format!("/v1/products/{id}"), format!("/v1/products/{id}/quote?quantity=2"));
    // Both tiers of both instances hold the old price.
    for instance in [&app, &other, &other] {
        assert_eq!(instance.get(&path).await.expect(200).json()["price"]["amount"], 1000);
        assert_eq!(instance.get(&quote).await.expect(200).json()["subtotal"]["amount"], 2000);
    }
    let patch = json!({ "price": { "amount": 1500, "currency": "USD" } });
    app.patch_json_authed(&format!("/v1/admin/products/{id}"), &admin.access, &patch).await.expect(200);
    for _ in 0..2 {
        assert_eq!(other.get(&path).await.expect(200).json()["price"]["amount"], 1500);
        assert_eq!(other.get(&quote).await.expect(200).json()["subtotal"]["amount"], 3000);
    }
    let listed = other.get("/v1/products").await.expect(200).json();
    assert_eq!(listed["data"][0]["price"]["amount"], 1500, "{listed}");
}
