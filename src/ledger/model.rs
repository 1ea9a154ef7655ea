//! Double-entry types, no I/O. Money moves only as a [`Transaction`]: postings that sum to zero,
//! so nothing is created or lost; a posting's amount is added to its account's balance.
//!
//! Platform accounts may go negative: provider clearing is what the provider owes us (it goes
//! down when a card is charged and up when a card is refunded), refunds is a contra-revenue
//! account. A wallet never goes negative; the store enforces that with a constraint, since only
//! it sees concurrent transactions.

use std::fmt;

/// Where money sits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    /// A user's wallet, by user id.
    Wallet(String),
    /// Money charged through the payment provider and not yet paid out.
    ProviderClearing,
    SalesRevenue,
    /// Refunds given, kept apart from revenue so both stay visible.
    Refunds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKind {
    Wallet,
    ProviderClearing,
    SalesRevenue,
    Refunds,
}

impl Account {
    pub fn kind(&self) -> AccountKind {
        match self {
            Account::Wallet(_) => AccountKind::Wallet,
            Account::ProviderClearing => AccountKind::ProviderClearing,
            Account::SalesRevenue => AccountKind::SalesRevenue,
            Account::Refunds => AccountKind::Refunds,
        }
    }

    /// Whether the balance may fall below zero (only platform accounts).
    pub fn may_go_negative(&self) -> bool {
        self.kind() != AccountKind::Wallet
    }

    /// Reads a stored key, as `Display` writes it: `wallet:<user id>` or `platform:<name>`.
    pub fn parse(key: &str) -> Option<Account> {
        match key {
            "platform:provider_clearing" => Some(Account::ProviderClearing),
            "platform:sales_revenue" => Some(Account::SalesRevenue),
            "platform:refunds" => Some(Account::Refunds),
            _ => key.strip_prefix("wallet:").filter(|user| !user.is_empty()).map(|user| Account::Wallet(user.to_owned())),
        }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Wallet(user) => write!(f, "wallet:{user}"),
            Account::ProviderClearing => f.write_str("platform:provider_clearing"),
            Account::SalesRevenue => f.write_str("platform:sales_revenue"),
            Account::Refunds => f.write_str("platform:refunds"),
        }
    }
}

/// What a transaction is, as wallet history shows it (`kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionKind {
    TopUp,
    Payment,
    Transfer,
    Refund,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionKind::TopUp => "top_up",
            TransactionKind::Payment => "payment",
            TransactionKind::Transfer => "transfer",
            TransactionKind::Refund => "refund",
        }
    }
}

/// One line of a transaction: `amount` minor units added to `account` (negative: taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account: Account,
    pub amount: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("a transaction's postings must sum to zero")]
    Unbalanced,
    #[error("a transaction needs at least two postings, none of zero")]
    Degenerate,
    #[error("an amount must be positive")]
    NonPositiveAmount,
    #[error("a transfer needs two different wallets")]
    SameWallet,
}

/// Postings that sum to zero; the only way to build one is through [`Transaction::new`] or the
/// helpers below, so an unbalanced transaction cannot exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    kind: TransactionKind,
    postings: Vec<Posting>,
}

impl Transaction {
    pub fn new(kind: TransactionKind, postings: Vec<Posting>) -> Result<Transaction, LedgerError> {
        if postings.len() < 2 || postings.iter().any(|p| p.amount == 0) {
            return Err(LedgerError::Degenerate);
        }
        // i128: a sum of i64 amounts cannot overflow it, so no wrap-around can fake a zero.
        if postings.iter().map(|p| i128::from(p.amount)).sum::<i128>() != 0 {
            return Err(LedgerError::Unbalanced);
        }
        Ok(Transaction { kind, postings })
    }

