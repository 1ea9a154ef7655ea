//! The rules of social login, free of I/O: providers as configured, what a provider says about
//! a person, the linking decision, the redirect back to the app, and the stable codes a
//! callback can end with.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

/// How long a started sign-in may take at the provider.
pub const STATE_TTL: Duration = Duration::from_secs(600);
/// How long a signed-in account's link token may wait for its browser at Keel's authorize route.
pub const LINK_TTL: Duration = Duration::from_secs(300);
/// How long the app has to exchange a login code.
pub const LOGIN_CODE_TTL: Duration = Duration::from_secs(60);
/// Refused second factors a login code survives; after that it is spent.
pub const SECOND_FACTOR_ATTEMPTS: i64 = 5;

/// Defaults of the built-in GitHub provider (overridable, for tests and GitHub Enterprise).
pub const GITHUB_WEB_URL: &str = "https://github.com";
pub const GITHUB_API_URL: &str = "https://api.github.com";

/// Issuers of the providers known by name, so they need only a client id and secret.
pub fn default_issuer(name: &str) -> Option<&'static str> {
    match name {
        "google" => Some("https://accounts.google.com"),
        "apple" => Some("https://appleid.apple.com"),
        _ => None,
    }
}

/// How Keel talks to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// An OpenID Connect issuer, discovered through `/.well-known/openid-configuration`.
    Oidc { issuer: String },
    /// GitHub: plain OAuth 2.0, the person from `/user` and verified emails from `/user/emails`.
    GitHub { web_url: String, api_url: String },
}

/// One provider as configured (`KEEL_OAUTH_<NAME>_…`).
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// The lower-case name it is configured and routed by (`google`, `github`, `corp`).
    pub id: String,
    pub kind: ProviderKind,
    pub client_id: String,
    /// Apple's is configured as given (the signed JWT Apple expects), like any other.
    pub client_secret: SecretString,
}

impl ProviderSettings {
    /// The name shown on a sign-in button.
    pub fn display_name(&self) -> String {
        match self.id.as_str() {
            "github" => "GitHub".to_owned(),
            "google" => "Google".to_owned(),
            "apple" => "Apple".to_owned(),
            other => {
                let mut chars = other.chars();
                chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
            }
        }
    }

    /// Apple sends its callback as a form POST (`response_mode=form_post`) when it is asked
    /// for the name or email.
    pub fn posts_callback(&self) -> bool {
        self.id == "apple"
    }

    /// The scopes asked for: who the person is and their email.
    pub fn scopes(&self) -> &'static [&'static str] {
        match (&self.kind, self.id.as_str()) {
            (ProviderKind::GitHub { .. }, _) => &["read:user", "user:email"],
            (ProviderKind::Oidc { .. }, "apple") => &["openid", "name", "email"],
            (ProviderKind::Oidc { .. }, _) => &["openid", "email", "profile"],
        }
    }
}

/// A configured provider as the sign-in page lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderView {
    /// Used in the routes: `/v1/auth/oauth/{id}/authorize`.
    #[schema(example = "github")]
    pub id: String,
    #[schema(example = "GitHub")]
    pub name: String,
}

/// The cookie binding a sign-in to the browser that started it (login and link CSRF): a random
/// value, of which the sign-in's state keeps only the hash. Only the OAuth routes see it.
pub const BROWSER_COOKIE: &str = "keel_oauth_state";
const BROWSER_COOKIE_PATH: &str = "/v1/auth/oauth";

/// The `Set-Cookie` of a browser binding. `SameSite=Lax` is sent on the top-level GET back
/// from a provider; a provider that posts its callback (Apple's `form_post`) makes a cross-site
/// POST, on which only a `SameSite=None; Secure` cookie travels, so such a provider gets that
/// when Keel is served over https. (Over plain http a browser refuses `SameSite=None`, and Apple
/// accepts only https return URLs anyway.) The value is what binds, not the attribute: a site
/// that makes the browser post a callback cannot have a state bound to that browser's value.
pub fn browser_cookie(value: &str, secure: bool, cross_site_post: bool) -> String {
    let same_site = if cross_site_post && secure { "None" } else { "Lax" };
    let secure = if secure { "; Secure" } else { "" };
    format!("{BROWSER_COOKIE}={value}; Max-Age={}; Path={BROWSER_COOKIE_PATH}; HttpOnly; SameSite={same_site}{secure}", STATE_TTL.as_secs())
}

