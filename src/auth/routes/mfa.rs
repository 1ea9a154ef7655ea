//! TOTP multi-factor authentication.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::extract::AuthUser;
use crate::auth::mfa::TotpSetup;
use crate::auth::service::Accounts;
use crate::http::error::{ApiResult, Problem};
use crate::http::extract::Json;

use super::profile::PasswordConfirmation;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The 6-digit code the authenticator app shows now.
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes that stand in for `totp_code` at login. Shown once.
    pub recovery_codes: Vec<String>,
}

/// Start TOTP set-up: a new secret to add to an authenticator app.
#[utoipa::path(post, path = "/v1/auth/mfa/totp/setup", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = TotpSetup), (status = 409, description = "`conflict`: MFA is already enabled", body = Problem)))]
pub async fn setup(State(accounts): State<Arc<Accounts>>, AuthUser(me): AuthUser) -> ApiResult<Json<TotpSetup>> {
    Ok(Json(accounts.totp_setup(&me).await?))
}

/// Turn MFA on by proving the app shows the right code.
#[utoipa::path(post, path = "/v1/auth/mfa/totp/enable", tag = "auth", security(("bearer" = [])), request_body = CodeRequest,
    responses((status = 200, body = RecoveryCodes),
        (status = 409, description = "`conflict`: MFA is already enabled, or set-up was not started", body = Problem),
        (status = 422, description = "the code is wrong (field `code`)", body = Problem)))]
pub async fn enable(
    State(accounts): State<Arc<Accounts>>,
    AuthUser(me): AuthUser,
    Json(req): Json<CodeRequest>,
) -> ApiResult<Json<RecoveryCodes>> {
    Ok(Json(RecoveryCodes { recovery_codes: accounts.totp_enable(&me, &req.code).await? }))
}

/// Turn MFA off (needs the password).
#[utoipa::path(post, path = "/v1/auth/mfa/totp/disable", tag = "auth", security(("bearer" = [])), request_body = PasswordConfirmation,
    responses((status = 204), (status = 401, description = "`invalid_credentials`: the password is wrong", body = Problem)))]
pub async fn disable(
    State(accounts): State<Arc<Accounts>>,
    AuthUser(me): AuthUser,
    Json(req): Json<PasswordConfirmation>,
) -> ApiResult<StatusCode> {
    accounts.totp_disable(&me, &req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}
