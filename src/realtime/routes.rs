//! Routes: tickets, the SSE stream and the WebSocket upgrade. Each authenticates, registers the
//! connection (or answers the problem), and hands over to the stream.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::feed::Feed;
use super::hub::{STAFF_CHANNEL, Transport};
use super::{Authed, Realtime, TICKET_TTL};
use crate::app::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Json, Query};

/// A small read buffer: axum's default (128 KiB) would dominate an idle connection's memory.
const READ_BUFFER: usize = 4 * 1024;
/// Client messages are small JSON commands.
const MAX_MESSAGE: usize = 16 * 1024;
/// Unsent data a connection may hold before writes fail (the queue before it is bounded too).
const MAX_WRITE_BUFFER: usize = 256 * 1024;
/// Frames waiting together are written together up to this much (one system call, not one per
/// frame); an idle connection keeps at most this much of buffer after a burst.
const WRITE_BUFFER: usize = 4 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_ticket)).routes(routes!(events)).routes(routes!(admin_events)).routes(routes!(websocket))
}

#[derive(Serialize, ToSchema)]
pub struct Ticket {
    /// Pass as `?ticket=` to `GET /v1/events` or `GET /v1/ws`; works once.
    pub ticket: String,
    /// Seconds the ticket can be redeemed.
    pub expires_in: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// A ticket from `POST /v1/realtime/tickets`, for clients that cannot send `Authorization`.
    pub ticket: Option<String>,
    /// Resume after this event id, as `Last-Event-ID` does (SSE), for clients that cannot send that header
    /// (a browser opening a new `EventSource`).
    pub last_event_id: Option<String>,
}

/// A single-use ticket (30 s) for clients that cannot set headers (`EventSource`, browser
/// WebSocket). The connection it opens lasts until the access token that asked for it expires.
#[utoipa::path(post, path = "/v1/realtime/tickets", tag = "realtime", security(("bearer" = [])),
    responses((status = 201, body = Ticket)))]
pub async fn create_ticket(State(rt): State<Arc<Realtime>>, headers: HeaderMap) -> ApiResult<(StatusCode, Json<Ticket>)> {
    let caller = rt.authenticate_request(&headers).await?;
    let ticket = rt.issue_ticket(&caller).await?;
    Ok((StatusCode::CREATED, Json(Ticket { ticket, expires_in: TICKET_TTL.num_seconds() })))
}

async fn caller(rt: &Realtime, headers: &HeaderMap, q: &StreamQuery) -> ApiResult<Authed> {
    match &q.ticket {
        Some(ticket) => rt.redeem(ticket).await,
        None => rt.authenticate_request(headers).await,
    }
}

/// The caller's events as Server-Sent Events (`text/event-stream`). Each event's SSE `id` is
/// the event id; reconnecting with `Last-Event-ID` (or `?last_event_id=`) replays what was missed (24 h) once, in order,
/// then continues live; a point past that gets `data: {"type":"resync"}`. A comment line every
/// 15 s (`realtime_heartbeat_secs`) keeps the stream alive. The stream ends when the session ends, the token expires or the
/// server restarts: reconnect with `Last-Event-ID`.
#[utoipa::path(get, path = "/v1/events", tag = "realtime", security(("bearer" = []), ()), params(StreamQuery,
    ("Last-Event-ID" = Option<String>, Header, description = "the id of the last event received, to resume after it")),
    responses(
        (status = 200, content_type = "text/event-stream", description = "`id: <event id>` and `data: {\"id\",\"type\",\"data\",\"created_at\"}` per event"),
        (status = 429, description = "this user has the most connections allowed open (`too_many_connections`)"),
        (status = 503, description = "this server has no room for another connection (`realtime_capacity`)")))]
pub async fn events(State(rt): State<Arc<Realtime>>, headers: HeaderMap, Query(q): Query<StreamQuery>) -> ApiResult<Response> {
    let who = caller(&rt, &headers, &q).await?;
    sse(&rt, &who, &headers, &q, false).await
}

