//! API keys and their rules, without I/O: the key's text and checksum, scopes, and the limits
//! of a new key or a rotation.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::super::model::parse_name;
use crate::security::random_bytes;
use crate::validation::Invalid;

/// What every key starts with: says what it is to a person and to secret scanners.
pub const KEY_PREFIX: &str = "keel_sk_live_";
const BODY_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// How much of the secret part the listing shows to tell keys apart.
const SHOWN_LEN: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A key's full text: `keel_sk_live_`, 32 random base62 characters (190 bits), then 6
/// characters of checksum over what precedes them. The checksum is not a secret: it lets a
/// typo or a made-up string be refused before any lookup.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyText(String);

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyText({}…)", self.shown())
    }
}

impl KeyText {
    pub fn generate() -> KeyText {
        let mut body = String::with_capacity(KEY_PREFIX.len() + BODY_LEN + CHECKSUM_LEN);
        body.push_str(KEY_PREFIX);
        while body.len() < KEY_PREFIX.len() + BODY_LEN {
            // 62 × 4 = 248: bytes at or above it are dropped, so every character is equally likely.
            for b in random_bytes::<48>() {
                if b < 248 && body.len() < KEY_PREFIX.len() + BODY_LEN {
                    body.push(BASE62[(b % 62) as usize] as char);
                }
            }
        }
        let checksum = checksum(&body);
        body.push_str(&checksum);
        KeyText(body)
    }

    /// `Some` when the text has a key's shape and its checksum holds.
    pub fn parse(text: &str) -> Option<KeyText> {
        let rest = text.strip_prefix(KEY_PREFIX)?;
        if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let (body, sum) = text.split_at(KEY_PREFIX.len() + BODY_LEN);
        (checksum(body) == sum).then(|| KeyText(text.to_owned()))
    }

    /// True when a bearer token claims to be an API key (rather than an access token).
    pub fn claims_to_be(token: &str) -> bool {
        token.starts_with("keel_sk_")
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The beginning the listing shows (`keel_sk_live_Ab12Cd`).
    pub fn shown(&self) -> &str {
        &self.0[..KEY_PREFIX.len() + SHOWN_LEN]
    }
}

/// Base62 of the first 32 bits of SHA-256, left-padded to six characters.
fn checksum(body: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    let mut n = u32::from_be_bytes([digest.as_ref()[0], digest.as_ref()[1], digest.as_ref()[2], digest.as_ref()[3]]) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One capability a key may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum Scope {
    #[serde(rename = "products:read")]
    ProductsRead,
    #[serde(rename = "products:write")]
    ProductsWrite,
    #[serde(rename = "orders:read")]
    OrdersRead,
    #[serde(rename = "orders:write")]
    OrdersWrite,
    #[serde(rename = "users:read")]
    UsersRead,
    #[serde(rename = "users:write")]
    UsersWrite,
    #[serde(rename = "pricing:write")]
    PricingWrite,
    #[serde(rename = "jobs:write")]
    JobsWrite,
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
    #[serde(rename = "audit:read")]
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 10] = [
        Scope::ProductsRead,
        Scope::ProductsWrite,
        Scope::OrdersRead,
        Scope::OrdersWrite,
        Scope::UsersRead,
        Scope::UsersWrite,
        Scope::PricingWrite,
        Scope::JobsWrite,
        Scope::WebhooksWrite,
        Scope::AuditRead,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scope::ProductsRead => "products:read",
            Scope::ProductsWrite => "products:write",
            Scope::OrdersRead => "orders:read",
            Scope::OrdersWrite => "orders:write",
            Scope::UsersRead => "users:read",
            Scope::UsersWrite => "users:write",
            Scope::PricingWrite => "pricing:write",
            Scope::JobsWrite => "jobs:write",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::AuditRead => "audit:read",
        }
    }

    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A key's scopes as stored: their names, space-separated, in a fixed order.
pub fn stored_scopes(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.name()).collect::<Vec<_>>().join(" ")
}

/// The scopes of a stored key; a name this version does not know grants nothing.
pub fn scopes_from(stored: &str) -> Vec<Scope> {
    stored.split_whitespace().filter_map(Scope::from_name).collect()
}