/// The browser binding in `Cookie` headers, when it has the shape Keel gives it (a random
/// token); anything else is no binding.
pub fn browser_binding<'a>(cookie_headers: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    cookie_headers
        .into_iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == BROWSER_COOKIE)
        .map(|(_, value)| value)
        .filter(|v| (32..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// What the provider sends back to the callback (query string, or Apple's form POST). Other
/// fields (Apple's `user`, `iss`, `scope`) are ignored.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProviderAnswer {
    /// The authorization code to redeem.
    pub code: Option<String>,
    /// The `state` Keel sent: names the sign-in, once.
    pub state: Option<String>,
    /// Set instead of `code` when the sign-in did not happen (`access_denied`: the person declined).
    pub error: Option<String>,
}

/// What a provider vouched for about the person signing in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub issuer: String,
    pub subject: String,
    /// Normalised; `None` when the provider gave none (or nothing that is an address).
    pub email: Option<String>,
    /// Whether the provider itself verified that the person controls `email`.
    pub email_verified: bool,
    pub name: Option<String>,
}

/// `email_verified` as providers send it: a boolean, or (Apple) the string `"true"`/`"false"`.
/// Anything else is not a verification.
pub fn verified_flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<Flag>::deserialize(d)? {
        Some(Flag::Bool(b)) => b,
        Some(Flag::Text(t)) => t.eq_ignore_ascii_case("true"),
        Some(Flag::Other(_)) | None => false,
    })
}

/// One entry of GitHub's `/user/emails`.
#[derive(Debug, Clone, Deserialize)]
pub struct GitHubEmail {
    pub email: String,
    #[serde(default)]
    pub primary: bool,
    #[serde(default)]
    pub verified: bool,
}

/// The address a GitHub account signs in with: its primary address if verified, else another
/// verified one, else the (unverified) primary.
pub fn github_email(emails: &[GitHubEmail]) -> Option<(&str, bool)> {
    emails
        .iter()
        .find(|e| e.primary && e.verified)
        .or_else(|| emails.iter().find(|e| e.verified))
        .or_else(|| emails.iter().find(|e| e.primary))
        .map(|e| (e.email.as_str(), e.verified))
}

/// How a callback ends when it does not sign in: `#error=<code>` on the app's URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The person declined at the provider.
    AccessDenied,
    /// The provider failed or answered something unusable (token endpoint, user info, keys).
    ProviderError,
    /// The ID token failed a check (signature, algorithm, issuer, audience, expiry, nonce).
    InvalidIdToken,
    /// The provider gave no email address, and there is no account to sign in to without one.
    EmailMissing,
    /// The email belongs to an account, and the provider did not verify it: the owner must
    /// sign in and link this identity explicitly.
    EmailTaken,
    /// This identity is linked to another account already.
    IdentityTaken,
    /// The account is disabled.
    AccountDisabled,
    /// Keel failed; the sign-in can be tried again.
    ServerError,
}

impl Failure {
    pub const ALL: [Failure; 8] = [
        Failure::AccessDenied,
        Failure::ProviderError,
        Failure::InvalidIdToken,
        Failure::EmailMissing,
        Failure::EmailTaken,
        Failure::IdentityTaken,
        Failure::AccountDisabled,
        Failure::ServerError,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Failure::AccessDenied => "access_denied",
            Failure::ProviderError => "provider_error",
            Failure::InvalidIdToken => "invalid_id_token",
            Failure::EmailMissing => "email_missing",
            Failure::EmailTaken => "email_taken",
            Failure::IdentityTaken => "identity_taken",
            Failure::AccountDisabled => "account_disabled",
            Failure::ServerError => "server_error",
        }
    }
}

