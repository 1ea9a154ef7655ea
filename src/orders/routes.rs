//! Checkout, the caller's orders, and the back office's list and state moves.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{OrderError as StateError, OrderEvent, OrderStatus};
use super::repo::OrderFilter;
use super::service::{CheckoutRequest, OrderError, OrderView, Orders, Placed, RefundRequest};
use crate::app::AppState;
use crate::auth::extract::{AdminUser, AuthUser, StaffUser};
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path, Query};
use crate::http::idempotency::repo::Claim;
use crate::http::pagination::{Page, PageQuery};
use crate::payments::webhook::WebhookError;
use crate::validation::Invalid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(checkout))
        .routes(routes!(list_orders))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(refund_order))
        .routes(routes!(admin_list_orders))
        .routes(routes!(ship_order))
        .routes(routes!(deliver_order))
        .routes(routes!(payment_webhook))
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::Invalid(invalid) => ApiError::validation(invalid),
            OrderError::NotFound => ApiError::not_found("order"),
            OrderError::InsufficientStock(short) => {
                let mut invalid = Invalid::default();
                for line in short {
                    invalid.add(
                        &format!("items[{}]", line.index),
                        "insufficient_stock",
                        format!("not enough stock of {}", line.product_id),
                    );
                }
                ApiError::new(
                    StatusCode::CONFLICT,
                    "insufficient_stock",
                    "some items are not available in the quantity asked; nothing was held",
                )
                .with_errors(invalid)
            }
            OrderError::InsufficientFunds => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_funds",
                "the wallet's balance does not cover the order; nothing was held or paid",
            ),
            OrderError::Declined(code) => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_declined",
                format!("the card was declined ({code}); the order failed and nothing is held"),
            ),
            OrderError::ProviderUnavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment_provider_unavailable",
                "the payment provider is unavailable; the order failed, nothing was charged or held",
            ),
            OrderError::State(e @ StateError::InvalidState { .. }) => ApiError::new(StatusCode::CONFLICT, "invalid_state", e.to_string()),
            OrderError::State(e @ StateError::InvalidRefund { .. }) => {
                ApiError::validation(Invalid::one("amount.amount", "out_of_range", e.to_string()))
            }
            OrderError::KeyLost(e) => e.into(),
            OrderError::Webhook(e @ WebhookError::Malformed(_)) => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()),
            OrderError::Webhook(e) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_signature", e.to_string()),
            OrderError::Store(e) => ApiError::internal(e),
            OrderError::Catalog(e) => ApiError::internal(e),
            OrderError::Cart(e) => e.into(),
        }
    }
}

/// The exact bytes stored under the idempotency key, with their status.
fn placed(Placed { status, body }: Placed) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Turn the caller's cart into an order and pay for it.
///
/// The cart is priced as `GET /v1/cart` shows it, and every line's stock is held (all or none).
/// `wallet` pays in the same database transaction. `card` charges through the payment provider
/// with no transaction open, then settles. On any failure no stock stays held and no money moves.
#[utoipa::path(post, path = "/v1/checkout", tag = "orders", security(("bearer" = [])), request_body = CheckoutRequest,
    responses((status = 201, description = "The order, `paid`; the cart is emptied", body = OrderView),
        (status = 202, description = "The order, `pending_payment`: the provider's answer was lost. Its stock stays held and the cart is emptied; reconciliation (or the provider's webhook) settles it `paid` or `failed` and `order.updated` tells the customer", body = OrderView),
        (status = 402, description = "`insufficient_funds` (wallet) or `payment_declined` (card); nothing held, nothing paid", body = Problem),
        (status = 409, description = "`insufficient_stock`: `errors[]` names each short line (`items[i]`); nothing held", body = Problem),
        (status = 422, description = "`validation_failed`: the cart is empty (`items`), or the card token is missing or given for a wallet payment", body = Problem),
        (status = 503, description = "`payment_provider_unavailable`: the order failed; nothing charged or held", body = Problem)))]
pub async fn checkout(
    State(orders): State<Arc<Orders>>,
    AuthUser(me): AuthUser,
    Extension(claim): Extension<Claim>,
    Json(req): Json<CheckoutRequest>,
) -> ApiResult<Response> {
    Ok(placed(orders.checkout(&me, req, &claim).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderListQuery {
    /// Only orders in this state.
    #[param(value_type = Option<OrderStatus>)]
    pub status: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    pub page: PageQuery,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminOrderListQuery {
    /// Only orders in this state.
    #[param(value_type = Option<OrderStatus>)]
    pub status: Option<String>,
    /// Only this user's orders.
    pub user_id: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    pub page: PageQuery,
}

fn parse_status(status: Option<&str>) -> Result<Option<OrderStatus>, Invalid> {
    status.map(|s| OrderStatus::parse(s).ok_or_else(|| Invalid::one("status", "invalid", "not an order state"))).transpose()
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/v1/orders", tag = "orders", security(("bearer" = [])), params(OrderListQuery, PageQuery),
    responses((status = 200, body = Page<OrderView>)))]
pub async fn list_orders(
    State(orders): State<Arc<Orders>>,
    AuthUser(me): AuthUser,
    Query(q): Query<OrderListQuery>,
) -> ApiResult<Json<Page<OrderView>>> {
    let filter = OrderFilter { user_id: Some(me.user_id), status: parse_status(q.status.as_deref())? };
    Ok(Json(orders.list(&filter, q.page.parse()?).await?))
}

/// One of the caller's orders; another user's is `404`.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "order id (ord_…)")),
    responses((status = 200, body = OrderView), (status = 404, description = "`not_found`", body = Problem)))]
pub async fn get_order(State(orders): State<Arc<Orders>>, AuthUser(me): AuthUser, Path(id): Path<String>) -> ApiResult<Json<OrderView>> {
    Ok(Json(orders.get(&me.user_id, &id).await?))
}

/// Every order, newest first (`support`, `admin`).
#[utoipa::path(get, path = "/v1/admin/orders", tag = "admin", security(("bearer" = [])), params(AdminOrderListQuery, PageQuery),
    responses((status = 200, body = Page<OrderView>)))]
