//! Signing in through a provider: new accounts, linking by verified email, the pre-hijack
//! take-over, refusals, login codes and MFA.

use serde_json::json;

use super::{
    APP_URL, at_provider, authorize, exchange, fragment, identities, link, location, login_code, sign_in, social_tokens, spawn,
    verify_adas_email,
};
use crate::fake_oidc::{CLIENT_ID, Person};
use crate::helpers::{PASSWORD, url_encode};
use crate::support::{totp_at, totp_now, totp_step_now};

#[tokio::test]
async fn the_provider_list_names_each_configured_provider() {
    let (app, _fake) = spawn().await;
    let providers = app.get("/v1/auth/oauth/providers").await.expect(200).json();
    assert_eq!(
        providers,
        json!([{ "id": "apple", "name": "Apple" }, { "id": "corp", "name": "Corp" }, { "id": "github", "name": "GitHub" }])
    );
}

#[tokio::test]
async fn a_first_sign_in_makes_an_account_with_the_verified_email_and_no_password() {
    let (app, fake) = spawn().await;
    let tokens = social_tokens(&app, &fake, "corp", Person::new("sub-new", "New@Example.com", true)).await;
    // The provider was asked with state, PKCE S256 and a nonce, for Keel's callback.
    let asked = fake.last_authorization();
    assert_eq!(asked["code_challenge_method"], "S256");
    assert!(asked["state"].len() >= 32 && asked["nonce"].len() >= 32 && asked["code_challenge"].len() >= 43);
    assert_eq!(asked["client_id"], CLIENT_ID);
    assert_eq!(asked["redirect_uri"], app.url("/v1/auth/oauth/corp/callback"));
    let me = app.me(&tokens.access).await.expect(200).json();
    assert_eq!(
        (me["email"].as_str(), me["email_verified"].as_bool(), me["name"].as_str()),
        (Some("new@example.com"), Some(true), Some("Provider Person"))
    );
    assert_eq!(me["roles"], json!(["customer"]));
    // No password: none signs in.
    app.try_login("new@example.com", "").await.problem(401, "invalid_credentials");
    app.try_login("new@example.com", PASSWORD).await.problem(401, "invalid_credentials");
    let linked = identities(&app, &tokens.access).await;
    assert_eq!(linked.len(), 1);
    assert_eq!((linked[0]["provider"].as_str(), linked[0]["email"].as_str()), (Some("corp"), Some("new@example.com")));
    assert!(linked[0]["id"].as_str().unwrap().starts_with("idn_"));
    // Signing in again is the same account.
    let again = social_tokens(&app, &fake, "corp", Person::new("sub-new", "new@example.com", true)).await;
    assert_eq!(again.user_id(), tokens.user_id());
}

#[tokio::test]
async fn apples_string_verified_flag_counts_and_its_form_post_callback_is_accepted() {
    let (app, fake) = spawn().await;
    let mut person = Person::new("apple-sub", "apple@example.com", true);
    person.email_verified = json!("true");
    let tokens = social_tokens(&app, &fake, "apple", person).await;
    assert_eq!(fake.last_authorization()["response_mode"], "form_post");
    assert_eq!(app.me(&tokens.access).await.expect(200).json()["email_verified"], true);
    let mut person = Person::new("apple-other", "other@example.com", true);
    person.email_verified = json!("false");
    let tokens = social_tokens(&app, &fake, "apple", person).await;
    assert_eq!(app.me(&tokens.access).await.expect(200).json()["email_verified"], false, "\"false\" is no verification");
}

#[tokio::test]
async fn a_verified_provider_email_links_to_the_verified_account_with_that_email() {
    let (app, fake) = spawn().await;
    let ada = app.register("ada@example.com", PASSWORD, "Ada").await;
    verify_adas_email(&app).await;
    let tokens = social_tokens(&app, &fake, "corp", Person::new("ada-at-corp", "ada@example.com", true)).await;
    assert_eq!(tokens.user_id(), ada.user_id());
    // Nothing was taken away: the password and the earlier session still work.
    app.login("ada@example.com", PASSWORD).await;
    app.me(&ada.access).await.expect(200);
    assert_eq!(identities(&app, &ada.access).await.len(), 1);
}

