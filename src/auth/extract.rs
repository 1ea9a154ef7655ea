//! Authentication and role extractors: `AuthUser`, `StaffUser` (support or admin), `AdminUser`.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::model::Role;
use super::service::{Accounts, Principal};
use super::tokens::Claims;
use crate::http::error::ApiError;
use crate::http::extract::{ClientIp, TrustedProxies};

/// Any signed-in user whose session is live.
pub struct AuthUser(pub Principal);

/// A user with the `support` or `admin` role (read-only back office).
pub struct StaffUser(pub Principal);

/// A user with the `admin` role.
pub struct AdminUser(pub Principal);

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(ApiError::unauthenticated)?;
    let value = value.to_str().map_err(|_| ApiError::invalid_token())?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(ApiError::invalid_token()),
    }
}

/// The claims of the request's access token when its signature and lifetime check out, kept in
/// the request's extensions so `AuthUser` does not verify it again. The session is not looked
/// up here: rate limits key on the subject, and routes still authenticate.
pub fn verified_claims(parts: &mut Parts, accounts: &Accounts) -> Option<Claims> {
    let claims = accounts.signer().verify(bearer(&parts.headers).ok()?).ok()?;
    parts.extensions.insert(claims.clone());
    Some(claims)
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser
where
    Arc<Accounts>: FromRef<S>,
    TrustedProxies: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // The caller carries where the request came from, for the audit entries of what they do.
        let origin = ClientIp::from_request_parts(parts, state).await.map(ClientIp::origin).unwrap_or_default();
        // A middleware that authenticated already (the idempotency guard) leaves the caller here,
        // so the handler's extractor does not look the session up a second time.
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(AuthUser(Principal { origin, ..principal.clone() }));
        }
        let accounts = Arc::<Accounts>::from_ref(state);
        let mut principal = match parts.extensions.get::<Claims>() {
            Some(claims) => accounts.session_principal(&claims.sub, &claims.sid).await?,
            None => accounts.authenticate(bearer(&parts.headers)?).await?,
        };
        tracing::Span::current().record("user.id", principal.user_id.as_str());
        principal.origin = origin;
        parts.extensions.insert(principal.clone());
        Ok(AuthUser(principal))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for StaffUser
where
    Arc<Accounts>: FromRef<S>,
    TrustedProxies: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let AuthUser(p) = AuthUser::from_request_parts(parts, state).await?;
        if p.roles.is_staff() { Ok(StaffUser(p)) } else { Err(ApiError::forbidden("this needs the support or admin role")) }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AdminUser
where
    Arc<Accounts>: FromRef<S>,
    TrustedProxies: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let AuthUser(p) = AuthUser::from_request_parts(parts, state).await?;
        if p.roles.has(Role::Admin) { Ok(AdminUser(p)) } else { Err(ApiError::forbidden("this needs the admin role")) }
    }
}
