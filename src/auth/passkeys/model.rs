//! Passkeys: the relying party, ceremony state, who may finish a login, and the rules of
//! removing one. No I/O here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use webauthn_rs::prelude::{DiscoverableAuthentication, PasskeyRegistration, Url, Uuid};

/// How long a started ceremony may be finished.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(300);

/// The name of a passkey registered without one.
pub const DEFAULT_NAME: &str = "Passkey";

/// Where passkeys are valid: the relying party id (a domain, never an IP address: WebAuthn
/// binds credentials to domains) and the exact origins browsers may use it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    pub id: String,
    pub origins: Vec<Url>,
}

impl RelyingParty {
    /// The relying party of a deployment: `rp_id` and `origins` as configured, else the host and
    /// origin of `app_base_url` when its host is a domain, else `localhost` at Keel's own port
    /// (`own`, such as `http://127.0.0.1:8080`: browsers treat `http://localhost` as secure,
    /// and an IP address cannot be a relying party). Every origin must be on the id's domain.
    pub fn resolve(rp_id: Option<&str>, origins: &[Url], app_base_url: Option<&str>, own: &str) -> Result<RelyingParty, String> {
        let app = app_base_url.and_then(|u| Url::parse(u).ok()).filter(|u| u.domain().is_some());
        let own = Url::parse(own).map_err(|e| format!("Keel's own address: {e}"))?;
        let local = format!("{}://localhost{}", own.scheme(), own.port().map(|p| format!(":{p}")).unwrap_or_default());
        let local = Url::parse(&local).map_err(|e| format!("Keel's own address: {e}"))?;
        let id = match (rp_id, origins.first(), &app) {
            (Some(id), _, _) => id.to_owned(),
            (None, Some(first), _) => first.domain().unwrap_or_default().to_owned(),
            (None, None, Some(app)) => app.domain().unwrap_or_default().to_owned(),
            (None, None, None) => "localhost".to_owned(),
        };
        let origins = match (origins, app) {
            ([], Some(app)) if on_domain(&app, &id) => vec![origin_of(&app)],
            ([], _) => vec![local],
            (given, _) => given.to_vec(),
        };
        if let Some(stray) = origins.iter().find(|o| !on_domain(o, &id)) {
            return Err(format!("the origin {} is not on the relying party's domain {id}", origin_of(stray)));
        }
        Ok(RelyingParty { id, origins })
    }
}

/// A relying party id: a lower-case domain name (`shop.example.com`, `localhost`), not an
/// address, a URL or a bare top-level label with a dot in the wrong place.
pub fn parse_rp_id(raw: &str) -> Option<String> {
    let id = raw.trim().to_ascii_lowercase();
    let labels_ok = id.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    let is_address = id.parse::<std::net::IpAddr>().is_ok() || id.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()));
    (labels_ok && !is_address && id.len() <= 253).then_some(id)
}

/// Comma-separated bare origins (`https://shop.example.com`, `http://localhost:8080`) on domains.
pub fn parse_origins(raw: &str) -> Option<Vec<Url>> {
    raw.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            let url = Url::parse(o).ok()?;
            let bare = matches!(url.scheme(), "http" | "https") && url.domain().is_some() && url.path() == "/" && !o.ends_with('/');
            (bare && url.query().is_none() && url.username().is_empty() && url.password().is_none()).then_some(url)
        })
        .collect::<Option<Vec<_>>>()
        .filter(|origins| !origins.is_empty())
}

/// True when the origin's host is the relying party id or one of its subdomains.
fn on_domain(origin: &Url, rp_id: &str) -> bool {
    origin.domain().is_some_and(|host| host == rp_id || host.ends_with(&format!(".{rp_id}")))
}

fn origin_of(url: &Url) -> Url {
    let mut origin = url.clone();
    origin.set_path("/");
    origin.set_query(None);
    origin.set_fragment(None);
    origin
}

/// The WebAuthn user handle of an account: its id's UUID (`usr_<uuid>`), so every passkey of
/// an account carries the same handle and the handle maps back to the account without a lookup.
/// It names no personal data (the id only tells when the account was made).
pub fn user_handle(user_id: &str) -> Option<Uuid> {
    user_id.strip_prefix("usr_").and_then(|hex| Uuid::try_parse(hex).ok())
}

/// Who may finish a login ceremony.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// Whoever holds a registered passkey (discoverable, username-less login).
    Anyone,
    /// Only this account (`email` was given and names it).
    Account(String),
    /// Nobody (`email` was given and names no account). The options look the same as for
    /// anyone, so a caller learns nothing about which emails have accounts.
    Nobody,
}

impl Expected {
    /// Whether a passkey of `owner` may finish the ceremony.
    pub fn admits(&self, owner: &str) -> bool {
        match self {
            Expected::Anyone => true,
            Expected::Account(id) => id == owner,
            Expected::Nobody => false,
        }
    }
}

/// The server's side of a ceremony between its start and its finish, as stored.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ceremony {
    Register(PasskeyRegistration),
    Login { expected: Expected, state: DiscoverableAuthentication },
}

impl Ceremony {
    pub fn kind(&self) -> CeremonyKind {
        match self {
            Ceremony::Register(_) => CeremonyKind::Register,
            Ceremony::Login { .. } => CeremonyKind::Login,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyKind {
    Register,
    Login,
}

impl CeremonyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CeremonyKind::Register => "register",
            CeremonyKind::Login => "login",
        }
    }
}

