//! `POST /v1/auth/register`.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_fresh_user, jwt_parts, spawn_app};

fn body(email: &str, password: &str, name: &str) -> Value {
    json!({ "email": email, "password": password, "name": name })
}

async fn register_with(app: &TestApp, body: &Value) -> crate::helpers::Reply {
    app.post_json("/v1/auth/register", body).await
}

#[tokio::test]
async fn registering_returns_the_user_and_a_bearer_token_pair() {
    let app = spawn_app().await;
    let reply = app.try_register("ada@example.com", PASSWORD, "Ada Lovelace").await.expect(201);
    let body = reply.json();
    assert_fresh_user(&body["user"], "ada@example.com", "Ada Lovelace");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let access = body["access_token"].as_str().expect("access_token");
    let refresh = body["refresh_token"].as_str().expect("refresh_token");
    assert_eq!(access.split('.').count(), 3, "the access token is a JWT");
    assert!(refresh.len() >= 32 && refresh != access, "an opaque refresh token");
    assert!(!reply.text.contains(PASSWORD) && !reply.text.contains("argon2"), "no password or hash in {}", reply.text);
}

#[tokio::test]
async fn the_new_access_token_works_at_once() {
    let app = spawn_app().await;
    let tokens = app.register("ada@example.com", PASSWORD, "Ada").await;
    let me = app.me(&tokens.access).await.expect(200).json();
    assert_eq!(me, tokens.user);
    let claims = jwt_parts(&tokens.access).1;
    assert_eq!(claims["sub"], tokens.user_id());
}

#[tokio::test]
async fn registering_opens_one_current_session() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let sessions = app.get_authed("/v1/auth/sessions", &tokens.access).await.expect(200).json();
    let data = sessions["data"].as_array().expect("data");
    assert_eq!(data.len(), 1, "{sessions}");
    assert_eq!(data[0]["id"], tokens.session_id());
    assert_eq!(data[0]["current"], true);
}

#[tokio::test]
async fn emails_are_trimmed_and_lower_cased() {
    let app = spawn_app().await;
    let tokens = app.register("  Ada.Lovelace@Example.COM ", PASSWORD, "Ada").await;
    assert_eq!(tokens.user["email"], "ada.lovelace@example.com");
    app.login("ada.lovelace@example.com", PASSWORD).await;
}

#[tokio::test]
async fn names_are_trimmed() {
    let app = spawn_app().await;
    let tokens = app.register("ada@example.com", PASSWORD, "  Ada  ").await;
    assert_eq!(tokens.user["name"], "Ada");
}

#[tokio::test]
async fn a_taken_email_is_a_409_whatever_its_case() {
    let app = spawn_app().await;
    app.customer("ada@example.com").await;
    app.try_register("ada@example.com", "another good passphrase", "Other").await.problem(409, "email_taken");
    app.try_register("ADA@example.com", "another good passphrase", "Other").await.problem(409, "email_taken");
    // The first account is untouched.
    app.login("ada@example.com", PASSWORD).await;
    app.try_login("ada@example.com", "another good passphrase").await.problem(401, "invalid_credentials");
}

#[tokio::test]
async fn every_missing_field_is_named() {
    let app = spawn_app().await;
    for field in ["email", "password", "name"] {
        let mut body = body("ada@example.com", PASSWORD, "Ada");
        body.as_object_mut().expect("an object").remove(field);
        register_with(&app, &body).await.field_error(field);
    }
    register_with(&app, &json!({})).await.problem(422, "validation_failed");
}

#[tokio::test]
async fn a_wrong_type_for_any_field_is_named() {
    let app = spawn_app().await;
    for (field, value) in [("email", json!(42)), ("password", json!(12345678)), ("name", json!(["Ada"])), ("email", json!(null))] {
        let mut body = body("ada@example.com", PASSWORD, "Ada");
        body[field] = value;
        register_with(&app, &body).await.field_error(field);
    }
}

#[tokio::test]
async fn invalid_emails_are_refused() {
    let app = spawn_app().await;
    let too_long = format!("{}@example.com", "a".repeat(250));
    for email in
        ["", "ada", "ada@", "@example.com", "ada@example", "ad a@example.com", "ada@@example.com", "ada@.example.com", too_long.as_str()]
    {
        app.try_register(email, PASSWORD, "Ada").await.field_error("email");
    }
}

#[tokio::test]
async fn passwords_need_at_least_8_characters() {
    let app = spawn_app().await;
    for short in ["", "abc", "7chars!"] {
        app.try_register("ada@example.com", short, "Ada").await.field_error_code("password", "too_short");
    }
    app.register("ada@example.com", "8 chars!", "Ada").await;
}

#[tokio::test]
async fn passwords_may_have_at_most_128_characters() {
    let app = spawn_app().await;
    let long = "long passphrase ".repeat(8);
    assert_eq!(long.len(), 128);
    app.try_register("ada@example.com", &format!("{long}x"), "Ada").await.field_error_code("password", "too_long");
    app.register("ada@example.com", &long, "Ada").await;
    app.login("ada@example.com", &long).await;
}

#[tokio::test]
async fn password_length_counts_characters_not_bytes() {
    let app = spawn_app().await;
    app.try_register("ada@example.com", &"é".repeat(7), "Ada").await.field_error_code("password", "too_short");
    app.register("ada@example.com", &"é".repeat(8), "Ada").await;
    app.try_register("bob@example.com", &"日".repeat(129), "Bob").await.field_error_code("password", "too_long");
}

#[tokio::test]
async fn common_passwords_are_refused() {
    let app = spawn_app().await;
    for common in ["password123", "12345678"] {
        app.try_register("ada@example.com", common, "Ada").await.field_error_code("password", "common_password");
    }
}

#[tokio::test]
async fn a_password_equal_to_the_email_or_its_local_part_is_refused() {
    let app = spawn_app().await;
    let email = "margaret.hamilton@example.com";
    for password in [email, "margaret.hamilton"] {
        app.try_register(email, password, "Margaret").await.field_error_code("password", "context_specific");
    }
}

#[tokio::test]
async fn passwords_have_no_composition_rules() {
    let app = spawn_app().await;
    app.register("ada@example.com", "all lower case words here", "Ada").await;
    app.register("bob@example.com", "ZQXWVUTSRPONM", "Bob").await;
}

#[tokio::test]
async fn names_must_have_1_to_100_characters() {
    let app = spawn_app().await;
    for name in [String::new(), "   ".into(), "n".repeat(101)] {
        app.try_register("ada@example.com", PASSWORD, &name).await.field_error("name");
    }
    app.register("ada@example.com", PASSWORD, &"n".repeat(100)).await;
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once() {
    let app = spawn_app().await;
    let reply = app.try_register("not-an-email", "short", "").await;
    for field in ["email", "password", "name"] {
        reply.field_error(field);
    }
}
