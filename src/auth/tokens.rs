//! Access tokens: Ed25519-signed JWTs with a `kid`, and the JWKS that publishes the keys. Keys
//! rotate through the key ring (`security::keys`).

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::security::keys::timeline::Timeline;
use crate::security::sha256_hex;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub sid: String,
    pub roles: Vec<super::model::Role>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

/// A public key tokens are checked against.
struct Verifier {
    kid: String,
    decoding: DecodingKey,
    public_x: String,
}

impl Verifier {
    fn of(pkcs8: &[u8]) -> anyhow::Result<Verifier> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| anyhow::anyhow!("the signing key is not a PKCS#8 Ed25519 key"))?;
        let public = pair.public_key().as_ref();
        let public_x = URL_SAFE_NO_PAD.encode(public);
        Ok(Verifier { kid: sha256_hex(public)[..16].to_owned(), decoding: DecodingKey::from_ed_components(&public_x)?, public_x })
    }

    fn jwk(&self) -> Jwk {
        Jwk { kty: "OKP", crv: "Ed25519", alg: "EdDSA", key_use: "sig", kid: self.kid.clone(), x: self.public_x.clone() }
    }
}

/// A key Keel signs with, and checks its own tokens against.
struct SigningKey {
    encoding: EncodingKey,
    verifier: Verifier,
}

impl SigningKey {
    fn of(pkcs8: &[u8]) -> anyhow::Result<Arc<SigningKey>> {
        Ok(Arc::new(SigningKey { verifier: Verifier::of(pkcs8)?, encoding: EncodingKey::from_ed_der(pkcs8) }))
    }
}

/// Tolerated difference between instances' clocks, added to how long a replaced key stays accepted.
const CLOCK_SKEW: TimeDelta = TimeDelta::seconds(60);

/// Tokens whose signature was checked, kept so a client's next requests skip the Ed25519
/// verification (the costliest step of an authenticated request). Bounded in number and age; the
/// time claims and the key are checked again on every use, and sessions are looked up per request
/// as before, so a logout still takes effect at once.
const VERIFIED_CAPACITY: u64 = 20_000;
const VERIFIED_FOR: Duration = Duration::from_secs(60);

pub struct TokenSigner {
    /// The configured key; the key ring's keys (`install`) take over from it.
    base: Arc<SigningKey>,
    keys: RwLock<Arc<Timeline<Arc<SigningKey>>>>,
    /// Keys configured as having signed before the configured one: accepted while configured.
    previous: Vec<Verifier>,
    verified: moka::sync::Cache<String, (String, Claims)>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid access token")]
pub struct InvalidToken;

/// Makes a new Ed25519 private key (PKCS#8 DER).
pub fn generate_key() -> Vec<u8> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    Ed25519KeyPair::generate_pkcs8(&rng).expect("Ed25519 key generation").as_ref().to_vec()
}

/// Whether `pkcs8` is a key `TokenSigner` can sign with (checked when configuration loads).
pub fn is_signing_key(pkcs8: &[u8]) -> bool {
    Ed25519KeyPair::from_pkcs8(pkcs8).is_ok()
}

/// The id tokens signed by `pkcs8` name in their header.
pub fn key_id(pkcs8: &[u8]) -> anyhow::Result<String> {
    Ok(Verifier::of(pkcs8)?.kid)
}

impl TokenSigner {
    pub fn new(pkcs8: &[u8], issuer: &str, audience: &str, ttl: Duration) -> anyhow::Result<Self> {
        let base = SigningKey::of(pkcs8)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.required_spec_claims = ["exp", "iat", "nbf", "sub", "iss", "aud"].into_iter().map(String::from).collect::<HashSet<_>>();
        Ok(Self {
            keys: RwLock::new(Arc::new(Timeline::new(base.clone()))),
            base,
            previous: Vec::new(),
            verified: moka::sync::Cache::builder().max_capacity(VERIFIED_CAPACITY).time_to_live(VERIFIED_FOR).build(),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        })
    }

    /// Also accepts (and publishes) keys that signed before the configured one, so tokens
    /// issued just before a key change stay valid until they expire.
    pub fn with_previous(mut self, keys: &[Vec<u8>]) -> anyhow::Result<Self> {
        for key in keys {
            let verifier = Verifier::of(key)?;
            if verifier.kid != self.base.verifier.kid && self.previous.iter().all(|v| v.kid != verifier.kid) {
                self.previous.push(verifier);
            }
        }
        Ok(self)
    }

