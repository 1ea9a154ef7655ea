//! Card payments. A card checkout cannot be one unit of work: the provider is a network call,
//! and no transaction is held across one. So checkout holds the stock and writes the order
//! `pending_payment` (Tx1), charges with no transaction open, then settles (Tx2): `paid` with
//! the stock sold, or `failed` with it released.
//!
//! When the provider's answer is lost, the order stays `pending_payment` (checkout answers
//! `202`) and settles later, exactly once, by whichever comes first: the reconciliation job,
//! which asks the provider again with the charge's idempotency key, or the provider's webhook.
//! Each settles under the order's row lock and through its state machine, so the first wins
//! and the others find the order settled. A charge taken for an order that ended without it
//! (cancelled, or sold out while the answer was late) is given back whole.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::http::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use super::model::{EventKind, OrderError as StateError};
use super::model::{OrderEvent, OrderStatus};
use super::repo::OrderRow;
use super::service::{HOLD, OrderError, Orders, PaymentMethod, Placed, ShortLine};
use crate::catalog::repo::Settle;
use crate::catalog::service::Take;
use crate::events::Effects;
use crate::http::idempotency::repo::Claim;
use crate::jobs::{Completion, Done, Job, JobHandler, NewJob};
use crate::ledger::model::Transaction;
use crate::money::Money;
use crate::payments::webhook::{ProviderEvent, ProviderEventKind, WebhookError, verify_event};
use crate::payments::{Charge, ChargeLookup, ChargeRequest, ChargeStatus, PaymentProvider, ProviderError, RefundRequest};
use crate::security::crypto::FieldCipher;
use crate::store::{StoreError, Tx, now};

/// What card payments need besides storage.
pub struct CardPayments {
    pub provider: Arc<dyn PaymentProvider>,
    /// Seals the card token kept in a reconciliation job's payload.
    pub cipher: Arc<FieldCipher>,
    /// How long after a lost answer reconciliation first asks again; later attempts back off
    /// from it, up to an hour apart.
    pub reconcile_delay: Duration,
    /// Signs the provider's webhooks; without it they are refused.
    pub webhook_secret: Option<SecretString>,
}

/// What the provider said about a charge.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    Paid(Option<String>),
    Declined(Option<String>, String),
    /// Sent, and nobody knows yet whether it was taken: settled later.
    Unknown,
    /// Nothing was taken: the provider could not be reached or refused the request.
    Unavailable,
    /// Taken, but the stock ran out while the answer was late: the charge goes back.
    SoldOut {
        provider_ref: String,
        short: Vec<ShortLine>,
    },
}

/// Who settles a card order.
#[derive(Clone, Copy)]
enum Settler<'a> {
    /// The checkout request: its answer is stored under the idempotency key, and a lost answer
    /// schedules reconciliation (`token` is the card token to ask with).
    Checkout { claim: &'a Claim, token: &'a str },
    /// Reconciliation, or the provider's webhook (with its event's id and type), after `202`.
    Later { event: Option<(&'a str, &'a str)> },
}

impl Settler<'_> {
    /// How the audit trail names it.
    fn name(self) -> &'static str {
        match self {
            Settler::Checkout { .. } => "checkout",
            Settler::Later { event: Some(_) } => "provider_webhook",
            Settler::Later { event: None } => "reconciliation",
        }
    }
}

/// The `payments.reconcile` job's payload.
#[derive(Serialize, Deserialize)]
struct ReconcileJob {
    order_id: String,
    /// The card token, sealed: a lookup by key replays the original request.
    card_token: String,
}

pub const RECONCILE_KIND: &str = "payments.reconcile";
const TOKEN_COLUMN: &str = "jobs.card_token";
/// Reconciliation tries for about a day (the time providers keep idempotency keys), then the
/// job is dead and the order waits for the webhook or staff.
const RECONCILE_ATTEMPTS: u32 = 30;
const RECONCILE_MAX_DELAY: Duration = Duration::from_secs(3600);

