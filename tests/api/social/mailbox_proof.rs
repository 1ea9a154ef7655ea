//! The reverse of the pre-hijack take-over: once the owner of the mailbox proves it (a mailed
//! password reset or email verification), identities they did not prove leave the account,
//! and so do the sessions opened through them.

use serde_json::json;

use super::{identities, link, sign_in, social_tokens, spawn};
use crate::fake_oidc::Person;
use crate::helpers::{PASSWORD, TestApp};
use crate::support::{eventually, mail_files, token_in};

/// The token of the first mailed link to `path` whose mail contains `subject`.
async fn mailed_token(app: &TestApp, subject: &'static str, path: &str) -> String {
    let mail = eventually(20, subject, || async { mail_files(&app.data_dir).into_iter().find(|m| m.contains(subject)) }).await;
    token_in(&mail, path)
}

#[tokio::test]
async fn a_password_reset_by_the_mailbox_owner_removes_the_identities_the_squatter_brought_and_signs_them_out() {
    let (app, fake) = spawn().await;
    // Someone signs up with Ada's address through a provider that did not verify it, and links
    // an identity of their own (verified, for their own address).
    let squatter = social_tokens(&app, &fake, "corp", Person::new("squat", "ada@example.com", false)).await;
    let own = Person::new("9001", "squatter@evil.example", true);
    assert_eq!(link(&app, &fake, &squatter, "github", own.clone()).await.0, "linked");
    assert_eq!(identities(&app, &squatter.access).await.len(), 2);
    // Ada asks for a reset link: it reaches her mailbox.
    app.post_json("/v1/auth/password/forgot", &json!({ "email": "ada@example.com" })).await.expect(202);
    let token = mailed_token(&app, "Reset your password", "/reset-password").await;
    app.post_json("/v1/auth/password/reset", &json!({ "token": token, "new_password": "ada's own passphrase" })).await.expect(204);
    // The squatter is signed out, and neither identity signs in to Ada's account any more.
    app.me(&squatter.access).await.problem(401, "invalid_token");
    app.refresh(&squatter.refresh).await.problem(401, "invalid_token");
    assert_eq!(app.texts("SELECT id FROM identities").await.len(), 0);
    assert_eq!(sign_in(&app, &fake, "corp", Person::new("squat", "ada@example.com", false)).await.1, "email_taken");
    let elsewhere = social_tokens(&app, &fake, "github", own).await;
    assert_ne!(elsewhere.user_id(), squatter.user_id(), "the squatter's own identity makes an account of its own");
    let ada = app.login("ada@example.com", "ada's own passphrase").await;
    assert_eq!(ada.user_id(), squatter.user_id());
    let audited = app.texts("SELECT action FROM audit_log WHERE action = 'account.identity_unlinked'").await;
    assert_eq!(audited.len(), 2);
}

#[tokio::test]
async fn verifying_the_email_keeps_only_identities_verified_for_it_and_signs_out_when_one_goes() {
    let (app, fake) = spawn().await;
    let ada = app.register("ada@example.com", PASSWORD, "Ada").await;
    assert_eq!(link(&app, &fake, &ada, "corp", Person::new("ada-corp", "ada@example.com", true)).await.0, "linked");
    assert_eq!(link(&app, &fake, &ada, "github", Person::new("77", "ada@example.com", false)).await.0, "linked");
    let token = mailed_token(&app, "/verify-email", "/verify-email").await;
    app.post_json("/v1/auth/verify-email", &json!({ "token": token })).await.expect(204);
    app.me(&ada.access).await.problem(401, "invalid_token");
    let ada = app.login("ada@example.com", PASSWORD).await;
    let left = identities(&app, &ada.access).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["provider"], "corp");
    assert_eq!(app.me(&ada.access).await.expect(200).json()["email_verified"], true);
    // Nothing to remove: a reset leaves the identity, as the verified account linked it.
    app.post_json("/v1/auth/password/forgot", &json!({ "email": "ada@example.com" })).await.expect(202);
    let token = mailed_token(&app, "Reset your password", "/reset-password").await;
    app.post_json("/v1/auth/password/reset", &json!({ "token": token, "new_password": "a brand new passphrase" })).await.expect(204);
    assert_eq!(app.texts("SELECT provider FROM identities").await, ["corp"]);
}
