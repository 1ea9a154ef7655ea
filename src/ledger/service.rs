//! The ledger's use cases: posting a transaction inside the caller's unit of work, reading a
//! wallet, and verifying the books.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::model::{Account, Transaction};
use super::repo::{EntryRow, LedgerRepo};
use crate::security::audit::{self, Action, Actor, NewEntry};
use crate::store::{Store, StoreError, Tx, now};

/// A transaction as posted: its id and each account's balance after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub balances: Vec<(Account, i64)>,
}

impl Posted {
    pub fn balance_of(&self, account: &Account) -> Option<i64> {
        self.balances.iter().find(|(a, _)| a == account).map(|(_, b)| *b)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// A wallet would go below zero (the database's constraint refused it).
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of checking the books (`GET /v1/admin/ledger/verify`, `keel ledger verify`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Verification {
    /// True when there is no discrepancy.
    pub balanced: bool,
    pub accounts: u64,
    pub entries: u64,
    pub discrepancies: Vec<Discrepancy>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Discrepancy {
    /// `unbalanced_transaction` (its entries do not sum to zero) or `balance_mismatch` (an
    /// account's cached balance is not the sum of its entries).
    pub kind: &'static str,
    /// The transaction id or the account (`wallet:<user id>`, `platform:<name>`).
    pub subject: String,
    /// What the entries say: 0 for a transaction, the sum of the entries for an account.
    pub expected: i64,
    /// The transaction's sum, or the account's cached balance.
    pub actual: i64,
}

pub struct Ledger {
    store: Store,
    repo: Arc<dyn LedgerRepo>,
}

impl Ledger {
    pub fn new(store: &Store) -> Self {
        Self { store: store.clone(), repo: super::repo::for_store(store) }
    }

    /// Posts `transaction` inside the caller's unit of work: its entries, and each account's
    /// cached balance. Accounts are updated in key order, so two transactions over the same
    /// wallets lock them in the same order and cannot deadlock.
    pub async fn post(&self, tx: &mut Tx, transaction: &Transaction, reference: Option<&str>) -> Result<Posted, PostError> {
        let (id, at) = (crate::ids::new("txn"), now());
        self.repo.insert_transaction(tx, &id, transaction.kind().as_str(), reference, at).await?;
        let mut postings: Vec<_> = transaction.postings().iter().collect();
        postings.sort_by(|a, b| a.account.cmp(&b.account));
        let mut balances = Vec::with_capacity(postings.len());
        for posting in postings {
            let balance = self.repo.add_to_balance(tx, &posting.account, posting.amount, at).await?.ok_or(PostError::InsufficientFunds)?;
            self.repo.insert_entry(tx, &id, &posting.account, posting.amount, balance, at).await?;
            balances.push((posting.account.clone(), balance));
        }
        Ok(Posted { id, created_at: at, balances })
    }

    pub async fn balance(&self, account: &Account) -> Result<i64, StoreError> {
        self.repo.balance(account).await
    }

    /// Up to `limit` entries of `account`, newest first, older than entry `before`.
    pub async fn entries(&self, account: &Account, before: Option<&str>, limit: u32) -> Result<Vec<EntryRow>, StoreError> {
        self.repo.entries(account, before, limit).await
    }

    /// Every transaction sums to zero and every cached balance equals the sum of its entries.
    /// A check that finds a discrepancy is audited as `by`'s.
    pub async fn verify(&self, by: &Actor) -> Result<Verification, StoreError> {
        let audit = self.repo.audit().await?;
        let unbalanced = audit.unbalanced.into_iter().map(|(subject, sum)| Discrepancy {
            kind: "unbalanced_transaction",
            subject,
            expected: 0,
            actual: sum,
        });
        let drifted = audit.drifted.into_iter().map(|(subject, cached, sum)| Discrepancy {
            kind: "balance_mismatch",
            subject,
            expected: sum,
            actual: cached,
        });
        let discrepancies: Vec<_> = unbalanced.chain(drifted).collect();
        if let Some(first) = discrepancies.first() {
            let details = json!({ "discrepancies": discrepancies.len(), "first": { "kind": first.kind, "subject": first.subject } });
            audit::record(&self.store, &NewEntry::new(Action::LedgerVerificationFailed, by).details(details)).await?;
        }
        Ok(Verification { balanced: discrepancies.is_empty(), accounts: audit.accounts, entries: audit.entries, discrepancies })
    }
}
