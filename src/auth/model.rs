//! Account types and their rules. No I/O: everything here is parsed from input and
//! checked once, so the rest of the code cannot hold an invalid value.

use std::collections::HashSet;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validation::Invalid;

/// A normalised (trimmed, lower-cased) email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, raw: &str) -> Result<Email, Invalid> {
        let bad = || Invalid::one(field, "invalid", "must be an email address such as name@example.com");
        // Judge the length before copying: a client may send a megabyte.
        if raw.trim().len() > 254 {
            return Err(bad());
        }
        let email = raw.trim().to_lowercase();
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = email.rsplit_once('@').ok_or_else(bad)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain.split('.').all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(bad());
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that passed the NIST SP 800-63B rules: 8–128 characters, not a known common
/// or breached password, not the account's own email. No composition rules.
pub struct Password(String);

pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

/// `common_passwords.txt` holds the 8,355 entries of at least 8 characters (shorter ones fail
/// the length rule anyway) from Django's list of 20,000 common passwords (Royce Williams'
/// compilation of breached passwords), lower-cased; it is compared case-insensitively.
fn common_passwords() -> &'static HashSet<&'static str> {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| include_str!("common_passwords.txt").lines().map(str::trim).filter(|l| !l.is_empty()).collect())
}

impl Password {
    pub fn parse(field: &str, raw: &str, email: Option<&Email>) -> Result<Password, Invalid> {
        let chars = raw.chars().count();
        if chars < PASSWORD_MIN {
            return Err(Invalid::one(field, "too_short", format!("must be at least {PASSWORD_MIN} characters")));
        }
        if chars > PASSWORD_MAX {
            return Err(Invalid::one(field, "too_long", format!("must be at most {PASSWORD_MAX} characters")));
        }
        if common_passwords().contains(raw.to_lowercase().as_str()) {
            return Err(Invalid::one(field, "common_password", "is too common; choose a less predictable password"));
        }
        if let Some(email) = email {
            let lower = raw.to_lowercase();
            let local = email.as_str().split('@').next().unwrap_or_default();
            if lower == email.as_str() || lower == local {
                return Err(Invalid::one(field, "context_specific", "must not be your email address"));
            }
        }
        Ok(Password(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A display name: 1–100 characters after trimming, no control characters.
pub fn parse_name(field: &str, raw: &str) -> Result<String, Invalid> {
    let name = raw.trim();
    let len = name.chars().count();
    if len == 0 || len > 100 || name.chars().any(char::is_control) {
        return Err(Invalid::one(field, "invalid", "must be 1 to 100 characters"));
    }
    Ok(name.to_owned())
}

/// An ISO 3166-1 alpha-2 code.
pub fn parse_country(field: &str, raw: &str) -> Result<String, Invalid> {
    static CODES: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let codes = CODES.get_or_init(|| include_str!("countries.txt").lines().map(str::trim).filter(|l| !l.is_empty()).collect());
    if raw.len() == 2 && codes.contains(raw) {
        Ok(raw.to_owned())
    } else {
        Err(Invalid::one(field, "invalid", "must be an ISO 3166-1 alpha-2 country code such as US"))
    }
}

/// A phone number as people type it, in E.164 form: `+` then 8–15 digits, the first not 0.
/// It starts with the international prefix `+` or `00`, then the country code; spaces,
/// dashes, dots, slashes and parentheses between digits are dropped, and so is the national
/// trunk prefix written `(0)` (`+44 (0)20 7946 0958`). A number without an international
/// prefix names no country, so it has no E.164 form and is refused.
pub fn parse_phone(field: &str, raw: &str) -> Result<String, Invalid> {
    e164(raw).ok_or_else(|| Invalid::one(field, "invalid", "must be an international number (+ or 00, country code, number)"))
}

fn e164(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let rest = raw.strip_prefix('+').or_else(|| raw.strip_prefix("00"))?.replacen("(0)", "", 1);
    let mut digits = String::with_capacity(15);
    let mut in_parens = false;
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '(' if !in_parens => in_parens = true,
            ')' if in_parens => in_parens = false,
            '-' | '.' | '/' | '\u{2010}'..='\u{2015}' => {}
            c if c.is_whitespace() => {}
            _ => return None,
        }
    }
    (!in_parens && (8..=15).contains(&digits.len()) && !digits.starts_with('0')).then(|| format!("+{digits}"))
}

/// A postal address (stored encrypted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    #[schema(min_length = 1, max_length = 200)]
    pub line1: String,
    // Absent parts are left out (not `null`), so one schema describes what is sent and received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub line2: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: String,
}

impl Address {
    pub fn validate(self, field: &str) -> Result<Address, Invalid> {
        let mut errors = Invalid::default();
        let mut text = |name: &str, value: &str, required: bool| {
            let len = value.trim().chars().count();
            if (required && len == 0) || len > 200 || value.chars().any(char::is_control) {
                errors.add(&format!("{field}.{name}"), "invalid", "must be 1 to 200 characters");
            }
        };
        text("line1", &self.line1, true);
        text("city", &self.city, true);
        for (name, value) in [("line2", &self.line2), ("region", &self.region), ("postal_code", &self.postal_code)] {
            if let Some(v) = value {
                text(name, v, false);
            }
        }
        errors.check(parse_country(&format!("{field}.country"), &self.country));
        errors.finish().map(|()| self)
    }
}

/// Roles, stored as a bit set. Every account is a `customer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Support,
    Admin,
}

