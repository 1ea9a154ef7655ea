//! HTTP routes of accounts and sessions. Handlers parse, call one use case, and map.

mod admin;
pub(super) mod limits;
mod mfa;
mod profile;
mod recovery;
mod sessions;

use axum::http::{HeaderMap, header};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::Me;
use super::service::{Client, Issued};
use crate::app::AppState;
use crate::http::extract::ClientIp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sessions::register))
        .routes(routes!(sessions::login))
        .routes(routes!(sessions::refresh))
        .routes(routes!(sessions::logout))
        .routes(routes!(sessions::list_sessions, sessions::revoke_all_sessions))
        .routes(routes!(sessions::revoke_session))
        .routes(routes!(profile::get_me, profile::update_me, profile::delete_me))
        .routes(routes!(profile::change_password))
        .routes(routes!(admin::list_users))
        .routes(routes!(admin::update_user))
        .routes(routes!(recovery::verify_email))
        .routes(routes!(recovery::resend_verification))
        .routes(routes!(recovery::forgot_password))
        .routes(routes!(recovery::reset_password))
        .routes(routes!(mfa::setup))
        .routes(routes!(mfa::enable))
        .routes(routes!(mfa::disable))
}

/// A new token pair, with the account it belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub user: Me,
    /// Ed25519-signed JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque, single-use; exchange at `/v1/auth/refresh`.
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl From<Issued> for TokenResponse {
    fn from(i: Issued) -> Self {
        TokenResponse {
            user: i.user,
            access_token: i.access_token,
            refresh_token: i.refresh_token,
            token_type: "Bearer",
            expires_in: i.expires_in,
        }
    }
}

pub(super) fn client(ip: ClientIp, headers: &HeaderMap) -> Client {
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| ua.chars().take(256).collect());
    Client { origin: ip.origin(), user_agent }
}

/// Deserialises a field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