impl Orders {
    pub(super) async fn pay_by_card(&self, order: OrderRow, card_token: String, claim: &Claim) -> Result<Placed, OrderError> {
        let order = self
            .store
            .transact(|mut tx| {
                let mut order = order.clone();
                async move {
                    self.keys.hold_in(&mut tx, claim).await?;
                    self.take_lines(&mut tx, &mut order, Take::Hold(HOLD)).await?;
                    self.repo.insert(&mut tx, &order).await?;
                    self.announce(&order).write(&mut tx, order.created_at).await?;
                    Ok::<_, OrderError>((tx, order))
                }
            })
            .await?;
        self.forget_products(&order).await;
        let request = self.charge_request(&order, card_token);
        let outcome = match self.card.provider.charge(&request).await {
            Err(first) if first.outcome_unknown() => match self.look_up(&request).await {
                Ok(outcome) => outcome,
                // Both asks were answered with errors (a 5xx replays as a 5xx): the provider keeps
                // no result under the key, so nothing was taken.
                Err(again) if answered(&first) && answered(&again) => Outcome::Unavailable,
                Err(_) => Outcome::Unknown,
            },
            answer => Self::outcome(answer),
        };
        let settler = Settler::Checkout { claim, token: &request.card_token };
        Ok(self.settle(&order.id, outcome, settler).await?.expect("a checkout's settlement answers"))
    }

    fn charge_request(&self, order: &OrderRow, card_token: String) -> ChargeRequest {
        ChargeRequest {
            amount: order.total,
            currency: order.currency.clone(),
            card_token,
            // From the order: every attempt for this order, and every later lookup, name one charge.
            idempotency_key: format!("keel_charge_{}", order.id),
            metadata: BTreeMap::from([("order_id".to_owned(), order.id.clone()), ("user_id".to_owned(), order.user_id.clone())]),
        }
    }

    /// Asks again for a charge whose answer was lost, by its key: the provider answers the
    /// original result and never charges twice. `Err` when no result came back.
    async fn look_up(&self, request: &ChargeRequest) -> Result<Outcome, ProviderError> {
        match self.card.provider.retrieve(&ChargeLookup::IdempotencyKey(request.clone())).await {
            Err(e) if !unknown_token(&e) => {
                tracing::warn!(error = %e, "a lost card answer could not be looked up");
                Err(e)
            }
            answer => Ok(Self::outcome(answer)),
        }
    }

    /// A first answer (not a lost one) as an outcome.
    fn outcome(answer: Result<Charge, ProviderError>) -> Outcome {
        match answer {
            Ok(Charge { status: ChargeStatus::Succeeded, provider_ref, .. }) => Outcome::Paid(provider_ref),
            Ok(Charge { status: ChargeStatus::Declined { code }, provider_ref, .. }) => Outcome::Declined(provider_ref, code),
            Ok(Charge { status: ChargeStatus::Pending, .. }) => Outcome::Unknown,
            Err(e) if unknown_token(&e) => Outcome::Declined(None, "unknown_card_token".to_owned()),
            Err(e) => {
                tracing::warn!(error = %e, "a card charge got no usable answer from the payment provider");
                Outcome::Unavailable
            }
        }
    }

    /// Settles a `pending_payment` card order with `outcome`. Returns the checkout's answer for
    /// `Settler::Checkout`, nothing for a later settler.
    async fn settle(&self, order_id: &str, outcome: Outcome, settler: Settler<'_>) -> Result<Option<Placed>, OrderError> {
        let settled = self.store.transact(|tx| self.settle_in(tx, order_id, &outcome, settler)).await;
        let (order, result, void) = match (settled, &outcome) {
            // The hold ran out while the answer was late and the stock is gone: the order fails
            // and the charge goes back.
            (Err(OrderError::InsufficientStock(short)), Outcome::Paid(Some(provider_ref))) => {
                let sold_out = Outcome::SoldOut { provider_ref: provider_ref.clone(), short };
                return Box::pin(self.settle(order_id, sold_out, settler)).await;
            }
            (settled, _) => settled?,
        };
        self.forget_products(&order).await;
        if let Some(provider_ref) = void {
            self.void(&order, provider_ref).await;
        }
        result
    }

