//! A fake Stripe-shaped payment provider on 127.0.0.1:0, with a script of faults (one per
//! request, in order; an empty script means normal service) and a record of every call.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const API_KEY: &str = "sk_test_keel";

/// What the next request gets instead of normal service.
#[derive(Debug, Clone)]
pub enum Fault {
    /// This status with a Stripe-shaped `api_error` body; nothing is done.
    Status(u16),
    /// `429` with `Retry-After: <secs>`; nothing is done.
    RateLimited { retry_after_secs: u64 },
    /// The request is served (a charge is recorded), then the answer waits this long.
    LoseAnswer(Duration),
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub traceparent: Option<String>,
    pub form: Vec<(String, String)>,
}

impl Call {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Provider {
    script: VecDeque<Fault>,
    calls: Vec<Call>,
    intents: HashMap<String, Value>,
    /// Idempotency key → the first answer, replayed for the same key (Stripe's semantics).
    answers: HashMap<String, (u16, Value)>,
    refunded: HashMap<String, i64>,
    next_id: u64,
}

type Shared = Arc<Mutex<Provider>>;

pub struct FakeProvider {
    pub base: String,
    state: Shared,
}

impl FakeProvider {
    pub async fn start() -> FakeProvider {
        let state = Shared::default();
        let app = Router::new()
            .route("/v1/payment_intents", post(create_intent))
            .route("/v1/payment_intents/{id}", get(get_intent))
            .route("/v1/refunds", post(create_refund))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeProvider { base, state }
    }

    /// Faults for the next requests, in order.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().script.extend(faults);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Payment intents created (charges taken or declined), however many calls it took.
    pub fn intents_created(&self) -> usize {
        self.state.lock().unwrap().intents.len()
    }
}

/// Records the call and takes its fault; answers `401` for a wrong key like the real thing.
fn arrive(state: &Shared, method: Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Option<Fault>, Unauthorized> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    // Form decoding borrowed from the URL parser: a body is a query string.
    let form = reqwest::Url::parse(&format!("http://form/?{}", String::from_utf8_lossy(body)))
        .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default();
    let call = Call {
        method,
        path: uri.path().to_owned(),
        idempotency_key: header("idempotency-key"),
        authorization: header("authorization"),
        content_type: header("content-type"),
        traceparent: header("traceparent"),
        form,
    };
    let authorized = call.authorization.as_deref() == Some(&format!("Bearer {API_KEY}"));
    let mut state = state.lock().unwrap();
    state.calls.push(call);
    if !authorized {
        return Err(Unauthorized);
    }
    Ok(state.script.pop_front())
}

struct Unauthorized;

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        error(401, json!({"type": "invalid_request_error", "message": "Invalid API Key provided"}))
    }
}

fn error(status: u16, error: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(json!({ "error": error }))).into_response()
}

/// The answer for a fault that stops the request before any work.
fn refusal(fault: &Fault) -> Option<Response> {
    match fault {
        Fault::Status(status) => Some(error(*status, json!({"type": "api_error", "message": "scripted failure"}))),
        Fault::RateLimited { retry_after_secs } => {
            let mut response = error(429, json!({"type": "rate_limit_error", "message": "slow down"}));
            response.headers_mut().insert("retry-after", retry_after_secs.to_string().parse().unwrap());
            Some(response)
        }
        Fault::LoseAnswer(_) => None,
    }
}

/// Records the call and takes its fault: `Err` with the answer when it stops there (a wrong
/// key, a scripted status), else the fault to apply after the work (a lost answer) if any.
fn admit(state: &Shared, method: Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Option<Fault>, Box<Response>> {
    let fault = arrive(state, method, uri, headers, body).map_err(|refused| Box::new(refused.into_response()))?;
    match fault.as_ref().and_then(refusal) {
        Some(refused) => Err(Box::new(refused)),
        None => Ok(fault),
    }
}

/// Stripe's idempotency: the first answer under a key is replayed for that key; `work` makes
/// it for a new key (and for every request without one).
fn idempotent(state: &Shared, work: impl FnOnce(&mut Provider, &Call) -> (u16, Value)) -> (u16, Value) {
    let mut p = state.lock().unwrap();
    let call = p.calls.last().unwrap().clone();
    let key = call.idempotency_key.clone().unwrap_or_default();
    if let Some(first) = p.answers.get(&key).filter(|_| !key.is_empty()) {
        return first.clone();
    }
    let first = work(&mut p, &call);
    p.answers.insert(key, first.clone());
    first
}

async fn answer(fault: Option<Fault>, status: u16, body: Value) -> Response {
    if let Some(Fault::LoseAnswer(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

async fn create_intent(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let fault = match admit(&state, method, &uri, &headers, &body) {
        Ok(fault) => fault,
        Err(refused) => return *refused,
    };
    let (status, body) = idempotent(&state, |p, call| {
        p.next_id += 1;
        let id = format!("pi_fake_{}", p.next_id);
        let amount: i64 = call.field("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
        let declined = match call.field("payment_method") {
            Some("tok_chargeDeclined") => Some("generic_decline"),
            Some("tok_insufficientFunds") => Some("insufficient_funds"),
            _ => None,
        };
        let intent = json!({
            "id": id, "object": "payment_intent", "amount": amount, "currency": call.field("currency"),
            "status": if declined.is_some() { "requires_payment_method" } else { "succeeded" },
            "last_payment_error": declined.map(|code| json!({"type": "card_error", "code": "card_declined", "decline_code": code})),
        });
        p.intents.insert(id.clone(), intent.clone());
        match declined {
            Some(code) => (
                402,
                json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": code, "message": "Your card was declined.", "payment_intent": intent}}),
            ),
            None => (200, intent),
        }
    });
    answer(fault, status, body).await
}

async fn get_intent(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let fault = match admit(&state, method, &uri, &headers, b"") {
        Ok(fault) => fault,
        Err(refused) => return *refused,
    };
    let intent = state.lock().unwrap().intents.get(&id).cloned();
    match intent {
        Some(intent) => answer(fault, 200, intent).await,
        None => error(404, json!({"type": "invalid_request_error", "code": "resource_missing", "message": "No such payment_intent"})),
    }
}

async fn create_refund(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let fault = match admit(&state, method, &uri, &headers, &body) {
        Ok(fault) => fault,
        Err(refused) => return *refused,
    };
    let (status, body) = idempotent(&state, |p, call| {
        let intent_id = call.field("payment_intent").unwrap_or_default().to_owned();
        let amount: i64 = call.field("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
        let charged = p.intents.get(&intent_id).and_then(|i| i["amount"].as_i64());
        let refunded = p.refunded.get(&intent_id).copied().unwrap_or(0);
        match charged {
            None => (404, json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}})),
            Some(charged) if amount <= 0 || refunded + amount > charged => {
                (400, json!({"error": {"type": "invalid_request_error", "code": "amount_too_large"}}))
            }
            Some(_) => {
                p.next_id += 1;
                *p.refunded.entry(intent_id.clone()).or_default() += amount;
                (
                    200,
                    json!({"id": format!("re_fake_{}", p.next_id), "object": "refund", "amount": amount, "payment_intent": intent_id, "status": "succeeded"}),
                )
            }
        }
    });
    answer(fault, status, body).await
}
