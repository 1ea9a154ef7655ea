//! Rate limits of login and register, per client IP and per account. Budgets are per hour so
//! nothing refills while a test runs.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, Reply, TestApp, spawn_app_process_with, spawn_app_with};

/// A login attempt from `client_ip` (believed only when the peer is a trusted proxy).
async fn login_from(app: &TestApp, client_ip: &str, email: &str, password: &str) -> Reply {
    app.send(
        app.request(Method::POST, "/v1/auth/login")
            .header("x-forwarded-for", client_ip)
            .json(&json!({ "email": email, "password": password })),
    )
    .await
}

pub fn number(reply: &Reply, header: &str) -> u64 {
    reply
        .header(header)
        .unwrap_or_else(|| panic!("{header} missing: {:?}", reply.headers))
        .parse()
        .unwrap_or_else(|_| panic!("{header} is a number"))
}

#[track_caller]
pub fn assert_rate_limited(reply: &Reply) {
    reply.problem(429, "rate_limited");
    let retry_after = number(reply, "retry-after");
    assert!(retry_after >= 1, "Retry-After in seconds");
    assert_eq!(number(reply, "ratelimit-reset"), retry_after, "RateLimit-Reset and Retry-After name the same moment");
    assert_eq!(number(reply, "ratelimit-remaining"), 0);
}

#[tokio::test]
async fn login_and_register_responses_carry_rate_limit_headers() {
    let app = spawn_app_with(&[("rate_limit_auth_ip", "5/h")]).await;
    let registered = app.try_register("ada@example.com", PASSWORD, "Ada").await.expect(201);
    let failed = app.try_login("ada@example.com", "wrong password").await;
    failed.problem(401, "invalid_credentials");
    let succeeded = app.try_login("ada@example.com", PASSWORD).await.expect(200);
    for (reply, remaining) in [(&registered, 4), (&failed, 3), (&succeeded, 2)] {
        assert_eq!(number(reply, "ratelimit-limit"), 5);
        assert_eq!(number(reply, "ratelimit-remaining"), remaining);
        assert!(number(reply, "ratelimit-reset") >= 1, "reset is in whole seconds");
    }
}

#[tokio::test]
async fn too_many_attempts_from_one_address_are_refused() {
    let app = spawn_app_with(&[("rate_limit_auth_ip", "3/h")]).await;
    app.customer("ada@example.com").await;
    for email in ["bob@example.com", "carol@example.com"] {
        app.try_login(email, PASSWORD).await.problem(401, "invalid_credentials");
    }
    let refused = app.try_login("ada@example.com", PASSWORD).await;
    assert_rate_limited(&refused);
    assert_eq!(number(&refused, "ratelimit-remaining"), 0);
    assert_rate_limited(&app.try_register("dave@example.com", PASSWORD, "Dave").await);
}

#[tokio::test]
async fn an_account_is_limited_whatever_address_the_attempts_come_from() {
    let app =
        spawn_app_with(&[("trusted_proxies", "127.0.0.1"), ("rate_limit_auth_ip", "100/h"), ("rate_limit_auth_account", "3/h")]).await;
    app.customer("ada@example.com").await;
    login_from(&app, "203.0.113.1", "ada@example.com", "guess one").await.problem(401, "invalid_credentials");
    login_from(&app, "203.0.113.2", "ADA@example.com", "guess two").await.problem(401, "invalid_credentials");
    login_from(&app, "203.0.113.4", "ada@example.com", "guess three").await.problem(401, "invalid_credentials");
    // Even the right password is refused now, from yet another address.
    assert_rate_limited(&login_from(&app, "203.0.113.3", "ada@example.com", PASSWORD).await);
    // Another account from the same addresses is not affected.
    app.customer("bob@example.com").await;
    login_from(&app, "203.0.113.3", "bob@example.com", PASSWORD).await.expect(200);
}

#[tokio::test]
async fn each_client_address_has_its_own_budget() {
    let app = spawn_app_with(&[("trusted_proxies", "127.0.0.1"), ("rate_limit_auth_ip", "2/h")]).await;
    for email in ["a@example.com", "b@example.com"] {
        login_from(&app, "198.51.100.7", email, PASSWORD).await.problem(401, "invalid_credentials");
    }
    assert_rate_limited(&login_from(&app, "198.51.100.7", "c@example.com", PASSWORD).await);
    login_from(&app, "198.51.100.8", "c@example.com", PASSWORD).await.problem(401, "invalid_credentials");
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app_with(&[("rate_limit_auth_ip", "2/h")]).await;
    login_from(&app, "203.0.113.10", "a@example.com", PASSWORD).await.problem(401, "invalid_credentials");
    login_from(&app, "203.0.113.11", "b@example.com", PASSWORD).await.problem(401, "invalid_credentials");
    assert_rate_limited(&login_from(&app, "203.0.113.12", "c@example.com", PASSWORD).await);
}

