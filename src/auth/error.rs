//! Errors of the accounts domain and their one mapping to HTTP problems.

use axum::http::StatusCode;

use crate::http::error::ApiError;
use crate::store::{StoreError, Transient};
use crate::validation::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid input")]
    Invalid(Invalid),
    #[error("email already registered")]
    EmailTaken,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("account disabled")]
    Disabled,
    #[error("invalid token")]
    InvalidToken,
    #[error("a second factor is required")]
    MfaRequired,
    #[error("refresh token reused")]
    TokenReused,
    #[error("not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Transient for AuthError {
    fn is_transient(&self) -> bool {
        match self {
            AuthError::Store(e) => e.is_transient(),
            AuthError::Internal(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl From<Invalid> for AuthError {
    fn from(invalid: Invalid) -> Self {
        AuthError::Invalid(invalid)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(invalid) => ApiError::validation(invalid),
            AuthError::EmailTaken => ApiError::new(StatusCode::CONFLICT, "email_taken", "an account with this email already exists"),
            AuthError::InvalidCredentials => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "wrong email or password"),
            AuthError::Disabled => ApiError::forbidden("this account is disabled"),
            AuthError::InvalidToken => ApiError::invalid_token(),
            AuthError::MfaRequired => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "mfa_required",
                "this account needs a current authenticator code or a recovery code in `totp_code`",
            ),
            AuthError::TokenReused => {
                ApiError::new(StatusCode::UNAUTHORIZED, "token_reused", "this refresh token was already used; the session has been revoked")
            }
            AuthError::NotFound(what) => ApiError::not_found(what),
            AuthError::Conflict(why) => ApiError::new(StatusCode::CONFLICT, "conflict", why),
            AuthError::Store(e) => ApiError::internal(e),
            AuthError::Internal(e) => ApiError::internal(e),
        }
    }
}