/// An account as the linking rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub id: String,
    pub email_verified: bool,
    pub disabled: bool,
}

/// What a sign-in through a provider does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The identity is this account's already: sign it in.
    SignIn(String),
    /// Link the identity to this account (same email, verified on both sides), and sign it in.
    Link(String),
    /// This account holds the email without ever having proved it, and the provider verified
    /// it: the account is the provider's person's. Strip what anyone else may have set up on it
    /// (password, other identities, sessions, mailed tokens, second factor), mark the email
    /// verified, link, and sign in.
    TakeOver(String),
    /// No account has the email: make one for this identity.
    Create,
    Refuse(Failure),
}

/// The linking rules of a sign-in. `owner` holds the identity already; `email_holder` has the
/// provider's email. Identities are keyed by (issuer, subject), never by email: an email links
/// only when the provider verified it.
pub fn decide(profile: &Profile, owner: Option<&Holder>, email_holder: Option<&Holder>) -> Decision {
    if let Some(owner) = owner {
        return if owner.disabled { Decision::Refuse(Failure::AccountDisabled) } else { Decision::SignIn(owner.id.clone()) };
    }
    if profile.email.is_none() {
        return Decision::Refuse(Failure::EmailMissing);
    }
    match email_holder {
        None => Decision::Create,
        Some(_) if !profile.email_verified => Decision::Refuse(Failure::EmailTaken),
        Some(holder) if holder.disabled => Decision::Refuse(Failure::AccountDisabled),
        Some(holder) if holder.email_verified => Decision::Link(holder.id.clone()),
        Some(holder) => Decision::TakeOver(holder.id.clone()),
    }
}

/// What linking an identity to the signed-in caller does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkDecision {
    Link,
    /// The caller holds it already: nothing to do.
    AlreadyLinked,
    Refuse(Failure),
}

/// Explicit linking by a signed-in caller links whatever the email says, unless the identity
/// is someone else's.
pub fn decide_link(caller: &Holder, owner: Option<&Holder>) -> LinkDecision {
    match owner {
        _ if caller.disabled => LinkDecision::Refuse(Failure::AccountDisabled),
        None => LinkDecision::Link,
        Some(owner) if owner.id == caller.id => LinkDecision::AlreadyLinked,
        Some(_) => LinkDecision::Refuse(Failure::IdentityTaken),
    }
}

/// Whether a linked identity stays when someone proves they control the account's mailbox (a
/// mailed password reset or email verification), the reverse of the pre-hijack take-over: an
/// identity whose email its provider did not verify goes; while the account's email was not
/// verified yet, so does one verified for another address (whoever squatted the address could
/// link their own).
pub fn survives_mailbox_proof(identity_email: Option<&str>, identity_verified: bool, account_email: &str, account_verified: bool) -> bool {
    identity_verified && (account_verified || identity_email == Some(account_email))
}

/// Whether the app may be sent back to `redirect_to`: only an allowed URL, compared exactly
/// (no prefix or pattern matching: an open redirect would hand login codes to anyone).
pub fn redirect_allowed(redirect_to: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|url| url == redirect_to)
}

/// `redirect_to` with the result in its fragment, which browsers never send to a server (so
/// the code stays out of logs and `Referer` headers along the way).
pub fn with_fragment(redirect_to: &str, key: &str, value: &str) -> String {
    format!("{redirect_to}#{key}={value}")
}

