//! Passkeys: registered while signed in, listed and removed; a login of their own (with or
//! without an email) that satisfies MFA; single-use, expiring challenges; cloned authenticators,
//! other accounts' challenges and garbage refused with exact codes; refusals audited.

pub mod authenticator;

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, Reply, TestApp, Tokens, spawn_app, spawn_app_with};
use crate::support::totp_now;
use authenticator::SoftPasskey;

/// The origin a browser on this machine uses: WebAuthn needs a domain, so `localhost`.
fn origin(app: &TestApp) -> String {
    let port = app.address.rsplit(':').next().expect("a port");
    format!("http://localhost:{port}")
}

async fn register_start(app: &TestApp, who: &Tokens) -> Value {
    app.post_json_authed("/v1/auth/passkeys/register/start", &who.access, &json!({})).await.expect(200).json()
}

async fn register_finish(app: &TestApp, who: &Tokens, challenge_id: &str, credential: &Value) -> Reply {
    let body = json!({ "challenge_id": challenge_id, "credential": credential, "name": "Ada's laptop" });
    app.post_json_authed("/v1/auth/passkeys/register/finish", &who.access, &body).await
}

/// Registers a new passkey for `who`; returns it and its id.
pub async fn register(app: &TestApp, who: &Tokens) -> (SoftPasskey, String) {
    let started = register_start(app, who).await;
    let (passkey, credential) = SoftPasskey::register(&started["options"], &origin(app));
    let created = register_finish(app, who, started["challenge_id"].as_str().unwrap(), &credential).await.expect(201).json();
    (passkey, created["id"].as_str().unwrap().to_owned())
}

async fn login_start(app: &TestApp, body: &Value) -> Value {
    app.post_json("/v1/auth/passkeys/login/start", body).await.expect(200).json()
}

async fn login_finish(app: &TestApp, challenge_id: &Value, credential: &Value) -> Reply {
    app.post_json("/v1/auth/passkeys/login/finish", &json!({ "challenge_id": challenge_id, "credential": credential })).await
}

/// A whole login: start (with `body`), sign, finish.
pub async fn login(app: &TestApp, passkey: &mut SoftPasskey, body: &Value) -> Reply {
    let started = login_start(app, body).await;
    let credential = passkey.assertion(&started["options"], &origin(app));
    login_finish(app, &started["challenge_id"], &credential).await
}

async fn passkeys_of(app: &TestApp, who: &Tokens) -> Vec<Value> {
    app.get_authed("/v1/me/passkeys", &who.access).await.expect(200).json()["data"].as_array().unwrap().clone()
}

/// The reasons of the failed-login entries of the audit trail, oldest first.
async fn refusals(app: &TestApp, admin: &Tokens) -> Vec<String> {
    let trail = app.get_query_authed("/v1/admin/audit", &admin.access, &[("action", "account.login_failed")]).await.expect(200).json();
    let mut reasons: Vec<String> =
        trail["data"].as_array().unwrap().iter().map(|e| e["details"]["reason"].as_str().unwrap().to_owned()).collect();
    reasons.reverse();
    reasons
}

#[tokio::test]
async fn a_registered_passkey_logs_in_without_an_email_and_with_one() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let (mut passkey, id) = register(&app, &ada).await;
    assert!(id.starts_with("pky_"), "{id}");
    let listed = passkeys_of(&app, &ada).await;
    assert_eq!(listed.len(), 1);
    assert_eq!((&listed[0]["id"], &listed[0]["name"], &listed[0]["last_used_at"]), (&json!(id), &json!("Ada's laptop"), &Value::Null));

    let tokens = Tokens::from_reply(login(&app, &mut passkey, &json!({})).await.expect(200));
    assert_eq!(tokens.user_id(), ada.user_id());
    assert_eq!(app.me(&tokens.access).await.expect(200).json()["email"], "ada@example.com");
    let tokens = Tokens::from_reply(login(&app, &mut passkey, &json!({ "email": "ADA@example.com" })).await.expect(200));
    assert_eq!(tokens.user_id(), ada.user_id());
    assert!(passkeys_of(&app, &ada).await[0]["last_used_at"].is_string(), "a login marks the passkey used");
    // Its session is one like any other: refreshable, listed.
    app.refresh(&tokens.refresh).await.expect(200);
}

