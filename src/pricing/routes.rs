//! Quotes (public) and pricing rules (back office).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{Rule, RuleSpec, spec_schema};
use super::service::{Pricing, PricingError, Quote};
use crate::app::AppState;
use crate::auth::extract::{AdminUser, StaffUser};
use crate::auth::model::parse_country;
use crate::catalog::Catalog;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path, Query};
use crate::http::pagination::{Page, PageQuery};
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
#[into_params(parameter_in = Query)]
pub struct QuoteQuery {
    #[param(value_type = Option<u32>, minimum = 1, maximum = 999, default = 1)]
    pub quantity: Option<String>,
    /// ISO 3166-1 alpha-2 code of the buyer's country.
    #[param(pattern = "^[A-Z]{2}$")]
    pub country: Option<String>,
    /// A promotion's coupon code (case-insensitive).
    #[param(max_length = 32)]
    pub coupon_code: Option<String>,
}

/// Any subset of a rule's fields, for `PATCH` (the document's view of the merge the service does).
struct RulePatch;

impl utoipa::PartialSchema for RulePatch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        spec_schema(|object| {
            object.required.clear();
            object.description =
                Some("Any subset of a rule's fields; each replaces the stored one and the result is validated as a whole.".to_owned());
        })
    }
}

impl utoipa::ToSchema for RulePatch {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>) {
        <RuleSpec as utoipa::ToSchema>::schemas(schemas);
    }
}

/// The price of a quantity of a product under the current rules, with every rule applied.
#[utoipa::path(get, path = "/v1/products/{id}/quote", tag = "catalog", params(("id" = String, Path, description = "product id"), QuoteQuery),
    responses((status = 200, body = Quote),
        (status = 422, description = "the product is no longer sold (field `product`)", body = Problem)))]
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

/// Pricing rules, oldest first (support, admin).
#[utoipa::path(get, path = "/v1/admin/pricing/rules", tag = "pricing", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<Rule>)))]
pub async fn list_rules(
    State(pricing): State<Arc<Pricing>>,
    _staff: StaffUser,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Rule>>> {
    Ok(Json(pricing.list(&page.parse()?)))
}

/// Create a pricing rule (admin). Every running instance applies it within the bus delay.
#[utoipa::path(post, path = "/v1/admin/pricing/rules", tag = "pricing", security(("bearer" = [])), request_body = RuleSpec,
    responses((status = 201, body = Rule)))]
pub async fn create_rule(
    State(pricing): State<Arc<Pricing>>,
    AdminUser(admin): AdminUser,
    Json(spec): Json<RuleSpec>,
) -> ApiResult<(StatusCode, Json<Rule>)> {
    Ok((StatusCode::CREATED, Json(pricing.create(spec, &admin.actor()).await?)))
}

/// Change some fields of a rule (admin); the result is validated as a whole.
#[utoipa::path(patch, path = "/v1/admin/pricing/rules/{id}", tag = "pricing", security(("bearer" = [])), request_body = RulePatch,
    params(("id" = String, Path, description = "rule id (rul_…)")),
    responses((status = 200, body = Rule)))]
pub async fn update_rule(
    State(pricing): State<Arc<Pricing>>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    Json(patch): Json<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<Json<Rule>> {
    Ok(Json(pricing.update(&id, patch, &admin.actor()).await?))
}

/// Delete a rule (admin).
#[utoipa::path(delete, path = "/v1/admin/pricing/rules/{id}", tag = "pricing", security(("bearer" = [])),
    params(("id" = String, Path, description = "rule id (rul_…)")), responses((status = 204)))]
pub async fn delete_rule(
    State(pricing): State<Arc<Pricing>>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    pricing.delete(&id, &admin.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
