//! Checkout and orders: the saga from a priced cart to a paid order, the reads, the customer's
//! cancel and the back office's moves and refunds.
//!
//! A wallet checkout is one unit of work: stock sold, the order `paid`, the wallet debited,
//! the cart emptied, the events, the receipt job and the idempotency key with its response. A
//! card checkout is two, around the provider's call (`card`).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::card::CardPayments;
use super::model::{OrderError as StateError, OrderEvent, OrderStatus};
use super::repo::{LineRow, OrderFilter, OrderRepo, OrderRow};
use crate::auth::service::Principal;
use crate::cart::Carts;
use crate::cart::service::CartError;
use crate::catalog::Catalog;
use crate::catalog::repo::Settle;
use crate::catalog::service::{CatalogError, Take};
use crate::events::{Effects, EventType};
use crate::http::idempotency::guard::{IdempotencyKeys, KeyLost};
use crate::http::idempotency::repo::Claim;
use crate::http::pagination::{Page, PageRequest};
use crate::ledger::Ledger;
use crate::ledger::model::{Account, Transaction};
use crate::ledger::service::PostError;
use crate::money::Money;
use crate::pricing::service::QuoteAdjustment;
use crate::store::{Store, StoreError, Transient, Tx, now};
use crate::validation::Invalid;

/// How long checkout holds stock for a card payment whose answer is late; the hourly release
/// of expired reservations frees it if the order is never settled.
pub(super) const HOLD: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Wallet,
    Card,
}

