//! The audit entries of orders' money: back-office refunds and card payments taken.

use serde_json::json;

use crate::money::Money;
use crate::security::audit::{Action, Actor, NewEntry};

/// A refund of `amount` by `by`; `refunded` is the order's refunded sum after it.
pub fn refunded(by: &Actor, order_id: &str, amount: Money, refunded: Money) -> NewEntry {
    NewEntry::new(Action::OrderRefunded, by).target(order_id).details(json!({ "amount": amount, "refunded": refunded }))
}

/// A card payment taken for an order, settled by `settled_by` (`checkout`, `reconciliation` or
/// `provider_webhook`). Keel is the actor: the provider's answer settles it.
pub fn captured(order_id: &str, amount: Money, provider_ref: Option<&str>, settled_by: &str) -> NewEntry {
    let details = json!({ "amount": amount, "provider_ref": provider_ref, "settled_by": settled_by });
    NewEntry::new(Action::PaymentCaptured, &Actor::keel()).target(order_id).details(details)
}
