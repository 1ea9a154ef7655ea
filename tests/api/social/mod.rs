//! Social login end to end against the fake provider (`tests/common/fake_oidc.rs`): the
//! browser's round trip is followed by hand (authorize → provider → callback → app URL).

mod browser_binding;
mod id_tokens;
mod identities;
mod mailbox_proof;
mod sign_in;

use serde_json::{Value, json};

use crate::fake_oidc::{FakeOidc, Person};
use crate::helpers::{Reply, TestApp, Tokens, spawn_app_with, url_encode};

/// The app URL sign-ins return to (`oauth_redirect_urls`).
pub const APP_URL: &str = "https://shop.example/auth/done";

/// A fake provider, and Keel with `corp` (OIDC), `apple` (OIDC, form POST) and `github` at it.
pub async fn spawn() -> (TestApp, FakeOidc) {
    let fake = FakeOidc::start().await;
    let mut settings = fake.oidc_settings("corp");
    settings.extend(fake.oidc_settings("apple"));
    settings.extend(fake.github_settings());
    settings.push(("oauth_redirect_urls".to_owned(), APP_URL.to_owned()));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    (spawn_app_with(&settings).await, fake)
}

/// `302` and its `Location`.
pub fn location(reply: &Reply) -> String {
    assert_eq!(reply.status, 302, "a redirect: {}", reply.text);
    reply.header("location").expect("a Location header").to_owned()
}

/// A browser on its way from Keel's authorize route to the provider: the provider's URL, and
/// the `Cookie` header that binds the sign-in to this browser.
pub struct Started {
    pub provider_url: String,
    pub cookie: String,
}

/// The browser at Keel's authorize route (`request`): where it is sent, with its binding.
pub async fn start(app: &TestApp, request: reqwest::RequestBuilder) -> Started {
    let reply = app.send(request).await;
    let provider_url = location(&reply);
    let set_cookie = reply.header("set-cookie").expect("the authorize route binds the browser");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let (name, value) = cookie.split_once('=').unwrap();
    assert_eq!(name, "keel_oauth_state");
    crate::logs::remember_secret(value);
    Started { provider_url, cookie }
}

/// Keel's authorize for `provider`.
pub async fn authorize(app: &TestApp, provider: &str) -> Started {
    start(app, app.client.get(app.url(&format!("/v1/auth/oauth/{provider}/authorize?redirect_to={}", url_encode(APP_URL))))).await
}

/// The signed-in caller starts linking an identity at `provider`: the `authorize_url` Keel gives.
pub async fn link_url(app: &TestApp, who: &Tokens, provider: &str) -> String {
    let started = app
        .post_json_authed(&format!("/v1/me/identities/{provider}"), &who.access, &json!({ "redirect_to": APP_URL }))
        .await
        .expect(200)
        .json();
    started["authorize_url"].as_str().unwrap().to_owned()
}

/// Links `person`'s identity at `provider` to the caller: the fragment the callback ends with.
pub async fn link(app: &TestApp, fake: &FakeOidc, who: &Tokens, provider: &str, person: Person) -> (String, String) {
    let url = link_url(app, who, provider).await;
    fake.next(person);
    let started = start(app, app.client.get(url)).await;
    follow(app, &started).await
}

/// The browser at the provider's URL: where the provider sends it back to Keel, as the request
/// the browser makes there (a GET of the callback URL, or Apple's form POST), without a cookie.
pub async fn back_from_provider(app: &TestApp, provider_url: &str) -> reqwest::RequestBuilder {
    let answer = app.client.get(provider_url).send().await.expect("the fake provider answers");
    if answer.status() == 302 {
        let callback = answer.headers()["location"].to_str().unwrap().to_owned();
        return app.client.get(callback);
    }
    let form: Value = answer.json().await.unwrap();
    let fields: Vec<(String, String)> =
        form["fields"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
    app.client.post(form["action"].as_str().unwrap()).form(&fields)
}

/// The same, from the browser that started the sign-in (it sends its binding).
pub async fn at_provider(app: &TestApp, started: &Started) -> reqwest::RequestBuilder {
    back_from_provider(app, &started.provider_url).await.header(reqwest::header::COOKIE, &started.cookie)
}

/// Follows the browser from the provider's URL to the app: `(key, value)` of the fragment.
pub async fn follow(app: &TestApp, started: &Started) -> (String, String) {
    let back = at_provider(app, started).await;
    fragment(&location(&app.send(back).await))
}

/// The result an app URL carries: `#code=…`, `#linked=…` or `#error=…`.
pub fn fragment(location: &str) -> (String, String) {
    let rest = location.strip_prefix(&format!("{APP_URL}#")).unwrap_or_else(|| panic!("back at the app URL: {location}"));
    let (key, value) = rest.split_once('=').expect("key=value");
    if key == "code" {
        crate::logs::remember_secret(value);
    }
    (key.to_owned(), value.to_owned())
}

/// A whole sign-in as `person` through `provider`: the fragment it ends with.
pub async fn sign_in(app: &TestApp, fake: &FakeOidc, provider: &str, person: Person) -> (String, String) {
    fake.next(person);
    let started = authorize(app, provider).await;
    follow(app, &started).await
}

/// A sign-in that must end with a login code.
pub async fn login_code(app: &TestApp, fake: &FakeOidc, provider: &str, person: Person) -> String {
    match sign_in(app, fake, provider, person).await {
        (key, code) if key == "code" => code,
        other => panic!("a login code, not {other:?}"),
    }
}

pub async fn exchange(app: &TestApp, code: &str, totp_code: Option<&str>) -> Reply {
    let mut body = json!({ "code": code });
    if let Some(totp) = totp_code {
        body["totp_code"] = Value::from(totp);
    }
    app.post_json("/v1/auth/oauth/exchange", &body).await
}

/// Signs in through `provider` as `person` and exchanges the code.
pub async fn social_tokens(app: &TestApp, fake: &FakeOidc, provider: &str, person: Person) -> Tokens {
    let code = login_code(app, fake, provider, person).await;
    Tokens::from_reply(exchange(app, &code, None).await.expect(200))
}

/// The caller's identities.
pub async fn identities(app: &TestApp, token: &str) -> Vec<Value> {
    app.get_authed("/v1/me/identities", token).await.expect(200).json()["data"].as_array().unwrap().clone()
}

/// Marks ada@example.com's email verified, as its mailed link would.
pub async fn verify_adas_email(app: &TestApp) {
    assert_eq!(app.execute_sql("UPDATE users SET email_verified = TRUE WHERE email = 'ada@example.com'").await, 1);
}
