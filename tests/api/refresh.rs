//! `POST /v1/auth/refresh`: rotation, reuse detection, and bad input.

use serde_json::json;

use crate::helpers::{PASSWORD, Tokens, spawn_app};

#[tokio::test]
async fn refreshing_returns_a_new_pair_in_the_same_session() {
    let app = spawn_app().await;
    let first = app.customer("ada@example.com").await;
    let reply = app.refresh(&first.refresh).await.expect(200);
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let second = Tokens::from_reply(reply);
    assert_eq!(second.user, first.user);
    assert_ne!(second.refresh, first.refresh);
    assert_eq!(second.session_id(), first.session_id(), "a refresh stays in its session");
    app.me(&second.access).await.expect(200);
    let sessions = app.get_authed("/v1/auth/sessions", &second.access).await.expect(200).json();
    assert_eq!(sessions["data"].as_array().expect("data").len(), 1, "no new session: {sessions}");
}

#[tokio::test]
async fn a_chain_of_refreshes_keeps_working() {
    let app = spawn_app().await;
    let mut tokens = app.customer("ada@example.com").await;
    for _ in 0..5 {
        tokens = Tokens::from_reply(app.refresh(&tokens.refresh).await.expect(200));
    }
    app.me(&tokens.access).await.expect(200);
}

#[tokio::test]
async fn refresh_with_a_spent_token_revokes_the_whole_session() {
    let app = spawn_app().await;
    let first = app.customer("ada@example.com").await;
    let other_session = app.login("ada@example.com", PASSWORD).await;
    let second = Tokens::from_reply(app.refresh(&first.refresh).await.expect(200));

    app.refresh(&first.refresh).await.problem(401, "token_reused");

    // Every token of the family is dead, access tokens included, at once.
    app.refresh(&second.refresh).await.problem(401, "invalid_token");
    app.me(&second.access).await.problem(401, "invalid_token");
    app.me(&first.access).await.problem(401, "invalid_token");
    // Other sessions of the same user are untouched.
    app.me(&other_session.access).await.expect(200);
    let sessions = app.get_authed("/v1/auth/sessions", &other_session.access).await.expect(200).json();
    let ids: Vec<&str> = sessions["data"].as_array().expect("data").iter().map(|s| s["id"].as_str().expect("id")).collect();
    assert_eq!(ids, vec![other_session.session_id()]);
}

#[tokio::test]
async fn a_spent_token_presented_again_keeps_being_refused() {
    let app = spawn_app().await;
    let first = app.customer("ada@example.com").await;
    app.refresh(&first.refresh).await.expect(200);
    app.refresh(&first.refresh).await.problem(401, "token_reused");
    app.refresh(&first.refresh).await.problem(401, "token_reused");
}

#[tokio::test]
async fn an_unknown_refresh_token_is_invalid_token() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let random = "x".repeat(43);
    for token in ["nope", random.as_str(), tokens.access.as_str()] {
        app.refresh(token).await.problem(401, "invalid_token");
    }
    // Unknown tokens revoke nothing.
    app.refresh(&tokens.refresh).await.expect(200);
}

#[tokio::test]
async fn a_logged_out_session_cannot_be_refreshed() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    app.logout(&tokens.refresh).await.expect(204);
    app.refresh(&tokens.refresh).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn refreshing_returns_the_account_as_it_is_now() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    app.patch_json_authed("/v1/me", &tokens.access, &json!({ "name": "Countess of Lovelace" })).await.expect(200);
    let renewed = Tokens::from_reply(app.refresh(&tokens.refresh).await.expect(200));
    assert_eq!(renewed.user["name"], "Countess of Lovelace");
}

#[tokio::test]
async fn a_missing_or_mistyped_refresh_token_is_a_422() {
    let app = spawn_app().await;
    app.post_json("/v1/auth/refresh", &json!({})).await.field_error("refresh_token");
    app.post_json("/v1/auth/refresh", &json!({ "refresh_token": 42 })).await.field_error("refresh_token");
    app.post_json("/v1/auth/refresh", &json!({ "refresh_token": "x", "extra": 1 })).await.field_error("extra");
}