impl Role {
    const ALL: [Role; 3] = [Role::Customer, Role::Support, Role::Admin];

    fn bit(self) -> i64 {
        match self {
            Role::Customer => 1,
            Role::Support => 2,
            Role::Admin => 4,
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Role, Invalid> {
        match raw {
            "customer" => Ok(Role::Customer),
            "support" => Ok(Role::Support),
            "admin" => Ok(Role::Admin),
            _ => Err(Invalid::one(field, "invalid", "must be one of customer, support, admin")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles(i64);

impl Roles {
    pub fn customer() -> Self {
        Roles(Role::Customer.bit())
    }

    pub fn from_bits(bits: i64) -> Self {
        Roles(bits | Role::Customer.bit())
    }

    pub fn from_list(roles: &[Role]) -> Self {
        Roles::from_bits(roles.iter().fold(0, |acc, r| acc | r.bit()))
    }

    pub fn bits(self) -> i64 {
        self.0
    }

    pub fn has(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    pub fn list(self) -> Vec<Role> {
        Role::ALL.into_iter().filter(|r| self.has(*r)).collect()
    }

    /// Support and admin may read the back office.
    pub fn is_staff(self) -> bool {
        self.has(Role::Support) || self.has(Role::Admin)
    }
}

/// A stored account.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub password_hash: String,
    pub roles: Roles,
    pub country: Option<String>,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub mfa_enabled: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// The caller's own profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub id: String,
    #[schema(format = Email)]
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    /// In the order customer, support, admin; always has `customer`.
    pub roles: Vec<Role>,
    /// ISO 3166-1 alpha-2.
    #[schema(required = true, pattern = "^[A-Z]{2}$")]
    pub country: Option<String>,
    /// E.164.
    #[schema(required = true, pattern = "^\\+[1-9][0-9]{7,14}$")]
    pub phone: Option<String>,
    #[schema(required = true)]
    pub address: Option<Address>,
    pub mfa_enabled: bool,
    pub created_at: DateTime<Utc>,
}

impl From<User> for Me {
    fn from(u: User) -> Self {
        Me {
            id: u.id,
            email: u.email,
            email_verified: u.email_verified,
            name: u.name,
            roles: u.roles.list(),
            country: u.country,
            phone: u.phone,
            address: u.address,
            mfa_enabled: u.mfa_enabled,
            created_at: u.created_at,
        }
    }
}

/// An account as the back office sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUser {
    pub id: String,
    pub email: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub disabled: bool,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

impl From<User> for AdminUser {
    fn from(u: User) -> Self {
        AdminUser {
            id: u.id,
            email: u.email,
            name: u.name,
            roles: u.roles.list(),
            disabled: u.disabled,
            email_verified: u.email_verified,
            created_at: u.created_at,
        }
    }
}

/// A session (one refresh-token family) as listed to its owner.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    #[schema(required = true)]
    pub ip: Option<String>,
    #[schema(required = true)]
    pub user_agent: Option<String>,
    /// True for the session of the token making this request.
    pub current: bool,
}

/// Profile changes; `Some(None)` clears a field.
#[derive(Debug, Default)]
pub struct ProfilePatch {
    pub name: Option<String>,
    pub country: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub address: Option<Option<Address>>,
}

/// Back-office changes to an account.
#[derive(Debug, Default)]
pub struct AdminPatch {
    pub roles: Option<Roles>,
    pub disabled: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse("email", "  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a da@example.com", "ada@.example.com", "ada@example..com"] {
            assert!(Email::parse("email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_follow_nist_rules() {
        let email = Email::parse("email", "ada@example.com").unwrap();
        assert!(Password::parse("password", "correct horse battery", Some(&email)).is_ok());
        assert_eq!(Password::parse("password", "short", None).err().unwrap().0[0].code, "too_short");
        assert_eq!(Password::parse("password", &"x".repeat(129), None).err().unwrap().0[0].code, "too_long");
        assert_eq!(Password::parse("password", "password123", None).err().unwrap().0[0].code, "common_password");
        assert_eq!(Password::parse("password", "ada@example.com", Some(&email)).err().unwrap().0[0].code, "context_specific");
        // Length counts characters, not bytes.
        assert!(Password::parse("password", "ééééééé", None).is_err());
        assert!(Password::parse("password", "éééééééé", None).is_ok());
    }

    #[test]
    fn phones_are_read_as_typed_and_kept_in_e164() {
        for (typed, e164) in [
            ("+14155550100", "+14155550100"),
            ("+49 30 1234567", "+49301234567"),
            ("+1 (415) 555-0100", "+14155550100"),
            ("+1.415.555.0100", "+14155550100"),
            (" +33 1 42 68 53 00 ", "+33142685300"),
            ("+44 (0)20 7946 0958", "+442079460958"),
            ("0049 30/1234567", "+49301234567"),
            ("+49\u{a0}30\u{2013}1234567", "+49301234567"),
            ("+123456789012345", "+123456789012345"),
        ] {
            assert_eq!(parse_phone("phone", typed).ok().as_deref(), Some(e164), "{typed:?}");
        }
        for refused in [
            "4155550100",          // national: no country code
            "030 1234567",         // national with trunk prefix
            "+1415abc0100",        // letters
            "+1 415 555 0100 x12", // an extension is not part of E.164
            "+123",                // too short
            "+1234567890123456",   // 16 digits
            "+0 123 456 789",      // country codes never start with 0
            "+1 (415 555 0100",    // unbalanced
            "++14155550100",
            "+",
            "",
        ] {
            assert!(parse_phone("phone", refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn roles_always_include_customer() {
        let roles = Roles::from_list(&[Role::Admin]);
        assert_eq!(roles.list(), vec![Role::Customer, Role::Admin]);
        assert!(roles.is_staff());
        assert!(!Roles::customer().is_staff());
    }

    #[test]
    fn countries_and_phones() {
        assert!(parse_country("country", "DE").is_ok());
        assert!(parse_country("country", "XX").is_err());
        assert!(parse_country("country", "de").is_err());
        assert!(parse_phone("phone", "+14155550100").is_ok());
        assert!(parse_phone("phone", "4155550100").is_err());
        assert!(parse_phone("phone", "+1415abc0100").is_err());
    }
}
