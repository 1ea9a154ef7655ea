//! Quotes (public) and pricing rules (back office).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{Rule, RuleSpec};
use super::service::{Pricing, PricingError, Quote};
use crate::app::AppState;
use crate::auth::extract::{AdminUser, StaffUser};
use crate::auth::model::parse_country;
use crate::catalog::Catalog;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path, Query};
use crate::http::pagination::Page;
use crate::validation::Invalid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(quote)).routes(routes!(list_rules, create_rule)).routes(routes!(update_rule, delete_rule))
}

impl From<PricingError> for ApiError {
    fn from(e: PricingError) -> Self {
        match e {
            PricingError::Invalid(invalid) => ApiError::validation(invalid),
            PricingError::NotFound => ApiError::not_found("pricing rule"),
            PricingError::Store(e) => ApiError::internal(e),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct QuoteQuery {
    /// 1–999 (default 1).
    #[param(value_type = Option<u32>)]
    pub quantity: Option<String>,
    /// ISO 3166-1 alpha-2 code of the buyer's country.
    pub country: Option<String>,
    pub coupon_code: Option<String>,
}

/// The price of a quantity of a product under the current rules, with every rule applied.
#[utoipa::path(get, path = "/v1/products/{id}/quote", tag = "catalog", params(("id" = String, Path, description = "product id"), QuoteQuery),
    responses((status = 200, body = Quote), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn quote(
    State(catalog): State<Arc<Catalog>>,
    State(pricing): State<Arc<Pricing>>,
    Path(id): Path<String>,
    Query(q): Query<QuoteQuery>,
) -> ApiResult<Json<Quote>> {
    let mut invalid = Invalid::default();
    let quantity = match q.quantity.as_deref().map(str::parse::<u32>) {
        None => 1,
        Some(Ok(n)) if (1..=999).contains(&n) => n,
        Some(_) => {
            invalid.add("quantity", "out_of_range", "must be an integer from 1 to 999");
            1
        }
    };
    let country = q.country.as_deref().and_then(|c| invalid.check(parse_country("country", c)));
    let coupon = q.coupon_code.map(|c| c.trim().to_uppercase()).filter(|c| !c.is_empty());
    if coupon.as_ref().is_some_and(|c| c.len() > 32 || c.chars().any(char::is_control)) {
        invalid.add("coupon_code", "invalid", "must be at most 32 printable characters");
    }
    invalid.finish()?;
    let product = catalog.product(&id).await?.ok_or_else(|| ApiError::not_found("product"))?;
    if !product.active {
        return Err(Invalid::one("product", "inactive", "this product is no longer sold").into());
    }
    Ok(Json(pricing.quote(&product, quantity, country, coupon).await?))
}

/// Every pricing rule (support, admin).
#[utoipa::path(get, path = "/v1/admin/pricing/rules", tag = "pricing", security(("bearer" = [])),
    responses((status = 200, body = Page<Rule>), (status = 403, body = Problem)))]
pub async fn list_rules(State(pricing): State<Arc<Pricing>>, _staff: StaffUser) -> Json<Page<Rule>> {
    Json(Page { data: pricing.rules().rules.clone(), next_cursor: None })
}

/// Create a pricing rule (admin). Every running instance applies it within the bus delay.
#[utoipa::path(post, path = "/v1/admin/pricing/rules", tag = "pricing", security(("bearer" = [])), request_body = RuleSpec,
    responses((status = 201, body = Rule), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create_rule(
    State(pricing): State<Arc<Pricing>>,
    _admin: AdminUser,
    Json(spec): Json<RuleSpec>,
) -> ApiResult<(StatusCode, Json<Rule>)> {
    Ok((StatusCode::CREATED, Json(pricing.create(spec).await?)))
}

/// Change some fields of a rule (admin); the result is validated as a whole.
#[utoipa::path(patch, path = "/v1/admin/pricing/rules/{id}", tag = "pricing", security(("bearer" = [])), request_body = Object,
    params(("id" = String, Path, description = "rule id (rul_…)")),
    responses((status = 200, body = Rule), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update_rule(
    State(pricing): State<Arc<Pricing>>,
    _admin: AdminUser,
    Path(id): Path<String>,
    Json(patch): Json<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<Json<Rule>> {
    Ok(Json(pricing.update(&id, patch).await?))
}

/// Delete a rule (admin).
#[utoipa::path(delete, path = "/v1/admin/pricing/rules/{id}", tag = "pricing", security(("bearer" = [])),
    params(("id" = String, Path, description = "rule id (rul_…)")), responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_rule(State(pricing): State<Arc<Pricing>>, _admin: AdminUser, Path(id): Path<String>) -> ApiResult<StatusCode> {
    pricing.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
