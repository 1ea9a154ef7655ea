//! Incoming provider webhooks, the pure part: the `Keel-Signature` check over the raw body
//! (`security::signature`, the same scheme Keel signs its own deliveries with) and the reading
//! of Stripe-shaped events. Deduplication by event id and settling orders join with storage.
//!
//! ```json
//! {"id":"evt_…","type":"payment_intent.succeeded","data":{"object":{"id":"pi_…","amount":1234,
//!  "currency":"usd","metadata":{"order_id":"ord_…"}}}}
//! ```
//! `charge.refunded` carries a charge object (`payment_intent`, `amount_refunded`) instead.

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::ToSchema;

use crate::security::signature::{self, SignatureError};

/// A verified provider event, reduced to what settling needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    /// `evt_…`: the same event delivered twice has one effect.
    pub id: String,
    pub kind: ProviderEventKind,
    /// The payment intent (`pi_…`) it is about.
    pub provider_ref: String,
    /// The intent's amount (minor units) and currency (upper case), to check against the order.
    pub amount: i64,
    pub currency: String,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEventKind {
    PaymentSucceeded,
    PaymentFailed {
        code: String,
    },
    /// `amount_refunded`: the total refunded so far on the charge.
    Refunded {
        amount_refunded: i64,
    },
    /// Any other type: acknowledged and ignored (providers send many).
    Other(String),
}

/// Every reason maps to `400`; the variants are for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("payment webhooks are not configured (payment_webhook_secret)")]
    NotConfigured,
    #[error("no Keel-Signature header")]
    Unsigned,
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the event could not be read: {0}")]
    Malformed(String),
}

impl ProviderEvent {
    /// The order the event names (`metadata[order_id]` as the charge sent it).
    pub fn order_id(&self) -> Option<&str> {
        self.metadata.get("order_id").map(String::as_str)
    }

    /// Whether the event is about exactly this much money: an event that is not never marks an
    /// order paid (it is logged as an alert instead).
    pub fn matches(&self, amount: i64, currency: &str) -> bool {
        self.amount == amount && self.currency.eq_ignore_ascii_case(currency)
    }
}

/// Verifies `header` over the raw `body` with `secret` at `now` (unix seconds), then reads it.
pub fn verify_event(secret: &[u8], header: Option<&str>, body: &[u8], now: i64) -> Result<ProviderEvent, WebhookError> {
    let header = header.ok_or(WebhookError::Unsigned)?;
    signature::verify(secret, header, body, now, signature::TOLERANCE)?;
    parse_event(body)
}

/// A provider event as sent (what `POST /v1/webhooks/payments` documents and reads).
#[derive(Deserialize, ToSchema)]
#[schema(as = PaymentProviderEvent)]
pub struct EventJson {
    /// `evt_…`
    id: String,
    /// `payment_intent.succeeded`, `payment_intent.payment_failed`, `charge.refunded`; others are ignored.
    #[serde(rename = "type")]
    kind: String,
    data: DataJson,
}

#[derive(Deserialize, ToSchema)]
#[schema(as = PaymentProviderEventData)]
struct DataJson {
    object: ObjectJson,
}

/// A payment intent or, for `charge.refunded`, a charge.
#[derive(Deserialize, ToSchema)]
#[schema(as = PaymentProviderObject)]
struct ObjectJson {
    /// `pi_…` (or `ch_…` for a charge)
    id: String,
    /// Present on intents and charges; other objects may have none.
    amount: Option<i64>,
    currency: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// On a charge: its intent.
    payment_intent: Option<String>,
    amount_refunded: Option<i64>,
    last_payment_error: Option<PaymentErrorJson>,
}

#[derive(Deserialize, ToSchema)]
#[schema(as = PaymentProviderError)]
struct PaymentErrorJson {
    code: Option<String>,
    decline_code: Option<String>,
}

