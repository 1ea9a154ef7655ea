//! Email verification and password reset.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::limits::{limit_ip, limit_mail};
use crate::auth::extract::AuthUser;
use crate::auth::model::Email;
use crate::auth::service::Accounts;
use crate::http::error::{ApiResult, Problem};
use crate::http::extract::{ClientIp, Json};
use crate::security::rate_limit::Limiter;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token from the mailed link (`…?token=<token>`).
    pub token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The token from the mailed link (`…?token=<token>`).
    pub token: String,
    /// 8–128 characters; common and breached passwords are refused.
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// Confirm the email address with the mailed token.
#[utoipa::path(post, path = "/v1/auth/verify-email", tag = "auth", request_body = TokenRequest,
    responses((status = 204), (status = 422, description = "the token is invalid, expired or used (field `token`)", body = Problem),
        (status = 429, body = Problem)))]
pub async fn verify_email(
    State(accounts): State<Arc<Accounts>>,
    State(limiter): State<Arc<dyn Limiter>>,
    ip: ClientIp,
    Json(req): Json<TokenRequest>,
) -> ApiResult<Response> {
    let rate = limit_ip(limiter.as_ref(), ip).await?;
    Ok(rate.attach(accounts.verify_email(&req.token, ip.origin()).await.map(|()| StatusCode::NO_CONTENT).map_err(Into::into)))
}

/// Mail a new verification link to the caller (the previous link stops working).
///
/// While a verification mail to the caller is still waiting to be sent, nothing more is queued
/// (its link is the one to use). Limited per account and per client address.
#[utoipa::path(post, path = "/v1/auth/verify-email/resend", tag = "auth", security(("bearer" = [])),
    responses((status = 202), (status = 429, body = Problem)))]
pub async fn resend_verification(
    State(accounts): State<Arc<Accounts>>,
    State(limiter): State<Arc<dyn Limiter>>,
    ip: ClientIp,
    AuthUser(me): AuthUser,
) -> ApiResult<Response> {
    // Each resend mails the owner: limited, so a stolen token cannot flood an inbox.
    let rate = limit_mail(limiter.as_ref(), ip, &me.account.email).await?;
    Ok(rate.attach(accounts.resend_verification(&me).await.map(|()| StatusCode::ACCEPTED).map_err(Into::into)))
}

/// Ask for a password reset link. Always `202`, whether or not the account exists.
#[utoipa::path(post, path = "/v1/auth/password/forgot", tag = "auth", request_body = ForgotRequest,
    responses((status = 202), (status = 429, body = Problem)))]
pub async fn forgot_password(
    State(accounts): State<Arc<Accounts>>,
    State(limiter): State<Arc<dyn Limiter>>,
    ip: ClientIp,
    Json(req): Json<ForgotRequest>,
) -> ApiResult<Response> {
    let by_ip = limit_ip(limiter.as_ref(), ip).await?;
    let email = match Email::parse("email", &req.email) {
        Ok(email) => email,
        Err(invalid) => return Ok(by_ip.attach(Err::<(), _>(invalid.into()))),
    };
    let rate = by_ip.and(limit_mail(limiter.as_ref(), ip, email.as_str()).await?);
    let result = async {
        accounts.request_password_reset(&email).await?;
        Ok(StatusCode::ACCEPTED)
    };
    Ok(rate.attach(result.await))
}

/// Set a new password with the mailed token. Every session of the account is revoked.
#[utoipa::path(post, path = "/v1/auth/password/reset", tag = "auth", request_body = ResetRequest,
    responses((status = 204), (status = 422, description = "the token is invalid, expired or used, or the password breaks a rule", body = Problem),
        (status = 429, body = Problem)))]
pub async fn reset_password(
    State(accounts): State<Arc<Accounts>>,
    State(limiter): State<Arc<dyn Limiter>>,
    ip: ClientIp,
    Json(req): Json<ResetRequest>,
) -> ApiResult<Response> {
    let rate = limit_ip(limiter.as_ref(), ip).await?;
    Ok(rate.attach(
        accounts.reset_password(&req.token, &req.new_password, ip.origin()).await.map(|()| StatusCode::NO_CONTENT).map_err(Into::into),
    ))
}
