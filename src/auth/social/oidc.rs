//! OpenID Connect: discovery (`/.well-known/openid-configuration`), the issuer's keys (JWKS),
//! and the checks of an ID token. Both documents are cached; the keys are fetched again once
//! when a token names a key the cache does not hold (the issuer rotated its keys).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

use super::http::{BackChannel, BackChannelError};
use super::model::{Profile, verified_flag};
use crate::security::sha256_hex;

/// How long a discovery document is trusted before it is read again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// The keys are fetched again at most this often, however many unknown key ids arrive.
const KEYS_REFETCH_PAUSE: Duration = Duration::from_secs(10);
/// Clock skew allowed on `exp`, `nbf` and `iat` (set explicitly: the library's default is 60 s).
const LEEWAY_SECS: u64 = 30;

/// Signature algorithms an ID token may use: asymmetric only. `none` does not parse as an
/// algorithm at all, and HS* (signed with the client secret) are refused.
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The parts of a discovery document Keel uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

impl Discovery {
    /// Whether the client authenticates with HTTP Basic (the OIDC default) rather than in the
    /// body (Apple supports only `client_secret_post`).
    pub fn basic_auth(&self) -> bool {
        self.token_endpoint_auth_methods_supported.as_ref().is_none_or(|m| m.iter().any(|m| m == "client_secret_basic"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The issuer's documents could not be fetched or are unusable.
    #[error(transparent)]
    Unavailable(#[from] BackChannelError),
    #[error("the discovery document names another issuer")]
    IssuerMismatch,
    /// The token failed a check; the reason is for logs.
    #[error("ID token refused: {0}")]
    Refused(&'static str),
}

/// One issuer's documents, fetched on first use and cached.
pub struct Issuer {
    issuer: String,
    http: BackChannel,
    discovery: RwLock<Option<(Arc<Discovery>, Instant)>>,
    keys: RwLock<Option<(Arc<JwkSet>, Instant)>>,
}

/// The claims of an ID token Keel reads.
#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    #[serde(default)]
    aud: Audience,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default, deserialize_with = "verified_flag")]
    email_verified: bool,
    #[serde(default)]
    name: Option<String>,
}

/// How many audiences `aud` names (the library checked that this client is one of them).
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Audience {
    Many(Vec<serde::de::IgnoredAny>),
    One(serde::de::IgnoredAny),
    #[default]
    None,
}

impl Audience {
    fn len(&self) -> usize {
        match self {
            Audience::Many(many) => many.len(),
            Audience::One(_) => 1,
            Audience::None => 0,
        }
    }
}

impl Issuer {
    pub fn new(issuer: &str, http: BackChannel) -> Self {
        Self { issuer: issuer.to_owned(), http, discovery: RwLock::new(None), keys: RwLock::new(None) }
    }

    /// The discovery document, from the cache while it is fresh.
    pub async fn discovery(&self) -> Result<Arc<Discovery>, OidcError> {
        if let Some((doc, at)) = self.discovery.read().await.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(doc.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let doc: Discovery = self.http.get_json(&url, None).await?;
        // The issuer's document must name the issuer it was fetched for (OIDC Discovery §4.3).
        if doc.issuer != self.issuer {
            return Err(OidcError::IssuerMismatch);
        }
        let doc = Arc::new(doc);
        *self.discovery.write().await = Some((doc.clone(), Instant::now()));
        Ok(doc)
    }

    /// The keys, fetched when none are cached, or with `refetch` when the cache lacks a key (at
    /// most once per pause).
    async fn keys(&self, jwks_uri: &str, refetch: bool) -> Result<Arc<JwkSet>, OidcError> {
        if let Some((keys, at)) = self.keys.read().await.as_ref()
            && (!refetch || at.elapsed() < KEYS_REFETCH_PAUSE)
        {
            return Ok(keys.clone());
        }
        let keys: Arc<JwkSet> = Arc::new(self.http.get_json(jwks_uri, None).await?);
        *self.keys.write().await = Some((keys.clone(), Instant::now()));
        Ok(keys)
    }

    /// Checks an ID token for `client_id` against the sign-in's nonce (stored as its hash) and
    /// returns what it says of the person.
    pub async fn verify(&self, id_token: &str, client_id: &str, nonce_hash: &str) -> Result<Profile, OidcError> {
        let header = jsonwebtoken::decode_header(id_token).map_err(|_| OidcError::Refused("unreadable header"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(OidcError::Refused("algorithm not allowed"));
        }
        let discovery = self.discovery().await?;
        let mut keys = self.keys(&discovery.jwks_uri, false).await?;
        if find_key(&keys, header.kid.as_deref()).is_none() {
            keys = self.keys(&discovery.jwks_uri, true).await?;
        }
        let jwk = find_key(&keys, header.kid.as_deref()).ok_or(OidcError::Refused("unknown signing key"))?;
        let claims = check(id_token, header.alg, jwk, &self.issuer, client_id)?;
        // The nonce binds the token to the sign-in this browser started.
        if claims.nonce.as_deref().map(|n| sha256_hex(n.as_bytes())).as_deref() != Some(nonce_hash) {
            return Err(OidcError::Refused("nonce mismatch"));
        }
        Ok(Profile {
            issuer: self.issuer.clone(),
            subject: claims.sub,
            email: claims.email,
            email_verified: claims.email_verified,
            name: claims.name,
        })
    }
}

/// The key named `kid`; without a `kid`, the set's only key.
fn find_key<'a>(keys: &'a JwkSet, kid: Option<&str>) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
}

/// Signature, issuer, audience, expiry and not-before, and the authorised party.
fn check(token: &str, alg: Algorithm, jwk: &jsonwebtoken::jwk::Jwk, issuer: &str, client_id: &str) -> Result<IdClaims, OidcError> {
    // A key published for one algorithm is not used with another.
    if jwk.common.key_algorithm.is_some_and(|a| a != alg.into()) {
        return Err(OidcError::Refused("key algorithm mismatch"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| OidcError::Refused("unusable key"))?;
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            OidcError::Refused(match e.kind() {
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::ImmatureSignature => "not yet valid",
                ErrorKind::InvalidIssuer => "wrong issuer",
                ErrorKind::InvalidAudience => "wrong audience",
                ErrorKind::InvalidSignature => "bad signature",
                _ => "invalid token",
            })
        })?
        .claims;
    // With several audiences the token must say it was issued to this client (OIDC Core 3.1.3.7).
    let azp_ok = match &claims.azp {
        Some(azp) => azp == client_id,
        None => claims.aud.len() <= 1,
    };
    if !azp_ok {
        return Err(OidcError::Refused("wrong authorised party"));
    }
    Ok(claims)
}
