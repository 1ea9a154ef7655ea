//! Catalog routes: the public product list and detail, and the back office's writes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{
    IfMatch, MAX_PRICE, MAX_STOCK, NewProduct, Product, ProductFilter, ProductPatch, Sort, parse_category, parse_sku, parse_text,
    product_etag, search_words,
};
use super::service::{Catalog, CatalogError};
use crate::app::AppState;
use crate::auth::extract::AdminUser;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::etag::{etag_of, matches_if_none_match};
use crate::http::extract::{Json, Path, Query};
use crate::http::pagination::{Page, PageQuery};
use crate::money::Money;
use crate::validation::Invalid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_products))
        .routes(routes!(get_product))
        .routes(routes!(create_product))
        .routes(routes!(update_product, deactivate_product))
        .routes(routes!(adjust_stock))
}

/// The deployment's currency, for parsing and showing prices.
#[derive(Clone)]
pub struct Currency(pub Arc<str>);

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound => ApiError::not_found("product"),
            CatalogError::SkuTaken => ApiError::new(StatusCode::CONFLICT, "conflict", "a product with this SKU already exists"),
            CatalogError::Stale => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "the product changed; fetch it and retry with its version",
            ),
            CatalogError::BelowReserved { available } => ApiError::new(
                StatusCode::CONFLICT,
                "insufficient_stock",
                format!("stock cannot fall below what is reserved ({available} available to remove)"),
            ),
            CatalogError::Store(e) => ApiError::internal(e),
            CatalogError::Internal(e) => ApiError::internal(e),
        }
    }
}

fn json_response(body: Arc<[u8]>, etag: &str, headers: &HeaderMap, cache_control: &'static str) -> Response {
    let mut response = if matches_if_none_match(headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body.to_vec()).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    if let Ok(value) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, value);
    }
    response
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductListQuery {
    /// Category slug.
    #[param(pattern = "^[a-z0-9-]{1,64}$")]
    pub category: Option<String>,
    /// Words to find in the name or description (each as a prefix).
    pub q: Option<String>,
    /// Lowest price, in minor units, inclusive.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 10_000_000_000_i64)]
    pub min_price: Option<String>,
    /// Highest price, in minor units, inclusive.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 10_000_000_000_i64)]
    pub max_price: Option<String>,
    #[param(schema_with = sort_schema)]
    pub sort: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    pub page: PageQuery,
}

fn sort_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(Sort::NAMES.map(|(name, _)| name)))
        .default(Some(Sort::NAMES[0].0.into()))
        .description(Some("The order: by creation (`-` for newest first), by price, or by name."))
        .build()
}

fn parse_price_bound(field: &str, raw: Option<&str>, invalid: &mut Invalid) -> Option<i64> {
    let raw = raw?;
    match raw.parse::<i64>() {
        Ok(v) if (0..=MAX_PRICE).contains(&v) => Some(v),
        _ => {
            invalid.add(field, "invalid", format!("must be an integer from 0 to {MAX_PRICE} (minor units)"));
            None
        }
    }
}

/// Active products, paginated in a stable order.
#[utoipa::path(get, path = "/v1/products", tag = "catalog", params(ProductListQuery, PageQuery),
    responses((status = 200, body = Page<Product>), (status = 304)))]
