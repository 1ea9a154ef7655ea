//! HTTP routes of social login and of the caller's linked identities. Handlers parse, call one
//! use case, and map.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{ProviderAnswer, ProviderView, browser_binding};
use super::{IdentityView, Social, Start};
use crate::app::AppState;
use crate::auth::extract::AuthUser;
use crate::auth::routes::limits::limit_ip;
use crate::auth::routes::{TokenResponse, client};
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{ClientIp, Form, Json, Path, Query};
use crate::http::pagination::{Page, PageQuery};
use crate::security::rate_limit::Limiter;
use crate::validation::Invalid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_providers))
        .routes(routes!(authorize))
        .routes(routes!(callback, callback_form))
        .routes(routes!(exchange))
        .routes(routes!(list_identities))
        .routes(routes!(link_identity, unlink_identity))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeQuery {
    /// Where the browser returns with the result in the fragment: exactly one of the allowed
    /// app URLs (`app_base_url`, `oauth_redirect_urls`).
    /// Required unless `link` is given.
    #[param(example = "https://shop.example/auth/callback")]
    pub redirect_to: Option<String>,
    /// The single-use link token of an `authorize_url` from `POST /v1/me/identities/{provider}`
    /// (the linking's app URL is the one given there).
    pub link: Option<String>,
}

impl AuthorizeQuery {
    fn start(&self) -> Result<Start<'_>, Invalid> {
        match (&self.link, &self.redirect_to) {
            (Some(token), None) => Ok(Start::Link { token }),
            (Some(_), Some(_)) => Err(Invalid::one("redirect_to", "not_allowed", "a linking returns to the app URL it was started with")),
            (None, Some(redirect_to)) => Ok(Start::SignIn { redirect_to }),
            (None, None) => Err(Invalid::one("redirect_to", "required", "redirect_to is required")),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// The one-time login code from `#code=` (valid 60 s, once).
    pub code: String,
    /// Required when the account has MFA enabled: a current authenticator code or an unused recovery code.
    pub totp_code: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Where the browser returns after linking (`#linked=<provider>` or `#error=<code>`): exactly
    /// one of the allowed app URLs.
    pub redirect_to: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuthorizeUrl {
    /// Send the browser here; it comes back to `redirect_to`.
    pub authorize_url: String,
}

/// `302 Found` to `location`.
fn found(location: &str) -> ApiResult<Response> {
    let location = HeaderValue::from_str(location).map_err(|e| ApiError::internal(anyhow::anyhow!("a redirect that is no header: {e}")))?;
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

/// The browser binding the request carries (the `keel_oauth_state` cookie), if any.
fn browser(headers: &HeaderMap) -> Option<&str> {
    browser_binding(headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()))
}

/// The configured social login providers.
#[utoipa::path(get, path = "/v1/auth/oauth/providers", tag = "auth", responses((status = 200, body = Vec<ProviderView>)))]
pub async fn list_providers(State(social): State<Arc<Social>>) -> Json<Vec<ProviderView>> {
    Json(social.providers())
}

/// Start a sign-in with a provider: `302` to its authorization page.
///
/// Open this in the browser (not with `fetch`). Keel keeps the sign-in's state server-side
/// (single use, 10 min) with a PKCE S256 verifier and, for OpenID Connect, a nonce, bound to
/// this browser by the `keel_oauth_state` cookie set here (HttpOnly, `Path=/v1/auth/oauth`;
/// `SameSite=Lax`, or `None; Secure` over https for a provider that posts its callback); the
/// provider sends the browser back to the callback, which ends at `redirect_to`.
#[utoipa::path(get, path = "/v1/auth/oauth/{provider}/authorize", tag = "auth",
    params(("provider" = String, Path, description = "a configured provider's id (`github`, `google`, `apple`, …)"), AuthorizeQuery),
    responses(
        (status = 302, description = "To the provider's authorization page", headers(
            ("Location" = String, description = "The provider's authorization URL"),
            ("Set-Cookie" = String, description = "`keel_oauth_state`: binds the sign-in to this browser"))),
        (status = 400, description = "`invalid_state`: the `link` token is unknown, used, expired or another provider's", body = Problem),
        (status = 422, description = "`validation_failed`: `redirect_to` is missing (without `link`), given with `link`, or not exactly an allowed app URL", body = Problem),
        (status = 502, description = "`provider_error`: the provider's discovery document cannot be had", body = Problem)))]
pub async fn authorize(
    State(social): State<Arc<Social>>,
    headers: HeaderMap,
    Path(provider): Path<String>,
    Query(query): Query<AuthorizeQuery>,
) -> ApiResult<Response> {
    social.check_provider(&provider)?;
    let departure = social.authorize(&provider, query.start()?, browser(&headers)).await?;
    let cookie =
        HeaderValue::from_str(&departure.cookie).map_err(|e| ApiError::internal(anyhow::anyhow!("a cookie that is no header: {e}")))?;
    let mut response = found(&departure.url)?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// The provider's return: `302` to the app's `redirect_to`.
///
/// The fragment carries the result: `#code=<one-time login code>` (exchange it at
/// `/v1/auth/oauth/exchange` within 60 s), `#linked=<provider>` after linking, or
/// `#error=<code>` with `code` one of `access_denied`, `provider_error`, `invalid_id_token`,
/// `email_missing`, `email_taken` (the email is an account's and the provider did not verify
/// it: sign in and link), `identity_taken`, `account_disabled`, `server_error`. A state that is
/// unknown, spent or expired, or that this browser did not start (no `keel_oauth_state` cookie,
/// or another one: login and link CSRF), has no app URL to trust: `400 invalid_state`, no
/// redirect.
#[utoipa::path(get, path = "/v1/auth/oauth/{provider}/callback", tag = "auth",
    params(("provider" = String, Path, description = "a configured provider's id"), ProviderAnswer),
    responses(
        (status = 302, description = "To `redirect_to` with the result in the fragment", headers(("Location" = String, description = "`redirect_to#code=…`, `#linked=…` or `#error=…`"))),
        (status = 400, description = "`invalid_state`: the sign-in is unknown, spent, expired or another browser's", body = Problem),
        (status = 429, body = Problem)))]