pub async fn admin_list_orders(
    State(orders): State<Arc<Orders>>,
    _staff: StaffUser,
    Query(q): Query<AdminOrderListQuery>,
) -> ApiResult<Json<Page<OrderView>>> {
    let filter = OrderFilter { user_id: q.user_id, status: parse_status(q.status.as_deref())? };
    Ok(Json(orders.list(&filter, q.page.parse()?).await?))
}

/// Mark a paid order shipped.
#[utoipa::path(post, path = "/v1/admin/orders/{id}/ship", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "order id (ord_…)")),
    responses((status = 200, body = OrderView), (status = 404, description = "`not_found`", body = Problem),
        (status = 409, description = "`invalid_state`: only a `paid` order ships", body = Problem)))]
pub async fn ship_order(State(orders): State<Arc<Orders>>, _admin: AdminUser, Path(id): Path<String>) -> ApiResult<Json<OrderView>> {
    Ok(Json(orders.advance(&id, OrderEvent::Ship).await?))
}

/// Mark a shipped order delivered.
#[utoipa::path(post, path = "/v1/admin/orders/{id}/deliver", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "order id (ord_…)")),
    responses((status = 200, body = OrderView), (status = 404, description = "`not_found`", body = Problem),
        (status = 409, description = "`invalid_state`: only a `shipped` order is delivered", body = Problem)))]
pub async fn deliver_order(State(orders): State<Arc<Orders>>, _admin: AdminUser, Path(id): Path<String>) -> ApiResult<Json<OrderView>> {
    Ok(Json(orders.advance(&id, OrderEvent::Deliver).await?))
}

/// Cancel one of the caller's orders.
///
/// From `pending_payment` (its stock is released) or `paid` (the money goes back to the wallet or
/// the card, and the units return to stock).
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "order id (ord_…)")),
    responses((status = 200, description = "The order, `cancelled`", body = OrderView), (status = 404, description = "`not_found`", body = Problem),
        (status = 409, description = "`invalid_state`: only a `pending_payment` or `paid` order can be cancelled", body = Problem),
        (status = 503, description = "`payment_provider_unavailable`: the card refund was not accepted; the order is unchanged", body = Problem)))]
pub async fn cancel_order(State(orders): State<Arc<Orders>>, AuthUser(me): AuthUser, Path(id): Path<String>) -> ApiResult<Json<OrderView>> {
    Ok(Json(orders.cancel(&me.user_id, &id).await?))
}

/// Refund an order, fully (no `amount`) or partly, to the original payment method.
///
/// The sum of an order's refunds never exceeds its total, concurrent refunds included.
#[utoipa::path(post, path = "/v1/admin/orders/{id}/refunds", tag = "admin", security(("bearer" = [])), request_body = RefundRequest,
    params(("id" = String, Path, description = "order id (ord_…)")),
    responses((status = 201, description = "The order after the refund", body = OrderView), (status = 404, description = "`not_found`", body = Problem),
        (status = 409, description = "`invalid_state`: only a `paid`, `shipped`, `delivered` or `partially_refunded` order is refunded", body = Problem),
        (status = 422, description = "`validation_failed`: the amount is not positive, more than what is left (`amount.amount`), or not in the deployment's currency; no reason", body = Problem),
        (status = 503, description = "`payment_provider_unavailable`: the card refund was not accepted; nothing changed", body = Problem)))]
pub async fn refund_order(
    State(orders): State<Arc<Orders>>,
    AdminUser(admin): AdminUser,
    Extension(claim): Extension<Claim>,
    Path(id): Path<String>,
    Json(req): Json<RefundRequest>,
) -> ApiResult<Response> {
    Ok(placed(orders.refund(&id, req, &claim, &admin.actor()).await?))
}

/// The answer to a provider webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceived {
    /// Always true: the event is applied, or was before, or changes nothing here.
    pub received: bool,
}

/// Receive the payment provider's events.
///
/// Signed with `Keel-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">` using
/// `payment_webhook_secret`, within 5 minutes. `payment_intent.succeeded` and
/// `payment_intent.payment_failed` settle the `pending_payment` card order named by
/// `metadata[order_id]`, once: the same event again, or an order already settled (by
/// reconciliation), changes nothing. An event whose amount or currency differs from its order
/// never marks it paid; like a `charge.refunded` for more than Keel refunded, it is logged as an
/// alert and counted in `keel_payment_alerts_total`. Other types are acknowledged and ignored.
#[utoipa::path(post, path = "/v1/webhooks/payments", tag = "payments",
    request_body(content = crate::payments::webhook::EventJson, content_type = "application/json", description = "A Stripe-shaped event"),
    responses((status = 200, description = "Received", body = WebhookReceived),
        (status = 400, description = "`invalid_signature`: no, a wrong or a stale (over 5 minutes) `Keel-Signature`, or webhooks not configured; `malformed_json`: a signed body that is not an event", body = Problem)))]
pub async fn payment_webhook(State(orders): State<Arc<Orders>>, headers: HeaderMap, body: Bytes) -> ApiResult<Json<WebhookReceived>> {
    let signature = headers.get("keel-signature").and_then(|v| v.to_str().ok());
    let event = orders.verify_provider_event(signature, &body).map_err(OrderError::from)?;
    orders.provider_event(&event).await?;
    Ok(Json(WebhookReceived { received: true }))
}