fn parse_event(body: &[u8]) -> Result<ProviderEvent, WebhookError> {
    let event: EventJson = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let object = event.data.object;
    let missing = |field: &str| WebhookError::Malformed(format!("{} without {field}", event.kind));
    let (kind, provider_ref) = match event.kind.as_str() {
        "payment_intent.succeeded" => (ProviderEventKind::PaymentSucceeded, object.id),
        "payment_intent.payment_failed" => {
            let code = object.last_payment_error.and_then(|e| e.decline_code.or(e.code)).unwrap_or_else(|| "card_declined".into());
            (ProviderEventKind::PaymentFailed { code }, object.id)
        }
        "charge.refunded" => {
            let amount_refunded = object.amount_refunded.ok_or_else(|| missing("amount_refunded"))?;
            (ProviderEventKind::Refunded { amount_refunded }, object.payment_intent.ok_or_else(|| missing("payment_intent"))?)
        }
        other => (ProviderEventKind::Other(other.to_owned()), object.id),
    };
    let (amount, currency) = match (object.amount, object.currency, &kind) {
        (Some(amount), Some(currency), _) => (amount, currency.to_uppercase()),
        (_, _, ProviderEventKind::Other(_)) => (0, String::new()),
        (None, _, _) => return Err(missing("amount")),
        (_, None, _) => return Err(missing("currency")),
    };
    Ok(ProviderEvent { id: event.id, kind, provider_ref, amount, currency, metadata: object.metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_0123456789";
    const NOW: i64 = 1_764_590_000;

    fn signed(body: &str) -> String {
        signature::sign(SECRET, NOW, body.as_bytes())
    }

    const SUCCEEDED: &str = r#"{"id":"evt_1","type":"payment_intent.succeeded","created":1764590000,
        "data":{"object":{"id":"pi_1","object":"payment_intent","amount":1234,"currency":"usd","status":"succeeded",
        "metadata":{"order_id":"ord_1"}}}}"#;

    #[test]
    fn a_signed_success_is_read() {
        let event = verify_event(SECRET, Some(&signed(SUCCEEDED)), SUCCEEDED.as_bytes(), NOW + 5).unwrap();
        assert_eq!(event.id, "evt_1");
        assert_eq!(event.kind, ProviderEventKind::PaymentSucceeded);
        assert_eq!((event.provider_ref.as_str(), event.order_id()), ("pi_1", Some("ord_1")));
        assert!(event.matches(1234, "USD"));
        assert!(!event.matches(1233, "USD") && !event.matches(1234, "EUR"), "another amount or currency never settles");
    }

    #[test]
    fn unsigned_wrongly_signed_old_and_tampered_events_are_refused() {
        let body = SUCCEEDED.as_bytes();
        assert_eq!(verify_event(SECRET, None, body, NOW), Err(WebhookError::Unsigned));
        let other = signature::sign(b"another secret", NOW, body);
        assert_eq!(verify_event(SECRET, Some(&other), body, NOW), Err(WebhookError::Signature(SignatureError::Mismatch)));
        assert_eq!(verify_event(SECRET, Some(&signed(SUCCEEDED)), body, NOW + 301), Err(WebhookError::Signature(SignatureError::Expired)));
        let tampered = SUCCEEDED.replace("1234", "9999");
        assert_eq!(
            verify_event(SECRET, Some(&signed(SUCCEEDED)), tampered.as_bytes(), NOW),
            Err(WebhookError::Signature(SignatureError::Mismatch))
        );
        assert_eq!(verify_event(SECRET, Some("t=,v1="), body, NOW), Err(WebhookError::Signature(SignatureError::Malformed)));
    }

    #[test]
    fn failures_refunds_and_other_types_are_read() {
        let failed = r#"{"id":"evt_2","type":"payment_intent.payment_failed","data":{"object":{"id":"pi_2","amount":500,
            "currency":"usd","last_payment_error":{"code":"card_declined","decline_code":"insufficient_funds"}}}}"#;
        let event = verify_event(SECRET, Some(&signed(failed)), failed.as_bytes(), NOW).unwrap();
        assert_eq!(event.kind, ProviderEventKind::PaymentFailed { code: "insufficient_funds".into() });
        assert_eq!(event.order_id(), None);

        let refunded = r#"{"id":"evt_3","type":"charge.refunded","data":{"object":{"id":"ch_3","object":"charge",
            "payment_intent":"pi_3","amount":1000,"amount_refunded":400,"currency":"usd","metadata":{"order_id":"ord_3"}}}}"#;
        let event = verify_event(SECRET, Some(&signed(refunded)), refunded.as_bytes(), NOW).unwrap();
        assert_eq!(event.kind, ProviderEventKind::Refunded { amount_refunded: 400 });
        assert_eq!(event.provider_ref, "pi_3", "a refund is about the intent, not the charge");

        let other = r#"{"id":"evt_4","type":"customer.created","data":{"object":{"id":"cus_4","email":"a@example.com"}}}"#;
        let event = verify_event(SECRET, Some(&signed(other)), other.as_bytes(), NOW).unwrap();
        assert_eq!(event.kind, ProviderEventKind::Other("customer.created".into()));
    }

    #[test]
    fn signed_garbage_is_malformed() {
        for body in [
            "not json",
            r#"{"id":"evt_5","type":"charge.refunded","data":{"object":{"id":"ch_5","amount":1,"currency":"usd"}}}"#,
            r#"{"id":"evt_6","type":"payment_intent.succeeded","data":{"object":{"id":"pi_6","currency":"usd"}}}"#,
        ] {
            assert!(matches!(verify_event(SECRET, Some(&signed(body)), body.as_bytes(), NOW), Err(WebhookError::Malformed(_))), "{body}");
        }
    }
}
