//! The request classes: anonymous requests per client address, signed-in requests per user,
//! money routes and back-office routes per user, and the switch that turns every limit off.
//! Budgets are per hour so nothing refills while a test runs.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, Reply, TestApp, spawn_app, spawn_app_with};
use crate::rate_limit::{assert_rate_limited, number};
use crate::wallet::top_up;

/// An anonymous GET from `client_ip` (believed only when the peer is a trusted proxy).
async fn get_from(app: &TestApp, client_ip: &str, path: &str) -> Reply {
    app.send(app.request(Method::GET, path).header("x-forwarded-for", client_ip)).await
}

#[track_caller]
fn assert_budget(reply: &Reply, limit: u64, remaining: u64) {
    assert_eq!(number(reply, "ratelimit-limit"), limit, "{:?}", reply.headers);
    assert_eq!(number(reply, "ratelimit-remaining"), remaining, "{:?}", reply.headers);
    assert!(number(reply, "ratelimit-reset") >= 1, "reset is in whole seconds");
}

#[tokio::test]
async fn anonymous_requests_are_limited_per_client_address() {
    let app = spawn_app_with(&[("trusted_proxies", "127.0.0.1"), ("rate_limit_anonymous", "3/h")]).await;
    for remaining in [2, 1, 0] {
        assert_budget(&get_from(&app, "203.0.113.1", "/v1/products").await.expect(200), 3, remaining);
    }
    assert_rate_limited(&get_from(&app, "203.0.113.1", "/v1/products").await);
    assert_rate_limited(&get_from(&app, "203.0.113.1", "/v1/products/prd_01900000000070008000000000000000").await);
    assert_budget(&get_from(&app, "203.0.113.2", "/v1/products").await.expect(200), 3, 2);
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_does_not_choose_the_anonymous_budget() {
    let app = spawn_app_with(&[("rate_limit_anonymous", "2/h")]).await;
    get_from(&app, "203.0.113.1", "/v1/products").await.expect(200);
    get_from(&app, "203.0.113.2", "/v1/products").await.expect(200);
    assert_rate_limited(&get_from(&app, "203.0.113.3", "/v1/products").await);
}

#[tokio::test]
async fn a_refused_token_spends_the_address_budget() {
    let app = spawn_app_with(&[("rate_limit_anonymous", "2/h")]).await;
    for _ in 0..2 {
        app.me("not-a-token").await.problem(401, "invalid_token");
    }
    assert_rate_limited(&app.me("not-a-token").await);
}

#[tokio::test]
async fn signed_in_requests_are_limited_per_user_and_one_user_limited_does_not_limit_another() {
    let app = spawn_app_with(&[("rate_limit_user", "3/h")]).await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    for remaining in [2, 1, 0] {
        assert_budget(&app.me(&ada.access).await.expect(200), 3, remaining);
    }
    assert_rate_limited(&app.me(&ada.access).await);
    assert_rate_limited(&app.get_authed("/v1/wallet", &ada.access).await);
    assert_budget(&app.me(&bob.access).await.expect(200), 3, 2);
    // The same address without a token spends the address budget, not Ada's.
    app.get("/v1/products").await.expect(200);
}

#[tokio::test]
async fn money_routes_have_a_budget_of_their_own_per_user() {
    let app = spawn_app_with(&[("rate_limit_money", "2/h")]).await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    for remaining in [1, 0] {
        assert_budget(&top_up(&app, &ada, 1000, "tok_visa").await.expect(201), 2, remaining);
    }
    assert_rate_limited(&top_up(&app, &ada, 1000, "tok_visa").await);
    let transfer = json!({ "to_email": "bob@example.com", "amount": { "amount": 100, "currency": "USD" } });
    let refused = app
        .send(app.request(Method::POST, "/v1/wallet/transfers").bearer_auth(&ada.access).header("Idempotency-Key", "t-1").json(&transfer))
        .await;
    assert_rate_limited(&refused);
    top_up(&app, &bob, 1000, "tok_visa").await.expect(201);
    // Ada's other requests have their own, larger budget.
    assert_eq!(app.get_authed("/v1/wallet", &ada.access).await.expect(200).json()["balance"]["amount"], 2000);
}

#[tokio::test]
async fn back_office_routes_have_a_budget_of_their_own_per_user() {
    let app = spawn_app_with(&[("rate_limit_admin", "2/h")]).await;
    let root = app.create_admin("root@example.com", PASSWORD).await;
    let other = app.create_admin("other@example.com", PASSWORD).await;
    for remaining in [1, 0] {
        assert_budget(&app.get_authed("/v1/admin/users", &root.access).await.expect(200), 2, remaining);
    }
    assert_rate_limited(&app.get_authed("/v1/admin/jobs", &root.access).await);
    app.me(&root.access).await.expect(200);
    app.get_authed("/v1/admin/users", &other.access).await.expect(200);
}

#[tokio::test]
async fn every_limited_response_carries_the_headers_errors_included() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    for reply in [
        app.get("/v1/products").await.expect(200),
        app.get("/v1/products/prd_01900000000070008000000000000000").await,
        app.get("/v1/me").await,
        app.me(&ada.access).await.expect(200),
        app.call(Method::PUT, "/v1/cart/coupon", Some(&ada.access), Some(&json!({}))).await,
    ] {
        assert!(number(&reply, "ratelimit-limit") >= 1, "{} {:?}", reply.status, reply.headers);
        assert!(reply.header("ratelimit-remaining").is_some() && reply.header("ratelimit-reset").is_some(), "{:?}", reply.headers);
    }
    for path in ["/healthz", "/readyz"] {
        assert!(app.get(path).await.header("ratelimit-limit").is_none(), "{path} is not limited");
    }
}

#[tokio::test]
async fn rate_limit_enabled_false_turns_every_limit_off() {
    let app = spawn_app_with(&[
        ("rate_limit_enabled", "false"),
        ("rate_limit_anonymous", "1/h"),
        ("rate_limit_user", "1/h"),
        ("rate_limit_auth_ip", "1/h"),
    ])
    .await;
    let ada = app.customer("ada@example.com").await;
    for _ in 0..3 {
        let reply = app.get("/v1/products").await.expect(200);
        assert!(reply.header("ratelimit-limit").is_none(), "{:?}", reply.headers);
        app.me(&ada.access).await.expect(200);
        app.try_login("ada@example.com", "a wrong guess").await.problem(401, "invalid_credentials");
    }
}
