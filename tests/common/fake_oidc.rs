//! A fake OAuth 2.0 / OpenID Connect provider on 127.0.0.1:0: discovery, an authorization
//! endpoint that sends the browser straight back with a one-time code for the person the test
//! chose, a token endpoint that checks the client, the redirect URI, PKCE S256 and spends
//! codes, JWKS (ES256), and GitHub's `/user` and `/user/emails`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "keel-test-client";
pub const CLIENT_SECRET: &str = "fake-oidc-client-secret-0123456789";
const KID: &str = "fake-key-1";

/// The person the next authorization signs in as, and how the provider misbehaves.
#[derive(Debug, Clone)]
pub struct Person {
    pub sub: String,
    pub email: Option<String>,
    /// As sent in the ID token (`true`, `false`, or Apple's `"true"`).
    pub email_verified: Value,
    pub name: Option<String>,
    /// The ID token's `aud` (default: the client id).
    pub aud: Option<Value>,
    /// A nonce other than the one Keel sent.
    pub nonce: Option<String>,
    /// Seconds from now the ID token expires (default 300).
    pub expires_in: i64,
    /// Sign the ID token with HS256 and the client secret instead of the ES256 key.
    pub hs256: bool,
    /// The person declines at the provider (`error=access_denied`).
    pub declines: bool,
}

impl Person {
    pub fn new(sub: &str, email: &str, verified: bool) -> Person {
        Person {
            sub: sub.to_owned(),
            email: Some(email.to_owned()),
            email_verified: Value::Bool(verified),
            name: Some("Provider Person".to_owned()),
            aud: None,
            nonce: None,
            expires_in: 300,
            hs256: false,
            declines: false,
        }
    }
}

struct Grant {
    person: Person,
    challenge: String,
    redirect_uri: String,
    nonce: Option<String>,
}

#[derive(Default)]
struct Inner {
    next: VecDeque<Person>,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, Person>,
    /// Every authorization request's query, in order.
    authorizations: Vec<HashMap<String, String>>,
    /// Codes presented at the token endpoint, in order.
    redeemed: Vec<String>,
    counter: u64,
}

struct Provider {
    issuer: String,
    key: EncodingKey,
    jwk: Value,
    inner: Mutex<Inner>,
}

type Shared = Arc<Provider>;

