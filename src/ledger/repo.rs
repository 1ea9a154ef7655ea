//! SQL of the ledger: accounts with their cached balance, transactions, immutable entries.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::model::{Account, AccountKind};
use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx};

/// One line of a wallet's history, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRow {
    pub entry_id: String,
    pub transaction_id: String,
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub reference: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What `verify` found wrong, each a list of (what, detail).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    pub accounts: u64,
    pub entries: u64,
    /// Transactions whose entries do not sum to zero: (id, sum).
    pub unbalanced: Vec<(String, i64)>,
    /// Accounts whose cached balance is not the sum of their entries: (account, cached, sum).
    pub drifted: Vec<(String, i64, i64)>,
}

/// Reads use the reader pool; every write is one step of the caller's unit of work.
#[async_trait::async_trait]
pub trait LedgerRepo: Send + Sync {
    /// Adds `amount` to the cached balance, opening the account (from 0) if it does not exist
    /// yet, and returns the new balance; `None` when the constraint that keeps wallets from
    /// going negative refused it (the transaction must then roll back).
    async fn add_to_balance(&self, tx: &mut Tx, account: &Account, amount: i64, now: DateTime<Utc>) -> Result<Option<i64>, StoreError>;
    async fn insert_transaction(
        &self,
        tx: &mut Tx,
        id: &str,
        kind: &str,
        reference: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn insert_entry(
        &self,
        tx: &mut Tx,
        transaction_id: &str,
        account: &Account,
        amount: i64,
        balance_after: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The cached balance (0 for an account that never moved).
    async fn balance(&self, account: &Account) -> Result<i64, StoreError>;
    /// Up to `limit` entries of `account`, newest first, older than entry `before`.
    async fn entries(&self, account: &Account, before: Option<&str>, limit: u32) -> Result<Vec<EntryRow>, StoreError>;
    async fn audit(&self) -> Result<Audit, StoreError>;
}

/// The ledger repository of `store`'s backend.
pub fn for_store(store: &Store) -> Arc<dyn LedgerRepo> {
    struct Ledgers;
    impl Build for Ledgers {
        type Output = Arc<dyn LedgerRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlLedger { db })
        }
    }
    store.build(Ledgers)
}

struct SqlLedger<DB: Backend> {
    db: Db<DB>,
}

fn kind_name(kind: AccountKind) -> &'static str {
    match kind {
        AccountKind::Wallet => "wallet",
        AccountKind::ProviderClearing => "provider_clearing",
        AccountKind::SalesRevenue => "sales_revenue",
        AccountKind::Refunds => "refunds",
    }
}

#[async_trait::async_trait]
impl<DB: Backend> LedgerRepo for SqlLedger<DB> {
    async fn add_to_balance(&self, tx: &mut Tx, account: &Account, amount: i64, now: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
        // The account usually exists: one statement. Otherwise it is opened with the amount as
        // its balance (both databases check a constraint on the row an upsert proposes, so the
        // insert cannot start from 0 and add); a concurrent opening lands in the update.
        let updated = Sql::<DB>::new("UPDATE ledger_accounts SET balance = balance + $2 WHERE account = $1 RETURNING balance")
            .bind(account.to_string())
            .bind(amount)
            .fetch_optional(tx.conn::<DB>()?)
            .await;
        let updated = match updated {
            Ok(None) => Sql::<DB>::new(
                "INSERT INTO ledger_accounts (account, kind, balance, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (account) DO UPDATE SET balance = ledger_accounts.balance + excluded.balance RETURNING balance",
            )
            .bind(account.to_string())
            .bind(kind_name(account.kind()))
            .bind(amount)
            .bind(now)
            .fetch_one(tx.conn::<DB>()?)
            .await
            .map(Some),
            other => other,
        };
        match updated {
            Ok(row) => row.map(|r| r.int("balance")).transpose(),
            Err(StoreError::Database(sqlx::Error::Database(e))) if e.is_check_violation() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn insert_transaction(
        &self,
        tx: &mut Tx,
        id: &str,
        kind: &str,
        reference: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Sql::<DB>::new("INSERT INTO ledger_transactions (id, kind, reference, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(kind)
            .bind(reference.map(str::to_owned))
            .bind(now)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(())
    }

    async fn insert_entry(
        &self,
        tx: &mut Tx,
        transaction_id: &str,
        account: &Account,
        amount: i64,
        balance_after: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "INSERT INTO ledger_entries (id, transaction_id, account, amount, balance_after, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(crate::ids::new("ent"))
        .bind(transaction_id)
        .bind(account.to_string())
        .bind(amount)
        .bind(balance_after)
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }

    async fn balance(&self, account: &Account) -> Result<i64, StoreError> {
        let mut conn = self.db.reader().await?;
        let row = Sql::<DB>::new("SELECT balance FROM ledger_accounts WHERE account = $1")
            .bind(account.to_string())
            .fetch_optional(&mut conn)
            .await?;
        row.map_or(Ok(0), |r| r.int("balance"))
    }

    async fn entries(&self, account: &Account, before: Option<&str>, limit: u32) -> Result<Vec<EntryRow>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new(
            "SELECT e.id, e.transaction_id, t.kind, e.amount, e.balance_after, t.reference, e.created_at \
             FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id \
             WHERE e.account = $1 AND ($2 IS NULL OR e.id < $2) ORDER BY e.id DESC LIMIT $3",
        )
        .bind(account.to_string())
        .bind(before.map(str::to_owned))
        .bind(i64::from(limit))
        .fetch_all(&mut conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EntryRow {
                    entry_id: r.text("id")?,
                    transaction_id: r.text("transaction_id")?,
                    kind: r.text("kind")?,
                    amount: r.int("amount")?,
                    balance_after: r.int("balance_after")?,
                    reference: r.opt_text("reference")?,
                    created_at: r.time("created_at")?,
                })
            })
            .collect()
    }

    async fn audit(&self) -> Result<Audit, StoreError> {
        let mut conn = self.db.reader().await?;
        let counts =
            Sql::<DB>::new("SELECT (SELECT COUNT(*) FROM ledger_accounts) AS accounts, (SELECT COUNT(*) FROM ledger_entries) AS entries")
                .fetch_one(&mut conn)
                .await?;
        let unbalanced = Sql::<DB>::new(
            "SELECT transaction_id, CAST(SUM(amount) AS BIGINT) AS total FROM ledger_entries \
             GROUP BY transaction_id HAVING SUM(amount) <> 0 ORDER BY transaction_id",
        )
        .fetch_all(&mut conn)
        .await?;
        let drifted = Sql::<DB>::new(
            "SELECT a.account, a.balance, CAST(COALESCE(SUM(e.amount), 0) AS BIGINT) AS total \
             FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account = a.account \
             GROUP BY a.account, a.balance HAVING a.balance <> COALESCE(SUM(e.amount), 0) ORDER BY a.account",
        )
        .fetch_all(&mut conn)
        .await?;
        Ok(Audit {
            accounts: counts.int("accounts")?.try_into().unwrap_or_default(),
            entries: counts.int("entries")?.try_into().unwrap_or_default(),
            unbalanced: unbalanced.iter().map(|r| Ok((r.text("transaction_id")?, r.int("total")?))).collect::<Result<_, StoreError>>()?,
            drifted: drifted
                .iter()
                .map(|r| Ok((r.text("account")?, r.int("balance")?, r.int("total")?)))
                .collect::<Result<_, StoreError>>()?,
        })
    }
}
