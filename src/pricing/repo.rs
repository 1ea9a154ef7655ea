//! SQL of pricing rules.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::model::{Rule, RuleSpec};
use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx};

/// The SQL of pricing rules. Reads use the reader pool; every write is one step of the
/// caller's unit of work.
#[async_trait::async_trait]
pub trait PricingRepo: Send + Sync {
    /// Every rule and the current rules version.
    async fn load(&self) -> Result<(i64, Vec<Rule>), StoreError>;
    /// Sales (committed reservations) of a product since `since`: the demand signal.
    async fn recent_sales(&self, product_id: &str, since: DateTime<Utc>) -> Result<i64, StoreError>;
    async fn insert(&self, tx: &mut Tx, rule: &Rule, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Replaces a rule's spec; false when there is no such rule.
    async fn replace(&self, tx: &mut Tx, rule: &Rule, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// False when there is no such rule.
    async fn delete(&self, tx: &mut Tx, id: &str) -> Result<bool, StoreError>;
    /// Moves the one rules version on; returns the new version.
    async fn bump_version(&self, tx: &mut Tx) -> Result<i64, StoreError>;
}

/// The pricing repository of `store`'s backend; rules read back show money in `currency`.
pub fn for_store(store: &Store, currency: &str) -> Arc<dyn PricingRepo> {
    struct Pricing<'a>(&'a str);
    impl Build for Pricing<'_> {
        type Output = Arc<dyn PricingRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlPricing { db, currency: self.0.to_owned() })
        }
    }
    store.build(Pricing(currency))
}

struct SqlPricing<DB: Backend> {
    db: Db<DB>,
    currency: String,
}

/// A spec as stored: JSON with `effect.amount_off` in minor units. Like product prices, the
/// deployment's one currency is not stored (and rules stored before it was shown as money read
/// back unchanged).
fn spec_json(spec: &RuleSpec) -> Result<String, StoreError> {
    let mut value = serde_json::to_value(spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if let Some(off) = value.pointer_mut("/effect/amount_off") {
        *off = off["amount"].take();
    }
    Ok(value.to_string())
}

fn spec_from(stored: &str, currency: &str) -> Result<RuleSpec, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("pricing rule: {e}"));
    let mut value: serde_json::Value = serde_json::from_str(stored).map_err(corrupt)?;
    if let Some(off) = value.pointer_mut("/effect/amount_off") {
        *off = serde_json::json!({ "amount": off.take(), "currency": currency });
    }
    serde_json::from_value(value).map_err(corrupt)
}

#[async_trait::async_trait]
impl<DB: Backend> PricingRepo for SqlPricing<DB> {
    async fn load(&self) -> Result<(i64, Vec<Rule>), StoreError> {
        let mut conn = self.db.reader().await?;
        let version =
            Sql::<DB>::new("SELECT rules_version FROM pricing_state WHERE id = 1").fetch_one(&mut conn).await?.int("rules_version")?;
        let rows = Sql::<DB>::new("SELECT id, spec FROM pricing_rules ORDER BY id").fetch_all(&mut conn).await?;
        let rules = rows
            .iter()
            .map(|r| Ok(Rule { id: r.text("id")?, spec: spec_from(&r.text("spec")?, &self.currency)? }))
            .collect::<Result<_, StoreError>>()?;
        Ok((version, rules))
    }

    async fn recent_sales(&self, product_id: &str, since: DateTime<Utc>) -> Result<i64, StoreError> {
        let mut conn = self.db.reader().await?;
        Sql::<DB>::new("SELECT COUNT(*) AS n FROM stock_reservations WHERE product_id = $1 AND state = 'committed' AND created_at >= $2")
            .bind(product_id)
            .bind(since)
            .fetch_one(&mut conn)
            .await?
            .int("n")
    }

    async fn insert(&self, tx: &mut Tx, rule: &Rule, now: DateTime<Utc>) -> Result<(), StoreError> {
        Sql::<DB>::new("INSERT INTO pricing_rules (id, spec, created_at, updated_at) VALUES ($1, $2, $3, $3)")
            .bind(rule.id.as_str())
            .bind(spec_json(&rule.spec)?)
            .bind(now)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(())
    }

    async fn replace(&self, tx: &mut Tx, rule: &Rule, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new("UPDATE pricing_rules SET spec = $2, updated_at = $3 WHERE id = $1")
            .bind(rule.id.as_str())
            .bind(spec_json(&rule.spec)?)
            .bind(now)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(n == 1)
    }

    async fn delete(&self, tx: &mut Tx, id: &str) -> Result<bool, StoreError> {
        Ok(Sql::<DB>::new("DELETE FROM pricing_rules WHERE id = $1").bind(id).execute(tx.conn::<DB>()?).await? == 1)
    }

    async fn bump_version(&self, tx: &mut Tx) -> Result<i64, StoreError> {
        Sql::<DB>::new("UPDATE pricing_state SET rules_version = rules_version + 1 WHERE id = 1 RETURNING rules_version")
            .fetch_one(tx.conn::<DB>()?)
            .await?
            .int("rules_version")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;
    use crate::pricing::model::Effect;

    #[test]
    fn amounts_off_are_stored_in_minor_units_and_read_back_as_money() {
        let spec: RuleSpec = serde_json::from_value(
            serde_json::json!({ "name": "Sale", "kind": "promotion", "effect": { "amount_off": { "amount": 500, "currency": "USD" } } }),
        )
        .unwrap();
        let stored = spec_json(&spec).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&stored).unwrap()["effect"], serde_json::json!({ "amount_off": 500 }));
        assert_eq!(spec_from(&stored, "USD").unwrap(), spec);
        let percent = RuleSpec { effect: Effect { percent_bps: Some(-100), amount_off: None }, ..spec };
        assert_eq!(spec_from(&spec_json(&percent).unwrap(), "USD").unwrap(), percent);
        assert_eq!(
            spec_from(r#"{"name":"Old","kind":"promotion","effect":{"amount_off":50}}"#, "EUR").unwrap().effect.amount_off,
            Some(Money::new(50, "EUR"))
        );
    }
}
