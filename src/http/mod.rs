//! The HTTP surface: one router built from each capability's routes, the shared layers,
//! operations endpoints, and the generated OpenAPI document.

mod console;
mod dashboard;
pub mod error;
pub mod etag;
pub mod extract;
pub mod idempotency;
pub mod middleware;
mod openapi;
mod ops;
mod pages;
pub mod pagination;
pub mod rate_limit;
pub mod server;
pub mod tls;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(title = "Keel API", description = "Commerce backend: accounts and sessions, catalog and stock, pricing rules and quotes, \
        the cart, the wallet on a double-entry ledger, notifications, real-time events (SSE and WebSocket), outgoing \
        webhooks and the job queue.\n\n\
        Errors are RFC 9457 `application/problem+json` documents with a stable `code`. Lists page with `limit` and `cursor` \
        and answer `{data, next_cursor}`. Every response carries `X-Request-Id`. Routes that move money need an \
        `Idempotency-Key`: a retry with the same key and body replays the first response with `Idempotent-Replayed: true`."),
    tags(
        (name = "auth", description = "Registration, sign-in and sessions"),
        (name = "profile", description = "The caller's own account"),
        (name = "admin", description = "Back office (support: read, admin: write)"),
        (name = "catalog", description = "Products, stock and quotes"),
        (name = "cart", description = "The caller's cart, priced live"),
        (name = "wallet", description = "The caller's wallet on the double-entry ledger: balance, history, top-ups, transfers"),
        (name = "pricing", description = "Pricing rules (support: read, admin: write)"),
        (name = "notifications", description = "The caller's in-app notifications"),
        (name = "realtime", description = "Committed events as they happen, over Server-Sent Events or WebSocket, resumable without loss"),
        (name = "webhooks", description = "Outgoing webhooks (admin)"),
        (name = "api keys", description = "Keys for servers, each acting within its scopes (admin)"),
        (name = "operations", description = "Health, readiness, keys")
    )
)]
struct ApiDoc;

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::auth::routes::router())
        .merge(crate::auth::api_keys::routes::router())
        .merge(crate::auth::passkeys::routes::router())
        .merge(crate::jobs::routes::router())
        .merge(crate::notify::routes::router())
        .merge(crate::catalog::routes::router())
        .merge(crate::pricing::routes::router())
        .merge(crate::cart::routes::router())
        .merge(crate::ledger::routes::router())
        .merge(crate::realtime::routes::router())
        .merge(crate::orders::routes::router())
        .merge(crate::security::audit::routes::router())
        .merge(dashboard::documented())
        .merge(ops::documented())
}

/// The routes, and the OpenAPI 3.1 document generated from their handlers.
fn parts() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = api().split_for_parts();
    openapi::Conventions.modify(&mut doc);
    (routes, doc)
}

/// The OpenAPI 3.1 document of every route, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    parts().1
}

/// Limits and policies the shared layers need.
pub struct HttpSettings {
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    pub cors_origins: Vec<String>,
}

pub fn router(state: AppState, settings: &HttpSettings) -> anyhow::Result<Router> {
    let (api, doc) = parts();
    // [idem] routes: the guard claims the key before the handler and settles it after.
    let api = api.layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::guard::guard));
    // Outside the guard, so a request with an API key is admitted (or refused) before any key is claimed.
    let api = api.layer(axum::middleware::from_fn_with_state(state.api_keys.clone(), crate::auth::api_keys::guard::admit));
    // Outside the guard: a refused request claims no idempotency key.
    let api = api.layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit::limit_requests));
    let routes = api
        .merge(ops::router(doc.to_json()?))
        .merge(pages::router())
        .merge(console::router())
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this method is not allowed on this route")
        })
        .with_state(state);

    // Outermost first: ids/logs/metrics see everything, including CORS refusals and panics.
    let layers = ServiceBuilder::new()
        .layer(axum::middleware::from_fn(middleware::observe))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security_header(header::REFERRER_POLICY, "no-referrer"))
        .layer(security_header(header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"))
        .layer(security_header(header::STRICT_TRANSPORT_SECURITY, "max-age=63072000; includeSubDomains"))
        .layer(security_header(HeaderName::from_static("cross-origin-opener-policy"), "same-origin"))
        .layer(security_header(header::CACHE_CONTROL, "no-store"))
        .layer(axum::middleware::from_fn_with_state(settings.body_limit_bytes, middleware::request_limits))
        .layer(cors(&settings.cors_origins)?)
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| -> Response {
            ApiError::internal(anyhow::anyhow!("a handler panicked")).into_response()
        }))
        .layer(axum::middleware::from_fn_with_state(settings.request_timeout, middleware::time_limit))
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes));
    Ok(routes.layer(layers))
}

fn security_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// Only the configured origins may call from a browser; with none configured, none may.
fn cors(origins: &[String]) -> anyhow::Result<CorsLayer> {
    let origins = origins.iter().map(|o| HeaderValue::from_str(o)).collect::<Result<Vec<_>, _>>()?;
    let header_names = |names: &[&'static str]| names.iter().map(|n| HeaderName::from_static(n)).collect::<Vec<_>>();
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers(header_names(&[
            "authorization",
            "content-type",
            "if-match",
            "if-none-match",
            "idempotency-key",
            "x-request-id",
            "last-event-id",
            "traceparent",
        ]))
        .expose_headers(header_names(&[
            "x-request-id",
            "traceparent",
            "etag",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
            "retry-after",
            "idempotent-replayed",
        ]))
        .max_age(Duration::from_secs(600)))
}