pub async fn list_products(
    State(catalog): State<Arc<Catalog>>,
    headers: HeaderMap,
    Query(q): Query<ProductListQuery>,
) -> ApiResult<Response> {
    let mut invalid = Invalid::default();
    let sort = invalid.check(Sort::parse(q.sort.as_deref()));
    let page = invalid.check(q.page.parse::<(String, String)>());
    let filter = ProductFilter {
        category: q.category.as_deref().filter(|c| !c.is_empty()).and_then(|c| invalid.check(parse_category("category", c))),
        min_price: parse_price_bound("min_price", q.min_price.as_deref(), &mut invalid),
        max_price: parse_price_bound("max_price", q.max_price.as_deref(), &mut invalid),
        words: q.q.as_deref().map(search_words).unwrap_or_default(),
    };
    if let (Some(min), Some(max)) = (filter.min_price, filter.max_price)
        && min > max
    {
        invalid.add("min_price", "invalid", "must not exceed max_price");
    }
    let (Some(sort), Some(page)) = (sort, page) else { return Err(invalid.into()) };
    invalid.finish()?;
    let body = catalog.list_json(&filter, sort, &page).await.map_err(|e| match e {
        // A cursor whose key does not parse for this sort order is a garbled cursor.
        CatalogError::Store(crate::store::StoreError::Corrupt(_)) => {
            Invalid::one("cursor", "invalid", "the cursor is not valid for this sort").into()
        }
        other => ApiError::from(other),
    })?;
    let etag = etag_of(&body);
    Ok(json_response(body, &etag, &headers, "public, max-age=0, must-revalidate"))
}

/// One product (inactive ones too: orders refer to them), with a strong `ETag`.
#[utoipa::path(get, path = "/v1/products/{id}", tag = "catalog", params(("id" = String, Path, description = "product id (prd_…)")),
    responses((status = 200, body = Product), (status = 304)))]
pub async fn get_product(State(catalog): State<Arc<Catalog>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    #[derive(Deserialize)]
    struct Versioned {
        version: i64,
    }
    let body = catalog.product_json(&id).await?;
    let version = serde_json::from_slice::<Versioned>(&body).map_err(ApiError::internal)?.version;
    let etag = product_etag(version, &body);
    Ok(json_response(body, &etag, &headers, "public, max-age=0, must-revalidate"))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    /// 1–64 letters, digits, `-`, `_` or `.`; unique.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub sku: String,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: String,
    /// Category slug such as `kitchen`.
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub category: String,
    /// In the deployment's currency; `amount` from 0 to 10 000 000 000 minor units.
    pub price: Money,
    /// Units on hand to start with.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: i64,
}

impl CreateProduct {
    fn parse(self, currency: &str) -> Result<NewProduct, Invalid> {
        let mut invalid = Invalid::default();
        let product = NewProduct {
            sku: invalid.check(parse_sku("sku", &self.sku)).unwrap_or_default(),
            name: invalid.check(parse_text("name", &self.name, 200, true)).unwrap_or_default(),
            description: invalid.check(parse_text("description", &self.description, 5000, false)).unwrap_or_default(),
            category: invalid.check(parse_category("category", &self.category)).unwrap_or_default(),
            price: invalid.check(self.price.parse("price", currency, MAX_PRICE)).unwrap_or_default(),
            stock: self.stock,
        };
        if !(0..=MAX_STOCK).contains(&self.stock) {
            invalid.add("stock", "out_of_range", format!("must be from 0 to {MAX_STOCK}"));
        }
        invalid.finish().map(|()| product)
    }
}

/// Create a product (admin).
#[utoipa::path(post, path = "/v1/admin/products", tag = "catalog", security(("bearer" = [])), request_body = CreateProduct,
    responses((status = 201, body = Product), (status = 409, description = "`conflict`: a product with this `sku` exists", body = Problem)))]
pub async fn create_product(
    State(catalog): State<Arc<Catalog>>,
    State(currency): State<Currency>,
    AdminUser(admin): AdminUser,
    Json(req): Json<CreateProduct>,
) -> ApiResult<(StatusCode, Json<Product>)> {
    let product = catalog.create(req.parse(&currency.0)?, &admin.user_id).await?;
    Ok((StatusCode::CREATED, Json(product)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub category: Option<String>,
    pub price: Option<Money>,
    pub active: Option<bool>,
}

impl UpdateProduct {
    fn parse(self, currency: &str) -> Result<ProductPatch, Invalid> {
        let mut invalid = Invalid::default();
        let patch = ProductPatch {
            name: self.name.and_then(|v| invalid.check(parse_text("name", &v, 200, true))),
            description: self.description.and_then(|v| invalid.check(parse_text("description", &v, 5000, false))),
            category: self.category.and_then(|v| invalid.check(parse_category("category", &v))),
            price: self.price.and_then(|v| invalid.check(v.parse("price", currency, MAX_PRICE))),
            active: self.active,
        };
        invalid.finish().map(|()| patch)
    }
}

/// The version an `If-Match` requires, if any; a value that names no version never matches.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    match IfMatch::parse(value.to_str().unwrap_or_default()) {
        IfMatch::Any => Ok(None),
        IfMatch::Version(v) => Ok(Some(v)),
        IfMatch::Never => Err(CatalogError::Stale.into()),
    }
}