    pub fn kind(&self) -> TransactionKind {
        self.kind
    }

    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }

    /// Card charged, wallet credited.
    pub fn top_up(user: &str, amount: i64) -> Result<Transaction, LedgerError> {
        Self::moving(TransactionKind::TopUp, Account::ProviderClearing, Account::Wallet(user.to_owned()), amount)
    }

    /// An order paid from the wallet.
    pub fn wallet_payment(user: &str, amount: i64) -> Result<Transaction, LedgerError> {
        Self::moving(TransactionKind::Payment, Account::Wallet(user.to_owned()), Account::SalesRevenue, amount)
    }

    /// An order paid by card.
    pub fn card_payment(amount: i64) -> Result<Transaction, LedgerError> {
        Self::moving(TransactionKind::Payment, Account::ProviderClearing, Account::SalesRevenue, amount)
    }

    pub fn transfer(from_user: &str, to_user: &str, amount: i64) -> Result<Transaction, LedgerError> {
        if from_user == to_user {
            return Err(LedgerError::SameWallet);
        }
        Self::moving(TransactionKind::Transfer, Account::Wallet(from_user.to_owned()), Account::Wallet(to_user.to_owned()), amount)
    }

    /// A refund of a wallet payment, back to the wallet.
    pub fn refund_to_wallet(user: &str, amount: i64) -> Result<Transaction, LedgerError> {
        Self::moving(TransactionKind::Refund, Account::Refunds, Account::Wallet(user.to_owned()), amount)
    }

    /// A refund of a card payment, back through the provider.
    pub fn refund_to_card(amount: i64) -> Result<Transaction, LedgerError> {
        Self::moving(TransactionKind::Refund, Account::Refunds, Account::ProviderClearing, amount)
    }

    fn moving(kind: TransactionKind, from: Account, to: Account, amount: i64) -> Result<Transaction, LedgerError> {
        // amount > 0 also keeps -amount in range (i64::MIN has no positive twin).
        if amount <= 0 {
            return Err(LedgerError::NonPositiveAmount);
        }
        Transaction::new(kind, vec![Posting { account: from, amount: -amount }, Posting { account: to, amount }])
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sum(t: &Transaction) -> i128 {
        t.postings().iter().map(|p| i128::from(p.amount)).sum()
    }

    fn change(t: &Transaction, account: &Account) -> i64 {
        t.postings().iter().filter(|p| &p.account == account).map(|p| p.amount).sum()
    }

    #[test]
    fn each_helper_moves_money_the_right_way() {
        let w = |u: &str| Account::Wallet(u.to_owned());
        let t = Transaction::top_up("usr_a", 500).unwrap();
        assert_eq!((change(&t, &Account::ProviderClearing), change(&t, &w("usr_a"))), (-500, 500));
        let t = Transaction::wallet_payment("usr_a", 300).unwrap();
        assert_eq!((change(&t, &w("usr_a")), change(&t, &Account::SalesRevenue)), (-300, 300));
        let t = Transaction::card_payment(300).unwrap();
        assert_eq!((change(&t, &Account::ProviderClearing), change(&t, &Account::SalesRevenue)), (-300, 300));
        let t = Transaction::transfer("usr_a", "usr_b", 200).unwrap();
        assert_eq!((change(&t, &w("usr_a")), change(&t, &w("usr_b"))), (-200, 200));
        let t = Transaction::refund_to_wallet("usr_a", 100).unwrap();
        assert_eq!((change(&t, &Account::Refunds), change(&t, &w("usr_a"))), (-100, 100));
        let t = Transaction::refund_to_card(100).unwrap();
        assert_eq!((change(&t, &Account::Refunds), change(&t, &Account::ProviderClearing)), (-100, 100));
        assert_eq!(t.kind().as_str(), "refund");
    }

    #[test]
    fn unbalanced_and_degenerate_postings_are_refused() {
        let p = |account: Account, amount| Posting { account, amount };
        assert_eq!(
            Transaction::new(TransactionKind::Payment, vec![p(Account::SalesRevenue, 5), p(Account::ProviderClearing, -4)]),
            Err(LedgerError::Unbalanced)
        );
        assert_eq!(Transaction::new(TransactionKind::Payment, vec![]), Err(LedgerError::Degenerate));
        assert_eq!(
            Transaction::new(TransactionKind::Payment, vec![p(Account::SalesRevenue, 0), p(Account::Refunds, 0)]),
            Err(LedgerError::Degenerate)
        );
        // Wrapping i64 arithmetic would call this balanced.
        assert_eq!(
            Transaction::new(
                TransactionKind::Payment,
                vec![p(Account::SalesRevenue, i64::MAX), p(Account::Refunds, i64::MAX), p(Account::ProviderClearing, 2)]
            ),
            Err(LedgerError::Unbalanced)
        );
    }

    #[test]
    fn amounts_must_be_positive_and_transfers_between_two_wallets() {
        assert_eq!(Transaction::top_up("usr_a", 0), Err(LedgerError::NonPositiveAmount));
        assert_eq!(Transaction::card_payment(i64::MIN), Err(LedgerError::NonPositiveAmount));
        assert_eq!(Transaction::transfer("usr_a", "usr_a", 1), Err(LedgerError::SameWallet));
    }

    #[test]
    fn account_keys_round_trip() {
        for a in [Account::Wallet("usr_1".into()), Account::ProviderClearing, Account::SalesRevenue, Account::Refunds] {
            assert_eq!(Account::parse(&a.to_string()), Some(a));
        }
        assert_eq!(Account::parse("wallet:"), None);
        assert_eq!(Account::parse("platform:cash"), None);
        assert!(!Account::Wallet("usr_1".into()).may_go_negative() && Account::ProviderClearing.may_go_negative());
    }

    proptest! {
        #[test]
        fn every_built_transaction_sums_to_zero(amount in any::<i64>(), a in "usr_[a-z]{1,4}", b in "usr_[a-z]{1,4}") {
            let built = [
                Transaction::top_up(&a, amount),
                Transaction::wallet_payment(&a, amount),
                Transaction::card_payment(amount),
                Transaction::transfer(&a, &b, amount),
                Transaction::refund_to_wallet(&a, amount),
                Transaction::refund_to_card(amount),
            ];
            for t in built {
                match t {
                    Ok(t) => {
                        prop_assert!(amount > 0);
                        prop_assert_eq!(sum(&t), 0);
                        prop_assert!(t.postings().iter().all(|p| p.amount != 0));
                    }
                    Err(e) => prop_assert!(amount <= 0 || (e == LedgerError::SameWallet && a == b)),
                }
            }
        }

        #[test]
        fn new_accepts_exactly_the_balanced_postings(amounts in proptest::collection::vec(any::<i64>(), 0..6)) {
            let postings: Vec<Posting> = amounts.iter().map(|&amount| Posting { account: Account::SalesRevenue, amount }).collect();
            let balanced = amounts.iter().map(|&a| i128::from(a)).sum::<i128>() == 0;
            let degenerate = amounts.len() < 2 || amounts.contains(&0);
            match Transaction::new(TransactionKind::Payment, postings) {
                Ok(t) => prop_assert_eq!(sum(&t), 0),
                Err(LedgerError::Degenerate) => prop_assert!(degenerate),
                Err(LedgerError::Unbalanced) => prop_assert!(!balanced && !degenerate),
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
        }
    }
}