#[tokio::test]
async fn a_limited_client_is_not_told_whether_the_password_was_right() {
    let app = spawn_app_with(&[("rate_limit_auth_account", "2/h")]).await;
    app.customer("ada@example.com").await;
    for _ in 0..2 {
        app.try_login("ada@example.com", "wrong password").await.problem(401, "invalid_credentials");
    }
    let right = app.try_login("ada@example.com", PASSWORD).await;
    let wrong = app.try_login("ada@example.com", "wrong again").await;
    assert_rate_limited(&right);
    assert_rate_limited(&wrong);
    assert!(!right.text.contains("access_token"));
}

#[tokio::test]
async fn guessing_mailed_tokens_is_limited_per_address() {
    let app = spawn_app_with(&[("rate_limit_auth_ip", "3/h")]).await;
    let reset = json!({ "token": "not-a-token", "new_password": "a brand new passphrase" });
    for remaining in [2, 1] {
        let reply = app.post_json("/v1/auth/password/reset", &reset).await;
        reply.problem(422, "validation_failed");
        assert_eq!(number(&reply, "ratelimit-remaining"), remaining);
    }
    app.post_json("/v1/auth/verify-email", &json!({ "token": "not-a-token" })).await.problem(422, "validation_failed");
    assert_rate_limited(&app.post_json("/v1/auth/password/reset", &reset).await);
    assert_rate_limited(&app.post_json("/v1/auth/verify-email", &json!({ "token": "not-a-token" })).await);
}

async fn resend_from(app: &TestApp, client_ip: &str, token: &str) -> Reply {
    app.send(
        app.request(Method::POST, "/v1/auth/verify-email/resend").header("x-forwarded-for", client_ip).bearer_auth(token).json(&json!({})),
    )
    .await
}

#[tokio::test]
async fn resending_the_verification_mail_is_limited_per_account() {
    let app = spawn_app_with(&[("trusted_proxies", "127.0.0.1"), ("rate_limit_mail_account", "2/h")]).await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    for (address, remaining) in [("203.0.113.1", 1), ("203.0.113.2", 0)] {
        let reply = resend_from(&app, address, &ada.access).await.expect(202);
        assert_eq!(number(&reply, "ratelimit-remaining"), remaining);
    }
    assert_rate_limited(&resend_from(&app, "203.0.113.3", &ada.access).await);
    resend_from(&app, "203.0.113.3", &bob.access).await.expect(202);
}

#[tokio::test]
async fn resending_the_verification_mail_is_limited_per_address() {
    let app = spawn_app_with(&[("trusted_proxies", "127.0.0.1"), ("rate_limit_mail_ip", "2/h")]).await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    resend_from(&app, "198.51.100.7", &ada.access).await.expect(202);
    resend_from(&app, "198.51.100.7", &bob.access).await.expect(202);
    assert_rate_limited(&resend_from(&app, "198.51.100.7", &ada.access).await);
    resend_from(&app, "198.51.100.8", &ada.access).await.expect(202);
}

#[tokio::test]
async fn resends_and_password_resets_do_not_spend_the_login_budgets() {
    let app = spawn_app_with(&[("rate_limit_auth_account", "1/h"), ("rate_limit_auth_account_ip", "1/h")]).await;
    let ada = app.customer("ada@example.com").await;
    for _ in 0..3 {
        app.post_json_authed("/v1/auth/verify-email/resend", &ada.access, &json!({})).await.expect(202);
        app.post_json("/v1/auth/password/forgot", &json!({ "email": "ada@example.com" })).await.expect(202);
    }
    app.login("ada@example.com", PASSWORD).await;
}

#[tokio::test]
async fn password_reset_mails_are_limited_per_account() {
    let app = spawn_app_with(&[("trusted_proxies", "127.0.0.1"), ("rate_limit_mail_account", "2/h")]).await;
    let forgot = |address: &'static str, email: &'static str| {
        app.send(app.request(Method::POST, "/v1/auth/password/forgot").header("x-forwarded-for", address).json(&json!({ "email": email })))
    };
    forgot("203.0.113.1", "ada@example.com").await.expect(202);
    forgot("203.0.113.2", "ADA@example.com").await.expect(202);
    assert_rate_limited(&forgot("203.0.113.3", "ada@example.com").await);
    forgot("203.0.113.3", "bob@example.com").await.expect(202);
}

/// The login budgets at their documented defaults, client addresses from `X-Forwarded-For`.
async fn app_with_default_login_limits() -> TestApp {
    spawn_app_with(&[
        ("trusted_proxies", "127.0.0.1"),
        ("rate_limit_auth_ip", "20/min"),
        ("rate_limit_auth_account_ip", "10/h"),
        ("rate_limit_auth_account", "100/h"),
    ])
    .await
}