#[tokio::test]
async fn the_registration_options_ask_for_a_discoverable_verified_credential_and_exclude_registered_ones() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let (passkey, _) = register(&app, &ada).await;
    let options = &register_start(&app, &ada).await["options"];
    assert_eq!(options["rp"]["id"], "localhost");
    assert_eq!(options["user"]["name"], "ada@example.com");
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(options["authenticatorSelection"]["requireResidentKey"], true);
    assert_eq!(options["authenticatorSelection"]["userVerification"], "required");
    let excluded: Vec<&Value> = options["excludeCredentials"].as_array().unwrap().iter().map(|c| &c["id"]).collect();
    assert_eq!(excluded, [&json!(base64_url(&passkey.credential_id))]);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn an_email_never_tells_whether_it_has_an_account_or_a_passkey_and_binds_the_login_to_it() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    app.customer("bob@example.com").await;
    let (mut passkey, _) = register(&app, &ada).await;
    let shape = |v: &Value| {
        let mut keys: Vec<String> = v["options"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let anyone = login_start(&app, &json!({})).await;
    for email in ["ada@example.com", "bob@example.com", "nobody@example.com"] {
        let started = login_start(&app, &json!({ "email": email })).await;
        assert_eq!(shape(&started), shape(&anyone), "{email}");
        assert!(started["options"].get("allowCredentials").is_none_or(|a| a.as_array().is_some_and(Vec::is_empty)), "{started}");
    }
    // Ada's passkey does not finish a login that named someone else, known or not.
    for email in ["bob@example.com", "nobody@example.com"] {
        login(&app, &mut passkey, &json!({ "email": email })).await.problem(401, "invalid_credentials");
    }
    login(&app, &mut passkey, &json!({ "email": "ada@example.com" })).await.expect(200);
}

#[tokio::test]
async fn an_account_with_mfa_logs_in_with_a_passkey_without_a_code() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let setup = app.post_json_authed("/v1/auth/mfa/totp/setup", &ada.access, &json!({})).await.expect(200).json();
    let secret = setup["secret"].as_str().unwrap();
    crate::logs::remember_secret(secret);
    app.post_json_authed("/v1/auth/mfa/totp/enable", &ada.access, &json!({ "code": totp_now(secret) })).await.expect(200);
    app.try_login("ada@example.com", PASSWORD).await.problem(401, "mfa_required");
    let (mut passkey, _) = register(&app, &ada).await;
    let tokens = Tokens::from_reply(login(&app, &mut passkey, &json!({})).await.expect(200));
    assert_eq!(tokens.user["mfa_enabled"], true);
}

#[tokio::test]
async fn a_challenge_is_single_use_even_under_concurrent_finishes() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let (mut passkey, _) = register(&app, &ada).await;
    let started = login_start(&app, &json!({})).await;
    let credential = passkey.assertion(&started["options"], &origin(&app));
    let (a, b) =
        tokio::join!(login_finish(&app, &started["challenge_id"], &credential), login_finish(&app, &started["challenge_id"], &credential));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 401], "one finish wins: {} / {}", a.text, b.text);
    let loser = if a.status == 401 { a } else { b };
    loser.problem(401, "invalid_credentials");
    login(&app, &mut passkey, &json!({})).await.expect(200);
    // Replayed later, the same answer is refused too.
    login_finish(&app, &started["challenge_id"], &credential).await.problem(401, "invalid_credentials");
    assert_eq!(refusals(&app, &admin).await, ["unknown_challenge", "unknown_challenge"]);
}

#[tokio::test]
async fn an_expired_challenge_is_refused() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let (mut passkey, _) = register(&app, &ada).await;
    let started = login_start(&app, &json!({})).await;
    let registration = register_start(&app, &ada).await;
    // Five minutes later, as far as the challenges know.
    assert_eq!(app.execute_sql("UPDATE passkey_challenges SET expires_at = created_at").await, 2);
    let credential = passkey.assertion(&started["options"], &origin(&app));
    login_finish(&app, &started["challenge_id"], &credential).await.problem(401, "invalid_credentials");
    let (_, credential) = SoftPasskey::register(&registration["options"], &origin(&app));
    let reply = register_finish(&app, &ada, registration["challenge_id"].as_str().unwrap(), &credential).await;
    reply.field_error_code("challenge_id", "invalid");
    assert_eq!(refusals(&app, &admin).await, ["expired_challenge"]);
    assert_eq!(passkeys_of(&app, &ada).await.len(), 1);
}

