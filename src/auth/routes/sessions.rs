//! Register, login, refresh, logout, and the caller's sessions.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{TokenResponse, client};
use crate::auth::extract::AuthUser;
use crate::auth::model::{Email, Password, SessionView, parse_name};
use crate::auth::service::{Accounts, NewAccount};
use crate::http::error::{ApiResult, Problem};
use crate::http::extract::{ClientIp, Json, Path, Query};
use crate::http::pagination::{Page, PageQuery};
use axum::response::Response;

use super::limits::{forgive_login, limit_ip, limit_login};
use crate::security::rate_limit::Limiter;
use crate::validation::Invalid;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "ada@example.com", format = Email, max_length = 254)]
    pub email: String,
    /// 8–128 characters; common and breached passwords, and the email itself, are refused.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// 1–100 characters after trimming.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    pub password: String,
    /// Required when the account has MFA enabled: a current authenticator code or an unused recovery code.
    pub totp_code: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Create an account and sign in.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = TokenResponse), (status = 409, description = "`email_taken`", body = Problem), (status = 429, body = Problem)))]
pub async fn register(
    State(accounts): State<Arc<Accounts>>,
    State(limiter): State<Arc<dyn Limiter>>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<Response> {
    let by_ip = limit_ip(limiter.as_ref(), ip).await?;
    let mut invalid = Invalid::default();
    let email = invalid.check(Email::parse("email", &req.email));
    let password = invalid.check(Password::parse("password", &req.password, email.as_ref()));
    let name = invalid.check(parse_name("name", &req.name));
    let (Some(email), Some(password), Some(name)) = (email, password, name) else { return Ok(by_ip.attach(Err::<(), _>(invalid.into()))) };
    let result = accounts.register(NewAccount { email, password, name }, client(ip, &headers)).await;
    Ok(by_ip.attach(result.map(|issued| (StatusCode::CREATED, Json(TokenResponse::from(issued)))).map_err(Into::into)))
}

/// Sign in with email and password.
///
/// Limited per client address (every attempt), and failed attempts per account from that
/// address (tightly) and per account from anywhere (loosely): someone guessing from one
/// address cannot lock the owner out of signing in from another.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse),
        (status = 401, description = "`invalid_credentials`, or `mfa_required` when MFA is on and `totp_code` is missing or wrong", body = Problem),
        (status = 403, description = "`forbidden`: the account is disabled", body = Problem), (status = 429, body = Problem)))]
pub async fn login(
    State(accounts): State<Arc<Accounts>>,
    State(limiter): State<Arc<dyn Limiter>>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Response> {
    let by_ip = limit_ip(limiter.as_ref(), ip).await?;
    let email = match Email::parse("email", &req.email) {
        Ok(email) => email,
        Err(invalid) => return Ok(by_ip.attach(Err::<(), _>(invalid.into()))),
    };
    let rate = by_ip.and(limit_login(limiter.as_ref(), ip, &email).await?);
    let result = accounts.login(&email, &req.password, req.totp_code.as_deref(), client(ip, &headers)).await;
    if result.is_ok() {
        forgive_login(limiter.as_ref(), ip, &email).await;
    }
    Ok(rate.attach(result.map(|issued| Json(TokenResponse::from(issued))).map_err(Into::into)))
}

/// Exchange a refresh token for a new pair.
///
/// The presented token is spent; presenting it again revokes the whole session (`token_reused`).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "`invalid_token`, or `token_reused` (the whole session is revoked)", body = Problem)))]
pub async fn refresh(
    State(accounts): State<Arc<Accounts>>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    Ok(Json(accounts.refresh(&req.refresh_token, client(ip, &headers)).await?.into()))
}

/// Sign out: revoke the session of a refresh token.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204), (status = 401, description = "`invalid_token`: no such refresh token", body = Problem)))]
pub async fn logout(State(accounts): State<Arc<Accounts>>, Json(req): Json<RefreshRequest>) -> ApiResult<StatusCode> {
    accounts.logout(&req.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/v1/auth/sessions", tag = "auth", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<SessionView>)))]
pub async fn list_sessions(
    State(accounts): State<Arc<Accounts>>,
    AuthUser(me): AuthUser,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<SessionView>>> {
    Ok(Json(accounts.sessions(&me, page.parse()?).await?))
}

/// Revoke every session of the caller, this one included.
#[utoipa::path(delete, path = "/v1/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 204)))]
pub async fn revoke_all_sessions(State(accounts): State<Arc<Accounts>>, AuthUser(me): AuthUser) -> ApiResult<StatusCode> {
    accounts.revoke_all_sessions(&me).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke one of the caller's sessions.
#[utoipa::path(delete, path = "/v1/auth/sessions/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = String, Path, description = "session id (ses_…)")),
    responses((status = 204)))]
pub async fn revoke_session(
    State(accounts): State<Arc<Accounts>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    accounts.revoke_session(&me, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