/// Change a product (admin).
///
/// Send the `ETag` of `GET /v1/products/{id}` (or the product's `version`) as `If-Match` to refuse lost
/// updates: when the product changed since, the answer is `412` and nothing is written. `If-Match` is
/// optional: without it the update overwrites whatever version is current (last write wins). Stock that
/// orders reserve or sell changes the `ETag` but not the version, and does not conflict with an edit.
#[utoipa::path(patch, path = "/v1/admin/products/{id}", tag = "catalog", security(("bearer" = [])), request_body = UpdateProduct,
    params(("id" = String, Path, description = "product id"), ("If-Match" = Option<String>, Header, nullable = false,
        description = "the `ETag` from `GET /v1/products/{id}` (`\"3-9f86d081884c7d65\"`), or the product's `version` quoted (`\"3\"`) or bare; \
        `*` matches any version. Optional: without it the update overwrites whatever is current.")),
    responses((status = 200, body = Product),
        (status = 412, description = "`precondition_failed`: the product changed since the `If-Match` version; nothing was written", body = Problem)))]
pub async fn update_product(
    State(catalog): State<Arc<Catalog>>,
    State(currency): State<Currency>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(req): Json<UpdateProduct>,
) -> ApiResult<Json<Product>> {
    let version = if_match(&headers)?;
    Ok(Json(catalog.update(&id, req.parse(&currency.0)?, version, &admin.actor()).await?))
}

/// Deactivate a product (admin); orders keep referring to it.
#[utoipa::path(delete, path = "/v1/admin/products/{id}", tag = "catalog", security(("bearer" = [])),
    params(("id" = String, Path, description = "product id")), responses((status = 204)))]
pub async fn deactivate_product(
    State(catalog): State<Arc<Catalog>>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    catalog.update(&id, ProductPatch { active: Some(false), ..ProductPatch::default() }, None, &admin.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAdjustment {
    /// Units to add (positive) or remove (negative); not 0.
    #[schema(minimum = -1_000_000_000, maximum = 1_000_000_000)]
    pub delta: i64,
    /// Why, for the stock history (e.g. "delivery 4711", "breakage").
    #[schema(min_length = 1, max_length = 200)]
    pub reason: String,
}

/// Add or remove stock (admin). Stock never falls below what is reserved.
#[utoipa::path(post, path = "/v1/admin/products/{id}/stock-adjustments", tag = "catalog", security(("bearer" = [])), request_body = StockAdjustment,
    params(("id" = String, Path, description = "product id")),
    responses((status = 200, body = Product),
        (status = 409, description = "`insufficient_stock`: stock would fall below what is reserved", body = Problem)))]
pub async fn adjust_stock(
    State(catalog): State<Arc<Catalog>>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    Json(req): Json<StockAdjustment>,
) -> ApiResult<Json<Product>> {
    let mut invalid = Invalid::default();
    // A range check, not `abs()`: `i64::MIN` has no absolute value in an `i64`.
    if req.delta == 0 || !(-MAX_STOCK..=MAX_STOCK).contains(&req.delta) {
        invalid.add("delta", "out_of_range", format!("must be a non-zero integer from -{MAX_STOCK} to {MAX_STOCK}"));
    }
    let reason = invalid.check(parse_text("reason", &req.reason, 200, true));
    invalid.clone().finish()?;
    let reason = reason.ok_or(invalid)?;
    Ok(Json(catalog.adjust_stock(&id, req.delta, &reason, &admin.user_id).await?))
}