/// A passkey as its owner sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PasskeyView {
    #[schema(example = "pky_0190a1b2c3d47e8f9a0b1c2d3e4f5a6b")]
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The last sign-in with it; `null` until then.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Whether one of an account's ways to sign in (a password, a passkey, …) may be removed: not
/// the last one, or nobody could sign in to the account again.
pub fn may_remove_sign_in_method(methods: i64) -> bool {
    methods > 1
}

/// Why a passkey login was refused, as its audit entry says (the caller only hears
/// `invalid_credentials`, or `forbidden` for a disabled account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The challenge is unknown or was used already (a replay).
    UnknownChallenge,
    ExpiredChallenge,
    /// No account has this credential.
    UnknownCredential,
    /// The credential belongs to another account than the ceremony expected, or its user
    /// handle names another account.
    WrongAccount,
    /// The signature, challenge, origin or flags do not check out.
    AssertionFailed,
    /// The signature counter did not move forward: a cloned authenticator.
    SignCountRegressed,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::UnknownChallenge => "unknown_challenge",
            Refusal::ExpiredChallenge => "expired_challenge",
            Refusal::UnknownCredential => "unknown_credential",
            Refusal::WrongAccount => "wrong_account",
            Refusal::AssertionFailed => "assertion_failed",
            Refusal::SignCountRegressed => "sign_count_regressed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn the_relying_party_defaults_to_the_app_then_to_localhost_at_keels_port() {
        let rp = RelyingParty::resolve(None, &[], Some("https://shop.example.com"), "http://127.0.0.1:8080").unwrap();
        assert_eq!((rp.id.as_str(), rp.origins), ("shop.example.com", vec![url("https://shop.example.com")]));
        // An app at an IP address cannot be a relying party: Keel's own port on localhost is.
        for app in [None, Some("http://127.0.0.1:3000")] {
            let rp = RelyingParty::resolve(None, &[], app, "http://127.0.0.1:8080").unwrap();
            assert_eq!((rp.id.as_str(), rp.origins), ("localhost", vec![url("http://localhost:8080")]));
        }
        let rp = RelyingParty::resolve(Some("example.com"), &[], Some("https://shop.example.com"), "http://0.0.0.0:1").unwrap();
        assert_eq!((rp.id.as_str(), rp.origins), ("example.com", vec![url("https://shop.example.com")]));
    }

    #[test]
    fn configured_origins_must_be_on_the_relying_partys_domain() {
        let origins = [url("https://a.example.com"), url("https://example.com:8443")];
        let rp = RelyingParty::resolve(Some("example.com"), &origins, None, "http://127.0.0.1:1").unwrap();
        assert_eq!(rp.origins.len(), 2);
        let rp = RelyingParty::resolve(None, &origins[..1], None, "http://127.0.0.1:1").unwrap();
        assert_eq!(rp.id, "a.example.com".to_owned(), "the first origin's host");
        assert!(RelyingParty::resolve(None, &origins, None, "http://127.0.0.1:1").is_err(), "example.com is not on a.example.com");
        assert!(RelyingParty::resolve(Some("other.example"), &origins, None, "http://127.0.0.1:1").is_err());
        assert!(RelyingParty::resolve(Some("ample.com"), &[url("https://example.com")], None, "http://127.0.0.1:1").is_err());
        assert!(RelyingParty::resolve(Some("example.com"), &[], None, "http://127.0.0.1:1").is_err(), "localhost is not on example.com");
    }

    #[test]
    fn relying_party_ids_are_domains_and_origins_are_bare() {
        assert_eq!(parse_rp_id(" Shop.Example.COM "), Some("shop.example.com".to_owned()));
        assert_eq!(parse_rp_id("localhost"), Some("localhost".to_owned()));
        for bad in ["127.0.0.1", "::1", "https://example.com", "example.com:443", "a..b", "-a.com", ""] {
            assert_eq!(parse_rp_id(bad), None, "{bad}");
        }
        assert_eq!(parse_origins("https://a.example, http://localhost:5173").map(|o| o.len()), Some(2));
        for bad in ["https://a.example/path", "https://a.example/", "http://127.0.0.1:8080", "ftp://a.example", "*", ""] {
            assert_eq!(parse_origins(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_user_handle_is_the_uuid_of_the_account_id() {
        let id = crate::ids::new("usr");
        assert_eq!(user_handle(&id).map(|u| format!("usr_{}", u.simple())), Some(id));
        assert_eq!(user_handle("prd_0190a1b2c3d47e8f9a0b1c2d3e4f5a6b"), None);
        assert_eq!(user_handle("usr_nonsense"), None);
    }

    #[test]
    fn only_the_expected_account_finishes_a_login() {
        assert!(Expected::Anyone.admits("usr_a"));
        assert!(Expected::Account("usr_a".into()).admits("usr_a"));
        assert!(!Expected::Account("usr_a".into()).admits("usr_b"));
        assert!(!Expected::Nobody.admits("usr_a"));
    }

    #[test]
    fn the_last_way_to_sign_in_stays() {
        assert!(!may_remove_sign_in_method(1));
        assert!(!may_remove_sign_in_method(0));
        assert!(may_remove_sign_in_method(2));
    }
}