/// The name of a new account: the provider's, else the email's local part.
pub fn account_name(profile_name: Option<&str>, email: &str) -> String {
    let name = profile_name.map(str::trim).filter(|n| !n.is_empty() && !n.chars().any(char::is_control));
    let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or(email));
    name.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(email: Option<&str>, verified: bool) -> Profile {
        Profile {
            issuer: "https://idp.example".into(),
            subject: "s1".into(),
            email: email.map(str::to_owned),
            email_verified: verified,
            name: None,
        }
    }

    fn holder(id: &str, email_verified: bool, disabled: bool) -> Holder {
        Holder { id: id.into(), email_verified, disabled }
    }

    #[test]
    fn a_known_identity_signs_its_account_in_whatever_the_email_says() {
        let ada = holder("usr_ada", true, false);
        let other = holder("usr_other", true, false);
        assert_eq!(decide(&profile(Some("x@example.com"), false), Some(&ada), Some(&other)), Decision::SignIn("usr_ada".into()));
        assert_eq!(decide(&profile(None, false), Some(&ada), None), Decision::SignIn("usr_ada".into()));
        let disabled = holder("usr_ada", true, true);
        assert_eq!(decide(&profile(None, false), Some(&disabled), None), Decision::Refuse(Failure::AccountDisabled));
    }

    #[test]
    fn a_verified_email_links_to_a_verified_account_and_takes_over_an_unverified_one() {
        let verified = profile(Some("ada@example.com"), true);
        assert_eq!(decide(&verified, None, Some(&holder("usr_ada", true, false))), Decision::Link("usr_ada".into()));
        assert_eq!(decide(&verified, None, Some(&holder("usr_ada", false, false))), Decision::TakeOver("usr_ada".into()));
        assert_eq!(decide(&verified, None, Some(&holder("usr_ada", false, true))), Decision::Refuse(Failure::AccountDisabled));
    }

    #[test]
    fn an_unverified_email_never_links_by_itself() {
        let unverified = profile(Some("ada@example.com"), false);
        for account in [holder("usr_ada", true, false), holder("usr_ada", false, false)] {
            assert_eq!(decide(&unverified, None, Some(&account)), Decision::Refuse(Failure::EmailTaken));
        }
        assert_eq!(decide(&unverified, None, None), Decision::Create);
    }

    #[test]
    fn without_an_email_or_an_account_there_is_no_one_to_sign_in() {
        assert_eq!(decide(&profile(None, true), None, None), Decision::Refuse(Failure::EmailMissing));
        assert_eq!(decide(&profile(Some("new@example.com"), true), None, None), Decision::Create);
    }

    #[test]
    fn explicit_linking_links_unless_the_identity_is_someone_elses() {
        let ada = holder("usr_ada", false, false);
        assert_eq!(decide_link(&ada, None), LinkDecision::Link);
        assert_eq!(decide_link(&ada, Some(&ada)), LinkDecision::AlreadyLinked);
        assert_eq!(decide_link(&ada, Some(&holder("usr_bob", true, false))), LinkDecision::Refuse(Failure::IdentityTaken));
        assert_eq!(decide_link(&holder("usr_ada", true, true), None), LinkDecision::Refuse(Failure::AccountDisabled));
    }

    #[test]
    fn email_verified_is_a_boolean_or_apples_string() {
        #[derive(Deserialize)]
        struct Claims {
            #[serde(default, deserialize_with = "verified_flag")]
            email_verified: bool,
        }
        let flag = |json: &str| serde_json::from_str::<Claims>(json).unwrap().email_verified;
        assert!(flag(r#"{"email_verified":true}"#));
        assert!(flag(r#"{"email_verified":"true"}"#));
        assert!(!flag(r#"{"email_verified":"false"}"#));
        assert!(!flag(r#"{"email_verified":false}"#));
        assert!(!flag(r#"{"email_verified":1}"#));
        assert!(!flag(r#"{"email_verified":null}"#));
        assert!(!flag("{}"));
    }

    #[test]
    fn github_signs_in_with_a_verified_address_first() {
        let email = |email: &str, primary, verified| GitHubEmail { email: email.into(), primary, verified };
        let list = [email("old@example.com", false, true), email("main@example.com", true, true)];
        assert_eq!(github_email(&list), Some(("main@example.com", true)));
        let list = [email("main@example.com", true, false), email("work@example.com", false, true)];
        assert_eq!(github_email(&list), Some(("work@example.com", true)));
        let list = [email("main@example.com", true, false)];
        assert_eq!(github_email(&list), Some(("main@example.com", false)));
        assert_eq!(github_email(&[]), None);
    }

    #[test]
    fn redirects_match_exactly_and_carry_the_result_in_the_fragment() {
        let allowed = vec!["https://shop.example/auth/done".to_owned()];
        assert!(redirect_allowed("https://shop.example/auth/done", &allowed));
        for other in ["https://shop.example/auth/done/", "https://shop.example/auth", "https://shop.example/auth/done?x=1", ""] {
            assert!(!redirect_allowed(other, &allowed), "{other}");
        }
        assert_eq!(with_fragment("https://a.example/cb", "code", "abc"), "https://a.example/cb#code=abc");
    }

    #[test]
    fn a_mailbox_proof_keeps_only_identities_proven_for_the_mailbox() {
        let ada = "ada@example.com";
        assert!(survives_mailbox_proof(Some(ada), true, ada, false));
        assert!(survives_mailbox_proof(Some(ada), true, ada, true));
        assert!(survives_mailbox_proof(Some("ada@work.example"), true, ada, true), "linked while the account was verified");
        assert!(!survives_mailbox_proof(Some("squatter@example.com"), true, ada, false));
        assert!(!survives_mailbox_proof(None, true, ada, false));
        for account_verified in [false, true] {
            assert!(!survives_mailbox_proof(Some(ada), false, ada, account_verified));
        }
    }

    #[test]
    fn the_browser_cookie_is_lax_unless_a_provider_posts_back_over_https() {
        let v = "a".repeat(43);
        assert_eq!(
            browser_cookie(&v, false, false),
            format!("keel_oauth_state={v}; Max-Age=600; Path=/v1/auth/oauth; HttpOnly; SameSite=Lax")
        );
        assert!(browser_cookie(&v, true, false).ends_with("; SameSite=Lax; Secure"));
        assert!(browser_cookie(&v, true, true).ends_with("; SameSite=None; Secure"));
        assert!(browser_cookie(&v, false, true).ends_with("; SameSite=Lax"), "no SameSite=None without Secure");
    }

    #[test]
    fn the_browser_binding_is_read_from_any_cookie_header_and_must_look_like_a_token() {
        let v = "Ab9-_".repeat(9);
        let header = format!("other=1; keel_oauth_state={v}; x=y");
        assert_eq!(browser_binding([header.as_str()]), Some(v.as_str()));
        assert_eq!(browser_binding(["a=b", header.as_str()]), Some(v.as_str()));
        for bad in [
            "keel_oauth_state=",
            "keel_oauth_state=short",
            "keel_oauth_state=has space in it and is long enough to pass",
            "keel_oauth_statex=1",
        ] {
            assert_eq!(browser_binding([bad]), None, "{bad}");
        }
        assert_eq!(browser_binding(std::iter::empty()), None);
    }

    #[test]
    fn failures_have_distinct_stable_codes() {
        let codes: std::collections::HashSet<_> = Failure::ALL.iter().map(|f| f.code()).collect();
        assert_eq!(codes.len(), Failure::ALL.len());
        assert_eq!(Failure::EmailTaken.code(), "email_taken");
    }

    #[test]
    fn a_new_accounts_name_comes_from_the_provider_or_the_email() {
        assert_eq!(account_name(Some(" Ada Lovelace "), "ada@example.com"), "Ada Lovelace");
        assert_eq!(account_name(None, "ada@example.com"), "ada");
        assert_eq!(account_name(Some("  "), "ada@example.com"), "ada");
        assert_eq!(account_name(Some(&"x".repeat(300)), "ada@example.com").len(), 100);
    }

    #[test]
    fn known_providers_have_names_and_default_issuers() {
        let settings = |id: &str| ProviderSettings {
            id: id.into(),
            kind: ProviderKind::Oidc { issuer: "https://idp.example".into() },
            client_id: "c".into(),
            client_secret: SecretString::from("s"),
        };
        assert_eq!(settings("github").display_name(), "GitHub");
        assert_eq!(settings("corp").display_name(), "Corp");
        assert!(settings("apple").posts_callback() && !settings("google").posts_callback());
        assert_eq!(default_issuer("google"), Some("https://accounts.google.com"));
        assert_eq!(default_issuer("corp"), None);
    }
}
