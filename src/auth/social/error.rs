//! Errors of social login and their one mapping to HTTP problems. A callback that knows where
//! to send the browser back ends there with `#error=<code>` (`model::Failure`) instead.

use axum::http::StatusCode;

use crate::auth::error::AuthError;
use crate::http::error::ApiError;
use crate::store::{StoreError, Transient};
use crate::validation::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum SocialError {
    #[error("no such provider")]
    UnknownProvider,
    #[error("invalid input")]
    Invalid(Invalid),
    /// A callback whose state is unknown, spent, expired or another provider's: there is no
    /// app URL to trust, so it is answered here.
    #[error("invalid state")]
    InvalidState,
    /// The provider's discovery document or keys could not be had when starting a sign-in.
    #[error("provider unavailable")]
    ProviderUnavailable,
    #[error("the last way to sign in")]
    LastSignInMethod,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Transient for SocialError {
    fn is_transient(&self) -> bool {
        match self {
            SocialError::Store(e) => e.is_transient(),
            SocialError::Auth(e) => e.is_transient(),
            SocialError::Internal(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl From<Invalid> for SocialError {
    fn from(invalid: Invalid) -> Self {
        SocialError::Invalid(invalid)
    }
}

impl From<SocialError> for ApiError {
    fn from(e: SocialError) -> Self {
        match e {
            SocialError::UnknownProvider => ApiError::not_found("provider"),
            SocialError::Invalid(invalid) => ApiError::validation(invalid),
            SocialError::InvalidState => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_state",
                "this sign-in is unknown, was used already or has expired; start it again",
            ),
            SocialError::ProviderUnavailable => {
                ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", "the provider cannot be reached right now; try again later")
            }
            SocialError::LastSignInMethod => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "this is the account's last way to sign in; set a password or link another identity first",
            ),
            SocialError::Auth(e) => e.into(),
            SocialError::Store(e) => ApiError::internal(e),
            SocialError::Internal(e) => ApiError::internal(e),
        }
    }
}
