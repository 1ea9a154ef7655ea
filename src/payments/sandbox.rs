//! The in-process sandbox provider (the default): no network, the card token decides.
//!
//! | token | outcome |
//! |---|---|
//! | `tok_visa` | succeeds |
//! | `tok_chargeDeclined` | declined, `card_declined` |
//! | `tok_insufficientFunds` | declined, `insufficient_funds` |
//! | `tok_timeout` | the charge is taken but every answer to `charge` is lost (`Timeout`); `retrieve` by its idempotency key finds it succeeded |
//! | `tok_error` | `503` from the provider, every time, nothing taken |
//! | anything else | `400 resource_missing` (no such card) |
//!
//! Like a real provider, it is idempotent per key: the same key with the same request answers
//! the first result and charges once; with another request it is refused.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Charge, ChargeLookup, ChargeRequest, ChargeStatus, PaymentProvider, ProviderError, Refund, RefundRequest, RefundStatus};

#[derive(Default)]
pub struct SandboxProvider {
    state: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    /// Idempotency key → the request and the charge it made.
    charges_by_key: HashMap<String, (ChargeRequest, Charge)>,
    charges: HashMap<String, Charge>,
    refunds_by_key: HashMap<String, (RefundRequest, Refund)>,
    /// Charge → refunded so far.
    refunded: HashMap<String, i64>,
    next_id: u64,
}

impl Ledger {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_sandbox_{}", self.next_id)
    }
}

fn rejected(status: u16, code: &str, message: &str) -> ProviderError {
    ProviderError::Rejected { status, code: code.to_owned(), message: message.to_owned() }
}

impl SandboxProvider {
    /// Charges taken (declines included, as the provider records them), for tests and the demo.
    pub fn charge_count(&self) -> usize {
        self.state().charges.len()
    }

