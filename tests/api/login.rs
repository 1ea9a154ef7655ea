//! `POST /v1/auth/login`.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, spawn_app};

/// A problem body without its per-request parts.
fn without_request_id(mut problem: Value) -> Value {
    problem.as_object_mut().expect("an object").remove("request_id");
    problem
}

#[tokio::test]
async fn logging_in_returns_a_token_pair_for_a_new_session() {
    let app = spawn_app().await;
    let registered = app.customer("ada@example.com").await;
    let reply = app.try_login("ada@example.com", PASSWORD).await.expect(200);
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user"], registered.user);
    let tokens = crate::helpers::Tokens::from_reply(reply);
    assert_ne!(tokens.session_id(), registered.session_id(), "a login opens its own session");
    assert_ne!(tokens.refresh, registered.refresh);
    app.me(&tokens.access).await.expect(200);
    app.me(&registered.access).await.expect(200);
}

#[tokio::test]
async fn the_email_matches_whatever_its_case_and_surrounding_spaces() {
    let app = spawn_app().await;
    app.customer("ada@example.com").await;
    app.login(" ADA@Example.com ", PASSWORD).await;
}

#[tokio::test]
async fn a_wrong_password_is_invalid_credentials() {
    let app = spawn_app().await;
    app.customer("ada@example.com").await;
    app.try_login("ada@example.com", "not the password").await.problem(401, "invalid_credentials");
    app.try_login("ada@example.com", &PASSWORD.to_uppercase()).await.problem(401, "invalid_credentials");
    app.try_login("ada@example.com", "").await.problem(401, "invalid_credentials");
}

#[tokio::test]
async fn an_unknown_email_gets_the_same_answer_as_a_wrong_password() {
    let app = spawn_app().await;
    app.customer("ada@example.com").await;
    let wrong_password = app.try_login("ada@example.com", "not the password").await.problem(401, "invalid_credentials");
    let unknown_email = app.try_login("nobody@example.com", "not the password").await.problem(401, "invalid_credentials");
    assert_eq!(without_request_id(wrong_password), without_request_id(unknown_email));
}

#[tokio::test]
async fn missing_fields_are_named() {
    let app = spawn_app().await;
    app.post_json("/v1/auth/login", &json!({ "password": PASSWORD })).await.field_error("email");
    app.post_json("/v1/auth/login", &json!({ "email": "ada@example.com" })).await.field_error("password");
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_are_refused() {
    let app = spawn_app().await;
    app.customer("ada@example.com").await;
    app.post_json("/v1/auth/login", &json!({ "email": "ada@example.com", "password": 12345678 })).await.field_error("password");
    app.post_json("/v1/auth/login", &json!({ "email": ["ada@example.com"], "password": PASSWORD })).await.field_error("email");
    app.post_json("/v1/auth/login", &json!({ "email": "ada@example.com", "password": PASSWORD, "remember": true }))
        .await
        .field_error("remember");
}

#[tokio::test]
async fn every_login_opens_its_own_session() {
    let app = spawn_app().await;
    let first = app.customer("ada@example.com").await;
    let second = app.login("ada@example.com", PASSWORD).await;
    let third = app.login("ada@example.com", PASSWORD).await;
    let sessions = app.get_authed("/v1/auth/sessions", &third.access).await.expect(200).json();
    let mut ids: Vec<&str> = sessions["data"].as_array().expect("data").iter().map(|s| s["id"].as_str().expect("id")).collect();
    ids.sort_unstable();
    let mut expected = vec![first.session_id(), second.session_id(), third.session_id()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn a_disabled_account_is_forbidden_only_with_the_right_password() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    app.patch_json_authed(&format!("/v1/admin/users/{}", ada.user_id()), &admin.access, &json!({ "disabled": true })).await.expect(200);
    app.try_login("ada@example.com", PASSWORD).await.problem(403, "forbidden");
    app.try_login("ada@example.com", "not the password").await.problem(401, "invalid_credentials");
}
