//! Operations endpoints: liveness, readiness, metrics, keys, and the API reference.

use std::sync::Arc;
use std::time::Duration;

use crate::security::keys::KeyRing;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::Accounts;
use crate::auth::tokens::Jwks;
use crate::events::Outbox;
use crate::events::nats::NatsBus;
use crate::jobs::Jobs;
use crate::redis::Redis;
use crate::store::Store;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`; `degraded` when the database answers but Redis or NATS does not (the instance still
    /// serves: limits fall back to its own, events wait in the outbox); `unavailable` when the
    /// database does not answer.
    status: &'static str,
    /// Each dependency and its state (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<std::collections::BTreeMap<&'static str, String>>,
}

/// Routes that appear in the OpenAPI document.
pub fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(jwks))
}

/// Routes that serve the document itself and the metrics.
pub fn router(openapi_json: String) -> Router<AppState> {
    let openapi_json = Arc::new(openapi_json);
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi_json.as_str().to_owned()) }),
        )
        .route("/docs", get(docs_page))
        .route("/docs/app.js", get(docs_script))
}

/// Liveness: the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok", checks: None })
}

/// Readiness: every dependency answers. A balancer that should keep a degraded instance in
/// rotation checks the body for `"database":"ok"` rather than the status (deploy/haproxy.cfg.in).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz(
    State(store): State<Store>,
    State(nats): State<Option<Arc<NatsBus>>>,
    State(redis): State<Option<Arc<Redis>>>,
) -> (StatusCode, axum::Json<Health>) {
    let database = match tokio::time::timeout(Duration::from_secs(2), store.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            "error".to_owned()
        }
        Err(_) => "timeout".to_owned(),
    };
    let mut checks: std::collections::BTreeMap<&'static str, String> = [("database", database)].into_iter().collect();
    if let Some(nats) = nats {
        checks.insert("nats", if nats.connected() { "ok" } else { "disconnected" }.to_owned());
    }
    if let Some(redis) = redis {
        checks.insert("redis", redis.ping().await.to_owned());
    }
    let ok = checks.values().all(|v| v == "ok");
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let state = match (ok, checks["database"].as_str()) {
        (true, _) => "ok",
        (false, "ok") => "degraded",
        (false, _) => "unavailable",
    };
    (status, axum::Json(Health { status: state, checks: Some(checks) }))
}

/// The public keys that verify access tokens (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations", responses((status = 200, body = Jwks)))]
async fn jwks(State(accounts): State<Arc<Accounts>>, State(keys): State<Arc<KeyRing>>) -> Response {
    let mut response = axum::Json(accounts.signer().jwks()).into_response();
    // Shorter than a rotated key waits before it signs, so a caching client knows it in time.
    let cache = format!("public, max-age={}", keys.publish_for().as_secs());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_str(&cache).expect("an ASCII header value"));
    response
}

async fn metrics(State(store): State<Store>, State(jobs): State<Jobs>, State(outbox): State<Arc<Outbox>>) -> impl IntoResponse {
    let (open, idle) = store.pool_stats();
    crate::telemetry::record_pool(store.backend_name(), open, idle);
    match jobs.repo().depth().await {
        Ok(depth) => crate::telemetry::record_job_depth(&depth),
        Err(e) => tracing::warn!(error = %e, "reading the job queue depth failed"),
    }
    match outbox.repo().lag().await {
        Ok(lag) => crate::telemetry::record_outbox_lag(lag),
        Err(e) => tracing::warn!(error = %e, "reading the outbox lag failed"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::telemetry::render())
}

const DOCS_CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

async fn docs_page() -> Response {
    let mut response = Html(include_str!("docs.html")).into_response();
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
    response
}

async fn docs_script() -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/javascript")], include_str!("docs.js")).into_response();
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
    response
}
