//! Rules in memory (reloaded on every change, here or on any instance via the bus) and quotes.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::engine::{QuoteInput, order_key, price};
use super::model::{Rule, RuleKind, RuleSpec};
use super::repo::PricingRepo;
use crate::cache::{Cache, QUOTE_PREFIX, quotes_prefix};
use crate::catalog::model::Product;
use crate::events::{Effects, EventType};
use crate::http::pagination::{Page, PageRequest};
use crate::money::Money;
use crate::security::audit::{Action, Actor, NewEntry};
use crate::store::{Store, StoreError, Transient, Tx, now};
use crate::validation::Invalid;

/// How long a quote's price is promised.
const QUOTE_TTL: TimeDelta = TimeDelta::minutes(5);

/// Longest a computed quote is served from the cache. Writes, sales and rule changes
/// invalidate it at once; this bounds only what changes by the clock alone (orders leaving
/// a demand window). A rule window opening or closing ends the entry exactly on time.
const QUOTE_CACHE_FOR: TimeDelta = TimeDelta::seconds(30);

#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub version: i64,
    /// In id order, as loaded.
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuoteAdjustment {
    pub rule_id: String,
    pub kind: RuleKind,
    pub description: String,
    /// Negative is a discount.
    pub amount: Money,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

/// A quote as cached, with the moment it stops being served.
#[derive(Serialize, Deserialize)]
struct CachedQuote {
    quote: Quote,
    serve_until: DateTime<Utc>,
}

impl Transient for PricingError {
    fn is_transient(&self) -> bool {
        matches!(self, PricingError::Store(e) if e.is_transient())
    }
}

pub struct Pricing {
    store: Store,
    repo: Arc<dyn PricingRepo>,
    current: RwLock<Arc<RuleSet>>,
    /// Shared with the catalog, which drops a product's quotes whenever the product changes.
    cache: Arc<dyn Cache>,
    /// The deployment's currency: rule amounts must be in it.
    currency: String,
}

impl Pricing {
    /// The rules of `store`, loaded; amounts are in `currency`.
    pub async fn load(store: Store, cache: Arc<dyn Cache>, currency: &str) -> Result<Pricing, StoreError> {
        let repo = super::repo::for_store(&store, currency);
        let pricing = Pricing { store, repo, current: RwLock::default(), cache, currency: currency.to_owned() };
        pricing.reload().await?;
        Ok(pricing)
    }

    pub async fn reload(&self) -> Result<(), StoreError> {
        let (version, rules) = self.repo.load().await?;
        {
            // Reloads run concurrently (a local write and the bus echo of an earlier one):
            // one that read an older version must not replace a newer set.
            let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
            if version < current.version {
                return Ok(());
            }
            *current = Arc::new(RuleSet { version, rules });
        }
        self.cache.invalidate_prefix(QUOTE_PREFIX).await;
        Ok(())
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub async fn create(&self, spec: RuleSpec, actor: &Actor) -> Result<Rule, PricingError> {
        let rule = Rule { id: crate::ids::new("rul"), spec: spec.validate(&self.currency).map_err(PricingError::Invalid)? };
        let (rule_ref, entry) = (&rule, &NewEntry::new(Action::PricingRuleCreated, actor).target(&rule.id));
        self.store
            .transact(|mut tx| async move {
                self.repo.insert(&mut tx, rule_ref, now()).await?;
                self.rules_changed(&mut tx, entry.clone()).await?;
                Ok::<_, PricingError>((tx, ()))
            })
            .await?;
        self.reload().await?;
        tracing::info!(rule.id = %rule.id, "pricing rule created");
        Ok(rule)
    }

    /// Applies the fields of `patch` (a partial rule) over the stored rule.
    pub async fn update(&self, id: &str, patch: serde_json::Map<String, serde_json::Value>, actor: &Actor) -> Result<Rule, PricingError> {
        let current = self.rules().rules.iter().find(|r| r.id == id).cloned().ok_or(PricingError::NotFound)?;
        // The names of the fields changed, not their values (a coupon code is not for the trail).
        let mut fields: Vec<&String> = patch.keys().collect();
        fields.sort();
        let entry = NewEntry::new(Action::PricingRuleUpdated, actor).target(id).details(serde_json::json!({ "fields": fields }));
        let mut merged = serde_json::to_value(&current.spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if let Some(object) = merged.as_object_mut() {
            object.extend(patch);
        }
        // The path names the patched field that does not fit (`name`, `effect.amount_off`).
        let spec: RuleSpec = serde_path_to_error::deserialize(merged).map_err(|e| {
            let field = Some(e.path().to_string()).filter(|p| p != ".").unwrap_or_else(|| "body".to_owned());
            PricingError::Invalid(Invalid::one(&field, "invalid", e.into_inner().to_string()))
        })?;
        let rule = Rule { id: id.to_owned(), spec: spec.validate(&self.currency).map_err(PricingError::Invalid)? };
        let (rule_ref, entry) = (&rule, &entry);
        self.store
            .transact(|mut tx| async move {
                if !self.repo.replace(&mut tx, rule_ref, now()).await? {
                    return Err(PricingError::NotFound);
                }
                self.rules_changed(&mut tx, entry.clone()).await?;
                Ok((tx, ()))
            })
            .await?;
        self.reload().await?;
        tracing::info!(rule.id = %rule.id, "pricing rule changed");
        Ok(rule)
    }

    pub async fn delete(&self, id: &str, actor: &Actor) -> Result<(), PricingError> {
        let entry = &NewEntry::new(Action::PricingRuleDeleted, actor).target(id);
        self.store
            .transact(|mut tx| async move {
                if !self.repo.delete(&mut tx, id).await? {
                    return Err(PricingError::NotFound);
                }
                self.rules_changed(&mut tx, entry.clone()).await?;
                Ok((tx, ()))
            })
            .await?;
        self.reload().await?;
        tracing::info!(rule.id = id, "pricing rule deleted");
        Ok(())
    }

    /// Every rule change moves the one rules version on and announces it, in the change's own
    /// unit of work: quotes carry the version, and other instances reload on the event. The
    /// change's audit `entry` commits with it, naming the version it made.
    async fn rules_changed(&self, tx: &mut Tx, mut entry: NewEntry) -> Result<(), StoreError> {
        let version = self.repo.bump_version(tx).await?;
        entry.details["rules_version"] = version.into();
        Effects::default()
            .public_event(EventType::PricingRulesChanged, serde_json::json!({ "rules_version": version }))
            .audit(entry)
            .write(tx, now())
            .await
    }

    /// A page of the rules in id (creation) order, from those in memory.
    pub fn list(&self, page: &PageRequest<String>) -> Page<Rule> {
        let set = self.rules();
        let rows = set
            .rules
            .iter()
            .filter(|r| page.after.as_ref().is_none_or(|after| r.id > *after))
            .take(page.limit as usize + 1)
            .cloned()
            .collect();
        Page::from_rows(rows, page.limit, |r| r.id.clone())
    }

    /// Sorts adjustments (such as a cart's, summed over its lines) into the order the engine
    /// applies their rules, so that they read as a running total. A rule deleted since the
    /// quotes were made goes last.
    pub fn in_application_order(&self, adjustments: &mut [QuoteAdjustment]) {
        let set = self.rules();
        adjustments.sort_by_cached_key(|a| match set.rules.iter().find(|r| r.id == a.rule_id) {
            Some(rule) => {
                let (priority, id) = order_key(rule);
                (false, priority, id.to_owned())
            }
            None => (true, 0, a.rule_id.clone()),
        });
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

    /// The quote for a product, from the cache when one computed under the same rules
    /// version, product version and inputs is still fresh.
    pub async fn quote(
        &self,
        product: &Product,
        quantity: u32,
        country: Option<String>,
        coupon_code: Option<String>,
    ) -> Result<Quote, StoreError> {
        let key = format!(
            "{}{}|{quantity}|{}|{}",
            quotes_prefix(&product.id),
            product.version,
            country.as_deref().unwrap_or(""),
            coupon_code.as_deref().unwrap_or("")
        );
        let set = self.rules();
        let at = now();
        let lookup = self.cache.get(&key).await;
        if let Some(hit) = &lookup.value
            && let Ok(cached) = serde_json::from_slice::<CachedQuote>(hit)
            && at < cached.serve_until
            && cached.quote.rules_version == set.version
        {
            return Ok(cached.quote);
        }
        let quote = self.compute(&set, product, quantity, country, coupon_code, at).await?;
        let cached = CachedQuote { quote, serve_until: serve_until(&set, at) };
        if let Ok(body) = serde_json::to_vec(&cached) {
            self.cache.put(&key, body.into(), lookup.ticket).await;
        }
        Ok(cached.quote)
    }

    async fn compute(
        &self,
        set: &RuleSet,
        product: &Product,
        quantity: u32,
        country: Option<String>,
        coupon_code: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Quote, StoreError> {
        // The demand signal is counted only for the windows that active demand rules use.
        let mut windows: Vec<u32> = set
            .rules
            .iter()
            .filter(|r| r.spec.active && r.spec.kind == RuleKind::Demand)
            .filter_map(|r| r.spec.conditions.demand_window_hours)
            .collect();
        windows.sort_unstable();
        windows.dedup();
        let mut recent_orders = Vec::with_capacity(windows.len());
        for hours in windows {
            let n = self.repo.recent_sales(&product.id, at - TimeDelta::hours(i64::from(hours))).await?;
            recent_orders.push((hours, u32::try_from(n).unwrap_or(u32::MAX)));
        }
        let input = QuoteInput {
            product_id: product.id.clone(),
            category: product.category.clone(),
            unit_price: product.price.amount,
            quantity,
            country,
            coupon_code,
            recent_orders,
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

/// A cached quote is served until the next rule window opens or closes, at most `QUOTE_CACHE_FOR`.
fn serve_until(set: &RuleSet, at: DateTime<Utc>) -> DateTime<Utc> {
    set.rules
        .iter()
        .flat_map(|r| [r.spec.starts_at, r.spec.ends_at])
        .flatten()
        .filter(|t| *t > at)
        .fold(at + QUOTE_CACHE_FOR, DateTime::min)
}

/// Reloads the rules when any instance changes them.
pub struct ReloadRules(pub Arc<Pricing>);

#[async_trait::async_trait]
impl crate::events::subscriber::Subscriber for ReloadRules {
    fn name(&self) -> &'static str {
        "pricing-rules"
    }

    async fn handle(&self, event: &crate::events::Event) -> anyhow::Result<()> {
        if event.kind == EventType::PricingRulesChanged.name() {
            self.0.reload().await?;
        }
        Ok(())
    }
}
