//! `GET/DELETE /v1/auth/sessions`, `DELETE /v1/auth/sessions/{id}`, `POST /v1/auth/logout`.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app};

async fn session_ids(app: &TestApp, token: &str) -> HashSet<String> {
    let page = app.get_authed("/v1/auth/sessions", token).await.expect(200).json();
    page["data"].as_array().expect("data").iter().map(|s| s["id"].as_str().expect("id").to_owned()).collect()
}

/// Asserts that every token of a session is refused.
async fn assert_session_dead(app: &TestApp, tokens: &Tokens) {
    app.me(&tokens.access).await.problem(401, "invalid_token");
    app.refresh(&tokens.refresh).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn listing_sessions_shows_where_each_was_opened_and_which_is_current() {
    let app = spawn_app().await;
    app.customer("ada@example.com").await;
    let reply = app
        .send(
            app.request(Method::POST, "/v1/auth/login")
                .header("user-agent", "KeelTest/1.0")
                .json(&json!({ "email": "ada@example.com", "password": PASSWORD })),
        )
        .await
        .expect(200);
    let tokens = Tokens::from_reply(reply);
    let page = app.get_authed("/v1/auth/sessions", &tokens.access).await.expect(200).json();
    assert!(page["next_cursor"].is_null(), "{page}");
    let data = page["data"].as_array().expect("data");
    assert_eq!(data.len(), 2, "{page}");
    let current: Vec<&Value> = data.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "exactly one current session in {page}");
    let mine = current[0];
    assert_eq!(mine["id"], tokens.session_id());
    assert!(mine["id"].as_str().is_some_and(|id| id.starts_with("ses_")));
    assert_eq!(mine["user_agent"], "KeelTest/1.0");
    assert_eq!(mine["ip"], "127.0.0.1");
    let created = chrono::DateTime::parse_from_rfc3339(mine["created_at"].as_str().expect("created_at")).expect("RFC 3339");
    let used = chrono::DateTime::parse_from_rfc3339(mine["last_used_at"].as_str().expect("last_used_at")).expect("RFC 3339");
    assert!(used >= created);
}

#[tokio::test]
async fn listing_sessions_needs_a_token() {
    let app = spawn_app().await;
    app.get("/v1/auth/sessions").await.problem(401, "unauthenticated");
    app.get_authed("/v1/auth/sessions", "not-a-jwt").await.problem(401, "invalid_token");
}

#[tokio::test]
async fn sessions_are_listed_page_by_page_without_duplicates_or_gaps() {
    let app = spawn_app().await;
    let mut expected: HashSet<String> = HashSet::from([app.customer("ada@example.com").await.session_id()]);
    let mut last = None;
    for _ in 0..4 {
        let tokens = app.login("ada@example.com", PASSWORD).await;
        expected.insert(tokens.session_id());
        last = Some(tokens);
    }
    let token = last.expect("a session").access;
    let pages = app.all_pages("/v1/auth/sessions", &token, &[], 2).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
    let seen: Vec<String> = pages.iter().flatten().map(|s| s["id"].as_str().expect("id").to_owned()).collect();
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), expected);
    assert_eq!(seen.len(), expected.len(), "no session twice");
}

#[tokio::test]
async fn bad_paging_parameters_are_a_422() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    for limit in ["0", "101", "abc", "-1", "2.5"] {
        app.get_query_authed("/v1/auth/sessions", &tokens.access, &[("limit", limit)]).await.field_error("limit");
    }
    for cursor in ["%%%", "garbled!", "bm90IGpzb24", "eyJ4IjoxfQ"] {
        app.get_query_authed("/v1/auth/sessions", &tokens.access, &[("cursor", cursor)]).await.field_error("cursor");
    }
    for limit in ["1", "100"] {
        app.get_query_authed("/v1/auth/sessions", &tokens.access, &[("limit", limit)]).await.expect(200);
    }
}

