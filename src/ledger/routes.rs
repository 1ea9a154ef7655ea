//! Wallet routes (the caller's own wallet) and the back office's ledger check.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service::{Ledger, Verification};
use super::wallet::{Created, TopUpRequest, TransferRequest, Wallet, WalletEntry, WalletError, WalletView};
use crate::app::AppState;
use crate::auth::extract::{AuthUser, StaffUser};
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Query};
use crate::http::idempotency::repo::Claim;
use crate::http::pagination::{Page, PageQuery};
use crate::payments::ProviderError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_wallet))
        .routes(routes!(list_transactions))
        .routes(routes!(top_up))
        .routes(routes!(transfer))
        .routes(routes!(verify_ledger))
}

impl From<WalletError> for ApiError {
    fn from(e: WalletError) -> Self {
        match e {
            WalletError::Invalid(invalid) => ApiError::validation(invalid),
            WalletError::InsufficientFunds => {
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "insufficient_funds", "the wallet's balance does not cover this amount")
            }
            WalletError::Declined(code) => {
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "payment_declined", format!("the card was declined ({code})"))
            }
            WalletError::Provider(e) => {
                let detail = match e {
                    ProviderError::Unavailable => "the payment provider is unavailable; nothing was charged",
                    // A lost answer: the charge may exist, and the retry with the same key finds it.
                    _ => {
                        "the payment provider did not answer; nothing was credited. Retry with the same Idempotency-Key: the card is never charged twice"
                    }
                };
                tracing::warn!(error = %e, "a wallet top-up got no answer from the payment provider");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "payment_provider_unavailable", detail)
            }
            WalletError::KeyLost(e) => e.into(),
            WalletError::Store(e) => ApiError::internal(e),
        }
    }
}

/// A `201` with the exact bytes stored under the idempotency key.
fn created(Created(body): Created) -> Response {
    let mut response = (StatusCode::CREATED, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The caller's balance.
#[utoipa::path(get, path = "/v1/wallet", tag = "wallet", security(("bearer" = [])), responses((status = 200, body = WalletView)))]
pub async fn get_wallet(State(wallet): State<Arc<Wallet>>, AuthUser(me): AuthUser) -> ApiResult<Json<WalletView>> {
    Ok(Json(wallet.view(&me.user_id).await?))
}

/// The caller's wallet history, newest first.
#[utoipa::path(get, path = "/v1/wallet/transactions", tag = "wallet", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<WalletEntry>)))]
pub async fn list_transactions(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<WalletEntry>>> {
    Ok(Json(wallet.history(&me.user_id, page.parse()?).await?))
}

/// Charge a card through the payment provider and credit the wallet.
///
/// A decline is `402 payment_declined` and is replayed for the same key. When the provider is
/// unavailable or its answer is lost, nothing is credited and the answer is
/// `503 payment_provider_unavailable`; the key is released, and a retry with the same key asks the
/// provider for the same charge (never a second one).
#[utoipa::path(post, path = "/v1/wallet/top-ups", tag = "wallet", security(("bearer" = [])), request_body = TopUpRequest,
    responses((status = 201, body = WalletEntry),
        (status = 402, description = "`payment_declined`: the card was declined; nothing was credited", body = Problem),
        (status = 422, description = "`validation_failed`: the amount is not positive or not in the deployment's currency, or the card token is unknown (field `card_token`)", body = Problem),
        (status = 503, description = "`payment_provider_unavailable`: no answer from the provider; nothing was credited", body = Problem)))]
pub async fn top_up(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    Extension(claim): Extension<Claim>,
    Json(req): Json<TopUpRequest>,
) -> ApiResult<Response> {
    Ok(created(wallet.top_up(&me.user_id, req, &claim).await?))
}

/// Move money from the caller's wallet to another user's, atomically.
#[utoipa::path(post, path = "/v1/wallet/transfers", tag = "wallet", security(("bearer" = [])), request_body = TransferRequest,
    responses((status = 201, description = "The caller's side of the transfer", body = WalletEntry),
        (status = 402, description = "`insufficient_funds`: the balance does not cover the amount; nothing moved", body = Problem),
        (status = 422, description = "`validation_failed`: no account has `to_email`, it is the caller's own, or the amount is not positive or not in the deployment's currency", body = Problem)))]
pub async fn transfer(
    State(wallet): State<Arc<Wallet>>,
    AuthUser(me): AuthUser,
    Extension(claim): Extension<Claim>,
    Json(req): Json<TransferRequest>,
) -> ApiResult<Response> {
    Ok(created(wallet.transfer(&me.user_id, req, &claim).await?))
}

/// Check the books: every transaction sums to zero and every cached balance equals the sum of its entries.
#[utoipa::path(get, path = "/v1/admin/ledger/verify", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Verification)))]
pub async fn verify_ledger(State(ledger): State<Arc<Ledger>>, StaffUser(staff): StaffUser) -> ApiResult<Json<Verification>> {
    Ok(Json(ledger.verify(&staff.actor()).await?))
}
