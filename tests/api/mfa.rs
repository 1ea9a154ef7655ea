//! TOTP multi-factor authentication.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app};
use crate::support::totp_now;

/// Sets up and enables MFA; returns the secret, the code that enabled it, and the recovery codes.
async fn enable_mfa(app: &TestApp, who: &Tokens) -> (String, String, Vec<String>) {
    let setup = app.post_json_authed("/v1/auth/mfa/totp/setup", &who.access, &json!({})).await.expect(200).json();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    assert!(setup["otpauth_url"].as_str().unwrap().starts_with("otpauth://totp/"));
    let code = totp_now(&secret);
    let enabled = app.post_json_authed("/v1/auth/mfa/totp/enable", &who.access, &json!({ "code": code })).await.expect(200).json();
    let codes: Vec<String> = enabled["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    (secret, code, codes)
}

async fn login_with(app: &TestApp, code: Option<&str>) -> crate::helpers::Reply {
    let mut body = json!({ "email": "ada@example.com", "password": PASSWORD });
    if let Some(code) = code {
        body["totp_code"] = Value::from(code);
    }
    app.post_json("/v1/auth/login", &body).await
}

#[tokio::test]
async fn with_mfa_on_login_needs_a_current_code_and_each_code_works_once() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let (_, used, codes) = enable_mfa(&app, &ada).await;
    assert_eq!(codes.len(), 10);
    assert_eq!(app.me(&ada.access).await.expect(200).json()["mfa_enabled"], true);

    login_with(&app, None).await.problem(401, "mfa_required");
    login_with(&app, Some("000000")).await.problem(401, "mfa_required");
    // The code that enabled MFA has been used: its time step is refused (replay).
    login_with(&app, Some(&used)).await.problem(401, "mfa_required");
}

#[tokio::test]
async fn a_recovery_code_stands_in_for_the_code_once() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let (_, _, codes) = enable_mfa(&app, &ada).await;
    login_with(&app, Some(&codes[0])).await.expect(200);
    login_with(&app, Some(&codes[0])).await.problem(401, "mfa_required");
    login_with(&app, Some(&codes[1].to_uppercase())).await.expect(200);
}

#[tokio::test]
async fn enabling_needs_a_valid_code_and_a_prior_setup() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    app.post_json_authed("/v1/auth/mfa/totp/enable", &ada.access, &json!({ "code": "123456" })).await.problem(409, "conflict");
    app.post_json_authed("/v1/auth/mfa/totp/setup", &ada.access, &json!({})).await.expect(200);
    app.post_json_authed("/v1/auth/mfa/totp/enable", &ada.access, &json!({ "code": "12345" })).await.problem(422, "validation_failed");
    app.post_json_authed("/v1/auth/mfa/totp/enable", &ada.access, &json!({})).await.problem(422, "validation_failed");
    app.post_json("/v1/auth/mfa/totp/setup", &json!({})).await.problem(401, "unauthenticated");
}

#[tokio::test]
async fn disabling_needs_the_password_and_turns_the_second_factor_off() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let (secret, _, _) = enable_mfa(&app, &ada).await;
    assert!(!app.stored_text().await.contains(&secret), "the active TOTP secret is encrypted at rest");
    app.post_json_authed("/v1/auth/mfa/totp/disable", &ada.access, &json!({ "password": "wrong password" }))
        .await
        .problem(401, "invalid_credentials");
    app.post_json_authed("/v1/auth/mfa/totp/disable", &ada.access, &json!({ "password": PASSWORD })).await.expect(204);
    login_with(&app, None).await.expect(200);
}
