//! HTTP routes of API keys (admin only).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{KeySpec, Scope, parse_grace};
use super::repo::KeyRow;
use super::service::{ApiKeyError, ApiKeys, Minted};
use crate::app::AppState;
use crate::auth::extract::AdminUser;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path, Query};
use crate::http::pagination::{Page, PageQuery};
use crate::store::now;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_keys, create_key)).routes(routes!(rotate_key)).routes(routes!(revoke_key))
}

impl From<ApiKeyError> for ApiError {
    fn from(e: ApiKeyError) -> Self {
        match e {
            ApiKeyError::Invalid(invalid) => ApiError::validation(invalid),
            ApiKeyError::NotFound => ApiError::not_found("API key"),
            ApiKeyError::Rotated => {
                ApiError::new(StatusCode::CONFLICT, "invalid_state", "this key was rotated already; rotate its successor instead")
            }
            ApiKeyError::InvalidKey => ApiError::invalid_token(),
            ApiKeyError::OutOfScope => ApiError::forbidden("this API key's scopes do not include this route"),
            ApiKeyError::Store(e) => ApiError::internal(e),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// What the key is for, 1–100 characters.
    #[schema(example = "ERP stock sync")]
    name: String,
    /// At least one; a route outside them answers `403 forbidden`.
    #[schema(value_type = Vec<Scope>)]
    scopes: Vec<String>,
    /// After this the key is refused; never by default.
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps working: 0–604800 s (7 days), 86400 (24 h) by default.
    #[schema(minimum = 0, maximum = 604800)]
    grace_seconds: Option<i64>,
}

/// A key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    #[schema(example = "key_0190f3c1e1b27c3f8a4d5e6f70819203")]
    id: String,
    name: String,
    scopes: Vec<Scope>,
    /// The key's beginning, to tell keys apart.
    #[schema(example = "keel_sk_live_Ab12Cd")]
    prefix: String,
    /// The admin who made it; the key acts for them, within its scopes.
    created_by: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    /// Set once rotated: the key that replaces this one (which works until `expires_at`).
    rotated_to: Option<String>,
}

impl From<KeyRow> for ApiKeyView {
    fn from(k: KeyRow) -> Self {
        ApiKeyView {
            id: k.id,
            name: k.name,
            scopes: k.scopes,
            prefix: k.prefix,
            created_by: k.created_by,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            rotated_to: k.rotated_to,
        }
    }
}

/// A key just made, with its secret: shown this once, stored only as a keyed hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    id: String,
    name: String,
    scopes: Vec<Scope>,
    /// Send as `Authorization: Bearer <key>`. It cannot be shown again.
    #[schema(example = "keel_sk_live_…")]
    key: String,
    prefix: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

impl From<Minted> for CreatedKey {
    fn from(Minted { key, text }: Minted) -> Self {
        CreatedKey {
            id: key.id,
            name: key.name,
            scopes: key.scopes,
            key: text.expose().to_owned(),
            prefix: key.prefix,
            created_at: key.created_at,
            expires_at: key.expires_at,
        }
    }
}

/// API keys that are not revoked, newest first (admin). Expired and rotated ones are listed until revoked.
#[utoipa::path(get, path = "/v1/admin/api-keys", tag = "api keys", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<ApiKeyView>)))]
pub async fn list_keys(
    State(keys): State<Arc<ApiKeys>>,
    _admin: AdminUser,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<ApiKeyView>>> {
    Ok(Json(keys.list(page.parse()?).await?.map(ApiKeyView::from)))
}

/// Make an API key for a server (admin). The key is in this answer only.
#[utoipa::path(post, path = "/v1/admin/api-keys", tag = "api keys", security(("bearer" = [])), request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 422, description = "a bad name, an unknown scope (`scopes[i]`), an expiry in the past", body = Problem)))]
pub async fn create_key(
    State(keys): State<Arc<ApiKeys>>,
    AdminUser(admin): AdminUser,
    Json(body): Json<CreateKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let spec = KeySpec::parse(&body.name, &body.scopes, body.expires_at, now())?;
    Ok((StatusCode::CREATED, Json(keys.create(&admin, spec).await?.into())))
}

/// Replace a key (admin): a new key with the same name, scopes and expiry; the old one keeps working for the grace period.
#[utoipa::path(post, path = "/v1/admin/api-keys/{id}/rotate", tag = "api keys", security(("bearer" = [])), request_body = RotateKey,
    params(("id" = String, Path, description = "key id (key_…)")),
    responses((status = 201, body = CreatedKey), (status = 409, description = "`invalid_state`: rotated already", body = Problem)))]
pub async fn rotate_key(
    State(keys): State<Arc<ApiKeys>>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    Json(body): Json<RotateKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let grace = parse_grace(body.grace_seconds)?;
    Ok((StatusCode::CREATED, Json(keys.rotate(&admin, &id, grace).await?.into())))
}

/// Revoke a key (admin): refused from the next request on, on every instance.
#[utoipa::path(delete, path = "/v1/admin/api-keys/{id}", tag = "api keys", security(("bearer" = [])),
    params(("id" = String, Path, description = "key id (key_…)")), responses((status = 204)))]
pub async fn revoke_key(State(keys): State<Arc<ApiKeys>>, AdminUser(admin): AdminUser, Path(id): Path<String>) -> ApiResult<StatusCode> {
    keys.revoke(&admin, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
