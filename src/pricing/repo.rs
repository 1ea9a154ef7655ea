//! SQL of pricing rules. Every change bumps the one rules version and announces itself,
//! in the same transaction.

use chrono::{DateTime, Utc};

use super::model::{Rule, RuleSpec};
use crate::events::Effects;
use crate::store::{Backend, Columns, Db, Sql, StoreError};

/// Event telling every instance to reload its rules.
pub const RULES_CHANGED: &str = "pricing.rules_changed";

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
}

impl<DB: Backend> SqlPricing<DB> {
    pub fn new(db: Db<DB>) -> Self {
        Self { db }
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
            .public_event(RULES_CHANGED, serde_json::json!({ "rules_version": version }))
            .apply_in::<DB>(&mut tx, now)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

fn spec_json(spec: &RuleSpec) -> Result<String, StoreError> {
    serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(e.to_string()))
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
            .map(|r| {
                let spec = serde_json::from_str(&r.text("spec")?).map_err(|e| StoreError::Corrupt(format!("pricing rule: {e}")))?;
                Ok(Rule { id: r.text("id")?, spec })
            })
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