impl PaymentMethod {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Wallet => "wallet",
            PaymentMethod::Card => "card",
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    pub payment_method: PaymentMethod,
    /// Required for `card`: a card token of the payment provider (sandbox: `tok_visa`, …).
    pub card_token: Option<String>,
    /// Kept with the order as given (any JSON object).
    #[schema(value_type = Option<Object>)]
    pub shipping_address: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderItem {
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    /// As priced at checkout; later price changes do not touch it.
    pub unit_price: Money,
    pub line_total: Money,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentView {
    /// `wallet` or `card`.
    pub method: String,
    /// `pending`, `succeeded`, `declined`, `failed` (nothing taken), `voided` (taken and given back whole: the stock ran
    /// out while the answer was late), `cancelled`, `partially_refunded` or `refunded`.
    pub status: String,
    /// The provider's payment id for a card; `null` for a wallet.
    #[schema(required = true)]
    pub provider_ref: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    /// `ord_…`
    pub id: String,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    pub subtotal: Money,
    /// The cart's adjustments at checkout, in the order they applied.
    pub adjustments: Vec<QuoteAdjustment>,
    pub total: Money,
    pub payment: PaymentView,
    pub refunded: Money,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An order and its owner.
pub struct OwnedOrder {
    pub user_id: String,
    pub view: OrderView,
}

/// A line checkout could not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortLine {
    pub index: usize,
    pub product_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("invalid")]
    Invalid(Invalid),
    #[error("not found")]
    NotFound,
    #[error("not enough stock")]
    InsufficientStock(Vec<ShortLine>),
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("the card was declined ({0})")]
    Declined(String),
    #[error("the payment provider is unavailable")]
    ProviderUnavailable,
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    KeyLost(#[from] KeyLost),
    #[error(transparent)]
    Webhook(#[from] crate::payments::webhook::WebhookError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Cart(#[from] CartError),
}

impl Transient for OrderError {
    fn is_transient(&self) -> bool {
        match self {
            OrderError::Store(e) => e.is_transient(),
            OrderError::Catalog(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl From<Invalid> for OrderError {
    fn from(i: Invalid) -> Self {
        OrderError::Invalid(i)
    }
}

impl From<PostError> for OrderError {
    fn from(e: PostError) -> Self {
        match e {
            PostError::InsufficientFunds => OrderError::InsufficientFunds,
            PostError::Store(e) => OrderError::Store(e),
        }
    }
}

/// A checkout's answer: `201` (paid) or `202` (the provider has not answered yet), with the
/// exact bytes stored under the idempotency key.
pub struct Placed {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

pub struct Orders {
    pub(super) store: Store,
    pub(super) repo: Arc<dyn OrderRepo>,
    pub(super) catalog: Arc<Catalog>,
    pub(super) carts: Arc<Carts>,
    pub(super) ledger: Arc<Ledger>,
    pub(super) keys: Arc<IdempotencyKeys>,
    pub(super) card: CardPayments,
    currency: String,
}

impl Orders {
    pub fn new(
        store: Store,
        catalog: Arc<Catalog>,
        carts: Arc<Carts>,
        ledger: Arc<Ledger>,
        keys: Arc<IdempotencyKeys>,
        card: CardPayments,
        currency: &str,
    ) -> Self {
        Self { repo: super::repo::for_store(&store), store, catalog, carts, ledger, keys, card, currency: currency.to_owned() }
    }

    fn money(&self, amount: i64) -> Money {
        Money::new(amount, &self.currency)
    }

    fn view(&self, o: &OrderRow) -> OrderView {
        OrderView {
            id: o.id.clone(),
            status: o.status,
            items: o
                .lines
                .iter()
                .map(|l| OrderItem {
                    product_id: l.product_id.clone(),
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price: self.money(l.unit_price),
                    line_total: self.money(l.line_total),
                })
                .collect(),
            subtotal: self.money(o.subtotal),
            // Written by checkout from the same type; a row that does not read back shows none.
            adjustments: serde_json::from_str(&o.adjustments).unwrap_or_default(),
            total: self.money(o.total),
            payment: PaymentView {
                method: o.payment_method.clone(),
                status: o.payment_status.clone(),
                provider_ref: o.provider_ref.clone(),
            },
            refunded: self.money(o.refunded),
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }

    /// Any order with its owner, for jobs (`None` when there is no such order).
    pub async fn find(&self, id: &str) -> Result<Option<OwnedOrder>, OrderError> {
        Ok(self.repo.get(id).await?.map(|o| OwnedOrder { view: self.view(&o), user_id: o.user_id }))
    }

    /// The caller's own order; another user's is `NotFound` (its existence is not revealed).
    pub async fn get(&self, user_id: &str, id: &str) -> Result<OrderView, OrderError> {
        match self.repo.get(id).await? {
            Some(order) if order.user_id == user_id => Ok(self.view(&order)),
            _ => Err(OrderError::NotFound),
        }
    }

    /// Newest first; the cursor is the last order's id (ids are time-ordered).
    pub async fn list(&self, filter: &OrderFilter, page: PageRequest<String>) -> Result<Page<OrderView>, OrderError> {
        let rows = self.repo.list(filter, page.after.as_deref(), page.limit + 1).await?;
        Ok(Page::from_rows(rows, page.limit, |o| o.id.clone()).map(|o| self.view(&o)))
    }

    /// Orders placed since `since`, and their takings net of refunds (the dashboard's figures).
    pub async fn sales_since(&self, since: DateTime<Utc>) -> Result<(i64, Money), OrderError> {
        let sales = self.repo.sales_since(since).await?;
        Ok((sales.orders, self.money(sales.revenue)))
    }

    /// Prices the cart, holds its stock and pays: see the module's comment for the two paths.
    pub async fn checkout(&self, who: &Principal, req: CheckoutRequest, claim: &Claim) -> Result<Placed, OrderError> {
        let card_token = match (req.payment_method, req.card_token) {
            (PaymentMethod::Card, Some(token)) if !token.is_empty() && token.len() <= 255 => Some(token),
            (PaymentMethod::Card, _) => {
                return Err(Invalid::one("card_token", "required", "a card payment needs a card token of 1 to 255 characters").into());
            }
            (PaymentMethod::Wallet, Some(_)) => {
                return Err(Invalid::one("card_token", "unexpected", "a wallet payment takes no card token").into());
            }
            (PaymentMethod::Wallet, None) => None,
        };
        let cart = self.carts.view(who).await?;
        if cart.items.is_empty() {
            return Err(Invalid::one("items", "empty", "the cart is empty").into());
        }
        let at = now();
        let order = OrderRow {
            id: crate::ids::new("ord"),
            user_id: who.user_id.clone(),
            status: OrderStatus::PendingPayment,
            currency: self.currency.clone(),
            subtotal: cart.subtotal.amount,
            total: cart.total.amount,
            adjustments: serde_json::to_string(&cart.adjustments).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            shipping_address: req.shipping_address.map(|a| serde_json::Value::Object(a).to_string()),
            payment_method: req.payment_method.as_str().to_owned(),
            payment_status: "pending".to_owned(),
            provider_ref: None,
            refunded: 0,
            created_at: at,
            updated_at: at,
            version: 1,
            lines: cart
                .items
                .into_iter()
                .map(|i| LineRow {
                    product_id: i.product_id,
                    name: i.name,
                    quantity: i64::from(i.quantity),
                    unit_price: i.unit_price.amount,
                    line_total: i.line_total.amount,
                    reservation_id: String::new(),
                })
                .collect(),
        };
        match card_token {
            None => self.pay_from_wallet(order, claim).await,
            Some(token) => self.pay_by_card(order, token, claim).await,
        }
    }

    /// Takes every line's stock, all or nothing: a short line is named, and the caller's
    /// transaction rolls back so nothing stays taken.
    pub(super) async fn take_lines(&self, tx: &mut Tx, order: &mut OrderRow, take: Take) -> Result<(), OrderError> {
        let mut short = Vec::new();
        for (index, line) in order.lines.iter_mut().enumerate() {
            match self.catalog.take_in(tx, &line.product_id, line.quantity, take).await? {
                Some(reservation) => line.reservation_id = reservation,
                None => short.push(ShortLine { index, product_id: line.product_id.clone() }),
            }
        }
        if short.is_empty() { Ok(()) } else { Err(OrderError::InsufficientStock(short)) }
    }

    pub(super) async fn settle_lines(&self, tx: &mut Tx, order: &OrderRow, outcome: Settle) -> Result<(), OrderError> {
        for line in &order.lines {
            self.catalog.settle_in(tx, &line.reservation_id, outcome).await?;
        }
        Ok(())
    }

    /// The committed unit of work changed these products' stock: drop what the cache holds.
    pub(super) async fn forget_products(&self, order: &OrderRow) {
        for line in &order.lines {
            self.catalog.forget(&line.product_id).await;
        }
    }

    pub(super) fn announce(&self, order: &OrderRow) -> Effects {
        let data = serde_json::json!({
            "id": order.id, "status": order.status, "total": self.money(order.total), "refunded": self.money(order.refunded),
        });
        Effects::default().event(EventType::OrderUpdated, &order.user_id, data)
    }

    /// A paid order tells its customer, in real time and with a receipt by mail.
    pub(super) fn paid_effects(&self, order: &OrderRow) -> Effects {
        self.announce(order).job(super::receipt::job(&order.id))
    }

    /// The order's view as the response body, stored under the idempotency key in `tx`.
    pub(super) async fn answer(&self, tx: &mut Tx, order: &OrderRow, status: StatusCode, claim: &Claim) -> Result<Placed, OrderError> {
        let body = serde_json::to_vec(&self.view(order)).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.keys.complete(tx, claim, status, &body).await?;
        Ok(Placed { status, body })
    }

    /// One unit of work that sells the stock outright (no hold to settle); `402
    /// insufficient_funds` rolls all of it back.
    async fn pay_from_wallet(&self, order: OrderRow, claim: &Claim) -> Result<Placed, OrderError> {
        let (order, placed) = self
            .store
            .transact(|mut tx| {
                let mut order = order.clone();
                async move {
                    self.take_lines(&mut tx, &mut order, Take::Sell).await?;
                    order.status = order.status.apply(OrderEvent::Pay)?;
                    order.payment_status = "succeeded".to_owned();
                    self.repo.insert(&mut tx, &order).await?;
                    let mut effects = self.paid_effects(&order);
                    // A free order (discounts covering everything) moves no money.
                    if order.total > 0 {
                        let payment =
                            Transaction::wallet_payment(&order.user_id, order.total).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        let posted = self.ledger.post(&mut tx, &payment, Some(&order.id)).await?;
                        let balance = posted.balance_of(&Account::Wallet(order.user_id.clone())).unwrap_or_default();
                        let data = serde_json::json!({ "balance": self.money(balance), "transaction_id": posted.id });
                        effects = effects.event(EventType::WalletUpdated, &order.user_id, data);
                    }
                    self.carts.clear_in(&mut tx, &order.user_id).await?;
                    effects.write(&mut tx, order.updated_at).await?;
                    let placed = self.answer(&mut tx, &order, StatusCode::CREATED, claim).await?;
                    Ok::<_, OrderError>((tx, (order, placed)))
                }
            })
            .await?;
        self.forget_products(&order).await;
        Ok(placed)
    }
}

impl Orders {
    /// A back-office move that touches no money or stock (`ship`, `deliver`): the order's row is
    /// locked, the state machine decides, the event commits with it.
    pub async fn advance(&self, id: &str, event: OrderEvent) -> Result<OrderView, OrderError> {
        let order = self
            .store
            .transact(|mut tx| async move {
                let mut order = self.repo.lock(&mut tx, id).await?.ok_or(OrderError::NotFound)?;
                order.status = order.status.apply(event)?;
                order.updated_at = now();
                self.repo.update(&mut tx, &order).await?;
                order.version += 1;
                self.announce(&order).write(&mut tx, order.updated_at).await?;
                Ok::<_, OrderError>((tx, order))
            })
            .await?;
        Ok(self.view(&order))
    }
}

/// Largest refund one request may ask for (minor units), as for wallet amounts.
const MAX_REFUND: i64 = crate::ledger::wallet::MAX_AMOUNT;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// What to refund; everything not yet refunded when absent.
    pub amount: Option<Money>,
    /// Why (kept in the stock and support trail; 1–500 characters).
    pub reason: String,
}

impl Orders {
    /// Gives the money of a paid order back to where it came from, through the provider for a
    /// card (no transaction open) and then the ledger, in the unit of work that locks the order.
    async fn give_back(&self, order: &OrderRow, amount: i64, provider_key: String) -> Result<(), OrderError> {
        if order.payment_method != PaymentMethod::Card.as_str() || amount == 0 {
            return Ok(());
        }
        let Some(provider_ref) = order.provider_ref.clone() else { return Err(OrderError::ProviderUnavailable) };
        let request = crate::payments::RefundRequest { provider_ref, amount, idempotency_key: provider_key };
        match self.card.provider.refund(&request).await {
            Ok(refund) if refund.status != crate::payments::RefundStatus::Failed => Ok(()),
            other => {
                tracing::warn!(order_id = %order.id, answer = ?other, "a card refund was not accepted by the payment provider");
                Err(OrderError::ProviderUnavailable)
            }
        }
    }

    /// The ledger side of money given back: to the wallet, or out through the provider's clearing.
    async fn post_refund(&self, tx: &mut Tx, order: &OrderRow, amount: i64, mut effects: Effects) -> Result<Effects, OrderError> {
        // A free order took no money, so none goes back.
        if amount == 0 {
            return Ok(effects);
        }
        if order.payment_method == PaymentMethod::Wallet.as_str() {
            let refund = Transaction::refund_to_wallet(&order.user_id, amount).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let posted = self.ledger.post(tx, &refund, Some(&order.id)).await?;
            let balance = posted.balance_of(&Account::Wallet(order.user_id.clone())).unwrap_or_default();
            let data = serde_json::json!({ "balance": self.money(balance), "transaction_id": posted.id });
            effects = effects.event(EventType::WalletUpdated, &order.user_id, data);
        } else {
            let refund = Transaction::refund_to_card(amount).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.ledger.post(tx, &refund, order.provider_ref.as_deref()).await?;
        }
        Ok(effects)
    }

    /// The customer's cancel: a `pending_payment` order releases its stock; a `paid` one also
    /// gets its money back (wallet or card) and its sold units return to stock.
    pub async fn cancel(&self, user_id: &str, id: &str) -> Result<OrderView, OrderError> {
        let seen = match self.repo.get(id).await? {
            Some(order) if order.user_id == user_id => order,
            _ => return Err(OrderError::NotFound),
        };
        // Refused before any money moves; checked again on the locked row below.
        seen.status.apply(OrderEvent::Cancel)?;
        let paid = seen.status == OrderStatus::Paid;
        if paid {
            self.give_back(&seen, seen.total, format!("keel_cancel_{}", seen.id)).await?;
        }
        let order = self
            .store
            .transact(|mut tx| async move {
                let mut order = self.repo.lock(&mut tx, id).await?.ok_or(OrderError::NotFound)?;
                let was = order.status;
                order.status = order.status.apply(OrderEvent::Cancel)?;
                order.updated_at = now();
                // Money went back before this transaction only if the order was paid then; a
                // settlement in between (pending → paid) is refused here rather than kept unpaid-for.
                if (was == OrderStatus::Paid) != paid {
                    return Err(StateError::InvalidState { from: was, event: super::model::EventKind::Cancel }.into());
                }
                let effects = if paid {
                    order.refunded = order.total;
                    order.payment_status = "refunded".to_owned();
                    for line in &order.lines {
                        self.catalog.restock_in(&mut tx, &line.product_id, line.quantity, "order_cancelled", user_id).await?;
                    }
                    self.post_refund(&mut tx, &order, order.total, self.announce(&order)).await?
                } else {
                    order.payment_status = "cancelled".to_owned();
                    self.settle_lines(&mut tx, &order, Settle::Release).await?;
                    self.announce(&order)
                };
                self.repo.update(&mut tx, &order).await?;
                order.version += 1;
                effects.write(&mut tx, order.updated_at).await?;
                Ok::<_, OrderError>((tx, order))
            })
            .await?;
        self.forget_products(&order).await;
        Ok(self.view(&order))
    }

    /// A back-office refund, full or partial, to the original method. The order's row is locked
    /// while the state machine checks the sum, so concurrent refunds never pass the total.
    pub async fn refund(
        &self,
        id: &str,
        req: RefundRequest,
        claim: &Claim,
        by: &crate::security::audit::Actor,
    ) -> Result<Placed, OrderError> {
        let reason = req.reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(Invalid::one("reason", "invalid", "must be 1 to 500 characters").into());
        }
        let seen = self.repo.get(id).await?.ok_or(OrderError::NotFound)?;
        let amount = match req.amount {
            Some(money) => money.parse("amount", &self.currency, MAX_REFUND)?,
            None => super::model::refundable(seen.total, seen.refunded),
        };
        // Refused before the provider is asked; checked again on the locked row below.
        seen.status.apply(OrderEvent::Refund { amount, refunded_so_far: seen.refunded, total: seen.total })?;
        self.keys.hold(claim).await?;
        self.give_back(&seen, amount, claim.derived_key()).await?;
        self.store
            .transact(|mut tx| async move {
                let mut order = self.repo.lock(&mut tx, id).await?.ok_or(OrderError::NotFound)?;
                order.status = order.status.apply(OrderEvent::Refund { amount, refunded_so_far: order.refunded, total: order.total })?;
                order.refunded += amount;
                order.payment_status = if order.status == OrderStatus::Refunded { "refunded" } else { "partially_refunded" }.to_owned();
                order.updated_at = now();
                let entry = super::audit::refunded(by, &order.id, self.money(amount), self.money(order.refunded));
                let effects = self.post_refund(&mut tx, &order, amount, self.announce(&order).audit(entry)).await?;
                self.repo.update(&mut tx, &order).await?;
                order.version += 1;
                effects.write(&mut tx, order.updated_at).await?;
                self.answer(&mut tx, &order, StatusCode::CREATED, claim).await.map(|placed| (tx, placed))
            })
            .await
    }
}
