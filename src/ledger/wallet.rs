//! The wallet's use cases: balance, history, card top-ups and transfers between users.
//!
//! A top-up charges the card first, with no transaction open (a network call), then credits the
//! wallet in one unit of work together with its `wallet.updated` event and the idempotency key's
//! stored response. A transfer is one unit of work: both wallets, both events, the stored response.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::{Account, LedgerError, Transaction};
use super::service::{Ledger, PostError, Posted};
use crate::auth::Accounts;
use crate::auth::model::Email;
use crate::events::{Effects, EventType};
use crate::http::idempotency::guard::{IdempotencyKeys, KeyLost};
use crate::http::idempotency::repo::Claim;
use crate::http::pagination::{Page, PageRequest};
use crate::money::Money;
use crate::payments::{ChargeLookup, ChargeRequest, ChargeStatus, PaymentProvider, ProviderError};
use crate::store::{Store, StoreError, Transient};
use crate::validation::Invalid;

/// Largest amount one request may move (minor units: a billion in major units).
pub const MAX_AMOUNT: i64 = 100_000_000_000;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WalletView {
    pub balance: Money,
    #[schema(example = "USD")]
    pub currency: String,
}

/// One line of the wallet's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WalletEntry {
    /// The ledger transaction (`txn_…`).
    pub id: String,
    /// `top_up`, `transfer`, `payment` or `refund`.
    pub kind: String,
    /// Signed: positive credits the wallet, negative debits it.
    pub amount: Money,
    pub balance_after: Money,
    /// The provider's charge id for a top-up; `null` otherwise.
    #[schema(required = true)]
    pub reference: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUpRequest {
    /// Positive, in the deployment's currency.
    pub amount: Money,
    /// A card token of the payment provider (sandbox: `tok_visa`, `tok_chargeDeclined`, …).
    pub card_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The recipient's account email.
    pub to_email: String,
    /// Positive, in the deployment's currency.
    pub amount: Money,
}

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("invalid")]
    Invalid(Invalid),
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("the card was declined ({0})")]
    Declined(String),
    /// No answer from the provider, or one saying it failed: nothing was credited.
    #[error(transparent)]
    Provider(ProviderError),
    #[error(transparent)]
    KeyLost(#[from] KeyLost),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Transient for WalletError {
    fn is_transient(&self) -> bool {
        matches!(self, WalletError::Store(e) if e.is_transient())
    }
}

impl From<Invalid> for WalletError {
    fn from(i: Invalid) -> Self {
        WalletError::Invalid(i)
    }
}

impl From<PostError> for WalletError {
    fn from(e: PostError) -> Self {
        match e {
            PostError::InsufficientFunds => WalletError::InsufficientFunds,
            PostError::Store(e) => WalletError::Store(e),
        }
    }
}

pub struct Wallet {
    store: Store,
    ledger: Arc<Ledger>,
    keys: Arc<IdempotencyKeys>,
    accounts: Arc<Accounts>,
    provider: Arc<dyn PaymentProvider>,
    currency: String,
}

/// A stored first response: the status and the exact bytes sent.
pub struct Created(pub Vec<u8>);

impl Wallet {
    pub fn new(
        store: Store,
        ledger: Arc<Ledger>,
        keys: Arc<IdempotencyKeys>,
        accounts: Arc<Accounts>,
        provider: Arc<dyn PaymentProvider>,
        currency: &str,
    ) -> Self {
        Self { store, ledger, keys, accounts, provider, currency: currency.to_owned() }
    }

    fn money(&self, amount: i64) -> Money {
        Money::new(amount, &self.currency)
    }

    fn amount(&self, money: Money) -> Result<i64, Invalid> {
        let amount = money.parse("amount", &self.currency, MAX_AMOUNT)?;
        if amount == 0 {
            return Err(Invalid::one("amount.amount", "out_of_range", "must be positive"));
        }
        Ok(amount)
    }

    pub async fn view(&self, user_id: &str) -> Result<WalletView, WalletError> {
        let balance = self.ledger.balance(&Account::Wallet(user_id.to_owned())).await?;
        Ok(WalletView { balance: self.money(balance), currency: self.currency.clone() })
    }

    /// Newest first; the cursor is the last entry's own id (entries of one wallet are unique per transaction).
    pub async fn history(&self, user_id: &str, page: PageRequest<String>) -> Result<Page<WalletEntry>, WalletError> {
        let rows = self.ledger.entries(&Account::Wallet(user_id.to_owned()), page.after.as_deref(), page.limit + 1).await?;
        let page = Page::from_rows(rows, page.limit, |r| r.entry_id.clone());
        Ok(page.map(|r| WalletEntry {
            id: r.transaction_id,
            kind: r.kind,
            amount: self.money(r.amount),
            balance_after: self.money(r.balance_after),
            reference: r.reference,
            created_at: r.created_at,
        }))
    }

