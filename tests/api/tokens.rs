//! Access tokens: their shape, and every way a bad one must be refused. The server is given a
//! signing key the test knows, so a token can be minted that is wrong in exactly one way.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, TestKey, Tokens, hs256_jwt, jwt_parts, spawn_app, spawn_app_with, unix_now, unsigned_jwt};

struct Fixture {
    app: TestApp,
    key: TestKey,
    tokens: Tokens,
    header: Value,
    claims: Value,
}

impl Fixture {
    async fn new() -> Fixture {
        let key = TestKey::generate();
        let app = spawn_app_with(&[("signing_key", &key.config_value())]).await;
        let tokens = app.customer("ada@example.com").await;
        let (header, claims) = jwt_parts(&tokens.access);
        Fixture { app, key, tokens, header, claims }
    }

    /// A token signed with the server's own key, header and claims edited first.
    fn mint(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let (mut header, mut claims) = (self.header.clone(), self.claims.clone());
        edit(&mut header, &mut claims);
        self.key.sign(&header, &claims)
    }

    async fn assert_refused(&self, token: &str, why: &str) {
        let reply = self.app.me(token).await;
        assert_eq!(reply.status, 401, "{why}: {}", reply.text);
        reply.problem(401, "invalid_token");
    }
}

#[tokio::test]
async fn access_tokens_are_eddsa_jwts_with_the_documented_claims() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let (header, claims) = jwt_parts(&tokens.access);
    assert_eq!(header["alg"], "EdDSA");
    let jwks = app.get("/.well-known/jwks.json").await.expect(200).json();
    assert!(jwks["keys"].as_array().expect("keys").iter().any(|k| k["kid"] == header["kid"]), "kid {} is published", header["kid"]);
    assert_eq!(claims["sub"], tokens.user_id());
    assert!(claims["sid"].as_str().is_some_and(|s| s.starts_with("ses_")));
    assert_eq!(claims["roles"], json!(["customer"]));
    assert_eq!(claims["iss"], "keel");
    assert!(claims["aud"] == "keel-api" || claims["aud"] == json!(["keel-api"]), "aud {}", claims["aud"]);
    let (iat, exp) = (claims["iat"].as_i64().expect("iat"), claims["exp"].as_i64().expect("exp"));
    assert_eq!(exp - iat, 900, "15 minutes by default");
    assert!((iat - unix_now()).abs() < 300, "iat is now-ish");
}

#[tokio::test]
async fn issuer_audience_and_lifetime_come_from_configuration() {
    let app = spawn_app_with(&[("jwt_issuer", "shop"), ("jwt_audience", "shop-api"), ("access_token_ttl_secs", "120")]).await;
    let reply = app.try_register("ada@example.com", PASSWORD, "Ada").await.expect(201);
    assert_eq!(reply.json()["expires_in"], 120);
    let claims = jwt_parts(&Tokens::from_reply(reply).access).1;
    assert_eq!(claims["iss"], "shop");
    assert!(claims["aud"] == "shop-api" || claims["aud"] == json!(["shop-api"]));
    assert_eq!(claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"), 120);
}

#[tokio::test]
async fn a_token_minted_with_the_server_key_and_the_same_claims_is_accepted() {
    // The control for every refusal below: the minting itself is right.
    let f = Fixture::new().await;
    let token = f.mint(|_, claims| claims["iat"] = json!(unix_now() - 5));
    f.app.me(&token).await.expect(200);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let f = Fixture::new().await;
    let now = unix_now();
    let token = f.mint(|_, c| {
        c["iat"] = json!(now - 1000);
        c["nbf"] = json!(now - 1000);
        c["exp"] = json!(now - 100);
    });
    f.assert_refused(&token, "expired").await;
}

#[tokio::test]
async fn a_token_is_refused_once_its_lifetime_is_over() {
    let app = spawn_app_with(&[("access_token_ttl_secs", "1")]).await;
    let tokens = app.customer("ada@example.com").await;
    let exp = jwt_parts(&tokens.access).1["exp"].as_i64().expect("exp");
    // Polled, not slept through: the token is refused as soon as its lifetime is over.
    let refused = crate::support::eventually(10, "the token to expire", || async {
        let reply = app.me(&tokens.access).await;
        (reply.status != 200).then_some(reply)
    })
    .await;
    refused.problem(401, "invalid_token");
    assert!(unix_now() >= exp, "refused only once `exp` ({exp}) has passed");
    // The session itself lives on: a refresh gives a working token.
    let renewed = Tokens::from_reply(app.refresh(&tokens.refresh).await.expect(200));
    assert_eq!(renewed.session_id(), tokens.session_id());
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused() {
    let f = Fixture::new().await;
    let forged = TestKey::generate().sign(&f.header, &f.claims);
    f.assert_refused(&forged, "forged signature").await;
}

#[tokio::test]
async fn a_token_with_edited_claims_and_the_original_signature_is_refused() {
    let f = Fixture::new().await;
    let bob = f.app.customer("bob@example.com").await;
    let mut claims = f.claims.clone();
    claims["roles"] = json!(["customer", "admin"]);
    let signature = f.tokens.access.rsplit('.').next().expect("a signature");
    let header_part = f.tokens.access.split('.').next().expect("a header");
    let payload = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims.to_string());
    f.assert_refused(&format!("{header_part}.{payload}.{signature}"), "edited roles").await;
    let mut claims = f.claims.clone();
    claims["sub"] = json!(bob.user_id());
    let payload = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims.to_string());
    f.assert_refused(&format!("{header_part}.{payload}.{signature}"), "edited sub").await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    let f = Fixture::new().await;
    for alg in ["none", "None", "NONE"] {
        let mut header = f.header.clone();
        header["alg"] = json!(alg);
        f.assert_refused(&unsigned_jwt(&header, &f.claims), alg).await;
    }
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_public_key_is_refused() {
    let f = Fixture::new().await;
    let mut header = f.header.clone();
    header["alg"] = json!("HS256");
    let x = f.key.public_x();
    let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &x).expect("x");
    for secret in [x.as_bytes(), raw.as_slice(), b"secret".as_slice()] {
        f.assert_refused(&hs256_jwt(&header, &f.claims, secret), "HS256").await;
    }
}

