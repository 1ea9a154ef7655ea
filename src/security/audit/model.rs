//! The audit trail's rules, free of I/O: the audited actions, who acts, the canonical form of an
//! entry, its hash, and the check that walks the chain.
//!
//! Canonical form (version 1) of an entry: the compact JSON array (no whitespace; strings escaped
//! as `serde_json` escapes them: `"` and `\` and control characters, everything else as UTF-8)
//! `["keel.audit.v1", seq, id, at, actor, action, target, ip, request_id, details]`, where `seq` is
//! an integer, `at` is `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, exactly six fraction digits), `actor`,
//! `target`, `ip` and `request_id` are strings or `null`, and `details` is the stored JSON text
//! of the details as one string (so the hash covers those bytes, not a re-serialisation).
//! `hash` = lower-case hex SHA-256 of `previous hash` + `"\n"` + canonical form, the previous hash
//! of the first entry being 64 `0`s.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::security::sha256_hex;

/// The previous hash of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Every action the trail records, defined once; the names are the `action` of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    LoginSucceeded,
    LoginFailed,
    RefreshTokenReused,
    PasswordChanged,
    PasswordReset,
    MfaEnabled,
    MfaDisabled,
    RolesChanged,
    UserDisabled,
    UserEnabled,
    PriceChanged,
    PricingRuleCreated,
    PricingRuleUpdated,
    PricingRuleDeleted,
    OrderRefunded,
    PaymentCaptured,
    LedgerVerificationFailed,
    KeysRotated,
    IdentityLinked,
    IdentityUnlinked,
    AccountTakenOver,
    PasskeyRegistered,
    PasskeyRemoved,
    ApiKeyCreated,
    ApiKeyRotated,
    ApiKeyRevoked,
}

impl Action {
    pub const ALL: [Action; 26] = [
        Action::LoginSucceeded,
        Action::LoginFailed,
        Action::RefreshTokenReused,
        Action::PasswordChanged,
        Action::PasswordReset,
        Action::MfaEnabled,
        Action::MfaDisabled,
        Action::RolesChanged,
        Action::UserDisabled,
        Action::UserEnabled,
        Action::PriceChanged,
        Action::PricingRuleCreated,
        Action::PricingRuleUpdated,
        Action::PricingRuleDeleted,
        Action::OrderRefunded,
        Action::PaymentCaptured,
        Action::LedgerVerificationFailed,
        Action::KeysRotated,
        Action::IdentityLinked,
        Action::IdentityUnlinked,
        Action::AccountTakenOver,
        Action::PasskeyRegistered,
        Action::PasskeyRemoved,
        Action::ApiKeyCreated,
        Action::ApiKeyRotated,
        Action::ApiKeyRevoked,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Action::LoginSucceeded => "account.login_succeeded",
            Action::LoginFailed => "account.login_failed",
            Action::RefreshTokenReused => "account.refresh_token_reused",
            Action::PasswordChanged => "account.password_changed",
            Action::PasswordReset => "account.password_reset",
            Action::MfaEnabled => "account.mfa_enabled",
            Action::MfaDisabled => "account.mfa_disabled",
            Action::RolesChanged => "account.roles_changed",
            Action::UserDisabled => "account.disabled",
            Action::UserEnabled => "account.enabled",
            Action::PriceChanged => "product.price_changed",
            Action::PricingRuleCreated => "pricing.rule_created",
            Action::PricingRuleUpdated => "pricing.rule_updated",
            Action::PricingRuleDeleted => "pricing.rule_deleted",
            Action::OrderRefunded => "order.refunded",
            Action::PaymentCaptured => "payment.captured",
            Action::LedgerVerificationFailed => "ledger.verification_failed",
            Action::KeysRotated => "keys.rotated",
            Action::IdentityLinked => "account.identity_linked",
            Action::IdentityUnlinked => "account.identity_unlinked",
            Action::AccountTakenOver => "account.taken_over",
            Action::PasskeyRegistered => "account.passkey_registered",
            Action::PasskeyRemoved => "account.passkey_removed",
            Action::ApiKeyCreated => "api_key.created",
            Action::ApiKeyRotated => "api_key.rotated",
            Action::ApiKeyRevoked => "api_key.revoked",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// As listed and filtered: one name of the actions.
impl PartialSchema for Action {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Action::ALL.iter().map(|a| a.name())))
            .description(Some("An audited action."))
            .into()
    }
}

impl ToSchema for Action {}

/// Where a request came from: the client address (as `trusted_proxies` let it be known) and the
/// request id (`X-Request-Id`). Empty for work that no request started (jobs, the command line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

/// Who does something, and from where: what a use case needs to write an entry. `user_id` is
/// `None` for someone not signed in, and for Keel itself (jobs, webhooks, the command line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Option<String>,
    pub origin: Origin,
}

