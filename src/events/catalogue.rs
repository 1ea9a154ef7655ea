//! The catalogue of event types: every type Keel emits, defined once. State changes emit through
//! `Effects`, which takes an `EventType`, so they cannot emit a type missing here; webhook
//! endpoints subscribe to these names (or `*`). The README's table describes each.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A product's public face changed (price, stock, activity, any edit). Data: `{id, price, stock_available, active, version}`.
    ProductUpdated,
    /// A pricing rule was created, changed or deleted. Data: `{rules_version}`.
    PricingRulesChanged,
    /// A user got an in-app notification. Data: `{id, kind, title, body}`.
    NotificationCreated,
    /// A user confirmed their email address. Data: `{}`.
    AccountEmailVerified,
    /// A user changed their password. Data: `{}`.
    AccountPasswordChanged,
    /// A user reset their password by mail. Data: `{}`.
    AccountPasswordReset,
    /// A user turned TOTP two-factor authentication on. Data: `{}`.
    AccountMfaEnabled,
    /// A user turned it off. Data: `{}`.
    AccountMfaDisabled,
    /// A user's wallet balance changed (top-up, transfer sent or received). Data: `{balance, transaction_id}`.
    WalletUpdated,
    /// A user's order was placed or changed state (paid, failed, cancelled, shipped, delivered, refunded). Data: `{id, status, total, refunded}`.
    OrderUpdated,
    /// An admin pinged one webhook endpoint (sent to that endpoint only). Data: `{endpoint_id}`.
    Ping,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        EventType::ProductUpdated,
        EventType::PricingRulesChanged,
        EventType::NotificationCreated,
        EventType::AccountEmailVerified,
        EventType::AccountPasswordChanged,
        EventType::AccountPasswordReset,
        EventType::AccountMfaEnabled,
        EventType::AccountMfaDisabled,
        EventType::WalletUpdated,
        EventType::OrderUpdated,
        EventType::Ping,
    ];

    /// The `type` of the event as sent.
    pub const fn name(self) -> &'static str {
        match self {
            EventType::ProductUpdated => "product.updated",
            EventType::PricingRulesChanged => "pricing.rules_changed",
            EventType::NotificationCreated => "notification.created",
            EventType::AccountEmailVerified => "account.email_verified",
            EventType::AccountPasswordChanged => "account.password_changed",
            EventType::AccountPasswordReset => "account.password_reset",
            EventType::AccountMfaEnabled => "account.mfa_enabled",
            EventType::AccountMfaDisabled => "account.mfa_disabled",
            EventType::WalletUpdated => "wallet.updated",
            EventType::OrderUpdated => "order.updated",
            EventType::Ping => "ping",
        }
    }

    pub fn from_name(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// What a webhook endpoint subscribes to: `*` (every type) or one type of the catalogue.
pub const ALL_EVENTS: &str = "*";

/// A string schema that admits the names of the catalogue and `extra`.
fn names_schema(extra: &[&'static str], description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(EventType::ALL.iter().map(|t| t.name()).chain(extra.iter().copied())))
        .description(Some(description))
        .into()
}

/// As sent (a delivery's `event_type`): one name of the catalogue.
impl PartialSchema for EventType {
    fn schema() -> RefOr<Schema> {
        names_schema(&[], "An event type Keel emits.")
    }
}

impl ToSchema for EventType {}

/// The OpenAPI schema of one entry of a webhook endpoint's `events`: the catalogue or `*`.
pub struct EventSubscription;

impl PartialSchema for EventSubscription {
    fn schema() -> RefOr<Schema> {
        names_schema(&[ALL_EVENTS], "An event type Keel emits, or `*` for all of them.")
    }
}

impl ToSchema for EventSubscription {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_read_back() {
        let mut names: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
        for t in EventType::ALL {
            assert_eq!(EventType::from_name(t.name()), Some(t));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len());
        assert_eq!(EventType::from_name("order.shipped"), None, "one type per aggregate: `order.updated` carries the state");
        assert_eq!(EventType::from_name(ALL_EVENTS), None, "`*` is a subscription, not a type");
    }

    #[test]
    fn the_readme_lists_exactly_the_catalogue() {
        let readme = include_str!("../../README.md");
        let section = readme.split("### Event types").nth(1).expect("the README has an \"Event types\" section");
        let rows = section.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|'));
        let listed: Vec<&str> = rows.filter_map(|row| row.strip_prefix("| `")?.split('`').next()).collect();
        let names: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(listed, names, "the README's table of event types, in the catalogue's order");
    }
}
