//! `POST /v1/auth/password/change`.

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, spawn_app};

const NEW_PASSWORD: &str = "a brand new passphrase";

async fn change(app: &TestApp, token: &str, current: &str, new: &str) -> crate::helpers::Reply {
    app.post_json_authed("/v1/auth/password/change", token, &json!({ "current_password": current, "new_password": new })).await
}

#[tokio::test]
async fn changing_the_password_keeps_this_session_and_revokes_the_others() {
    let app = spawn_app().await;
    let here = app.customer("ada@example.com").await;
    let elsewhere = app.login("ada@example.com", PASSWORD).await;
    let bob = app.customer("bob@example.com").await;

    change(&app, &here.access, PASSWORD, NEW_PASSWORD).await.expect(204);

    app.me(&here.access).await.expect(200);
    app.refresh(&here.refresh).await.expect(200);
    app.me(&elsewhere.access).await.problem(401, "invalid_token");
    app.refresh(&elsewhere.refresh).await.problem(401, "invalid_token");
    app.me(&bob.access).await.expect(200);
}

#[tokio::test]
async fn after_a_change_only_the_new_password_signs_in() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    change(&app, &tokens.access, PASSWORD, NEW_PASSWORD).await.expect(204);
    app.try_login("ada@example.com", PASSWORD).await.problem(401, "invalid_credentials");
    app.login("ada@example.com", NEW_PASSWORD).await;
}

#[tokio::test]
async fn a_wrong_current_password_is_invalid_credentials() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let elsewhere = app.login("ada@example.com", PASSWORD).await;
    change(&app, &tokens.access, "not the password", NEW_PASSWORD).await.problem(401, "invalid_credentials");
    app.login("ada@example.com", PASSWORD).await;
    app.me(&elsewhere.access).await.expect(200);
}

#[tokio::test]
async fn the_new_password_follows_the_password_rules() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    for (new, code) in [
        ("short", "too_short"),
        ("password123", "common_password"),
        ("12345678", "common_password"),
        ("ada@example.com", "context_specific"),
    ] {
        change(&app, &tokens.access, PASSWORD, new).await.field_error_code("new_password", code);
    }
    change(&app, &tokens.access, PASSWORD, &"p".repeat(129)).await.field_error_code("new_password", "too_long");
    app.login("ada@example.com", PASSWORD).await;
}

#[tokio::test]
async fn changing_the_password_needs_a_token_and_both_fields() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    app.post_json("/v1/auth/password/change", &json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }))
        .await
        .problem(401, "unauthenticated");
    app.post_json_authed("/v1/auth/password/change", &tokens.access, &json!({ "new_password": NEW_PASSWORD }))
        .await
        .field_error("current_password");
    app.post_json_authed("/v1/auth/password/change", &tokens.access, &json!({ "current_password": PASSWORD }))
        .await
        .field_error("new_password");
    app.post_json_authed("/v1/auth/password/change", &tokens.access, &json!({ "current_password": PASSWORD, "new_password": 12345678 }))
        .await
        .field_error("new_password");
    app.login("ada@example.com", PASSWORD).await;
}