    /// Replaces the key ring's signing keys (each with the instant it signs from). A replaced
    /// key stays accepted for one token lifetime after its successor took over.
    pub fn install(&self, ring: &[(DateTime<Utc>, Vec<u8>)]) -> anyhow::Result<()> {
        let ring = ring.iter().map(|(from, key)| Ok((*from, SigningKey::of(key)?))).collect::<anyhow::Result<Vec<_>>>()?;
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Timeline::new(self.base.clone()).with(ring));
        Ok(())
    }

    fn keys(&self) -> Arc<Timeline<Arc<SigningKey>>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How long after its successor took over a key is still accepted.
    fn overlap(&self) -> TimeDelta {
        TimeDelta::from_std(self.ttl).unwrap_or(TimeDelta::MAX) + CLOCK_SKEW
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, user_id: &str, session_id: &str, roles: Vec<super::model::Role>) -> anyhow::Result<String> {
        let now = chrono::Utc::now();
        let keys = self.keys();
        let signing = keys.current(now);
        let claims = Claims {
            sub: user_id.to_owned(),
            sid: session_id.to_owned(),
            roles,
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: now.timestamp() + self.ttl.as_secs() as i64,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signing.verifier.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &signing.encoding)?)
    }

    /// Checks algorithm, `kid`, signature, issuer, audience and time claims.
    pub fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        let now = Utc::now();
        if let Some((kid, claims)) = self.verified.get(token) {
            let in_time = claims.nbf <= now.timestamp() && now.timestamp() < claims.exp;
            return if in_time && self.accepts(&kid, now) { Ok(claims) } else { Err(InvalidToken) };
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| InvalidToken)?;
        if header.alg != Algorithm::EdDSA {
            return Err(InvalidToken);
        }
        let kid = header.kid.ok_or(InvalidToken)?;
        let keys = self.keys();
        let mut accepted = keys.accepted(now, self.overlap()).map(|k| &k.verifier).chain(&self.previous);
        let verifier = accepted.find(|v| v.kid == kid).ok_or(InvalidToken)?;
        let claims = jsonwebtoken::decode::<Claims>(token, &verifier.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| InvalidToken)?;
        self.verified.insert(token.to_owned(), (kid, claims.clone()));
        Ok(claims)
    }

    /// Whether tokens signed by key `kid` are accepted at `now`.
    fn accepts(&self, kid: &str, now: DateTime<Utc>) -> bool {
        self.keys().accepted(now, self.overlap()).any(|k| k.verifier.kid == kid) || self.previous.iter().any(|v| v.kid == kid)
    }

    /// The public key set (RFC 7517) for clients and other services that verify tokens: the
    /// key in use first, then the others still accepted (a key about to take over included).
    pub fn jwks(&self) -> Jwks {
        let keys = self.keys();
        let accepted = keys.accepted(Utc::now(), self.overlap()).map(|k| &k.verifier);
        Jwks { keys: accepted.chain(&self.previous).map(Verifier::jwk).collect() }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub key_use: &'static str,
    pub kid: String,
    pub x: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::model::Role;

    fn signer() -> TokenSigner {
        TokenSigner::new(&generate_key(), "keel", "keel-api", Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn issues_tokens_it_accepts() {
        let s = signer();
        let token = s.issue("usr_1", "ses_1", vec![Role::Customer]).unwrap();
        let claims = s.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.sid.as_str()), ("usr_1", "ses_1"));
    }

    #[test]
    fn accepts_tokens_of_previous_keys_and_publishes_them() {
        let old_key = generate_key();
        let old = TokenSigner::new(&old_key, "keel", "keel-api", Duration::from_secs(60)).unwrap();
        let token = old.issue("usr_1", "ses_1", vec![]).unwrap();
        let new = signer();
        assert!(new.verify(&token).is_err());
        let new = new.with_previous(&[old_key]).unwrap();
        assert_eq!(new.verify(&token).unwrap().sub, "usr_1");
        assert_eq!(new.jwks().keys.len(), 2);
        let fresh = new.issue("usr_2", "ses_2", vec![]).unwrap();
        assert!(old.verify(&fresh).is_err(), "new tokens are signed with the current key");
    }

    #[test]
    fn a_rotated_key_takes_over_and_the_replaced_one_is_accepted_for_one_token_lifetime() {
        let s = signer();
        let before = s.issue("usr_1", "ses_1", vec![]).unwrap();
        let next = generate_key();
        s.install(&[(Utc::now() + TimeDelta::hours(1), next.clone())]).unwrap();
        assert_eq!(s.jwks().keys.len(), 2, "the coming key is published before it signs");
        assert_eq!(jwt_kid(&s.issue("usr_1", "ses_1", vec![]).unwrap()), jwt_kid(&before));
        s.install(&[(Utc::now() - TimeDelta::seconds(1), next.clone())]).unwrap();
        let after = s.issue("usr_1", "ses_1", vec![]).unwrap();
        assert_eq!(jwt_kid(&after), key_id(&next).unwrap());
        assert_eq!(s.jwks().keys[0].kid, key_id(&next).unwrap(), "the key in use comes first");
        assert!(s.verify(&before).is_ok() && s.verify(&after).is_ok());
        s.install(&[(Utc::now() - TimeDelta::seconds(60) - CLOCK_SKEW, next)]).unwrap();
        assert!(s.verify(&before).is_err(), "a token lifetime after the change the old key is gone, verified before or not");
        assert_eq!(s.jwks().keys.len(), 1);
    }

    fn jwt_kid(token: &str) -> String {
        jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
    }

    #[test]
    fn a_token_verified_before_is_refused_once_it_expires() {
        let s = TokenSigner::new(&generate_key(), "keel", "keel-api", Duration::from_secs(1)).unwrap();
        let token = s.issue("usr_1", "ses_1", vec![]).unwrap();
        assert!(s.verify(&token).is_ok());
        std::thread::sleep(Duration::from_millis(2100));
        assert!(s.verify(&token).is_err(), "the remembered verification does not outlive the token");
    }

    #[test]
    fn refuses_tokens_of_another_key_or_tampered() {
        let (a, b) = (signer(), signer());
        let token = b.issue("usr_1", "ses_1", vec![]).unwrap();
        assert!(a.verify(&token).is_err());
        let mine: Vec<String> = a.issue("usr_1", "ses_1", vec![]).unwrap().split('.').map(String::from).collect();
        let other: Vec<String> = a.issue("usr_2", "ses_2", vec![]).unwrap().split('.').map(String::from).collect();
        let spliced = format!("{}.{}.{}", mine[0], other[1], mine[2]);
        assert!(a.verify(&spliced).is_err());
        assert!(a.verify("not.a.token").is_err());
    }
}
