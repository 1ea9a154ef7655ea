//! Cross-cutting middleware: request ids + trace context + logs + metrics in one span, the
//! request-size limits, and the time limit.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

use super::error::{ApiError, REQUEST_ID};
use crate::telemetry::trace;

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
/// known) that continues the caller's trace (`traceparent`; a malformed one is ignored), one
/// log line at the end, and the per-route count and latency metrics. The response's
/// `traceparent` names the request's span, so a caller can find its trace.
pub async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id_of(&req);
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!(
        parent: None,
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        request.id = %id,
        http.method = %method,
        http.route = %route,
        user.id = tracing::field::Empty
    );
    let incoming = req.headers().get(trace::TRACEPARENT).and_then(|v| v.to_str().ok());
    let traceparent = trace::continue_trace(&span, incoming);
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
    if let Some(value) = traceparent.and_then(|t| HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert(trace::TRACEPARENT, value);
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

/// The longest request target (path and query) Keel reads.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names, values and separators) and headers in one request.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
pub const MAX_HEADERS: usize = 100;

/// Refuses, before any handler and as problem+json, what no route takes: a request target
/// over `MAX_URI_BYTES` (414), headers over `MAX_HEADER_BYTES` or `MAX_HEADERS` (431), and a
/// declared `Content-Length` over the body limit (413 at once, without waiting for the body).
pub async fn request_limits(State(body_limit): State<usize>, req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        let detail = format!("the request target is longer than {MAX_URI_BYTES} bytes");
        return ApiError::new(StatusCode::URI_TOO_LONG, "uri_too_long", detail).into_response();
    }
    let header_bytes: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if header_bytes > MAX_HEADER_BYTES || req.headers().len() > MAX_HEADERS {
        let detail = format!("the request has more than {MAX_HEADERS} headers or {MAX_HEADER_BYTES} bytes of them");
        return ApiError::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", detail).into_response();
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > body_limit as u64) {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large").into_response();
    }
    next.run(req).await
}
