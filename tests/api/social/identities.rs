//! The caller's linked identities: listing, explicit linking, and removal while another way to
//! sign in remains.

use serde_json::json;

use super::{APP_URL, identities, link, social_tokens, spawn};
use crate::fake_oidc::Person;
use crate::helpers::PASSWORD;

#[tokio::test]
async fn the_last_way_to_sign_in_cannot_be_removed_but_one_of_two_can() {
    let (app, fake) = spawn().await;
    let social = social_tokens(&app, &fake, "corp", Person::new("only", "only@example.com", true)).await;
    let corp = identities(&app, &social.access).await[0]["id"].as_str().unwrap().to_owned();
    app.delete_authed(&format!("/v1/me/identities/{corp}"), &social.access).await.problem(409, "conflict");
    assert_eq!(identities(&app, &social.access).await.len(), 1);
    // A second identity makes the first removable; then that one is the last.
    assert_eq!(
        link(&app, &fake, &social, "github", Person::new("5150", "gh@example.com", false)).await,
        ("linked".into(), "github".into())
    );
    app.delete_authed(&format!("/v1/me/identities/{corp}"), &social.access).await.expect(204);
    let left = identities(&app, &social.access).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["provider"], "github");
    app.delete_authed(&format!("/v1/me/identities/{}", left[0]["id"].as_str().unwrap()), &social.access).await.problem(409, "conflict");
    // A password is a way to sign in too.
    let ada = app.register("ada@example.com", PASSWORD, "Ada").await;
    assert_eq!(link(&app, &fake, &ada, "corp", Person::new("ada-corp", "ada@corp.example", true)).await.0, "linked");
    let id = identities(&app, &ada.access).await[0]["id"].as_str().unwrap().to_owned();
    app.delete_authed(&format!("/v1/me/identities/{id}"), &ada.access).await.expect(204);
    app.delete_authed(&format!("/v1/me/identities/{id}"), &ada.access).await.problem(404, "not_found");
    let audited = app.texts("SELECT action FROM audit_log WHERE action = 'account.identity_unlinked'").await;
    assert_eq!(audited.len(), 2);
}

#[tokio::test]
async fn an_identity_linked_to_someone_else_is_not_linked_again() {
    let (app, fake) = spawn().await;
    let owner = social_tokens(&app, &fake, "corp", Person::new("taken", "owner@example.com", true)).await;
    let ada = app.register("ada@example.com", PASSWORD, "Ada").await;
    assert_eq!(
        link(&app, &fake, &ada, "corp", Person::new("taken", "owner@example.com", true)).await,
        ("error".into(), "identity_taken".into())
    );
    assert!(identities(&app, &ada.access).await.is_empty());
    assert_eq!(identities(&app, &owner.access).await.len(), 1);
    // Linking needs an allowed app URL and a known provider.
    let reply = app.post_json_authed("/v1/me/identities/corp", &ada.access, &json!({ "redirect_to": "https://evil.example/" })).await;
    reply.field_error("redirect_to");
    app.post_json_authed("/v1/me/identities/nope", &ada.access, &json!({ "redirect_to": APP_URL })).await.problem(404, "not_found");
}

#[tokio::test]
async fn each_caller_sees_only_their_own_identities_page_by_page() {
    let (app, fake) = spawn().await;
    let ada = app.register("ada@example.com", PASSWORD, "Ada").await;
    link(&app, &fake, &ada, "corp", Person::new("a1", "a1@example.com", true)).await;
    link(&app, &fake, &ada, "github", Person::new("31", "a2@example.com", true)).await;
    let bob = social_tokens(&app, &fake, "corp", Person::new("b1", "bob@example.com", true)).await;
    let pages = app.all_pages("/v1/me/identities", &ada.access, &[], 1).await;
    let providers: Vec<&str> = pages.iter().flatten().map(|i| i["provider"].as_str().unwrap()).collect();
    assert_eq!(providers, ["corp", "github"]);
    let bobs = identities(&app, &bob.access).await;
    assert_eq!(bobs.len(), 1);
    let adas = pages.iter().flatten().next().unwrap()["id"].as_str().unwrap().to_owned();
    app.delete_authed(&format!("/v1/me/identities/{adas}"), &bob.access).await.problem(404, "not_found");
}
