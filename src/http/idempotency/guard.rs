//! The guard of [idem] routes, a middleware: it authenticates the caller, reads the body,
//! looks the key up (and answers with the stored response, `409` or `422`), runs the handler
//! with the [`Claim`] in the request's extensions, and settles the key after it.
//!
//! A new key costs no write of its own: a use case that stays inside the database (a transfer,
//! a wallet checkout) writes it with its effect, and two requests racing with one key meet at
//! the key's primary key, where the second rolls back with `409`. A use case that calls the
//! payment provider first writes the key in flight ([`IdempotencyKeys::hold`]).
//!
//! Which responses are kept (Stripe's rule: once the route started its work): a success is stored
//! by the use case itself, in the transaction of its effect ([`IdempotencyKeys::complete`]); a
//! `402` (declined, insufficient funds) is stored here, as no effect committed. Anything else
//! (a request the route refused before working, a `5xx`, `503 payment_provider_unavailable`)
//! releases the key, so the client may fix the request or try again with the same key.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::repo::{Claim, IdempotencyRepo};
use super::{Decision, IdempotencyKey, KeyError, decide, fingerprint};
use crate::app::AppState;
use crate::auth::extract::AuthUser;
use crate::http::error::ApiError;
use crate::store::{Store, StoreError, Transient, Tx, now};
use crate::validation::Invalid;

/// The routes that need an `Idempotency-Key` (method, path as routed).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/wallet/top-ups"),
    ("POST", "/v1/wallet/transfers"),
    ("POST", "/v1/checkout"),
    ("POST", "/v1/admin/orders/{id}/refunds"),
];

pub const KEY_HEADER: &str = "Idempotency-Key";
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// What a request with a key may do.
enum Claimed {
    Run(Claim),
    Answer(ApiError),
    Replay { status: u16, body: Vec<u8> },
}

/// Idempotency keys: claiming, storing the first response, releasing, purging.
pub struct IdempotencyKeys {
    store: Store,
    repo: Arc<dyn IdempotencyRepo>,
    lease: Duration,
}

impl IdempotencyKeys {
    /// `lease`: how long a request holds its key before another may take it over.
    pub fn new(store: Store, lease: Duration) -> Self {
        Self { repo: super::repo::for_store(&store), store, lease }
    }

    pub fn repo(&self) -> &Arc<dyn IdempotencyRepo> {
        &self.repo
    }

    /// Decides from the key's record, read without a write: a new key is written by the use
    /// case itself, with its effect (one commit), or by [`Self::hold`] before a network call.
    async fn claim(&self, user_id: &str, route: &str, key: &IdempotencyKey, fingerprint: &str) -> Result<Claimed, StoreError> {
        let now = now();
        let claim = Claim {
            user_id: user_id.to_owned(),
            route: route.to_owned(),
            key: key.as_str().to_owned(),
            fingerprint: fingerprint.to_owned(),
            locked_until: now + self.lease,
        };
        let record = self.repo.find(user_id, route, key.as_str()).await?;
        Ok(match decide(record.as_ref(), fingerprint, now, self.lease) {
            Decision::Run { .. } if record.is_none() => Claimed::Run(claim),
            Decision::Run { .. } if self.take_over(&claim, now).await? => Claimed::Run(claim),
            // Another request took the expired key over first.
            Decision::Run { .. } | Decision::InUse => Claimed::Answer(in_use()),
            Decision::Reuse => Claimed::Answer(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reuse",
                "this Idempotency-Key was used with another request body; use a new key for a new request",
            )),
            Decision::Replay { status, body } => Claimed::Replay { status, body },
        })
    }

    async fn take_over(&self, claim: &Claim, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.store
            .transact(|mut tx| async move {
                let taken = self.repo.take_over(&mut tx, claim, now).await?;
                Ok((tx, taken))
            })
            .await
    }

    /// Writes the key in flight before the use case calls another system (the payment
    /// provider), so a concurrent request with the key gets `409` rather than a second call.
    pub async fn hold(&self, claim: &Claim) -> Result<(), KeyLost> {
        self.store
            .transact(|mut tx| async move {
                self.hold_in(&mut tx, claim).await?;
                Ok((tx, ()))
            })
            .await
    }

    /// [`Self::hold`] as a step of the caller's unit of work.
    pub async fn hold_in(&self, tx: &mut Tx, claim: &Claim) -> Result<(), KeyLost> {
        if self.repo.hold(tx, claim, now()).await? { Ok(()) } else { Err(KeyLost::TakenOver) }
    }

    /// Stores the first response in the use case's transaction. A claim that lost its key
    /// (another request with it ran at the same time, or took it over after the lease) is
    /// refused, so the caller's effect rolls back rather than happening twice.
    pub async fn complete(&self, tx: &mut Tx, claim: &Claim, status: StatusCode, body: &[u8]) -> Result<(), KeyLost> {
        if self.repo.complete(tx, claim, status.as_u16(), body, now()).await? { Ok(()) } else { Err(KeyLost::TakenOver) }
    }

    /// False when another request with the key answered first.
    async fn store_answer(&self, claim: &Claim, status: StatusCode, body: &[u8]) -> Result<bool, StoreError> {
        self.store
            .transact(|mut tx| async move {
                let stored = self.repo.complete(&mut tx, claim, status.as_u16(), body, now()).await?;
                Ok((tx, stored))
            })
            .await
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        self.store
            .transact(|mut tx| async move {
                self.repo.release(&mut tx, claim).await?;
                Ok((tx, ()))
            })
            .await
    }
}