pub struct FakeOidc {
    pub issuer: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOidc {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeOidc {
    pub async fn start() -> FakeOidc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the fake provider");
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("an EC key");
        let key = EncodingKey::from_ec_der(&pair.serialize_der());
        let raw = pair.public_key_raw();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": KID,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        });
        let shared = Arc::new(Provider { issuer: issuer.clone(), key, jwk, inner: Mutex::new(Inner::default()) });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/login/oauth/authorize", get(authorize))
            .route("/token", post(token))
            .route("/login/oauth/access_token", post(token))
            .route("/jwks", get(jwks))
            .route("/user", get(user))
            .route("/user/emails", get(emails))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        crate::logs::remember_secret(CLIENT_SECRET);
        FakeOidc { issuer, shared, server }
    }

    /// The next authorization signs in as `person`.
    pub fn next(&self, person: Person) {
        self.shared.inner.lock().unwrap().next.push_back(person);
    }

    /// The query of the last authorization request Keel sent the browser to.
    pub fn last_authorization(&self) -> HashMap<String, String> {
        self.shared.inner.lock().unwrap().authorizations.last().cloned().expect("an authorization request")
    }

    /// How many times the token endpoint was asked to redeem `code`.
    pub fn redemptions(&self, code: &str) -> usize {
        self.shared.inner.lock().unwrap().redeemed.iter().filter(|c| *c == code).count()
    }

    /// The settings of an OIDC provider `name` at this fake.
    pub fn oidc_settings(&self, name: &str) -> Vec<(String, String)> {
        vec![
            (format!("oauth_{name}_issuer"), self.issuer.clone()),
            (format!("oauth_{name}_client_id"), CLIENT_ID.to_owned()),
            (format!("oauth_{name}_client_secret"), CLIENT_SECRET.to_owned()),
        ]
    }

    /// The settings of the built-in GitHub provider pointed at this fake.
    pub fn github_settings(&self) -> Vec<(String, String)> {
        vec![
            ("oauth_github_url".to_owned(), self.issuer.clone()),
            ("oauth_github_api_url".to_owned(), self.issuer.clone()),
            ("oauth_github_client_id".to_owned(), CLIENT_ID.to_owned()),
            ("oauth_github_client_secret".to_owned(), CLIENT_SECRET.to_owned()),
        ]
    }
}

async fn discovery(State(p): State<Shared>) -> Json<Value> {
    let base = &p.issuer;
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

/// Sends the browser back at once: `302` with `code` and `state` (or `error`), or for
/// `response_mode=form_post` a `200` JSON `{action, fields}` the test posts itself.
async fn authorize(State(p): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut inner = p.inner.lock().unwrap();
    inner.authorizations.push(q.clone());
    let person = inner.next.pop_front().expect("the test chose who signs in next");
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    let mut fields = vec![("state".to_owned(), q.get("state").cloned().unwrap_or_default())];
    if person.declines {
        fields.push(("error".to_owned(), "access_denied".to_owned()));
    } else {
        inner.counter += 1;
        let code = format!("code-{}-{}", inner.counter, uuid::Uuid::new_v4().simple());
        assert_eq!(q.get("code_challenge_method").map(String::as_str), Some("S256"), "PKCE S256");
        let grant = Grant {
            person,
            challenge: q.get("code_challenge").cloned().unwrap_or_default(),
            redirect_uri: redirect_uri.clone(),
            nonce: q.get("nonce").cloned(),
        };
        inner.codes.insert(code.clone(), grant);
        fields.push(("code".to_owned(), code));
    }
    if q.get("response_mode").map(String::as_str) == Some("form_post") {
        let fields: serde_json::Map<String, Value> = fields.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        return Json(json!({ "action": redirect_uri, "fields": fields })).into_response();
    }
    let query: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", crate::helpers::url_encode(v))).collect();
    (StatusCode::FOUND, [(header::LOCATION, format!("{redirect_uri}?{}", query.join("&")))]).into_response()
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

async fn token(State(p): State<Shared>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    // Client authentication: HTTP Basic or the body.
    let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic ")).and_then(|b| {
        let decoded = String::from_utf8(STANDARD.decode(b).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        Some((id.to_owned(), secret.to_owned()))
    });
    let client = basic.or_else(|| Some((form.get("client_id")?.clone(), form.get("client_secret")?.clone())));
    if client != Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())) {
        return (StatusCode::UNAUTHORIZED, Json(json!({ "error": "invalid_client" }))).into_response();
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let mut inner = p.inner.lock().unwrap();
    inner.redeemed.push(code.clone());
    // One-time codes: a code presented again is refused.
    let Some(grant) = inner.codes.remove(&code) else { return oauth_error("invalid_grant") };
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") || form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return oauth_error("invalid_grant");
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    if URL_SAFE_NO_PAD.encode(digest.as_ref()) != grant.challenge {
        return oauth_error("invalid_grant");
    }
    let access_token = format!("at-{}", uuid::Uuid::new_v4().simple());
    crate::logs::remember_secret(&access_token);
    inner.tokens.insert(access_token.clone(), grant.person.clone());
    let mut answer = json!({ "access_token": access_token, "token_type": "bearer", "expires_in": 3600 });
    if grant.nonce.is_some() {
        answer["id_token"] = Value::String(id_token(&p, &grant));
    }
    Json(answer).into_response()
}

fn id_token(p: &Provider, grant: &Grant) -> String {
    let person = &grant.person;
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": p.issuer,
        "sub": person.sub,
        "aud": person.aud.clone().unwrap_or_else(|| Value::String(CLIENT_ID.to_owned())),
        "iat": now,
        "exp": now + person.expires_in,
        "nonce": person.nonce.clone().or_else(|| grant.nonce.clone()),
        "email_verified": person.email_verified,
    });
    if let Some(email) = &person.email {
        claims["email"] = Value::String(email.clone());
    }
    if let Some(name) = &person.name {
        claims["name"] = Value::String(name.clone());
    }
    let token = if person.hs256 {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(CLIENT_SECRET.as_bytes()))
    } else {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(KID.to_owned());
        jsonwebtoken::encode(&header, &claims, &p.key)
    };
    let token = token.expect("signing an ID token");
    crate::logs::remember_secret(&token);
    token
}

async fn jwks(State(p): State<Shared>) -> Json<Value> {
    Json(json!({ "keys": [p.jwk] }))
}

fn bearer_person(p: &Provider, headers: &HeaderMap) -> Option<Person> {
    let token = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
    p.inner.lock().unwrap().tokens.get(token).cloned()
}

async fn user(State(p): State<Shared>, headers: HeaderMap) -> Response {
    let Some(person) = bearer_person(&p, &headers) else { return StatusCode::UNAUTHORIZED.into_response() };
    let id: i64 = person.sub.parse().expect("GitHub ids are numbers");
    Json(json!({ "id": id, "login": format!("user{id}"), "name": person.name })).into_response()
}

/// GitHub's `/user/emails`: the person's address as primary, verified as the test chose, and
/// an unverified secondary one.
async fn emails(State(p): State<Shared>, headers: HeaderMap) -> Response {
    let Some(person) = bearer_person(&p, &headers) else { return StatusCode::UNAUTHORIZED.into_response() };
    let mut list = vec![json!({ "email": "noreply-secondary@example.net", "primary": false, "verified": false })];
    if let Some(email) = person.email {
        list.push(json!({ "email": email, "primary": true, "verified": person.email_verified == Value::Bool(true) }));
    }
    Json(Value::Array(list)).into_response()
}