pub async fn callback(
    State(social): State<Arc<Social>>,
    State(limiter): State<Arc<dyn Limiter>>,
    ip: ClientIp,
    headers: HeaderMap,
    Path(provider): Path<String>,
    Query(answer): Query<ProviderAnswer>,
) -> ApiResult<Response> {
    social.check_provider(&provider)?;
    back_from_provider(&social, limiter.as_ref(), ip, &headers, &provider, &answer).await
}

/// The provider's return as a form POST (`response_mode=form_post`, as Apple sends it).
///
/// Same as the `GET` callback, with the fields in an `application/x-www-form-urlencoded` body.
#[utoipa::path(post, path = "/v1/auth/oauth/{provider}/callback", tag = "auth",
    params(("provider" = String, Path, description = "a configured provider's id")),
    request_body(content = ProviderAnswer, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 302, description = "To `redirect_to` with the result in the fragment", headers(("Location" = String, description = "`redirect_to#code=…`, `#linked=…` or `#error=…`"))),
        (status = 400, description = "`invalid_state`: the sign-in is unknown, spent, expired or another browser's", body = Problem),
        (status = 429, body = Problem)))]
pub async fn callback_form(
    State(social): State<Arc<Social>>,
    State(limiter): State<Arc<dyn Limiter>>,
    ip: ClientIp,
    headers: HeaderMap,
    Path(provider): Path<String>,
    form: Result<Form<ProviderAnswer>, ApiError>,
) -> ApiResult<Response> {
    social.check_provider(&provider)?;
    let Form(answer) = form?;
    back_from_provider(&social, limiter.as_ref(), ip, &headers, &provider, &answer).await
}

/// Both callbacks: the sign-in budget of the address, then the browser on to the app.
async fn back_from_provider(
    social: &Social,
    limiter: &dyn Limiter,
    ip: ClientIp,
    headers: &HeaderMap,
    provider: &str,
    answer: &ProviderAnswer,
) -> ApiResult<Response> {
    let rate = limit_ip(limiter, ip).await?;
    Ok(rate.attach(
        social.callback(provider, answer, browser(headers), &client(ip, headers)).await.map_err(Into::into).and_then(|to| found(&to)),
    ))
}

/// Exchange a one-time login code for a token pair, like a login.
#[utoipa::path(post, path = "/v1/auth/oauth/exchange", tag = "auth", request_body = ExchangeRequest,
    responses((status = 200, body = TokenResponse),
        (status = 401, description = "`invalid_token`: the code is unknown, used or expired; `mfa_required`: the account has MFA and `totp_code` is missing or wrong (the code stays usable for a few tries)", body = Problem),
        (status = 403, description = "`forbidden`: the account is disabled", body = Problem), (status = 429, body = Problem)))]
pub async fn exchange(
    State(social): State<Arc<Social>>,
    State(limiter): State<Arc<dyn Limiter>>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(req): Json<ExchangeRequest>,
) -> ApiResult<Response> {
    let rate = limit_ip(limiter.as_ref(), ip).await?;
    let issued = social.exchange(&req.code, req.totp_code.as_deref(), &client(ip, &headers)).await;
    Ok(rate.attach(issued.map(|issued| Json(TokenResponse::from(issued))).map_err(Into::into)))
}

/// The caller's linked identities.
#[utoipa::path(get, path = "/v1/me/identities", tag = "profile", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<IdentityView>)))]
pub async fn list_identities(
    State(social): State<Arc<Social>>,
    AuthUser(me): AuthUser,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<IdentityView>>> {
    Ok(Json(social.identities(&me, page.parse()?).await?))
}

/// Link a provider's identity to the caller: the URL to send the browser to.
///
/// It is Keel's authorize route with a single-use link token (5 min): the browser is bound to
/// the linking there, then sent on to the provider.
///
/// Following it links whatever identity the person signs in with at the provider, whatever its
/// email, unless it is linked to another account (`#error=identity_taken`).
#[utoipa::path(post, path = "/v1/me/identities/{id}", tag = "profile", security(("bearer" = [])), request_body = LinkRequest,
    params(("id" = String, Path, description = "a configured provider's id (`github`, `google`, …)")),
    responses((status = 200, body = AuthorizeUrl),
        (status = 404, description = "`not_found`: no such provider", body = Problem),
        (status = 422, description = "`validation_failed`: `redirect_to` is not exactly an allowed app URL", body = Problem)))]
pub async fn link_identity(
    State(social): State<Arc<Social>>,
    AuthUser(me): AuthUser,
    Path(provider): Path<String>,
    Json(req): Json<LinkRequest>,
) -> ApiResult<Json<AuthorizeUrl>> {
    Ok(Json(AuthorizeUrl { authorize_url: social.link_url(&me, &provider, &req.redirect_to).await? }))
}

/// Unlink one of the caller's identities.
#[utoipa::path(delete, path = "/v1/me/identities/{id}", tag = "profile", security(("bearer" = [])),
    params(("id" = String, Path, description = "identity id (idn_…)")),
    responses((status = 204),
        (status = 409, description = "`conflict`: it is the account's last way to sign in (no password, no other identity)", body = Problem)))]
pub async fn unlink_identity(State(social): State<Arc<Social>>, AuthUser(me): AuthUser, Path(id): Path<String>) -> ApiResult<StatusCode> {
    social.unlink(&me, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