#[tokio::test]
async fn a_revoked_session_is_refused_at_once() {
    let app = spawn_app().await;
    let laptop = app.customer("ada@example.com").await;
    let phone = app.login("ada@example.com", PASSWORD).await;
    app.me(&phone.access).await.expect(200);
    app.delete_authed(&format!("/v1/auth/sessions/{}", phone.session_id()), &laptop.access).await.expect(204);
    assert_session_dead(&app, &phone).await;
    app.me(&laptop.access).await.expect(200);
    assert_eq!(session_ids(&app, &laptop.access).await, HashSet::from([laptop.session_id()]));
}

#[tokio::test]
async fn revoking_the_current_session_signs_the_caller_out() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    app.delete_authed(&format!("/v1/auth/sessions/{}", tokens.session_id()), &tokens.access).await.expect(204);
    assert_session_dead(&app, &tokens).await;
}

#[tokio::test]
async fn another_users_or_an_unknown_session_is_a_404() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    app.delete_authed(&format!("/v1/auth/sessions/{}", bob.session_id()), &ada.access).await.problem(404, "not_found");
    app.me(&bob.access).await.expect(200);
    app.delete_authed("/v1/auth/sessions/ses_unknown", &ada.access).await.problem(404, "not_found");
    app.delete_authed(&format!("/v1/auth/sessions/{}", ada.user_id()), &ada.access).await.problem(404, "not_found");
}

#[tokio::test]
async fn revoking_a_session_twice_is_a_404_the_second_time() {
    let app = spawn_app().await;
    let laptop = app.customer("ada@example.com").await;
    let phone = app.login("ada@example.com", PASSWORD).await;
    let path = format!("/v1/auth/sessions/{}", phone.session_id());
    app.delete_authed(&path, &laptop.access).await.expect(204);
    app.delete_authed(&path, &laptop.access).await.problem(404, "not_found");
}

#[tokio::test]
async fn revoking_all_sessions_signs_out_everywhere_including_here() {
    let app = spawn_app().await;
    let laptop = app.customer("ada@example.com").await;
    let phone = app.login("ada@example.com", PASSWORD).await;
    let bob = app.customer("bob@example.com").await;
    app.delete_authed("/v1/auth/sessions", &laptop.access).await.expect(204);
    assert_session_dead(&app, &laptop).await;
    assert_session_dead(&app, &phone).await;
    app.me(&bob.access).await.expect(200);
    // Signing in again works.
    app.login("ada@example.com", PASSWORD).await;
}

#[tokio::test]
async fn revoking_sessions_needs_a_token() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    app.call(Method::DELETE, "/v1/auth/sessions", None, None).await.problem(401, "unauthenticated");
    app.call(Method::DELETE, &format!("/v1/auth/sessions/{}", tokens.session_id()), None, None).await.problem(401, "unauthenticated");
    app.me(&tokens.access).await.expect(200);
}

#[tokio::test]
async fn logging_out_revokes_the_session_at_once() {
    let app = spawn_app().await;
    let laptop = app.customer("ada@example.com").await;
    let phone = app.login("ada@example.com", PASSWORD).await;
    let reply = app.logout(&phone.refresh).await.expect(204);
    assert!(reply.text.is_empty(), "204 has no body");
    assert_session_dead(&app, &phone).await;
    app.me(&laptop.access).await.expect(200);
    assert_eq!(session_ids(&app, &laptop.access).await, HashSet::from([laptop.session_id()]));
}

#[tokio::test]
async fn logging_out_with_an_unknown_token_is_invalid_token() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    app.logout("not-a-refresh-token").await.problem(401, "invalid_token");
    app.logout(&tokens.access).await.problem(401, "invalid_token");
    // Unknown tokens revoke nothing.
    app.me(&tokens.access).await.expect(200);
}

#[tokio::test]
async fn logging_out_needs_a_refresh_token() {
    let app = spawn_app().await;
    app.post_json("/v1/auth/logout", &json!({})).await.field_error("refresh_token");
    app.post_json("/v1/auth/logout", &json!({ "refresh_token": true })).await.field_error("refresh_token");
}
