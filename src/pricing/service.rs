//! Rules in memory (reloaded on every change, here or on any instance via the bus) and quotes.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::engine::{QuoteInput, price};
use super::model::{Rule, RuleKind, RuleSpec};
use super::repo::{PricingRepo, RULES_CHANGED};
use crate::catalog::model::Product;
use crate::money::Money;
use crate::store::{StoreError, now};
use crate::validation::Invalid;

/// How long a quote's price is promised.
const QUOTE_TTL: TimeDelta = TimeDelta::minutes(5);

#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub version: i64,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuoteAdjustment {
    pub rule_id: String,
    pub kind: RuleKind,
    pub description: String,
    /// Negative is a discount.
    pub amount: Money,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Quote {
    pub product_id: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub subtotal: Money,
    pub adjustments: Vec<QuoteAdjustment>,
    pub total: Money,
    /// Changes with every rule change; a quote is for the rules of this version.
    pub rules_version: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("invalid rule")]
    Invalid(Invalid),
    #[error("no such rule")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Pricing {
    repo: Arc<dyn PricingRepo>,
    current: RwLock<Arc<RuleSet>>,
}

impl Pricing {
    pub async fn load(repo: Arc<dyn PricingRepo>) -> Result<Pricing, StoreError> {
        let pricing = Pricing { repo, current: RwLock::default() };
        pricing.reload().await?;
        Ok(pricing)
    }

    pub async fn reload(&self) -> Result<(), StoreError> {
        let (version, rules) = self.repo.load().await?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(RuleSet { version, rules });
        Ok(())
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub async fn create(&self, spec: RuleSpec) -> Result<Rule, PricingError> {
        let rule = Rule { id: crate::ids::new("rul"), spec: spec.validate().map_err(PricingError::Invalid)? };
        self.repo.create(&rule, now()).await?;
        self.reload().await?;
        tracing::info!(rule.id = %rule.id, "pricing rule created");
        Ok(rule)
    }

    /// Applies the fields of `patch` (a partial rule) over the stored rule.
    pub async fn update(&self, id: &str, patch: serde_json::Map<String, serde_json::Value>) -> Result<Rule, PricingError> {
        let current = self.rules().rules.iter().find(|r| r.id == id).cloned().ok_or(PricingError::NotFound)?;
        let mut merged = serde_json::to_value(&current.spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if let Some(object) = merged.as_object_mut() {
            object.extend(patch);
        }
        let spec: RuleSpec =
            serde_json::from_value(merged).map_err(|e| PricingError::Invalid(Invalid::one("body", "invalid", e.to_string())))?;
        let rule = Rule { id: id.to_owned(), spec: spec.validate().map_err(PricingError::Invalid)? };
        if !self.repo.replace(&rule, now()).await? {
            return Err(PricingError::NotFound);
        }
        self.reload().await?;
        tracing::info!(rule.id = %rule.id, "pricing rule changed");
        Ok(rule)
    }

    pub async fn delete(&self, id: &str) -> Result<(), PricingError> {
        if !self.repo.delete(id, now()).await? {
            return Err(PricingError::NotFound);
        }
        self.reload().await?;
        tracing::info!(rule.id = id, "pricing rule deleted");
        Ok(())
    }

    /// True when an active, current promotion carries this coupon code.
    pub fn coupon_exists(&self, code: &str, at: DateTime<Utc>) -> bool {
        self.rules().rules.iter().any(|r| {
            let s = &r.spec;
            s.active
                && s.starts_at.is_none_or(|t| t <= at)
                && s.ends_at.is_none_or(|t| at < t)
                && s.conditions.coupon_code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(code))
        })
    }

    pub async fn quote(
        &self,
        product: &Product,
        quantity: u32,
        country: Option<String>,
        coupon_code: Option<String>,
    ) -> Result<Quote, StoreError> {
        let set = self.rules();
        let at = now();
        // The demand signal is counted only when a demand rule could use it.
        let window = set
            .rules
            .iter()
            .filter(|r| r.spec.active && r.spec.kind == RuleKind::Demand)
            .filter_map(|r| r.spec.conditions.demand_window_hours)
            .max();
        let recent_orders = match window {
            Some(hours) => self.repo.recent_sales(&product.id, at - TimeDelta::hours(i64::from(hours))).await?,
            None => 0,
        };
        let input = QuoteInput {
            product_id: product.id.clone(),
            category: product.category.clone(),
            unit_price: product.price.amount,
            quantity,
            country,
            coupon_code,
            recent_orders: u32::try_from(recent_orders).unwrap_or(u32::MAX),
            now: at,
        };
        let priced = price(&set.rules, &input);
        let currency = product.price.currency.as_str();
        Ok(Quote {
            product_id: product.id.clone(),
            quantity,
            unit_price: Money::new(priced.unit_price, currency),
            subtotal: Money::new(priced.subtotal, currency),
            adjustments: priced
                .adjustments
                .into_iter()
                .map(|a| QuoteAdjustment {
                    rule_id: a.rule_id,
                    kind: a.kind,
                    description: a.description,
                    amount: Money::new(a.amount, currency),
                })
                .collect(),
            total: Money::new(priced.total, currency),
            rules_version: set.version,
            expires_at: at + QUOTE_TTL,
        })
    }
}

/// Reloads the rules when any instance changes them.
pub struct ReloadRules(pub Arc<Pricing>);

#[async_trait::async_trait]
impl crate::events::subscriber::Subscriber for ReloadRules {
    fn name(&self) -> &'static str {
        "pricing-rules"
    }

    async fn handle(&self, event: &crate::events::Event) -> anyhow::Result<()> {
        if event.kind == RULES_CHANGED {
            self.0.reload().await?;
        }
        Ok(())
    }
}