#[tokio::test]
async fn a_token_with_an_unknown_or_missing_kid_is_refused() {
    let f = Fixture::new().await;
    f.assert_refused(&f.mint(|h, _| h["kid"] = json!("not-our-key")), "unknown kid").await;
    f.assert_refused(&f.mint(|h, _| drop(h.as_object_mut().expect("header").remove("kid"))), "missing kid").await;
}

#[tokio::test]
async fn a_token_for_another_audience_or_issuer_is_refused() {
    let f = Fixture::new().await;
    f.assert_refused(&f.mint(|_, c| c["aud"] = json!("someone-else")), "wrong aud").await;
    f.assert_refused(&f.mint(|_, c| c["iss"] = json!("https://evil.example")), "wrong iss").await;
    f.assert_refused(&f.mint(|_, c| drop(c.as_object_mut().expect("claims").remove("aud"))), "missing aud").await;
    f.assert_refused(&f.mint(|_, c| drop(c.as_object_mut().expect("claims").remove("exp"))), "missing exp").await;
}

#[tokio::test]
async fn a_token_naming_someone_elses_session_is_refused() {
    let f = Fixture::new().await;
    let bob = f.app.customer("bob@example.com").await;
    let token = f.mint(|_, c| c["sub"] = json!(bob.user_id()));
    f.assert_refused(&token, "ada's session with bob's id").await;
    let token = f.mint(|_, c| c["sid"] = json!("ses_does_not_exist"));
    f.assert_refused(&token, "unknown session").await;
}

#[tokio::test]
async fn roles_in_the_token_grant_nothing() {
    let f = Fixture::new().await;
    let token = f.mint(|_, c| c["roles"] = json!(["admin", "customer", "support"]));
    f.app.get_authed("/v1/admin/users", &token).await.problem(403, "forbidden");
}

#[tokio::test]
async fn garbage_in_the_authorization_header_is_refused() {
    let f = Fixture::new().await;
    for token in ["", "a.b", "a.b.c", "....", "ünïcödé"] {
        let reply = f.app.send(f.app.request(reqwest::Method::GET, "/v1/me").header("authorization", format!("Bearer {token}"))).await;
        reply.problem(401, "invalid_token");
    }
}

#[tokio::test]
async fn the_generated_signing_key_survives_a_restart() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let kid = jwt_parts(&tokens.access).0["kid"].clone();
    let app = app.restart().await;
    app.me(&tokens.access).await.expect(200);
    let jwks = app.get("/.well-known/jwks.json").await.expect(200).json();
    assert!(jwks["keys"].as_array().expect("keys").iter().any(|k| k["kid"] == kid), "the same key after a restart");
}

#[tokio::test]
async fn after_a_key_change_tokens_of_the_previous_key_work_until_it_is_dropped() {
    let (old, new) = (TestKey::generate(), TestKey::generate());
    let app = spawn_app_with(&[("signing_key", old.config_value().as_str())]).await;
    let before = app.customer("ada@example.com").await;
    let app = app.restart_with(&[("signing_key", &new.config_value()), ("previous_signing_keys", &old.config_value())]).await;
    app.me(&before.access).await.expect(200);
    let jwks = app.get("/.well-known/jwks.json").await.expect(200).json();
    let published: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["x"].as_str().unwrap()).collect();
    assert_eq!(published, [new.public_x(), old.public_x()], "the current key first, then the previous one");
    let after = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(jwt_parts(&after.access).0["kid"], jwks["keys"][0]["kid"], "new tokens are signed with the current key");

    let app = app.restart_with(&[("previous_signing_keys", "")]).await;
    app.me(&before.access).await.problem(401, "invalid_token");
    app.me(&after.access).await.expect(200);
}
