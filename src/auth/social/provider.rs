//! A configured provider at work: the authorization URL (state, PKCE S256, nonce), the code
//! exchange at its token endpoint, and the person it vouches for (the ID token of an OIDC
//! issuer; GitHub's `/user` and `/user/emails`).

use oauth2::basic::{BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet, ExtraTokenFields,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse as _, TokenUrl,
};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use super::http::{BackChannel, BackChannelError};
use super::model::{GitHubEmail, Profile, ProviderKind, ProviderSettings, github_email};
use super::oidc::{Issuer, OidcError};
use crate::security::random_token;

/// The token response, with the ID token an OIDC issuer adds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    StandardTokenResponse<IdTokenField, BasicTokenType>,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Unreachable, failing, or answering what Keel cannot use.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The token endpoint refused the code (spent, expired, PKCE or client mismatch).
    #[error("provider refused: {0}")]
    Refused(String),
    /// The ID token failed a check.
    #[error("ID token refused: {0}")]
    IdToken(&'static str),
}

impl From<BackChannelError> for ProviderError {
    fn from(e: BackChannelError) -> Self {
        ProviderError::Unavailable(e.to_string())
    }
}

impl From<OidcError> for ProviderError {
    fn from(e: OidcError) -> Self {
        match e {
            OidcError::Refused(why) => ProviderError::IdToken(why),
            other => ProviderError::Unavailable(other.to_string()),
        }
    }
}

/// A sign-in about to leave for the provider: where to send the browser, and the secrets the
/// callback will need (kept server-side with the state).
pub struct Started {
    pub url: String,
    pub pkce_verifier: String,
    pub nonce: String,
}

enum Backend {
    Oidc(Issuer),
    GitHub { web_url: String, api_url: String },
}

pub struct Provider {
    pub settings: ProviderSettings,
    backend: Backend,
    http: BackChannel,
}

/// The endpoints of one provider.
struct Endpoints {
    authorize: String,
    token: String,
    basic_auth: bool,
}

impl Provider {
    pub fn new(settings: ProviderSettings, http: BackChannel) -> Self {
        let backend = match &settings.kind {
            ProviderKind::Oidc { issuer } => Backend::Oidc(Issuer::new(issuer, http.clone())),
            ProviderKind::GitHub { web_url, api_url } => Backend::GitHub { web_url: web_url.clone(), api_url: api_url.clone() },
        };
        Self { settings, backend, http }
    }

    async fn endpoints(&self) -> Result<Endpoints, ProviderError> {
        Ok(match &self.backend {
            Backend::Oidc(issuer) => {
                let doc = issuer.discovery().await?;
                Endpoints { authorize: doc.authorization_endpoint.clone(), token: doc.token_endpoint.clone(), basic_auth: doc.basic_auth() }
            }
            Backend::GitHub { web_url, .. } => Endpoints {
                authorize: format!("{web_url}/login/oauth/authorize"),
                token: format!("{web_url}/login/oauth/access_token"),
                basic_auth: false,
            },
        })
    }

    async fn client(&self, callback_url: &str) -> Result<OAuthClient, ProviderError> {
        let endpoints = self.endpoints().await?;
        let bad = |what: &str| ProviderError::Unavailable(format!("the provider's {what} URL is not a URL"));
        Ok(oauth2::Client::new(ClientId::new(self.settings.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.settings.client_secret.expose_secret().to_owned()))
            .set_auth_uri(AuthUrl::new(endpoints.authorize).map_err(|_| bad("authorization"))?)
            .set_token_uri(TokenUrl::new(endpoints.token).map_err(|_| bad("token"))?)
            .set_redirect_uri(RedirectUrl::new(callback_url.to_owned()).map_err(|_| bad("callback"))?)
            .set_auth_type(if endpoints.basic_auth { AuthType::BasicAuth } else { AuthType::RequestBody }))
    }

    /// The provider's authorization URL for a sign-in whose state is `state`.
    pub async fn start(&self, callback_url: &str, state: &str) -> Result<Started, ProviderError> {
        let client = self.client(callback_url).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = random_token();
        let state = state.to_owned();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.settings.scopes().iter().map(|s| Scope::new((*s).to_owned())))
            .set_pkce_challenge(challenge);
        if matches!(self.backend, Backend::Oidc(_)) {
            request = request.add_extra_param("nonce", nonce.clone());
        }
        if self.settings.posts_callback() {
            request = request.add_extra_param("response_mode", "form_post");
        }
        let (url, _) = request.url();
        Ok(Started { url: url.into(), pkce_verifier: verifier.into_secret(), nonce })
    }

    /// Redeems the authorization code and returns the person the provider vouches for.
    pub async fn finish(&self, callback_url: &str, code: &str, pkce_verifier: &str, nonce_hash: &str) -> Result<Profile, ProviderError> {
        let client = self.client(callback_url).await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                oauth2::RequestTokenError::ServerResponse(answer) => ProviderError::Refused(format!("token endpoint: {}", answer.error())),
                other => ProviderError::Unavailable(format!("token endpoint: {other}")),
            })?;
        match &self.backend {
            Backend::Oidc(issuer) => {
                let id_token = tokens.extra_fields().id_token.as_deref().ok_or(ProviderError::IdToken("no ID token"))?;
                Ok(issuer.verify(id_token, &self.settings.client_id, nonce_hash).await?)
            }
            Backend::GitHub { web_url, api_url } => self.github_profile(web_url, api_url, tokens.access_token().secret()).await,
        }
    }

    /// GitHub's person: its numeric id (stable across renames) at the GitHub instance.
    async fn github_profile(&self, web_url: &str, api_url: &str, access_token: &str) -> Result<Profile, ProviderError> {
        #[derive(Deserialize)]
        struct User {
            id: i64,
            #[serde(default)]
            name: Option<String>,
            login: String,
        }
        let user: User = self.http.get_json(&format!("{api_url}/user"), Some(access_token)).await?;
        let emails: Vec<GitHubEmail> = self.http.get_json(&format!("{api_url}/user/emails"), Some(access_token)).await?;
        let email = github_email(&emails);
        Ok(Profile {
            issuer: web_url.to_owned(),
            subject: user.id.to_string(),
            email: email.map(|(e, _)| e.to_owned()),
            email_verified: email.is_some_and(|(_, verified)| verified),
            name: user.name.or(Some(user.login)),
        })
    }
}
