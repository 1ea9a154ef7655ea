//! The caller's own account: profile, password, deletion.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::nullable;
use crate::auth::extract::AuthUser;
use crate::auth::model::{Address, Me, ProfilePatch, parse_country, parse_name, parse_phone};
use crate::auth::service::Accounts;
use crate::http::error::{ApiResult, Problem};
use crate::http::etag::json_with_etag;
use crate::http::extract::Json;
use crate::validation::Invalid;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// 1–100 characters after trimming.
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// ISO 3166-1 alpha-2; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, pattern = "^[A-Z]{2}$")]
    pub country: Option<Option<String>>,
    /// An international number as typed (`+49 30 1234567`, `+1 (415) 555-0100`, `0044 20 7946 0958`):
    /// `+` or `00`, the country code, then digits with spaces, dashes, dots or parentheses.
    /// Stored (encrypted) and shown in E.164 (`+49301234567`); `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    /// Stored encrypted; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Address>)]
    pub address: Option<Option<Address>>,
}

impl TryFrom<UpdateMeRequest> for ProfilePatch {
    type Error = Invalid;

    fn try_from(req: UpdateMeRequest) -> Result<Self, Invalid> {
        let mut invalid = Invalid::default();
        let patch = ProfilePatch {
            name: req.name.and_then(|n| invalid.check(parse_name("name", &n))),
            country: req.country.map(|c| c.and_then(|c| invalid.check(parse_country("country", &c)))),
            phone: req.phone.map(|p| p.and_then(|p| invalid.check(parse_phone("phone", &p)))),
            address: req.address.map(|a| a.and_then(|a| invalid.check(a.validate("address")))),
        };
        invalid.finish().map(|()| patch)
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordConfirmation {
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    /// 8–128 characters; common and breached passwords are refused.
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// The caller's profile (with a strong `ETag`).
#[utoipa::path(get, path = "/v1/me", tag = "profile", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 304)))]
pub async fn get_me(State(accounts): State<Arc<Accounts>>, AuthUser(me): AuthUser, headers: HeaderMap) -> ApiResult<Response> {
    json_with_etag(&headers, &accounts.me(&me)?, "private, no-cache")
}

/// Update the caller's profile. Absent fields are kept; `null` clears optional ones.
#[utoipa::path(patch, path = "/v1/me", tag = "profile", security(("bearer" = [])), request_body = UpdateMeRequest,
    responses((status = 200, body = Me)))]
pub async fn update_me(
    State(accounts): State<Arc<Accounts>>,
    AuthUser(me): AuthUser,
    Json(req): Json<UpdateMeRequest>,
) -> ApiResult<Json<Me>> {
    Ok(Json(accounts.update_me(&me, req.try_into()?).await?))
}

/// Delete the caller's account: personal data is erased, sessions revoked; ledger history stays.
#[utoipa::path(delete, path = "/v1/me", tag = "profile", security(("bearer" = [])), request_body = PasswordConfirmation,
    responses((status = 204), (status = 401, description = "`invalid_credentials`: the password is wrong", body = Problem)))]
pub async fn delete_me(
    State(accounts): State<Arc<Accounts>>,
    AuthUser(me): AuthUser,
    Json(req): Json<PasswordConfirmation>,
) -> ApiResult<StatusCode> {
    accounts.delete_me(&me, &req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the password; every other session is revoked.
#[utoipa::path(post, path = "/v1/auth/password/change", tag = "auth", security(("bearer" = [])), request_body = ChangePasswordRequest,
    responses((status = 204), (status = 401, description = "`invalid_credentials`: the current password is wrong", body = Problem)))]
pub async fn change_password(
    State(accounts): State<Arc<Accounts>>,
    AuthUser(me): AuthUser,
    Json(req): Json<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    accounts.change_password(&me, &req.current_password, &req.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}