impl Actor {
    pub fn user(user_id: &str, origin: Origin) -> Actor {
        Actor { user_id: Some(user_id.to_owned()), origin }
    }

    pub fn anonymous(origin: Origin) -> Actor {
        Actor { user_id: None, origin }
    }

    /// Keel acting on its own: a job, a provider's webhook, the command line.
    pub fn keel() -> Actor {
        Actor::default()
    }
}

/// An entry to append. Secrets (passwords, tokens, card tokens, TOTP secrets) never go into one;
/// people are named by user id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub action: Action,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}

impl NewEntry {
    pub fn new(action: Action, by: &Actor) -> NewEntry {
        NewEntry {
            action,
            actor: by.user_id.clone(),
            target: None,
            ip: by.origin.ip.clone(),
            request_id: by.origin.request_id.clone(),
            details: json!({}),
        }
    }

    /// What the action was done to (`usr_…`, `prd_…`, `rul_…`, `ord_…`).
    pub fn target(mut self, id: &str) -> NewEntry {
        self.target = Some(id.to_owned());
        self
    }

    /// A JSON object of facts about the action (ids, amounts, reasons; never a secret).
    pub fn details(mut self, details: serde_json::Value) -> NewEntry {
        self.details = details;
        self
    }
}

/// An entry as stored: its place in the chain and every hashed field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub seq: i64,
    pub id: String,
    pub at: DateTime<Utc>,
    pub actor: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// The JSON text as stored (and hashed).
    pub details: String,
    pub hash: String,
}

impl StoredEntry {
    /// The entry `entry` becomes at place `seq` after the entry whose hash is `previous`.
    pub fn chained(entry: &NewEntry, id: String, seq: i64, at: DateTime<Utc>, previous: &str) -> StoredEntry {
        let mut stored = StoredEntry {
            seq,
            id,
            at,
            actor: entry.actor.clone(),
            action: entry.action.name().to_owned(),
            target: entry.target.clone(),
            ip: entry.ip.clone(),
            request_id: entry.request_id.clone(),
            details: entry.details.to_string(),
            hash: String::new(),
        };
        stored.hash = stored.expected_hash(previous);
        stored
    }

    /// The canonical form (module docs).
    pub fn canonical(&self) -> String {
        json!([
            "keel.audit.v1",
            self.seq,
            self.id,
            self.at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            self.actor,
            self.action,
            self.target,
            self.ip,
            self.request_id,
            self.details,
        ])
        .to_string()
    }

    /// The hash this entry must have after the entry whose hash is `previous`.
    pub fn expected_hash(&self, previous: &str) -> String {
        sha256_hex(format!("{previous}\n{}", self.canonical()).as_bytes())
    }
}

/// Why an entry breaks the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Flaw {
    /// Its hash is not the hash of the previous entry's hash and its own canonical form: it, or
    /// the entry before it, was changed.
    HashMismatch,
    /// No entry holds this place: it was removed.
    Missing,
    /// The chain head kept beside the entries names another last entry: the last entries were
    /// changed or removed.
    HeadMismatch,
}

impl Flaw {
    /// As serialised (`hash_mismatch`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Flaw::HashMismatch => "hash_mismatch",
            Flaw::Missing => "missing",
            Flaw::HeadMismatch => "head_mismatch",
        }
    }
}

/// The first entry that breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BadEntry {
    /// Its place in the chain (1 is the first entry).
    pub seq: i64,
    /// Its id; `null` when it is missing.
    #[schema(required = true)]
    pub id: Option<String>,
    pub reason: Flaw,
}

/// Walks the chain in order, one entry at a time (so any length fits in memory).
#[derive(Debug)]
pub struct ChainCheck {
    previous: String,
    next_seq: i64,
    checked: u64,
    first_bad: Option<BadEntry>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck { previous: GENESIS.to_owned(), next_seq: 1, checked: 0, first_bad: None }
    }
}

impl ChainCheck {
    /// Checks the next entry (entries come in `seq` order). After the first flaw the rest are
    /// only counted.
    pub fn push(&mut self, entry: &StoredEntry) {
        self.checked += 1;
        if self.first_bad.is_none() {
            if entry.seq != self.next_seq {
                self.first_bad = Some(BadEntry { seq: self.next_seq, id: None, reason: Flaw::Missing });
            } else if entry.hash != entry.expected_hash(&self.previous) {
                self.first_bad = Some(BadEntry { seq: entry.seq, id: Some(entry.id.clone()), reason: Flaw::HashMismatch });
            }
        }
        self.previous.clone_from(&entry.hash);
        self.next_seq = entry.seq + 1;
    }

