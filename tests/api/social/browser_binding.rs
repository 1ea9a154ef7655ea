//! Login and link CSRF: a sign-in is bound to the browser that started it (the
//! `keel_oauth_state` cookie), and a linking passes through Keel's authorize route to get bound.

use reqwest::header::COOKIE;
use serde_json::json;

use super::{APP_URL, Started, authorize, back_from_provider, follow, identities, link_url, spawn, start};
use crate::fake_oidc::Person;
use crate::helpers::{PASSWORD, url_encode};

#[tokio::test]
async fn the_authorize_route_binds_the_browser_with_an_http_only_cookie_of_the_oauth_routes() {
    let (app, fake) = spawn().await;
    let reply = app.get(&format!("/v1/auth/oauth/corp/authorize?redirect_to={}", url_encode(APP_URL))).await;
    let set_cookie = reply.header("set-cookie").unwrap().to_owned();
    crate::logs::remember_secret(set_cookie.split(';').next().unwrap().split_once('=').unwrap().1);
    let attributes: Vec<&str> = set_cookie.split("; ").skip(1).collect();
    assert_eq!(attributes, ["Max-Age=600", "Path=/v1/auth/oauth", "HttpOnly", "SameSite=Lax"], "no Secure over plain http");
    // A browser keeps its binding for a second sign-in, so that both finish (two tabs).
    let first = authorize(&app, "corp").await;
    let request = app.client.get(app.url(&format!("/v1/auth/oauth/apple/authorize?redirect_to={}", url_encode(APP_URL))));
    let second = start(&app, request.header(COOKIE, &first.cookie)).await;
    assert_eq!(second.cookie, first.cookie);
    fake.next(Person::new("tab-1", "tab1@example.com", true));
    assert_eq!(follow(&app, &first).await.0, "code");
    fake.next(Person::new("tab-2", "tab2@example.com", true));
    assert_eq!(follow(&app, &second).await.0, "code");
}

#[tokio::test]
async fn a_callback_replayed_in_a_browser_that_did_not_start_the_sign_in_is_refused_and_signs_nobody_in() {
    let (app, fake) = spawn().await;
    for provider in ["corp", "apple"] {
        // The attacker starts a sign-in in their own browser and has another browser (the
        // victim's, with a binding of its own or none) complete it.
        let attacker = authorize(&app, provider).await;
        let victim = authorize(&app, provider).await;
        assert_ne!(attacker.cookie, victim.cookie);
        fake.next(Person::new(&format!("{provider}-attacker"), &format!("attacker-{provider}@example.com"), true));
        let back = back_from_provider(&app, &attacker.provider_url).await;
        let forged = ["", victim.cookie.as_str(), "keel_oauth_state=not-a-binding", "keel_oauth_statex=1"];
        for cookie in forged {
            let request = back.try_clone().unwrap();
            let request = if cookie.is_empty() { request } else { request.header(COOKIE, cookie) };
            let reply = app.send(request).await;
            reply.problem(400, "invalid_state");
            assert!(reply.header("location").is_none(), "{provider} with {cookie:?}: sent nowhere");
        }
        let emails = app.texts("SELECT email FROM users").await;
        assert!(!emails.contains(&format!("attacker-{provider}@example.com")), "nobody signed in through {provider}");
        // The refusals did not spend the state: the browser that started it still finishes.
        let fragment = super::fragment(&super::location(&app.send(back.header(COOKIE, &attacker.cookie)).await));
        assert_eq!(fragment.0, "code");
    }
}

#[tokio::test]
async fn a_linking_is_bound_at_keels_authorize_route_with_a_single_use_link_token() {
    let (app, fake) = spawn().await;
    let ada = app.register("ada@example.com", PASSWORD, "Ada").await;
    let url = link_url(&app, &ada, "corp").await;
    assert!(url.starts_with(&app.url("/v1/auth/oauth/corp/authorize?link=")), "{url}");
    crate::logs::remember_secret(url.split_once("link=").unwrap().1);
    // The token is for its own provider, and names the app URL itself.
    app.send(app.client.get(url.replace("/oauth/corp/", "/oauth/github/"))).await.problem(400, "invalid_state");
    let with_redirect = format!("{url}&redirect_to={}", url_encode(APP_URL));
    app.send(app.client.get(&with_redirect)).await.field_error("redirect_to");
    let started: Started = start(&app, app.client.get(&url)).await;
    app.send(app.client.get(&url)).await.problem(400, "invalid_state");
    // Someone else's browser cannot complete it (link CSRF); the browser that was bound can.
    fake.next(Person::new("ada-corp", "whoever@example.com", false));
    let back = back_from_provider(&app, &started.provider_url).await;
    let other_browser = "keel_oauth_state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    app.send(back.try_clone().unwrap().header(COOKIE, other_browser)).await.problem(400, "invalid_state");
    assert!(identities(&app, &ada.access).await.is_empty());
    let back = back.header(COOKIE, &started.cookie);
    assert_eq!(super::fragment(&super::location(&app.send(back).await)), ("linked".to_owned(), "corp".to_owned()));
    assert_eq!(identities(&app, &ada.access).await.len(), 1);
    // Linking needs a configured provider and an allowed app URL up front.
    let body = json!({ "redirect_to": APP_URL });
    app.post_json_authed("/v1/me/identities/nope", &ada.access, &body).await.problem(404, "not_found");
    let body = json!({ "redirect_to": "https://evil.example/" });
    app.post_json_authed("/v1/me/identities/corp", &ada.access, &body).await.field_error("redirect_to");
}
