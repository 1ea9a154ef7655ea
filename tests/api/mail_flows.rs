//! Email verification and password reset, through real mail transports.

use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app, spawn_app_with};
use crate::support::{eventually, mail_files, smtp_server, token_in};

#[tokio::test]
async fn the_verification_mail_reaches_an_smtp_server_and_its_token_verifies_the_email() {
    let mut smtp = smtp_server().await;
    let app = spawn_app_with(&[("smtp_url", &smtp.url), ("app_base_url", "https://shop.example")]).await;
    let ada = app.customer("ada@example.com").await;
    assert_eq!(ada.user["email_verified"], false);

    let message = tokio::time::timeout(std::time::Duration::from_secs(20), smtp.messages.recv()).await.expect("a mail arrives").unwrap();
    assert!(message.contains("To: ada@example.com"), "{message}");
    let token = token_in(&message, "https://shop.example/verify-email");
    app.post_json("/v1/auth/verify-email", &json!({ "token": token })).await.expect(204);
    assert_eq!(app.me(&ada.access).await.expect(200).json()["email_verified"], true);

    app.post_json("/v1/auth/verify-email", &json!({ "token": token })).await.problem(422, "validation_failed");
}

#[tokio::test]
async fn a_resent_verification_link_replaces_the_first() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let first = eventually(20, "the first mail", || async { mail_files(&app.data_dir).first().cloned() }).await;
    // The file is written just before its job is marked done; until then a resend queues nothing.
    eventually(20, "the first mail's job done", || async {
        let jobs = app.get_authed("/v1/admin/jobs?kind=mail.send&state=done", &admin.access).await.expect(200).json();
        (!jobs["data"].as_array().unwrap().is_empty()).then_some(())
    })
    .await;
    app.post_json_authed("/v1/auth/verify-email/resend", &ada.access, &json!({})).await.expect(202);
    let second = eventually(20, "the second mail", || async { mail_files(&app.data_dir).into_iter().find(|m| *m != first) }).await;

    let old = token_in(&first, "/verify-email");
    let new = token_in(&second, "/verify-email");
    app.post_json("/v1/auth/verify-email", &json!({ "token": old })).await.problem(422, "validation_failed");
    app.post_json("/v1/auth/verify-email", &json!({ "token": new })).await.expect(204);
}

#[tokio::test]
async fn a_resend_while_the_verification_mail_is_unsent_queues_nothing() {
    let app = spawn_app_with(&[("run_workers", "false")]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    for _ in 0..3 {
        app.post_json_authed("/v1/auth/verify-email/resend", &ada.access, &json!({})).await.expect(202);
    }
    let queued = app.get_authed("/v1/admin/jobs?kind=mail.send", &admin.access).await.expect(200).json()["data"].clone();
    assert_eq!(queued.as_array().unwrap().len(), 1, "only the registration's mail: {queued:#}");

    // Once sent, that mail's link still verifies: the resends voided nothing.
    let app = app.restart_with(&[("run_workers", "true")]).await;
    let mail = eventually(20, "the verification mail", || async { mail_files(&app.data_dir).first().cloned() }).await;
    app.post_json("/v1/auth/verify-email", &json!({ "token": token_in(&mail, "/verify-email") })).await.expect(204);
    assert_eq!(mail_files(&app.data_dir).len(), 1);
}

#[tokio::test]
async fn verify_email_refuses_unknown_tokens_and_bad_bodies() {
    let app = spawn_app().await;
    app.post_json("/v1/auth/verify-email", &json!({ "token": "nope" })).await.problem(422, "validation_failed");
    app.post_json("/v1/auth/verify-email", &json!({})).await.problem(422, "validation_failed");
    app.post_json("/v1/auth/verify-email/resend", &json!({})).await.problem(401, "unauthenticated");
}

#[tokio::test]
async fn forgot_password_answers_202_whether_or_not_the_account_exists() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    app.customer("ada@example.com").await;
    app.post_json("/v1/auth/password/forgot", &json!({ "email": "ada@example.com" })).await.expect(202);
    app.post_json("/v1/auth/password/forgot", &json!({ "email": "nobody@example.com" })).await.expect(202);
    app.post_json("/v1/auth/password/forgot", &json!({ "email": "not an email" })).await.problem(422, "validation_failed");
    // Both lookups ran (their jobs are done) and every mail they queued was sent.
    let jobs = |query: &'static str| {
        let (app, admin) = (&app, &admin);
        async move { app.get_authed(&format!("/v1/admin/jobs?{query}"), &admin.access).await.expect(200).json()["data"].clone() }
    };
    eventually(20, "both reset requests handled and their mail sent", || async {
        let lookups = jobs("kind=auth.password_reset_request&limit=100").await;
        let mail = jobs("kind=mail.send&limit=100").await;
        let all_done = |list: &serde_json::Value| list.as_array().unwrap().iter().all(|j| j["state"] == "done");
        (lookups.as_array().unwrap().len() == 2 && all_done(&lookups) && all_done(&mail)).then_some(())
    })
    .await;
    let resets: Vec<String> = mail_files(&app.data_dir).into_iter().filter(|m| m.contains("Reset your password")).collect();
    assert_eq!(resets.len(), 1, "only Ada gets a reset mail");
    assert!(resets[0].contains("To: ada@example.com"));
}

#[tokio::test]
async fn a_reset_token_sets_the_password_once_and_signs_every_session_out() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    app.post_json("/v1/auth/password/forgot", &json!({ "email": "ada@example.com" })).await.expect(202);
    let mail =
        eventually(20, "the reset mail", || async { mail_files(&app.data_dir).into_iter().find(|m| m.contains("Reset your password")) })
            .await;
    let token = token_in(&mail, "/reset-password");

    // A weak password is refused and does not spend the token.
    app.post_json("/v1/auth/password/reset", &json!({ "token": token, "new_password": "password123" }))
        .await
        .problem(422, "validation_failed");
    app.post_json("/v1/auth/password/reset", &json!({ "token": token, "new_password": "a brand new passphrase" })).await.expect(204);

    app.me(&ada.access).await.problem(401, "invalid_token");
    app.refresh(&ada.refresh).await.problem(401, "invalid_token");
    app.try_login("ada@example.com", PASSWORD).await.problem(401, "invalid_credentials");
    app.login("ada@example.com", "a brand new passphrase").await;
    app.post_json("/v1/auth/password/reset", &json!({ "token": token, "new_password": "yet another passphrase" }))
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn mailed_tokens_are_not_stored_in_clear() {
    let app = spawn_app().await;
    app.customer("ada@example.com").await;
    let mail = eventually(20, "the verification mail", || async { mail_files(&app.data_dir).first().cloned() }).await;
    let token = token_in(&mail, "/verify-email");
    // The mail file itself holds it; the database must not.
    let _ = std::fs::remove_dir_all(app.data_dir.join("mail"));
    assert!(!app.stored_text().await.contains(&token));
}
