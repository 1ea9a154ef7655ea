//! Cart routes: the caller's own cart, priced live.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service::{CartError, CartView, Carts};
use crate::app::AppState;
use crate::auth::extract::AuthUser;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_cart, clear_cart))
        .routes(routes!(set_item, remove_item))
        .routes(routes!(set_coupon, remove_coupon))
}

impl From<CartError> for ApiError {
    fn from(e: CartError) -> Self {
        match e {
            CartError::Invalid(invalid) => ApiError::validation(invalid),
            CartError::Store(e) => ApiError::internal(e),
            CartError::Catalog(e) => e.into(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantity {
    /// 0 removes the line; at most 999.
    #[schema(maximum = 999)]
    pub quantity: u32,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CouponRequest {
    pub code: String,
}

/// The caller's cart, priced now.
#[utoipa::path(get, path = "/v1/cart", tag = "cart", security(("bearer" = [])), responses((status = 200, body = CartView)))]
pub async fn get_cart(State(carts): State<Arc<Carts>>, AuthUser(me): AuthUser) -> ApiResult<Json<CartView>> {
    Ok(Json(carts.view(&me).await?))
}

/// Empty the cart.
#[utoipa::path(delete, path = "/v1/cart", tag = "cart", security(("bearer" = [])), responses((status = 204)))]
pub async fn clear_cart(State(carts): State<Arc<Carts>>, AuthUser(me): AuthUser) -> ApiResult<StatusCode> {
    carts.clear(&me).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set how many of a product the cart holds (0 removes it).
#[utoipa::path(put, path = "/v1/cart/items/{product_id}", tag = "cart", security(("bearer" = [])), request_body = SetQuantity,
    params(("product_id" = String, Path, description = "product id")),
    responses((status = 200, body = CartView),
        (status = 422, description = "the product is unknown or no longer sold (field `product_id`), or the quantity is over 999", body = Problem)))]
pub async fn set_item(
    State(carts): State<Arc<Carts>>,
    AuthUser(me): AuthUser,
    Path(product_id): Path<String>,
    Json(req): Json<SetQuantity>,
) -> ApiResult<Json<CartView>> {
    Ok(Json(carts.set_quantity(&me, &product_id, req.quantity).await?))
}

/// Remove a product from the cart.
#[utoipa::path(delete, path = "/v1/cart/items/{product_id}", tag = "cart", security(("bearer" = [])),
    params(("product_id" = String, Path, description = "product id")), responses((status = 200, body = CartView)))]
pub async fn remove_item(
    State(carts): State<Arc<Carts>>,
    AuthUser(me): AuthUser,
    Path(product_id): Path<String>,
) -> ApiResult<Json<CartView>> {
    Ok(Json(carts.set_quantity(&me, &product_id, 0).await?))
}

/// Apply a coupon code.
#[utoipa::path(put, path = "/v1/cart/coupon", tag = "cart", security(("bearer" = [])), request_body = CouponRequest,
    responses((status = 200, body = CartView), (status = 422, description = "the coupon is unknown or expired (field `code`)", body = Problem)))]
pub async fn set_coupon(
    State(carts): State<Arc<Carts>>,
    AuthUser(me): AuthUser,
    Json(req): Json<CouponRequest>,
) -> ApiResult<Json<CartView>> {
    Ok(Json(carts.set_coupon(&me, Some(&req.code)).await?))
}

/// Remove the coupon.
#[utoipa::path(delete, path = "/v1/cart/coupon", tag = "cart", security(("bearer" = [])), responses((status = 200, body = CartView)))]
pub async fn remove_coupon(State(carts): State<Arc<Carts>>, AuthUser(me): AuthUser) -> ApiResult<Json<CartView>> {
    Ok(Json(carts.set_coupon(&me, None).await?))
}
