//! Routes: the caller's notifications, and the back office's webhook endpoints.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::notifications::{Notification, Notifications};
use super::webhooks::{Delivery, Endpoint, EndpointError, RetryPolicy, Webhooks, delivery_job, seal_secret};
use crate::app::AppState;
use crate::auth::extract::{AdminUser, AuthUser};
use crate::events::catalogue::{ALL_EVENTS, EventSubscription};
use crate::events::{Event, EventType};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Json, Path, Query};
use crate::http::pagination::{Page, PageQuery};
use crate::jobs::Jobs;
use crate::security::crypto::FieldCipher;
use crate::store::now;
use crate::validation::Invalid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .routes(routes!(read_notification))
        .routes(routes!(read_all_notifications))
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(delete_endpoint))
        .routes(routes!(list_deliveries))
        .routes(routes!(ping_endpoint))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// `true`: only unread notifications.
    #[param(value_type = Option<bool>)]
    pub unread: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    pub page: PageQuery,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", params(NotificationQuery, PageQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<Notification>)))]
pub async fn list_notifications(
    State(notifications): State<Arc<Notifications>>,
    AuthUser(me): AuthUser,
    Query(q): Query<NotificationQuery>,
) -> ApiResult<Json<Page<Notification>>> {
    let mut invalid = Invalid::default();
    let unread = match q.unread.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            invalid.add("unread", "invalid", "must be true or false");
            false
        }
    };
    let page = invalid.check(q.page.parse::<String>());
    invalid.clone().finish()?;
    let page = page.ok_or(invalid)?;
    let rows = notifications.list(&me.user_id, unread, page.after.as_deref(), page.limit).await?;
    Ok(Json(Page::from_rows(rows, page.limit, |n| n.id.clone())))
}

/// Mark one notification read.
#[utoipa::path(post, path = "/v1/notifications/{id}/read", tag = "notifications", security(("bearer" = [])),
    params(("id" = String, Path, description = "notification id (ntf_…)")),
    responses((status = 204)))]
pub async fn read_notification(
    State(notifications): State<Arc<Notifications>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if notifications.mark_read(&me.user_id, &id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::not_found("notification")) }
}

/// Mark every notification read.
#[utoipa::path(post, path = "/v1/notifications/read-all", tag = "notifications", security(("bearer" = [])),
    responses((status = 204)))]
pub async fn read_all_notifications(State(notifications): State<Arc<Notifications>>, AuthUser(me): AuthUser) -> ApiResult<StatusCode> {
    notifications.mark_all_read(&me.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// `https://…` (or `http://…`) URL that receives POSTs.
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
    /// 1–100 event types of the catalogue to deliver, or `["*"]` for all.
    #[schema(value_type = Vec<EventSubscription>, min_items = 1, max_items = 100)]
    pub events: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// The signing secret: shown once, here.
    pub secret: String,
}

impl From<EndpointError> for ApiError {
    fn from(e: EndpointError) -> Self {
        match e {
            EndpointError::Refused(refused) => Invalid::one("url", "forbidden_address", refused.to_string()).into(),
            EndpointError::Store(e) => e.into(),
        }
    }
}

fn parse_endpoint(req: NewEndpoint) -> Result<(reqwest::Url, Vec<String>), Invalid> {
    let mut invalid = Invalid::default();
    // The parsed form is what is stored and called (percent-encoded, normalised: `0x7f000001`
    // is `127.0.0.1` here).
    let url = match reqwest::Url::parse(req.url.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() && url.as_str().len() <= 2048 => Some(url),
        _ => {
            invalid.add("url", "invalid", "must be an absolute http(s) URL");
            None
        }
    };
    if req.events.is_empty() || req.events.len() > 100 {
        invalid.add("events", "invalid", "must list 1 to 100 event types, or \"*\"");
    }
    for (i, e) in req.events.iter().enumerate() {
        if e != ALL_EVENTS && EventType::from_name(e).is_none() {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
            let shown: String = e.chars().take(64).collect();
            let message = format!("unknown event type {shown:?}: use one of {}, or \"*\" for all", known.join(", "));
            invalid.add(&format!("events[{i}]"), "unknown_event_type", message);
        }
    }
    invalid.clone().finish()?;
    Ok((url.ok_or(invalid)?, req.events))
}

/// Register a webhook endpoint (admin). The response carries its signing secret, once.
///
/// The URL must reach a public address: one that is (or whose name resolves to) a loopback,
/// private, link-local, cloud metadata or other special-use address is `422` (field `url`,
/// code `forbidden_address`), unless the operator allowed its network (`webhook_allowed_networks`).
/// Every delivery checks again.
#[utoipa::path(post, path = "/v1/admin/webhook-endpoints", tag = "webhooks", security(("bearer" = [])), request_body = NewEndpoint,
    responses((status = 201, body = CreatedEndpoint)))]
