//! Passkey routes: register while signed in, list and remove, log in. Handlers parse, call one
//! use case, and map.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::PasskeyView;
use super::service::{Passkeys, Started};
use crate::app::AppState;
use crate::auth::extract::AuthUser;
use crate::auth::model::Email;
use crate::auth::routes::limits::limit_ip;
use crate::auth::routes::{TokenResponse, client};
use crate::http::error::{ApiResult, Problem};
use crate::http::extract::{ClientIp, Json, Path, Query};
use crate::http::pagination::{Page, PageQuery};
use crate::security::rate_limit::Limiter;
use crate::validation::Invalid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_start))
        .routes(routes!(register_finish))
        .routes(routes!(list_passkeys))
        .routes(routes!(delete_passkey))
        .routes(routes!(login_start))
        .routes(routes!(login_finish))
}

/// A started ceremony: pass `options` to the browser (after decoding its base64url fields, or
/// through `PublicKeyCredential.parseCreationOptionsFromJSON` / `parseRequestOptionsFromJSON`)
/// and send the credential it makes back with `challenge_id` within 5 minutes.
#[derive(Serialize, ToSchema)]
pub struct CeremonyStarted {
    /// Single use; expires in 5 minutes.
    pub challenge_id: String,
    /// WebAuthn Level 3 JSON: `PublicKeyCredentialCreationOptions` to register,
    /// `PublicKeyCredentialRequestOptions` to log in.
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub options: Value,
}

impl From<Started> for CeremonyStarted {
    fn from(s: Started) -> Self {
        CeremonyStarted { challenge_id: s.challenge_id, options: s.options }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinishRequest {
    pub challenge_id: String,
    /// The `PublicKeyCredential` of `navigator.credentials.create()` as WebAuthn Level 3 JSON
    /// (`credential.toJSON()`): `id`, `rawId`, `type`, `response.attestationObject`, `response.clientDataJSON`.
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub credential: Map<String, Value>,
    /// 1–100 characters, to tell passkeys apart (default `Passkey`).
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginStartRequest {
    /// Only this account's passkeys may answer. Without it, any registered passkey may
    /// (discoverable, username-less). The answer is the same whether or not the email has an
    /// account or a passkey.
    #[schema(format = Email, max_length = 254)]
    pub email: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginFinishRequest {
    pub challenge_id: String,
    /// The `PublicKeyCredential` of `navigator.credentials.get()` as WebAuthn Level 3 JSON
    /// (`credential.toJSON()`): `id`, `rawId`, `type`, `response.authenticatorData`,
    /// `response.clientDataJSON`, `response.signature`, `response.userHandle`.
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub credential: Map<String, Value>,
}

/// A credential object as webauthn-rs reads it; anything else is a bad `credential`.
fn credential<T: DeserializeOwned>(raw: Map<String, Value>) -> Result<T, Invalid> {
    serde_json::from_value(Value::Object(raw))
        .map_err(|e| Invalid::one("credential", "invalid", format!("not a WebAuthn credential in JSON form: {e}")))
}

/// Start registering a passkey for the caller.
///
/// The options ask for a discoverable credential (`residentKey: required`) with user
/// verification, and exclude the caller's registered passkeys.
#[utoipa::path(post, path = "/v1/auth/passkeys/register/start", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = CeremonyStarted)))]
pub async fn register_start(State(passkeys): State<Arc<Passkeys>>, AuthUser(me): AuthUser) -> ApiResult<Json<CeremonyStarted>> {
    Ok(Json(passkeys.start_registration(&me).await?.into()))
}

/// Finish registering a passkey: the credential the browser made for the challenge.
#[utoipa::path(post, path = "/v1/auth/passkeys/register/finish", tag = "auth", security(("bearer" = [])),
    request_body = RegisterFinishRequest,
    responses((status = 201, body = PasskeyView),
        (status = 409, description = "`conflict`: this passkey is registered already", body = Problem),
        (status = 422, description = "`challenge_id` is unknown, used, expired or another account's; `credential` is malformed \
            or does not answer the challenge", body = Problem)))]
pub async fn register_finish(
    State(passkeys): State<Arc<Passkeys>>,
    AuthUser(me): AuthUser,
    Json(req): Json<RegisterFinishRequest>,
) -> ApiResult<(StatusCode, Json<PasskeyView>)> {
    let credential = credential(req.credential)?;
    let view = passkeys.finish_registration(&me, &req.challenge_id, &credential, req.name.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The caller's passkeys.
#[utoipa::path(get, path = "/v1/me/passkeys", tag = "profile", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<PasskeyView>)))]
pub async fn list_passkeys(
    State(passkeys): State<Arc<Passkeys>>,
    AuthUser(me): AuthUser,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<PasskeyView>>> {
    Ok(Json(passkeys.list(&me, page.parse()?).await?))
}

/// Remove one of the caller's passkeys.
#[utoipa::path(delete, path = "/v1/me/passkeys/{id}", tag = "profile", security(("bearer" = [])),
    params(("id" = String, Path, description = "passkey id (pky_…)")),
    responses((status = 204), (status = 409, description = "`conflict`: it is the account's last way to sign in", body = Problem)))]
pub async fn delete_passkey(
    State(passkeys): State<Arc<Passkeys>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    passkeys.remove(&me, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start logging in with a passkey.
#[utoipa::path(post, path = "/v1/auth/passkeys/login/start", tag = "auth", request_body = LoginStartRequest,
    responses((status = 200, body = CeremonyStarted), (status = 429, body = Problem)))]
pub async fn login_start(
    State(passkeys): State<Arc<Passkeys>>,
    State(limiter): State<Arc<dyn Limiter>>,
    ip: ClientIp,
    Json(req): Json<LoginStartRequest>,
) -> ApiResult<Response> {
    let by_ip = limit_ip(limiter.as_ref(), ip).await?;
    let started = match req.email.as_deref().map(|e| Email::parse("email", e)).transpose() {
        Ok(email) => passkeys.start_login(email.as_ref()).await.map_err(Into::into),
        Err(invalid) => Err(invalid.into()),
    };
    Ok(by_ip.attach(started.map(|s| Json(CeremonyStarted::from(s)))))
}

/// Finish logging in with a passkey: the token pair, like a password login.
///
/// A passkey verifies its user, so an account with MFA needs no `totp_code`. The challenge is
/// spent by the first finish, whatever its outcome.
#[utoipa::path(post, path = "/v1/auth/passkeys/login/finish", tag = "auth", request_body = LoginFinishRequest,
    responses((status = 200, body = TokenResponse),
        (status = 401, description = "`invalid_credentials`: the challenge is unknown, used or expired, the passkey is not \
            registered (or not to the expected account), the assertion does not check out, or its signature counter went back \
            (a cloned authenticator)", body = Problem),
        (status = 403, description = "`forbidden`: the account is disabled", body = Problem), (status = 429, body = Problem)))]
pub async fn login_finish(
    State(passkeys): State<Arc<Passkeys>>,
    State(limiter): State<Arc<dyn Limiter>>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(req): Json<LoginFinishRequest>,
) -> ApiResult<Response> {
    let by_ip = limit_ip(limiter.as_ref(), ip).await?;
    let issued = match credential(req.credential) {
        Ok(credential) => passkeys.finish_login(&req.challenge_id, &credential, &client(ip, &headers)).await.map_err(Into::into),
        Err(invalid) => Err(invalid.into()),
    };
    Ok(by_ip.attach(issued.map(|issued| Json(TokenResponse::from(issued)))))
}