#[tokio::test]
async fn a_cloned_authenticator_whose_counter_goes_back_is_refused_and_audited() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let (mut passkey, _) = register(&app, &ada).await;
    let mut clone = passkey.clone();
    login(&app, &mut passkey, &json!({})).await.expect(200);
    login(&app, &mut passkey, &json!({})).await.expect(200);
    // The clone's counter is behind (1, then 2, against 2 stored): both refused.
    login(&app, &mut clone, &json!({})).await.problem(401, "invalid_credentials");
    login(&app, &mut clone, &json!({})).await.problem(401, "invalid_credentials");
    assert_eq!(refusals(&app, &admin).await, ["sign_count_regressed", "sign_count_regressed"]);
    let trail = app.get_query_authed("/v1/admin/audit", &admin.access, &[("action", "account.login_failed")]).await.expect(200).json();
    assert_eq!(trail["data"][0]["target"], json!(ada.user_id()), "the refusal names the account");
    // The original goes on.
    login(&app, &mut passkey, &json!({})).await.expect(200);
}

#[tokio::test]
async fn a_registration_challenge_of_another_account_is_refused_and_stays_its_owners() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let mallory = app.customer("mallory@example.com").await;
    let started = register_start(&app, &ada).await;
    let (_, credential) = SoftPasskey::register(&started["options"], &origin(&app));
    let challenge_id = started["challenge_id"].as_str().unwrap();
    register_finish(&app, &mallory, challenge_id, &credential).await.field_error_code("challenge_id", "invalid");
    assert!(passkeys_of(&app, &mallory).await.is_empty());
    register_finish(&app, &ada, challenge_id, &credential).await.expect(201);
}

#[tokio::test]
async fn the_same_credential_cannot_be_registered_twice() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    let (passkey, _) = register(&app, &ada).await;
    let started = register_start(&app, &bob).await;
    let credential = passkey.attestation(started["options"]["challenge"].as_str().unwrap(), &origin(&app));
    register_finish(&app, &bob, started["challenge_id"].as_str().unwrap(), &credential).await.problem(409, "conflict");
    assert!(passkeys_of(&app, &bob).await.is_empty());
}

#[tokio::test]
async fn passkeys_are_listed_and_removed_by_their_owner_only() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    let (mut first, first_id) = register(&app, &ada).await;
    let (_, second_id) = register(&app, &ada).await;
    let ids: Vec<Value> = passkeys_of(&app, &ada).await.iter().map(|p| p["id"].clone()).collect();
    assert_eq!(ids, [json!(first_id), json!(second_id)]);
    assert!(passkeys_of(&app, &bob).await.is_empty());
    let page = app.get_query_authed("/v1/me/passkeys", &ada.access, &[("limit", "1")]).await.expect(200).json();
    assert!(page["next_cursor"].is_string());

    app.delete_authed(&format!("/v1/me/passkeys/{first_id}"), &bob.access).await.problem(404, "not_found");
    app.delete_authed(&format!("/v1/me/passkeys/{first_id}"), &ada.access).await.expect(204);
    app.delete_authed(&format!("/v1/me/passkeys/{first_id}"), &ada.access).await.problem(404, "not_found");
    assert_eq!(passkeys_of(&app, &ada).await.len(), 1);
    login(&app, &mut first, &json!({})).await.problem(401, "invalid_credentials");
    let trail = app.get_query_authed("/v1/admin/audit", &admin.access, &[("action", "account.passkey_removed")]).await.expect(200).json();
    assert_eq!(trail["data"][0]["details"]["passkey_id"], json!(first_id));
    let trail =
        app.get_query_authed("/v1/admin/audit", &admin.access, &[("action", "account.passkey_registered")]).await.expect(200).json();
    assert_eq!(trail["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_last_way_to_sign_in_cannot_be_removed() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    // With a password, the only passkey may go.
    let (_, id) = register(&app, &ada).await;
    app.delete_authed(&format!("/v1/me/passkeys/{id}"), &ada.access).await.expect(204);
    let (_, id) = register(&app, &ada).await;
    // An account without a password (as a social login makes): its only passkey stays.
    app.execute_sql("UPDATE users SET password_hash = '' WHERE email = 'ada@example.com'").await;
    app.delete_authed(&format!("/v1/me/passkeys/{id}"), &ada.access).await.problem(409, "conflict");
    let (_, other) = register(&app, &ada).await;
    app.delete_authed(&format!("/v1/me/passkeys/{id}"), &ada.access).await.expect(204);
    app.delete_authed(&format!("/v1/me/passkeys/{other}"), &ada.access).await.problem(409, "conflict");
    assert_eq!(passkeys_of(&app, &ada).await.len(), 1);
}

#[tokio::test]
async fn a_disabled_account_cannot_log_in_with_its_passkey() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let (mut passkey, _) = register(&app, &ada).await;
    app.patch_json_authed(&format!("/v1/admin/users/{}", ada.user_id()), &admin.access, &json!({ "disabled": true })).await.expect(200);
    login(&app, &mut passkey, &json!({})).await.problem(403, "forbidden");
    assert_eq!(refusals(&app, &admin).await, ["disabled"]);
}