/// A key to create, checked.
#[derive(Debug)]
pub struct KeySpec {
    pub name: String,
    /// Sorted, each once.
    pub scopes: Vec<Scope>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl KeySpec {
    /// A name of 1–100 characters, at least one known scope (each names its place in the list
    /// when unknown), and an expiry in the future.
    pub fn parse(name: &str, scopes: &[String], expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<KeySpec, Invalid> {
        let mut invalid = Invalid::default();
        let name = invalid.check(parse_name("name", name));
        if scopes.is_empty() {
            invalid.add("scopes", "required", "a key needs at least one scope");
        }
        let mut known = Vec::with_capacity(scopes.len());
        for (i, raw) in scopes.iter().enumerate() {
            match Scope::from_name(raw) {
                Some(scope) => known.push(scope),
                None => invalid.add(&format!("scopes[{i}]"), "invalid", "not a known scope"),
            }
        }
        known.sort();
        known.dedup();
        if expires_at.is_some_and(|at| at <= now) {
            invalid.add("expires_at", "invalid", "must be in the future");
        }
        invalid.finish()?;
        Ok(KeySpec { name: name.unwrap_or_default(), scopes: known, expires_at })
    }
}

pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a rotated key keeps working: 0 s to 7 days, 24 h when not given.
pub fn parse_grace(seconds: Option<i64>) -> Result<Duration, Invalid> {
    match seconds {
        None => Ok(DEFAULT_GRACE),
        Some(s) if (0..=MAX_GRACE.as_secs() as i64).contains(&s) => Ok(Duration::from_secs(s as u64)),
        Some(_) => Err(Invalid::one("grace_seconds", "out_of_range", "must be from 0 to 604800 (7 days)")),
    }
}

/// When a rotated key stops working: after its grace period, or at its own expiry if sooner.
pub fn end_of_grace(expires_at: Option<DateTime<Utc>>, grace: Duration, now: DateTime<Utc>) -> DateTime<Utc> {
    let end = now + chrono::Duration::from_std(grace).unwrap_or_default();
    expires_at.map_or(end, |at| at.min(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_any_changed_character_does_not() {
        let key = KeyText::generate();
        assert!(key.expose().starts_with(KEY_PREFIX));
        assert_eq!(key.expose().len(), KEY_PREFIX.len() + BODY_LEN + CHECKSUM_LEN);
        assert_eq!(KeyText::parse(key.expose()), Some(key.clone()));
        for i in KEY_PREFIX.len()..key.expose().len() {
            let mut changed = key.expose().as_bytes().to_vec();
            changed[i] = if changed[i] == b'a' { b'b' } else { b'a' };
            assert_eq!(KeyText::parse(std::str::from_utf8(&changed).unwrap()), None, "a change at {i} is caught");
        }
        assert_ne!(KeyText::generate(), key);
    }

    #[test]
    fn text_without_a_keys_shape_is_refused() {
        let key = KeyText::generate();
        let text = key.expose();
        for bad in [
            "",
            KEY_PREFIX,
            &text[..text.len() - 1],
            &format!("{text}0"),
            &text.replacen("live", "test", 1),
            &format!("{}-{}", &text[..20], &text[21..]),
            &text.replacen(&text[KEY_PREFIX.len()..KEY_PREFIX.len() + 2], "é", 1),
        ] {
            assert_eq!(KeyText::parse(bad), None, "{bad:?}");
        }
        assert!(KeyText::claims_to_be(text) && !KeyText::claims_to_be("eyJhbGciOiJFZERTQSJ9.x.y"));
        assert!(!format!("{key:?}").contains(&text[KEY_PREFIX.len() + SHOWN_LEN..]), "Debug shows only the beginning");
    }

    #[test]
    fn characters_of_generated_keys_are_spread_over_the_alphabet() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            seen.extend(KeyText::generate().expose()[KEY_PREFIX.len()..].bytes());
        }
        assert!(seen.len() > 55, "{} of 62 characters seen", seen.len());
    }

    #[test]
    fn scopes_round_trip_through_storage_and_unknown_ones_are_named() {
        let now = Utc::now();
        let spec = KeySpec::parse("ERP", &["orders:read".into(), "products:write".into(), "orders:read".into()], None, now).unwrap();
        assert_eq!(spec.scopes, [Scope::ProductsWrite, Scope::OrdersRead]);
        assert_eq!(scopes_from(&stored_scopes(&spec.scopes)), spec.scopes);
        assert_eq!(scopes_from("orders:read admin:all"), [Scope::OrdersRead]);
        let err = KeySpec::parse("", &["orders:read".into(), "admin".into()], Some(now), now).unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "scopes[1]", "expires_at"]);
        assert_eq!(KeySpec::parse("ERP", &[], None, now).unwrap_err().0[0].code, "required");
        for scope in Scope::ALL {
            assert_eq!(serde_json::to_value(scope).unwrap(), scope.name());
        }
    }

    #[test]
    fn grace_is_a_day_by_default_at_most_a_week_and_never_outlives_the_key() {
        assert_eq!(parse_grace(None).unwrap(), DEFAULT_GRACE);
        assert_eq!(parse_grace(Some(0)).unwrap(), Duration::ZERO);
        assert_eq!(parse_grace(Some(604_800)).unwrap(), MAX_GRACE);
        assert!(parse_grace(Some(604_801)).is_err() && parse_grace(Some(-1)).is_err());
        let now = Utc::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(end_of_grace(None, hour, now), now + chrono::Duration::hours(1));
        let soon = now + chrono::Duration::minutes(5);
        assert_eq!(end_of_grace(Some(soon), hour, now), soon);
    }
}