/// Storing the response failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyLost {
    #[error("another request holds or answered the idempotency key")]
    TakenOver,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Transient for KeyLost {
    fn is_transient(&self) -> bool {
        matches!(self, KeyLost::Store(e) if e.is_transient())
    }
}

impl From<KeyLost> for ApiError {
    fn from(e: KeyLost) -> Self {
        match e {
            KeyLost::TakenOver => in_use(),
            KeyLost::Store(e) => ApiError::internal(e),
        }
    }
}

/// `409 idempotency_key_in_use`: another request with the key is running (or just answered).
fn in_use() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_key_in_use",
        "a request with this Idempotency-Key is still running; try again when it has finished",
    )
}

/// The middleware; routes not in [`ROUTES`] pass through untouched.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let guarded = route.as_deref().is_some_and(|r| ROUTES.iter().any(|(m, p)| *p == r && request.method().as_str() == *m));
    let Some(route) = route.filter(|_| guarded) else { return next.run(request).await };
    match guarded_run(&state, &route, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn guarded_run(state: &AppState, route: &str, request: Request, next: Next) -> Result<Response, Response> {
    let keys = &state.idempotency;
    let (mut parts, body) = request.into_parts();
    let AuthUser(me) = AuthUser::from_request_parts(&mut parts, state).await.map_err(IntoResponse::into_response)?;
    let key = IdempotencyKey::from_header(parts.headers.get(KEY_HEADER).map(HeaderValue::as_bytes)).map_err(|e| match e {
        KeyError::Missing => ApiError::new(StatusCode::BAD_REQUEST, "idempotency_key_required", e.to_string()).into_response(),
        KeyError::Invalid => ApiError::validation(Invalid::one(KEY_HEADER, "invalid", e.to_string())).into_response(),
    })?;
    let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large").into_response()
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.body_text()).into_response()
        }
    })?;
    let print = fingerprint(parts.method.as_str(), parts.uri.path(), &me.user_id, &bytes);
    let claim = match keys.claim(&me.user_id, route, &key, &print).await.map_err(|e| ApiError::internal(e).into_response())? {
        Claimed::Run(claim) => claim,
        Claimed::Answer(refusal) => return Err(refusal.into_response()),
        Claimed::Replay { status, body } => return Ok(replay(status, body)),
    };
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(claim.clone());
    let response = next.run(request).await;
    let status = response.status();
    if status.is_success() {
        // The use case stored it with its effect.
        return Ok(response);
    }
    if status == StatusCode::PAYMENT_REQUIRED {
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")).into_response())?;
        if !keys.store_answer(&claim, status, &body).await.map_err(|e| ApiError::internal(e).into_response())? {
            // A concurrent request with the key succeeded: its answer is the one to replay.
            return Err(in_use().into_response());
        }
        return Ok(Response::from_parts(parts, Body::from(body)));
    }
    if let Err(e) = keys.release(&claim).await {
        // The key stays held until its lease ends; the client's retry waits that long.
        tracing::warn!(error = %e, "could not release an idempotency key");
    }
    Ok(response)
}

/// The stored first response, byte for byte, marked as a replay.
fn replay(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let content_type = if status.is_success() { "application/json" } else { "application/problem+json" };
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}