#[tokio::test]
async fn ten_wrong_passwords_from_ten_addresses_do_not_lock_the_owner_out_from_an_eleventh() {
    let app = app_with_default_login_limits().await;
    app.customer("ada@example.com").await;
    for i in 1..=10 {
        login_from(&app, &format!("203.0.113.{i}"), "ada@example.com", "a wrong guess").await.problem(401, "invalid_credentials");
    }
    login_from(&app, "198.51.100.11", "ada@example.com", PASSWORD).await.expect(200);
}

#[tokio::test]
async fn the_owner_signs_in_from_another_address_while_one_address_hammers_the_account() {
    let app = app_with_default_login_limits().await;
    app.customer("ada@example.com").await;
    let attacker = "203.0.113.66";
    for _ in 0..10 {
        login_from(&app, attacker, "ada@example.com", "a wrong guess").await.problem(401, "invalid_credentials");
    }
    for _ in 0..10 {
        assert_rate_limited(&login_from(&app, attacker, "ada@example.com", "another guess").await);
    }
    // Even the right password is refused from the hammering address; its owner gets in elsewhere.
    assert_rate_limited(&login_from(&app, attacker, "ada@example.com", PASSWORD).await);
    login_from(&app, "198.51.100.20", "ada@example.com", PASSWORD).await.expect(200);
}

#[tokio::test]
async fn failed_logins_are_limited_per_account_and_address_and_successful_ones_spend_nothing() {
    let app = spawn_app_with(&[("trusted_proxies", "127.0.0.1"), ("rate_limit_auth_account_ip", "3/h")]).await;
    app.customer("ada@example.com").await;
    for _ in 0..5 {
        login_from(&app, "203.0.113.5", "ada@example.com", PASSWORD).await.expect(200);
    }
    for _ in 0..3 {
        login_from(&app, "203.0.113.5", "ada@example.com", "a wrong guess").await.problem(401, "invalid_credentials");
    }
    assert_rate_limited(&login_from(&app, "203.0.113.5", "ada@example.com", PASSWORD).await);
    login_from(&app, "203.0.113.6", "ada@example.com", PASSWORD).await.expect(200);
}

#[tokio::test]
async fn registering_spends_no_account_budget() {
    let app = spawn_app_with(&[("rate_limit_auth_account", "1/h"), ("rate_limit_auth_account_ip", "1/h")]).await;
    app.customer("ada@example.com").await;
    app.try_register("ada@example.com", PASSWORD, "Ada").await.problem(409, "email_taken");
    app.try_register("ada@example.com", PASSWORD, "Ada").await.problem(409, "email_taken");
    app.try_login("ada@example.com", "a wrong guess").await.problem(401, "invalid_credentials");
    assert_rate_limited(&app.try_login("ada@example.com", PASSWORD).await);
}

/// A login whose "email" is `len` bytes of junk.
async fn login_with_huge_email(app: &TestApp, len: usize, tag: usize) -> Reply {
    let email = format!("{tag}{}@example.com", "a".repeat(len));
    app.try_login(&email, PASSWORD).await
}

#[tokio::test]
async fn an_email_that_does_not_parse_is_refused_before_it_spends_an_account_budget() {
    let app = spawn_app_with(&[("rate_limit_auth_account", "1/h")]).await;
    // The same 100 KiB "email" three times: were it a key, the second would be limited.
    for _ in 0..3 {
        login_with_huge_email(&app, 100 * 1024, 0).await.field_error_code("email", "invalid");
    }
    let oversized = login_with_huge_email(&app, 2 * 1024 * 1024, 0).await;
    oversized.problem(413, "payload_too_large");
}

#[tokio::test]
async fn the_limiter_holds_a_bounded_number_of_keys_whatever_clients_send() {
    // A process of its own: the key count is a process-wide metric.
    let app =
        spawn_app_process_with(&[("rate_limit_auth_account", "5/h"), ("rate_limit_auth_ip", "1000/h"), ("rate_limit_max_keys", "20")])
            .await;
    if app.uses_redis() {
        eprintln!("the limiter is in Redis here; the in-process one (its fallback) is bounded in the passes without KEEL_TEST_REDIS_URL");
        return;
    }
    for i in 0..40 {
        app.try_login(&format!("nobody{i}@example.com"), PASSWORD).await.problem(401, "invalid_credentials");
    }
    for i in 0..40 {
        login_with_huge_email(&app, 64 * 1024, i).await.field_error_code("email", "invalid");
    }
    let text = app.get("/metrics").await.expect(200).text;
    let keys: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("keel_rate_limit_keys "))
        .unwrap_or_else(|| panic!("keel_rate_limit_keys in:\n{text}"))
        .trim()
        .parse()
        .unwrap();
    assert!((1.0..=20.0).contains(&keys), "at most rate_limit_max_keys cells, got {keys}");
}