#[tokio::test]
async fn garbage_is_refused_with_exact_codes() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let (mut passkey, _) = register(&app, &ada).await;
    let started = login_start(&app, &json!({})).await;
    let good = passkey.assertion(&started["options"], &origin(&app));

    // Shapes that are no credential: 422 on `credential`.
    for credential in [json!({}), json!({ "id": "x" }), json!({ "id": "x", "rawId": "!!!", "type": "public-key", "response": {} })] {
        login_finish(&app, &started["challenge_id"], &credential).await.field_error_code("credential", "invalid");
    }
    let reply =
        app.post_json("/v1/auth/passkeys/login/finish", &json!({ "challenge_id": started["challenge_id"], "credential": "abc" })).await;
    reply.field_error("credential");
    let reply = app.post_json("/v1/auth/passkeys/login/finish", &json!({ "challenge_id": 7, "credential": good })).await;
    reply.field_error("challenge_id");
    app.send(app.request(reqwest::Method::POST, "/v1/auth/passkeys/login/finish").header("content-type", "application/json").body("{"))
        .await
        .problem(400, "malformed_json");
    app.post_json("/v1/auth/passkeys/login/start", &json!({ "email": "not an email" })).await.field_error("email");
    // Well-formed but wrong: 401, and the challenge is spent.
    let mut forged = good.clone();
    forged["response"]["signature"] = json!(base64_url(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]));
    login_finish(&app, &started["challenge_id"], &forged).await.problem(401, "invalid_credentials");
    login_finish(&app, &started["challenge_id"], &good).await.problem(401, "invalid_credentials");
    login_finish(&app, &json!("no-such-challenge"), &good).await.problem(401, "invalid_credentials");
    // Signed for another origin (a phishing page): refused.
    let started = login_start(&app, &json!({})).await;
    let phished = passkey.assertion(&started["options"], "https://localhost.evil.example");
    login_finish(&app, &started["challenge_id"], &phished).await.problem(401, "invalid_credentials");
    // A registration answer that does not answer its challenge: 422 on `credential`.
    let registration = register_start(&app, &ada).await;
    let (_, credential) = SoftPasskey::register(&registration["options"], "https://elsewhere.example");
    register_finish(&app, &ada, registration["challenge_id"].as_str().unwrap(), &credential)
        .await
        .field_error_code("credential", "invalid");
    assert_eq!(passkeys_of(&app, &ada).await.len(), 1);
}

#[tokio::test]
async fn passkey_logins_spend_the_sign_in_budget_of_the_address() {
    let app = spawn_app_with(&[("rate_limit_auth_ip", "2/h")]).await;
    let started = login_start(&app, &json!({})).await;
    login_finish(&app, &started["challenge_id"], &json!({})).await.field_error("credential");
    let refused = app.post_json("/v1/auth/passkeys/login/start", &json!({})).await;
    refused.problem(429, "rate_limited");
    assert!(refused.header("retry-after").is_some());
}

#[tokio::test]
async fn a_deleted_account_takes_its_passkeys_with_it() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let (mut passkey, _) = register(&app, &ada).await;
    app.delete_json_authed("/v1/me", &ada.access, &json!({ "password": PASSWORD })).await.expect(204);
    login(&app, &mut passkey, &json!({})).await.problem(401, "invalid_credentials");
    assert_eq!(refusals(&app, &admin).await, ["unknown_credential"]);
}