    /// The settlement's unit of work: the order, the money, the stock and the effects.
    async fn settle_in(
        &self,
        mut tx: Tx,
        order_id: &str,
        outcome: &Outcome,
        settler: Settler<'_>,
    ) -> Result<(Tx, (OrderRow, Result<Option<Placed>, OrderError>, Option<String>)), OrderError> {
        let mut order = self.repo.lock(&mut tx, order_id).await?.ok_or(OrderError::NotFound)?;
        if let Settler::Later { event: Some((id, kind)) } = settler
            && !self.repo.record_provider_event(&mut tx, id, kind, now()).await?
        {
            // The same webhook event again: it had its effect the first time.
            return Ok((tx, (order, Ok(None), None)));
        }
        if order.status != OrderStatus::PendingPayment {
            // Settled first by someone else, or cancelled. A charge taken for an order that
            // ended without it goes back.
            let void = match outcome {
                Outcome::Paid(Some(r)) if matches!(order.status, OrderStatus::Cancelled | OrderStatus::Failed) => Some(r.clone()),
                _ => None,
            };
            let result = match (settler, outcome) {
                // The webhook was faster than the charge's own answer: the checkout answers as if it had settled.
                (Settler::Checkout { claim, .. }, Outcome::Paid(_)) if order.status == OrderStatus::Paid => {
                    self.carts.clear_in(&mut tx, &order.user_id).await?;
                    Ok(Some(self.answer(&mut tx, &order, StatusCode::CREATED, claim).await?))
                }
                (Settler::Checkout { .. }, _) => Err(StateError::InvalidState { from: order.status, event: EventKind::Pay }.into()),
                (Settler::Later { .. }, _) => Ok(None),
            };
            return Ok((tx, (order, result, void)));
        }
        order.updated_at = now();
        let claim = match settler {
            Settler::Checkout { claim, .. } => Some(claim),
            Settler::Later { .. } => None,
        };
        let (result, void) = match outcome {
            Outcome::Paid(provider_ref) => {
                order.status = order.status.apply(OrderEvent::Pay)?;
                order.payment_status = "succeeded".to_owned();
                order.provider_ref.clone_from(provider_ref);
                self.repo.update(&mut tx, &order).await?;
                let payment = Transaction::card_payment(order.total).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                self.ledger.post(&mut tx, &payment, provider_ref.as_deref().or(Some(&order.id))).await?;
                self.sell_lines(&mut tx, &order).await?;
                if claim.is_some() {
                    self.carts.clear_in(&mut tx, &order.user_id).await?;
                }
                let captured =
                    super::audit::captured(&order.id, Money::new(order.total, &order.currency), provider_ref.as_deref(), settler.name());
                self.paid_effects(&order).audit(captured).write(&mut tx, order.updated_at).await?;
                (Ok(()), None)
            }
            Outcome::Unknown => {
                if let Settler::Checkout { token, .. } = settler {
                    // The order holds the items now, as for a paid one.
                    self.carts.clear_in(&mut tx, &order.user_id).await?;
                    Effects::default().job(self.reconcile_job(&order.id, token)).write(&mut tx, order.updated_at).await?;
                }
                (Ok(()), None)
            }
            Outcome::Declined(provider_ref, code) => {
                self.fail(&mut tx, &mut order, "declined", provider_ref.clone()).await?;
                (Err(OrderError::Declined(code.clone())), None)
            }
            Outcome::Unavailable => {
                self.fail(&mut tx, &mut order, "failed", None).await?;
                (Err(OrderError::ProviderUnavailable), None)
            }
            Outcome::SoldOut { provider_ref, short } => {
                self.fail(&mut tx, &mut order, "voided", Some(provider_ref.clone())).await?;
                (Err(OrderError::InsufficientStock(short.clone())), Some(provider_ref.clone()))
            }
        };
        // A refusal is an answer too: the order's failure commits with it.
        let result = match (result, claim) {
            (Err(e), Some(_)) => Err(e),
            (_, None) => Ok(None),
            (Ok(()), Some(claim)) => {
                let status = if order.status == OrderStatus::Paid { StatusCode::CREATED } else { StatusCode::ACCEPTED };
                Ok(Some(self.answer(&mut tx, &order, status, claim).await?))
            }
        };
        Ok((tx, (order, result, void)))
    }