    /// `answer_lost`: whether a `tok_timeout` charge loses its answer (a `charge` call) or not
    /// (a lookup by key).
    fn charge_once(&self, request: &ChargeRequest, answer_lost: bool) -> Result<Charge, ProviderError> {
        let lost = answer_lost && request.card_token == "tok_timeout";
        let mut state = self.state();
        if let Some((first, charge)) = state.charges_by_key.get(&request.idempotency_key) {
            return match (first == request, lost) {
                (false, _) => Err(rejected(400, "idempotency_key_reuse", "this idempotency key was used with other parameters")),
                (true, true) => Err(ProviderError::Timeout),
                (true, false) => Ok(charge.clone()),
            };
        }
        if request.amount <= 0 {
            return Err(rejected(400, "parameter_invalid_integer", "amount must be positive"));
        }
        let status = match request.card_token.as_str() {
            "tok_visa" | "tok_timeout" => ChargeStatus::Succeeded,
            "tok_chargeDeclined" => ChargeStatus::Declined { code: "card_declined".into() },
            "tok_insufficientFunds" => ChargeStatus::Declined { code: "insufficient_funds".into() },
            "tok_error" => return Err(ProviderError::Server { status: 503 }),
            _ => return Err(rejected(400, "resource_missing", "no such card token")),
        };
        let id = state.id("pi");
        let charge = Charge { provider_ref: Some(id.clone()), amount: request.amount, currency: request.currency.clone(), status };
        state.charges.insert(id, charge.clone());
        state.charges_by_key.insert(request.idempotency_key.clone(), (request.clone(), charge.clone()));
        if lost { Err(ProviderError::Timeout) } else { Ok(charge) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl PaymentProvider for SandboxProvider {
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, ProviderError> {
        self.charge_once(request, true)
    }

    async fn retrieve(&self, lookup: &ChargeLookup) -> Result<Charge, ProviderError> {
        match lookup {
            ChargeLookup::ProviderRef(id) => {
                self.state().charges.get(id).cloned().ok_or_else(|| rejected(404, "resource_missing", "no such payment"))
            }
            ChargeLookup::IdempotencyKey(request) => self.charge_once(request, false),
        }
    }

    async fn refund(&self, request: &RefundRequest) -> Result<Refund, ProviderError> {
        let mut state = self.state();
        if let Some((first, refund)) = state.refunds_by_key.get(&request.idempotency_key) {
            return if first == request {
                Ok(refund.clone())
            } else {
                Err(rejected(400, "idempotency_key_reuse", "this idempotency key was used with other parameters"))
            };
        }
        let Some(charge) = state.charges.get(&request.provider_ref) else {
            return Err(rejected(404, "resource_missing", "no such payment"));
        };
        if charge.status != ChargeStatus::Succeeded {
            return Err(rejected(400, "charge_not_refundable", "only a succeeded payment can be refunded"));
        }
        let left = charge.amount - state.refunded.get(&request.provider_ref).copied().unwrap_or(0);
        if request.amount <= 0 || request.amount > left {
            return Err(rejected(400, "amount_too_large", "the refund exceeds what is left of the payment"));
        }
        *state.refunded.entry(request.provider_ref.clone()).or_default() += request.amount;
        let refund = Refund { provider_ref: state.id("re"), amount: request.amount, status: RefundStatus::Succeeded };
        state.refunds_by_key.insert(request.idempotency_key.clone(), (request.clone(), refund.clone()));
        Ok(refund)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: &str, key: &str) -> ChargeRequest {
        ChargeRequest {
            amount: 1500,
            currency: "USD".into(),
            card_token: token.into(),
            idempotency_key: key.into(),
            metadata: [("order_id".to_owned(), "ord_1".to_owned())].into(),
        }
    }

    #[tokio::test]
    async fn the_contracts_card_tokens() {
        let p = SandboxProvider::default();
        assert_eq!(p.charge(&request("tok_visa", "k1")).await.unwrap().status, ChargeStatus::Succeeded);
        assert_eq!(
            p.charge(&request("tok_chargeDeclined", "k2")).await.unwrap().status,
            ChargeStatus::Declined { code: "card_declined".into() }
        );
        assert_eq!(
            p.charge(&request("tok_insufficientFunds", "k3")).await.unwrap().status,
            ChargeStatus::Declined { code: "insufficient_funds".into() }
        );
        assert_eq!(p.charge(&request("tok_error", "k4")).await, Err(ProviderError::Server { status: 503 }));
        assert!(matches!(p.charge(&request("tok_nope", "k5")).await, Err(ProviderError::Rejected { status: 400, .. })));
        assert_eq!(p.charge_count(), 3);
    }

    #[tokio::test]
    async fn the_same_key_charges_once_and_answers_the_same() {
        let p = SandboxProvider::default();
        let first = p.charge(&request("tok_visa", "k")).await.unwrap();
        assert_eq!(p.charge(&request("tok_visa", "k")).await.unwrap(), first);
        assert_eq!(p.charge_count(), 1);
        let other = ChargeRequest { amount: 1, ..request("tok_visa", "k") };
        assert!(matches!(p.charge(&other).await, Err(ProviderError::Rejected { status: 400, .. })));
    }

    #[tokio::test]
    async fn a_lost_answer_is_found_by_its_idempotency_key() {
        let p = SandboxProvider::default();
        let err = p.charge(&request("tok_timeout", "k")).await.unwrap_err();
        assert!(err.outcome_unknown() && err.is_retryable());
        assert_eq!(p.charge(&request("tok_timeout", "k")).await, Err(ProviderError::Timeout), "a retry loses its answer too");
        let found = p.retrieve(&ChargeLookup::IdempotencyKey(request("tok_timeout", "k"))).await.unwrap();
        assert_eq!(found.status, ChargeStatus::Succeeded);
        assert_eq!(p.retrieve(&ChargeLookup::ProviderRef(found.provider_ref.clone().unwrap())).await.unwrap(), found);
        assert_eq!(p.charge_count(), 1);
    }

    #[tokio::test]
    async fn refunds_never_exceed_the_charge_and_are_idempotent() {
        let p = SandboxProvider::default();
        let charge = p.charge(&request("tok_visa", "k")).await.unwrap();
        let refund =
            |amount, key: &str| RefundRequest { provider_ref: charge.provider_ref.clone().unwrap(), amount, idempotency_key: key.into() };
        let first = p.refund(&refund(1000, "r1")).await.unwrap();
        assert_eq!(p.refund(&refund(1000, "r1")).await.unwrap(), first, "replayed, not refunded twice");
        assert!(matches!(p.refund(&refund(501, "r2")).await, Err(ProviderError::Rejected { .. })));
        assert_eq!(p.refund(&refund(500, "r3")).await.unwrap().status, RefundStatus::Succeeded);
    }
}
