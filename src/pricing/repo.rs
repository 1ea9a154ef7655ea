//! SQL of pricing rules. Every change bumps the one rules version and announces itself,
//! in the same transaction.

use chrono::{DateTime, Utc};

use super::model::{Rule, RuleSpec};
use crate::events::{Effects, EventType};
use crate::store::{Backend, Columns, Db, Sql, StoreError};

#[async_trait::async_trait]
pub trait PricingRepo: Send + Sync {
    /// Every rule and the current rules version.
    async fn load(&self) -> Result<(i64, Vec<Rule>), StoreError>;
    async fn create(&self, rule: &Rule, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Replaces a rule's spec; false when there is no such rule.
    async fn replace(&self, rule: &Rule, now: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn delete(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Sales (committed reservations) of a product since `since`: the demand signal.
    async fn recent_sales(&self, product_id: &str, since: DateTime<Utc>) -> Result<i64, StoreError>;
}

pub struct SqlPricing<DB: Backend> {
    db: Db<DB>,
    currency: String,
}

impl<DB: Backend> SqlPricing<DB> {
    /// Rules read back show their money in `currency`.
    pub fn new(db: Db<DB>, currency: &str) -> Self {
        Self { db, currency: currency.to_owned() }
    }

    /// Runs `change`, then bumps the version and records the event, all in one transaction.
    async fn changed(&self, change: Sql<DB>, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        if change.execute(&mut tx).await? == 0 {
            return Ok(false);
        }
        let row = Sql::<DB>::new("UPDATE pricing_state SET rules_version = rules_version + 1 WHERE id = 1 RETURNING rules_version")
            .fetch_one(&mut tx)
            .await?;
        let version = row.int("rules_version")?;
        Effects::default()
            .public_event(EventType::PricingRulesChanged, serde_json::json!({ "rules_version": version }))
            .apply_in::<DB>(&mut tx, now)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
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

    async fn create(&self, rule: &Rule, now: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = Sql::new("INSERT INTO pricing_rules (id, spec, created_at, updated_at) VALUES ($1, $2, $3, $3)")
            .bind(rule.id.as_str())
            .bind(spec_json(&rule.spec)?)
            .bind(now);
        self.changed(sql, now).await.map(|_| ())
    }

    async fn replace(&self, rule: &Rule, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = Sql::new("UPDATE pricing_rules SET spec = $2, updated_at = $3 WHERE id = $1")
            .bind(rule.id.as_str())
            .bind(spec_json(&rule.spec)?)
            .bind(now);
        self.changed(sql, now).await
    }

    async fn delete(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.changed(Sql::new("DELETE FROM pricing_rules WHERE id = $1").bind(id), now).await
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