    /// Sells every line's held units. A hold that ran out while the answer was late is taken
    /// again if the units are still there; if not, the whole unit of work rolls back.
    async fn sell_lines(&self, tx: &mut Tx, order: &OrderRow) -> Result<(), OrderError> {
        for (index, line) in order.lines.iter().enumerate() {
            if self.catalog.settle_in(tx, &line.reservation_id, Settle::Commit).await?.is_some() {
                continue;
            }
            if self.catalog.take_in(tx, &line.product_id, line.quantity, Take::Sell).await?.is_none() {
                return Err(OrderError::InsufficientStock(vec![ShortLine { index, product_id: line.product_id.clone() }]));
            }
        }
        Ok(())
    }

    /// The order fails: what it still holds is released and its customer is told.
    async fn fail(&self, tx: &mut Tx, order: &mut OrderRow, payment_status: &str, provider_ref: Option<String>) -> Result<(), OrderError> {
        order.status = order.status.apply(OrderEvent::Fail)?;
        order.payment_status = payment_status.to_owned();
        if provider_ref.is_some() {
            order.provider_ref = provider_ref;
        }
        self.repo.update(tx, order).await?;
        self.settle_lines(tx, order, Settle::Release).await?;
        self.announce(order).write(tx, order.updated_at).await?;
        Ok(())
    }

    /// Gives a charge back whole, under a key of its own so that doing it again refunds once.
    /// Nothing was posted for it, so the ledger does not move.
    async fn void(&self, order: &OrderRow, provider_ref: String) {
        let void = RefundRequest { provider_ref, amount: order.total, idempotency_key: format!("keel_void_{}", order.id) };
        match self.card.provider.refund(&void).await {
            Ok(_) => tracing::warn!(order_id = %order.id, "a charge for an order that ended without it was given back"),
            Err(e) => {
                tracing::error!(order_id = %order.id, error = %e, "a charge for an order that ended without it could not be refunded")
            }
        }
    }

    fn reconcile_job(&self, order_id: &str, card_token: &str) -> NewJob {
        let payload = ReconcileJob { order_id: order_id.to_owned(), card_token: self.card.cipher.encrypt(TOKEN_COLUMN, card_token) };
        let delay = chrono::TimeDelta::from_std(self.card.reconcile_delay).unwrap_or(chrono::TimeDelta::MAX);
        NewJob::new(RECONCILE_KIND, serde_json::to_value(payload).expect("reconcile payload serialises"))
            .at(now() + delay)
            .attempts(RECONCILE_ATTEMPTS)
    }

