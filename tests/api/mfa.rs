//! TOTP multi-factor authentication.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app};
use crate::support::{totp_at, totp_now, totp_step_now};

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
async fn a_current_code_signs_in_once_and_older_steps_are_refused() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let (secret, used, _) = enable_mfa(&app, &ada).await;
    // The step after the one that enabled MFA: valid now (one step of skew) and never used.
    let step = totp_step_now();
    let next = totp_at(&secret, step + 1);
    assert_ne!(next, used);
    let tokens = crate::helpers::Tokens::from_reply(login_with(&app, Some(&next)).await.expect(200));
    assert_eq!(app.me(&tokens.access).await.expect(200).json()["email"], "ada@example.com");
    // The same code again is a replay; so is any earlier step.
    login_with(&app, Some(&next)).await.problem(401, "mfa_required");
    login_with(&app, Some(&totp_at(&secret, step))).await.problem(401, "mfa_required");
    // A code from another secret is no code at all.
    login_with(&app, Some(&totp_at("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", step + 1))).await.problem(401, "mfa_required");
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
    let setup = app.post_json_authed("/v1/auth/mfa/totp/setup", &ada.access, &json!({})).await.expect(200).json();
    let secret = setup["secret"].as_str().unwrap();
    let enable = |code: Value| {
        let (app, ada) = (&app, &ada);
        async move { app.post_json_authed("/v1/auth/mfa/totp/enable", &ada.access, &json!({ "code": code })).await }
    };
    enable(json!("12345")).await.field_error("code");
    enable(json!(123456)).await.field_error("code");
    app.post_json_authed("/v1/auth/mfa/totp/enable", &ada.access, &json!({})).await.field_error("code");
    // Well formed, but valid at no step within the skew the server allows.
    let step = totp_step_now();
    let near: Vec<String> = (step - 2..=step + 2).map(|s| totp_at(secret, s)).collect();
    let wrong = (0..).map(|n| format!("{:06}", (n * 137_911) % 1_000_000)).find(|c| !near.contains(c)).unwrap();
    enable(json!(wrong)).await.field_error("code");
    assert_eq!(app.me(&ada.access).await.expect(200).json()["mfa_enabled"], false, "a wrong code enables nothing");
    enable(json!(totp_now(secret))).await.expect(200);
    assert_eq!(app.me(&ada.access).await.expect(200).json()["mfa_enabled"], true);
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
