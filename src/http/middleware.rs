//! Cross-cutting middleware: request ids + logs + metrics in one span, and the time limit.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

use super::error::{ApiError, REQUEST_ID};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Echoes a caller's request id when it is 1–128 safe characters, else makes a new one.
fn request_id_of(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string())
}

/// Outermost layer: gives the request its id, a span (request id, route, user id once
/// known), one log line at the end, and the per-route count and latency metrics.
pub async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id_of(&req);
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let span =
        tracing::info_span!("request", request.id = %id, http.method = %method, http.route = %route, user.id = tracing::field::Empty);
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).instrument(span.clone()).await;
    let status = response.status();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(http.status = status.as_u16(), latency_ms = elapsed.as_secs_f64() * 1e3, "request finished");
        } else {
            tracing::info!(http.status = status.as_u16(), latency_ms = elapsed.as_secs_f64() * 1e3, "request finished");
        }
    });
    crate::telemetry::record_request(method.as_str(), &route, status.as_u16(), elapsed);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Ends a request that runs longer than the configured limit with `503 timeout`.
pub async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "the request took too long").into_response(),
    }
}