pub async fn create_endpoint(
    State(webhooks): State<Arc<Webhooks>>,
    State(cipher): State<Arc<FieldCipher>>,
    _admin: AdminUser,
    Json(req): Json<NewEndpoint>,
) -> ApiResult<(StatusCode, Json<CreatedEndpoint>)> {
    let (url, events) = parse_endpoint(req)?;
    let endpoint = Endpoint { id: crate::ids::new("whe"), url: url.to_string(), events, created_at: now() };
    let secret = format!("whsec_{}", crate::security::random_token());
    webhooks.create(&endpoint, &url, &seal_secret(&cipher, &secret)).await?;
    Ok((StatusCode::CREATED, Json(CreatedEndpoint { endpoint, secret })))
}

/// Webhook endpoints, oldest first (admin).
#[utoipa::path(get, path = "/v1/admin/webhook-endpoints", tag = "webhooks", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<Endpoint>)))]
pub async fn list_endpoints(
    State(webhooks): State<Arc<Webhooks>>,
    _admin: AdminUser,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Endpoint>>> {
    let page = page.parse::<String>()?;
    let rows = webhooks.repo().page(page.after.as_deref(), page.limit).await?;
    Ok(Json(Page::from_rows(rows, page.limit, |e| e.id.clone())))
}

/// Remove a webhook endpoint and its delivery log (admin).
#[utoipa::path(delete, path = "/v1/admin/webhook-endpoints/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "endpoint id (whe_…)")),
    responses((status = 204)))]
pub async fn delete_endpoint(State(webhooks): State<Arc<Webhooks>>, _admin: AdminUser, Path(id): Path<String>) -> ApiResult<StatusCode> {
    if webhooks.delete(&id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::not_found("webhook endpoint")) }
}

/// Every delivery attempt to an endpoint, newest first (admin).
#[utoipa::path(get, path = "/v1/admin/webhook-endpoints/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "endpoint id (whe_…)"), PageQuery),
    responses((status = 200, body = Page<Delivery>)))]
pub async fn list_deliveries(
    State(webhooks): State<Arc<Webhooks>>,
    _admin: AdminUser,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Delivery>>> {
    let page = page.parse::<String>()?;
    if webhooks.repo().get(&id).await?.is_none() {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    let rows = webhooks.repo().deliveries(&id, page.after.as_deref(), page.limit).await?;
    Ok(Json(Page::from_rows(rows, page.limit, |d| d.id.clone())))
}

/// Queue a signed `ping` event to one endpoint, delivered like any other (admin).
#[utoipa::path(post, path = "/v1/admin/webhook-endpoints/{id}/ping", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "endpoint id (whe_…)")),
    responses((status = 202)))]
pub async fn ping_endpoint(
    State(webhooks): State<Arc<Webhooks>>,
    State(jobs): State<Jobs>,
    State(policy): State<RetryPolicy>,
    _admin: AdminUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if webhooks.repo().get(&id).await?.is_none() {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    let event = Event {
        id: crate::ids::new("evt"),
        kind: EventType::Ping.name().to_owned(),
        user_id: None,
        data: serde_json::json!({ "endpoint_id": id }),
        created_at: now(),
        publish_seq: None,
        traceparent: None,
    };
    jobs.enqueue(&delivery_job(&id, &event, policy)).await?;
    Ok(StatusCode::ACCEPTED)
}