    /// One reconciliation attempt for a card order whose answer was lost. An error means the
    /// provider still has not answered: the job tries again later.
    async fn reconcile(&self, order_id: &str, card_token: String) -> anyhow::Result<()> {
        let Some(order) = self.repo.get(order_id).await? else { anyhow::bail!("order {order_id} does not exist") };
        // Settled by the webhook first. A cancelled order is still asked about: a charge taken
        // for it must go back (settling finds it cancelled and refunds the charge whole).
        if !matches!(order.status, OrderStatus::PendingPayment | OrderStatus::Cancelled) {
            return Ok(());
        }
        let request = self.charge_request(&order, card_token);
        match self.look_up(&request).await {
            Err(_) | Ok(Outcome::Unknown) => anyhow::bail!("the payment provider has not answered for order {order_id} yet"),
            Ok(outcome) => {
                // A decline or "sold out" is the settlement's answer, not the job's failure.
                match self.settle(order_id, outcome, Settler::Later { event: None }).await {
                    Ok(_) | Err(OrderError::Declined(_) | OrderError::InsufficientStock(_)) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Checks a webhook's `Keel-Signature` over its raw body and reads the event.
    pub fn verify_provider_event(&self, signature: Option<&str>, body: &[u8]) -> Result<ProviderEvent, WebhookError> {
        let secret = self.card.webhook_secret.as_ref().ok_or(WebhookError::NotConfigured)?;
        verify_event(secret.expose_secret().as_bytes(), signature, body, now().timestamp())
    }

    /// Applies a verified provider webhook event. Succeeded and failed payments settle the
    /// pending card order they name, once; anything else is acknowledged and changes nothing.
    /// An event whose amount or currency differs from its order never marks it paid: it is
    /// logged as an alert and counted.
    pub async fn provider_event(&self, event: &ProviderEvent) -> Result<(), OrderError> {
        let kind = match &event.kind {
            ProviderEventKind::PaymentSucceeded => "payment_intent.succeeded",
            ProviderEventKind::PaymentFailed { .. } => "payment_intent.payment_failed",
            ProviderEventKind::Refunded { amount_refunded } => {
                // Keel records its own refunds when it makes them; this only flags refunds made
                // elsewhere (e.g. in the provider's dashboard) for staff.
                self.check_refund(event, *amount_refunded).await?;
                return Ok(());
            }
            ProviderEventKind::Other(_) => return Ok(()),
        };
        let Some(order) = self.payment_order(event).await? else { return Ok(()) };
        if !event.matches(order.total, &order.currency) {
            alert(event, "mismatch", "a payment event's amount or currency differs from its order; the order was not settled");
            return Ok(());
        }
        let outcome = match &event.kind {
            ProviderEventKind::PaymentFailed { code } => Outcome::Declined(Some(event.provider_ref.clone()), code.clone()),
            _ => Outcome::Paid(Some(event.provider_ref.clone())),
        };
        match self.settle(&order.id, outcome, Settler::Later { event: Some((&event.id, kind)) }).await {
            Ok(_) | Err(OrderError::Declined(_) | OrderError::InsufficientStock(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The card order a provider event names by its metadata, if there is one.
    async fn payment_order(&self, event: &ProviderEvent) -> Result<Option<OrderRow>, OrderError> {
        let order = match event.order_id() {
            Some(id) => self.repo.get(id).await?,
            None => None,
        };
        let order = order.filter(|o| o.payment_method == PaymentMethod::Card.as_str());
        if order.is_none() {
            alert(event, "unknown_order", "a payment event names no card order of this shop");
        }
        Ok(order)
    }

    async fn check_refund(&self, event: &ProviderEvent, amount_refunded: i64) -> Result<(), OrderError> {
        if let Some(order) = self.payment_order(event).await?
            && amount_refunded > order.refunded
        {
            alert(event, "refund_elsewhere", "the provider reports more refunded than Keel recorded for this order");
        }
        Ok(())
    }
}

/// The provider answered (with an error), as opposed to the answer being lost on the way.
fn answered(e: &ProviderError) -> bool {
    !matches!(e, ProviderError::Timeout | ProviderError::Network(_) | ProviderError::Malformed(_))
}

/// The provider does not know the card token: a decline, not an outage.
fn unknown_token(e: &ProviderError) -> bool {
    matches!(e, ProviderError::Rejected { code, .. } if code == "resource_missing")
}

/// Logs a payment event staff must look at (never its body) and counts it by `reason`.
fn alert(event: &ProviderEvent, reason: &'static str, message: &str) {
    tracing::error!(event_id = %event.id, provider_ref = %event.provider_ref, order_id = ?event.order_id(), reason, "{message}");
    crate::telemetry::record_payment_alert(reason);
}

/// The `payments.reconcile` job.
pub struct Reconcile(pub Arc<Orders>);

#[async_trait::async_trait]
impl JobHandler for Reconcile {
    fn kind(&self) -> &'static str {
        RECONCILE_KIND
    }

    fn retry_delay(&self, job: &Job) -> Duration {
        let base = self.0.card.reconcile_delay;
        crate::jobs::model::backoff(job.attempts, base, RECONCILE_MAX_DELAY.max(base), crate::jobs::model::jitter_of(job))
    }

    /// The settlement commits on its own, before the job's completion: a crash in between runs
    /// the job again, which finds the order settled and does nothing.
    async fn run(&self, job: &Job, completion: Completion) -> anyhow::Result<Done> {
        let payload: ReconcileJob = serde_json::from_value(job.payload.clone()).context("reconcile job payload")?;
        let token = self.0.card.cipher.decrypt(TOKEN_COLUMN, &payload.card_token)?;
        self.0.reconcile(&payload.order_id, token).await?;
        completion.done().await
    }
}