#[tokio::test]
async fn an_account_whose_email_was_never_verified_is_taken_over_by_the_verified_identity() {
    let (app, fake) = spawn().await;
    // Someone registers the victim's address first (pre-hijacking) and keeps a session.
    let squatter = app.register("ada@example.com", PASSWORD, "Squatter").await;
    let squatters_own = Person::new("666", "squatter@evil.example", true);
    assert_eq!(link(&app, &fake, &squatter, "github", squatters_own.clone()).await.0, "linked");
    let (mut squatters_passkey, _) = crate::passkeys::register(&app, &squatter).await;
    let tokens = social_tokens(&app, &fake, "corp", Person::new("ada-at-corp", "ada@example.com", true)).await;
    assert_eq!(tokens.user_id(), squatter.user_id(), "the account with the address is the provider's person's");
    // The squatter's ways in are gone: password, session, refresh token.
    app.try_login("ada@example.com", PASSWORD).await.problem(401, "invalid_credentials");
    app.me(&squatter.access).await.problem(401, "invalid_token");
    app.refresh(&squatter.refresh).await.problem(401, "invalid_token");
    let me = app.me(&tokens.access).await.expect(200).json();
    assert_eq!(me["email_verified"], true);
    // Every other way in is gone too: the identity the squatter linked is the provider person's only one now.
    let linked = identities(&app, &tokens.access).await;
    assert_eq!(linked.iter().map(|i| i["provider"].as_str().unwrap()).collect::<Vec<_>>(), ["corp"]);
    assert_ne!(social_tokens(&app, &fake, "github", squatters_own).await.user_id(), tokens.user_id());
    crate::passkeys::login(&app, &mut squatters_passkey, &json!({})).await.problem(401, "invalid_credentials");
    let audited =
        app.texts("SELECT action FROM audit_log WHERE action IN ('account.taken_over', 'account.identity_linked') ORDER BY seq").await;
    assert_eq!(audited, ["account.identity_linked", "account.taken_over", "account.identity_linked", "account.identity_linked"]);
    let details = app.texts("SELECT details FROM audit_log WHERE action = 'account.taken_over'").await;
    assert!(details[0].contains(r#""identities_removed":1,"passkeys_removed":1"#), "{details:?}");
}

#[tokio::test]
async fn an_unverified_provider_email_of_an_account_is_refused_then_linked_by_its_signed_in_owner() {
    let (app, fake) = spawn().await;
    let ada = app.register("ada@example.com", PASSWORD, "Ada").await;
    let person = || Person::new("maybe-ada", "ada@example.com", false);
    assert_eq!(sign_in(&app, &fake, "corp", person()).await, ("error".to_owned(), "email_taken".to_owned()));
    assert!(identities(&app, &ada.access).await.is_empty());
    // Ada, signed in, links it explicitly.
    assert_eq!(link(&app, &fake, &ada, "corp", person()).await, ("linked".to_owned(), "corp".to_owned()));
    assert_eq!(identities(&app, &ada.access).await.len(), 1);
    // From now on the identity signs Ada in; her password is untouched.
    assert_eq!(social_tokens(&app, &fake, "corp", person()).await.user_id(), ada.user_id());
    app.login("ada@example.com", PASSWORD).await;
}

#[tokio::test]
async fn github_signs_in_with_the_verified_address_from_its_emails_api() {
    let (app, fake) = spawn().await;
    let tokens = social_tokens(&app, &fake, "github", Person::new("4242", "octo@example.com", true)).await;
    let me = app.me(&tokens.access).await.expect(200).json();
    assert_eq!((me["email"].as_str(), me["email_verified"].as_bool()), (Some("octo@example.com"), Some(true)));
    assert!(fake.last_authorization()["scope"].contains("user:email"));
    // An unverified GitHub address never links to the account that has it.
    let ada = app.register("ada@example.com", PASSWORD, "Ada").await;
    assert_eq!(sign_in(&app, &fake, "github", Person::new("77", "ada@example.com", false)).await.1, "email_taken");
    assert!(identities(&app, &ada.access).await.is_empty());
}

#[tokio::test]
async fn a_login_code_is_exchanged_once() {
    let (app, fake) = spawn().await;
    let code = login_code(&app, &fake, "corp", Person::new("once", "once@example.com", true)).await;
    exchange(&app, &code, None).await.expect(200);
    exchange(&app, &code, None).await.problem(401, "invalid_token");
    exchange(&app, "not-a-code", None).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn an_account_with_mfa_needs_its_code_at_the_exchange_and_a_refusal_keeps_the_login_code() {
    let (app, fake) = spawn().await;
    let ada = app.register("ada@example.com", PASSWORD, "Ada").await;
    verify_adas_email(&app).await;
    let setup = app.post_json_authed("/v1/auth/mfa/totp/setup", &ada.access, &json!({})).await.expect(200).json();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    app.post_json_authed("/v1/auth/mfa/totp/enable", &ada.access, &json!({ "code": totp_now(&secret) })).await.expect(200);
    let code = login_code(&app, &fake, "corp", Person::new("ada-at-corp", "ada@example.com", true)).await;
    exchange(&app, &code, None).await.problem(401, "mfa_required");
    exchange(&app, &code, Some("000000")).await.problem(401, "mfa_required");
    // The step enabling used is spent; the next one is accepted (one step of skew).
    let next = totp_at(&secret, totp_step_now() + 1);
    assert_eq!(exchange(&app, &code, Some(&next)).await.expect(200).json()["user"]["id"], ada.user_id().as_str());
    exchange(&app, &code, Some(&next)).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn declining_at_the_provider_or_giving_no_email_ends_with_an_error_code() {
    let (app, fake) = spawn().await;
    let mut declines = Person::new("no", "no@example.com", true);
    declines.declines = true;
    assert_eq!(sign_in(&app, &fake, "corp", declines).await, ("error".to_owned(), "access_denied".to_owned()));
    let mut anonymous = Person::new("anon", "x@example.com", true);
    anonymous.email = None;
    assert_eq!(sign_in(&app, &fake, "corp", anonymous).await, ("error".to_owned(), "email_missing".to_owned()));
}

#[tokio::test]
async fn redirect_to_must_be_an_allowed_app_url_exactly_and_the_provider_configured() {
    let (app, _fake) = spawn().await;
    for bad in ["https://evil.example/auth/done", "https://shop.example/auth/done/x", "https://shop.example/auth/done?x=1", ""] {
        let reply = app.get(&format!("/v1/auth/oauth/corp/authorize?redirect_to={}", url_encode(bad))).await;
        reply.problem(422, "validation_failed");
        reply.field_error("redirect_to");
    }
    app.get("/v1/auth/oauth/corp/authorize").await.field_error("redirect_to");
    // The admin console's own URL is allowed without configuration.
    let console = app.url("/admin/");
    assert_eq!(app.get(&format!("/v1/auth/oauth/corp/authorize?redirect_to={}", url_encode(&console))).await.status, 302);
    app.get(&format!("/v1/auth/oauth/nope/authorize?redirect_to={}", url_encode(APP_URL))).await.problem(404, "not_found");
}

#[tokio::test]
async fn a_callback_without_a_live_state_is_a_problem_and_sends_nobody_anywhere() {
    let (app, fake) = spawn().await;
    for query in ["", "?code=abc", "?state=forged&code=abc", "?state=&code=abc"] {
        let reply = app.get(&format!("/v1/auth/oauth/corp/callback{query}")).await;
        reply.problem(400, "invalid_state");
        assert!(reply.header("location").is_none());
    }
    // A real callback replayed: the state is spent, and the provider's code is not redeemed twice.
    fake.next(Person::new("replay", "replay@example.com", true));
    let started = authorize(&app, "corp").await;
    let back = at_provider(&app, &started).await;
    let callback = back.try_clone().unwrap().build().unwrap().url().clone();
    assert_eq!(fragment(&location(&app.send(back.try_clone().unwrap()).await)).0, "code");
    app.send(back).await.problem(400, "invalid_state");
    let code = callback.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    assert_eq!(fake.redemptions(&code), 1);
    // A state is for its own provider only.
    fake.next(Person::new("other", "other@example.com", true));
    let started = authorize(&app, "corp").await;
    let callback = at_provider(&app, &started).await.build().unwrap().url().to_string();
    let elsewhere = callback.replace("/oauth/corp/", "/oauth/apple/");
    app.send(app.client.get(&elsewhere).header(reqwest::header::COOKIE, &started.cookie)).await.problem(400, "invalid_state");
}

#[tokio::test]
async fn two_callbacks_for_one_new_identity_make_one_account() {
    let (app, fake) = spawn().await;
    let mut callbacks = Vec::new();
    for _ in 0..2 {
        fake.next(Person::new("twice", "twice@example.com", true));
        callbacks.push(at_provider(&app, &authorize(&app, "corp").await).await);
    }
    let (second, first) = (callbacks.pop().unwrap(), callbacks.pop().unwrap());
    let (a, b) = tokio::join!(app.send(first), app.send(second));
    let (a, b) = (fragment(&location(&a)), fragment(&location(&b)));
    assert_eq!((a.0.as_str(), b.0.as_str()), ("code", "code"));
    let first = exchange(&app, &a.1, None).await.expect(200).json();
    let second = exchange(&app, &b.1, None).await.expect(200).json();
    assert_eq!(first["user"]["id"], second["user"]["id"]);
    assert_eq!(app.texts("SELECT id FROM users WHERE email = 'twice@example.com'").await.len(), 1);
}