    /// Charges the card (no transaction open), then credits the wallet. The provider's
    /// idempotency key derives from the caller's key, so a lookup after a lost answer, or the
    /// client's retry with the same key, asks for the same charge and is never charged twice.
    pub async fn top_up(&self, user_id: &str, req: TopUpRequest, claim: &Claim) -> Result<Created, WalletError> {
        let amount = self.amount(req.amount)?;
        if req.card_token.is_empty() || req.card_token.len() > 255 {
            return Err(Invalid::one("card_token", "invalid", "must be a card token of 1 to 255 characters").into());
        }
        let charge = ChargeRequest {
            amount,
            currency: self.currency.clone(),
            card_token: req.card_token,
            idempotency_key: claim.derived_key(),
            metadata: BTreeMap::from([("user_id".to_owned(), user_id.to_owned()), ("purpose".to_owned(), "wallet_top_up".to_owned())]),
        };
        self.keys.hold(claim).await?;
        let charged = match self.provider.charge(&charge).await {
            Ok(charged) => charged,
            // The answer was lost, maybe not the charge: ask for it by its key once (the provider
            // answers the original result, or charges now; never twice). Still nothing: `503`.
            Err(e) if e.outcome_unknown() => {
                self.provider.retrieve(&ChargeLookup::IdempotencyKey(charge.clone())).await.map_err(WalletError::Provider)?
            }
            Err(ProviderError::Rejected { code, .. }) if code == "resource_missing" => {
                return Err(Invalid::one("card_token", "unknown", "no such card token").into());
            }
            Err(e) => return Err(WalletError::Provider(e)),
        };
        match &charged.status {
            ChargeStatus::Succeeded => {}
            ChargeStatus::Declined { code } => return Err(WalletError::Declined(code.clone())),
            // Not decided yet: nothing is credited; a retry with the same key asks again.
            ChargeStatus::Pending => return Err(WalletError::Provider(ProviderError::Timeout)),
        }
        let transaction = Transaction::top_up(user_id, amount).map_err(invalid_amount)?;
        let reference = charged.provider_ref.as_deref();
        self.settle(user_id, &transaction, reference, claim, &[user_id]).await
    }

    pub async fn transfer(&self, user_id: &str, req: TransferRequest, claim: &Claim) -> Result<Created, WalletError> {
        let amount = self.amount(req.amount);
        let email = Email::parse("to_email", &req.to_email);
        let (amount, email) = match (amount, email) {
            (Ok(a), Ok(e)) => (a, e),
            (a, e) => {
                let mut invalid = Invalid::default();
                invalid.0.extend(a.err().into_iter().chain(e.err()).flat_map(|i| i.0));
                return Err(invalid.into());
            }
        };
        let Some(to_user) = self.accounts.user_id_by_email(&email).await? else {
            return Err(Invalid::one("to_email", "unknown", "no account has this email").into());
        };
        let transaction = Transaction::transfer(user_id, &to_user, amount).map_err(|e| match e {
            LedgerError::SameWallet => {
                WalletError::Invalid(Invalid::one("to_email", "self", "a transfer needs another account than yours"))
            }
            other => invalid_amount(other),
        })?;
        self.settle(user_id, &transaction, None, claim, &[user_id, &to_user]).await
    }

    /// One unit of work: the ledger transaction, a `wallet.updated` for each of `users`, and the
    /// caller's `201` stored under its idempotency key.
    async fn settle(
        &self,
        user_id: &str,
        transaction: &Transaction,
        reference: Option<&str>,
        claim: &Claim,
        users: &[&str],
    ) -> Result<Created, WalletError> {
        self.store
            .transact(|mut tx| async move {
                let posted = self.ledger.post(&mut tx, transaction, reference).await?;
                let mut effects = Effects::default();
                for user in users {
                    let balance = posted.balance_of(&Account::Wallet((*user).to_owned())).unwrap_or_default();
                    let data = serde_json::json!({ "balance": self.money(balance), "transaction_id": posted.id });
                    effects = effects.event(EventType::WalletUpdated, user, data);
                }
                effects.write(&mut tx, posted.created_at).await?;
                let body = serde_json::to_vec(&self.entry_of(user_id, transaction, &posted, reference))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                self.keys.complete(&mut tx, claim, StatusCode::CREATED, &body).await?;
                Ok((tx, Created(body)))
            })
            .await
    }

    /// The caller's side of a posted transaction, as history shows it.
    fn entry_of(&self, user_id: &str, transaction: &Transaction, posted: &Posted, reference: Option<&str>) -> WalletEntry {
        let account = Account::Wallet(user_id.to_owned());
        let amount = transaction.postings().iter().filter(|p| p.account == account).map(|p| p.amount).sum();
        WalletEntry {
            id: posted.id.clone(),
            kind: transaction.kind().as_str().to_owned(),
            amount: self.money(amount),
            balance_after: self.money(posted.balance_of(&account).unwrap_or_default()),
            reference: reference.map(str::to_owned),
            created_at: posted.created_at,
        }
    }
}

/// Amounts are checked before a transaction is built, so this only names the field if they were not.
fn invalid_amount(e: LedgerError) -> WalletError {
    WalletError::Invalid(Invalid::one("amount.amount", "out_of_range", e.to_string()))
}