    /// The verdict, given the chain head (`seq`, `hash`) read before the entries; `last_id` is
    /// the id of the last entry pushed.
    pub fn finish(mut self, head_seq: i64, head_hash: &str, last_id: Option<String>) -> Verdict {
        if self.first_bad.is_none() {
            let last_seq = self.next_seq - 1;
            if last_seq < head_seq {
                self.first_bad = Some(BadEntry { seq: last_seq + 1, id: None, reason: Flaw::Missing });
            } else if self.previous != head_hash {
                self.first_bad = Some(BadEntry { seq: last_seq, id: last_id, reason: Flaw::HeadMismatch });
            }
        }
        Verdict { valid: self.first_bad.is_none(), entries: self.checked, first_bad: self.first_bad }
    }
}

/// The result of verifying the chain (`GET /v1/admin/audit/verify`, `keel audit verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Verdict {
    /// True when every entry is where the chain says and unchanged.
    pub valid: bool,
    /// How many entries were checked.
    pub entries: u64,
    /// The first entry that breaks the chain; absent when `valid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad: Option<BadEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<StoredEntry> {
        let mut previous = GENESIS.to_owned();
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456Z").unwrap().with_timezone(&Utc);
        (1..=n)
            .map(|seq| {
                let entry =
                    NewEntry::new(Action::LoginFailed, &Actor::anonymous(Origin { ip: Some("192.0.2.1".into()), request_id: None }))
                        .details(json!({ "reason": "wrong_password", "n": seq }));
                let stored = StoredEntry::chained(&entry, format!("aud_{seq}"), seq, at, &previous);
                previous.clone_from(&stored.hash);
                stored
            })
            .collect()
    }

    fn verify(entries: &[StoredEntry], head: (i64, &str)) -> Verdict {
        let mut check = ChainCheck::default();
        entries.iter().for_each(|e| check.push(e));
        check.finish(head.0, head.1, entries.last().map(|e| e.id.clone()))
    }

    #[test]
    fn the_canonical_form_is_pinned() {
        let e = &chain(1)[0];
        assert_eq!(
            e.canonical(),
            r#"["keel.audit.v1",1,"aud_1","2026-01-02T03:04:05.123456Z",null,"account.login_failed",null,"192.0.2.1",null,"{\"n\":1,\"reason\":\"wrong_password\"}"]"#
        );
        assert_eq!(e.hash, sha256_hex(format!("{GENESIS}\n{}", e.canonical()).as_bytes()));
    }

    #[test]
    fn an_intact_chain_verifies() {
        let entries = chain(5);
        let last = entries.last().unwrap();
        assert_eq!(verify(&entries, (5, &last.hash)), Verdict { valid: true, entries: 5, first_bad: None });
        assert_eq!(verify(&[], (0, GENESIS)), Verdict { valid: true, entries: 0, first_bad: None });
    }

    #[test]
    fn an_edited_entry_is_named() {
        let mut entries = chain(5);
        entries[2].details = r#"{"n":3,"reason":"nothing to see"}"#.into();
        let head = entries[4].hash.clone();
        let verdict = verify(&entries, (5, &head));
        assert_eq!(verdict.first_bad, Some(BadEntry { seq: 3, id: Some("aud_3".into()), reason: Flaw::HashMismatch }));
        // Rehashing the edited entry moves the break to the next one, whose link no longer holds.
        let previous = entries[1].hash.clone();
        entries[2].hash = entries[2].expected_hash(&previous);
        assert_eq!(verify(&entries, (5, &head)).first_bad.unwrap().seq, 4);
    }

    #[test]
    fn removed_entries_are_named_in_the_middle_and_at_the_end() {
        let mut entries = chain(5);
        let head = entries[4].hash.clone();
        let mut middle = entries.clone();
        middle.remove(1);
        assert_eq!(verify(&middle, (5, &head)).first_bad, Some(BadEntry { seq: 2, id: None, reason: Flaw::Missing }));
        entries.truncate(4);
        assert_eq!(verify(&entries, (5, &head)).first_bad, Some(BadEntry { seq: 5, id: None, reason: Flaw::Missing }));
        let verdict = verify(&entries, (4, &head));
        assert_eq!(verdict.first_bad, Some(BadEntry { seq: 4, id: Some("aud_4".into()), reason: Flaw::HeadMismatch }));
    }

    #[test]
    fn the_api_guide_lists_exactly_the_actions() {
        let guide = include_str!("../../../docs/API.md");
        let table = guide.split("| action | actor / target | details |").nth(1).expect("docs/API.md has the table of audited actions");
        let rows = table.lines().skip(2).take_while(|l| l.starts_with('|'));
        let listed: Vec<&str> = rows.filter_map(|row| row.strip_prefix("| `")?.split('`').next()).collect();
        let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(listed, names, "docs/API.md's table of actions, in the order of `Action::ALL`");
    }

    #[test]
    fn action_names_are_unique_and_round_trip() {
        let names: std::collections::HashSet<_> = Action::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names.len(), Action::ALL.len());
        assert!(Action::ALL.iter().all(|a| Action::from_name(a.name()) == Some(*a)));
    }
}