/// The back office's live feed (`support`, `admin`), as Server-Sent Events: every user's
/// `order.updated` and every `product.updated`, besides the caller's own events. Authenticates,
/// resumes and ends as `GET /v1/events` does.
#[utoipa::path(get, path = "/v1/admin/events", tag = "admin", security(("bearer" = []), ()), params(StreamQuery,
    ("Last-Event-ID" = Option<String>, Header, description = "the id of the last event received, to resume after it")),
    responses(
        (status = 200, content_type = "text/event-stream", description = "`id: <event id>` and `data: {\"id\",\"type\",\"data\",\"created_at\"}` per event"),
        (status = 403, description = "`forbidden`: the caller has neither the support nor the admin role"),
        (status = 429, description = "this user has the most connections allowed open (`too_many_connections`)"),
        (status = 503, description = "this server has no room for another connection (`realtime_capacity`)")))]
pub async fn admin_events(State(rt): State<Arc<Realtime>>, headers: HeaderMap, Query(q): Query<StreamQuery>) -> ApiResult<Response> {
    let who = caller(&rt, &headers, &q).await?;
    if !who.principal.roles.is_staff() {
        return Err(ApiError::forbidden("this needs the support or admin role"));
    }
    sse(&rt, &who, &headers, &q, true).await
}

/// Registers an SSE connection (on the staff channel too when `staff`), resumes it if asked, and streams.
async fn sse(rt: &Realtime, who: &Authed, headers: &HeaderMap, q: &StreamQuery, staff: bool) -> ApiResult<Response> {
    let mut feed = Feed::new(rt.connect(who, Transport::Sse)?, rt.repo.clone());
    // Subscribed before the resume reads the outbox, so nothing falls between them.
    if staff && rt.hub.subscribe(feed.id(), STAFF_CHANNEL) {
        feed.channels().insert(STAFF_CHANNEL.to_owned());
    }
    let header = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let resync = match header.or(q.last_event_id.as_deref()).filter(|v| !v.is_empty()) {
        Some(last) => !feed.resume(last).await?,
        None => false,
    };
    Ok(super::sse::stream(feed, resync, who.expires_at, rt.settings.heartbeat).into_response())
}

/// The WebSocket: authenticate by `?ticket=` or a first message `{"type":"auth","token":…}`
/// within 5 s. A browser's `Origin` must be one of `cors_origins` (else 403). See the README for
/// the messages (`subscribe`, `unsubscribe`, `resume`, `auth`) and close codes (1008, 1012,
/// 1013, 4401).
#[utoipa::path(get, path = "/v1/ws", tag = "realtime", params(StreamQuery),
    responses(
        (status = 101, description = "switching to the WebSocket protocol"),
        (status = 401, description = "the ticket is unknown, used or expired"),
        (status = 403, description = "a browser origin that is not allowed"),
        (status = 426, description = "not a WebSocket upgrade request (`upgrade_required`)"),
        (status = 429, description = "this user has the most connections allowed open (`too_many_connections`)"),
        (status = 503, description = "this server has no room for another connection (`realtime_capacity`)")))]
pub async fn websocket(
    State(rt): State<Arc<Realtime>>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let upgrade = upgrade.map_err(|_| {
        ApiError::new(StatusCode::UPGRADE_REQUIRED, "upgrade_required", "this route speaks WebSocket: send an upgrade request")
            .with_header(header::UPGRADE, HeaderValue::from_static("websocket"))
    })?;
    if !rt.origin_allowed(headers.get(header::ORIGIN)) {
        return Err(ApiError::forbidden("this origin may not open a WebSocket"));
    }
    let opened = match &q.ticket {
        Some(ticket) => {
            let who = rt.redeem(ticket).await?;
            let conn = rt.connect(&who, Transport::WebSocket)?;
            Some((who, conn))
        }
        None => {
            rt.check_room()?;
            None
        }
    };
    let upgrade = upgrade.read_buffer_size(READ_BUFFER).write_buffer_size(WRITE_BUFFER).max_write_buffer_size(MAX_WRITE_BUFFER);
    Ok(upgrade.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE).on_upgrade(move |socket| {
        let (sink, stream) = socket.split();
        super::ws::handle_socket(rt, sink, stream, opened)
    }))
}
