//! Pricing rules as admins write them, checked. No I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{Object, ObjectBuilder, RefOr, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::money::Money;
use crate::validation::Invalid;

/// The largest amount off per unit, in minor units.
pub const MAX_AMOUNT_OFF: i64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// By the buyer's country.
    Country,
    /// From a minimum quantity on.
    QuantityTier,
    /// By recent orders of the product (a surcharge that grows with demand, capped).
    Demand,
    /// A time-boxed offer, optionally behind a coupon code.
    Promotion,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// ISO 3166-1 alpha-2 codes, upper case (`country` rules need them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1)]
    pub countries: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 1000)]
    pub product_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 1000)]
    pub categories: Option<Vec<String>>,
    /// The quantity from which the rule applies (`quantity_tier` rules need at least 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_quantity: Option<u32>,
    /// 3–32 letters, digits, `_` or `-`; compared case-insensitively; stored upper-case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 3, max_length = 32)]
    pub coupon_code: Option<String>,
    /// `demand`: how far back orders count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 720)]
    pub demand_window_hours: Option<u32>,
    /// `demand`: the largest surcharge, in basis points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10_000)]
    pub demand_cap_bps: Option<i64>,
}

/// Exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Effect {
    /// Basis points of the running total: negative is a discount, positive a surcharge; not 0.
    /// For `demand`, the surcharge per recent order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -10_000, maximum = 10_000)]
    pub percent_bps: Option<i64>,
    /// Off each unit, in the deployment's currency: `amount` from 1 to 100 000 000 minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_off: Option<Money>,
}

/// A rule as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    #[serde(flatten)]
    pub spec: RuleSpec,
}

/// `RuleSpec`'s schema object, changed by `edit`. A shown rule and a patch are documented from
/// it rather than as `allOf` with it: a closed object cannot be extended that way.
pub fn spec_schema(edit: impl FnOnce(&mut Object)) -> RefOr<Schema> {
    let mut schema = RuleSpec::schema();
    if let RefOr::T(Schema::Object(object)) = &mut schema {
        edit(object);
    }
    schema
}

impl PartialSchema for Rule {
    fn schema() -> RefOr<Schema> {
        spec_schema(|object| {
            let id = ObjectBuilder::new().schema_type(Type::String).description(Some("`rul_…`"));
            object.properties.insert("id".to_owned(), RefOr::T(Schema::Object(id.build())));
            // A shown rule carries every field, `null` for a missing window.
            object.required = object.properties.keys().cloned().collect();
            object.description = Some("A pricing rule as stored and shown.".to_owned());
        })
    }
}

impl ToSchema for Rule {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        RuleSpec::schemas(schemas);
    }
}

/// Everything about a rule but its id: what admins send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// 1–100 characters after trimming.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub kind: RuleKind,
    /// Lower applies first; equal priorities apply by id.
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000, default = 0)]
    pub priority: i32,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub active: bool,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub conditions: Conditions,
    pub effect: Effect,
}

fn yes() -> bool {
    true
}

fn is_country(c: &str) -> bool {
    c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())
}

impl RuleSpec {
    /// Checks the rule as a whole: ranges, money in `currency`, and what each kind needs.
    pub fn validate(mut self, currency: &str) -> Result<RuleSpec, Invalid> {
        let mut invalid = Invalid::default();
        let len = self.name.trim().chars().count();
        if !(1..=100).contains(&len) {
            invalid.add("name", "invalid", "must be 1 to 100 characters");
        }
        if !(-1000..=1000).contains(&self.priority) {
            invalid.add("priority", "out_of_range", "must be from -1000 to 1000");
        }
        if let (Some(s), Some(e)) = (self.starts_at, self.ends_at)
            && e <= s
        {
            invalid.add("ends_at", "invalid", "must be after starts_at");
        }
        match (self.effect.percent_bps, &self.effect.amount_off) {
            (Some(p), None) if !(-10_000..=10_000).contains(&p) || p == 0 => {
                invalid.add("effect.percent_bps", "out_of_range", "must be a non-zero integer from -10000 to 10000")
            }
            (None, Some(off)) => {
                if invalid.check(off.clone().parse("effect.amount_off", currency, MAX_AMOUNT_OFF)) == Some(0) {
                    invalid.add("effect.amount_off.amount", "out_of_range", format!("must be from 1 to {MAX_AMOUNT_OFF} (minor units)"));
                }
            }
            (Some(_), None) => {}
            _ => invalid.add("effect", "invalid", "give exactly one of percent_bps and amount_off"),
        }
        let c = &mut self.conditions;
        if let Some(code) = &mut c.coupon_code {
            *code = code.trim().to_uppercase();
            if !(3..=32).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                invalid.add("conditions.coupon_code", "invalid", "must be 3 to 32 letters, digits, '_' or '-'");
            }
        }
        if c.countries.as_ref().is_some_and(|cs| cs.is_empty() || !cs.iter().all(|c| is_country(c))) {
            invalid.add("conditions.countries", "invalid", "must list ISO 3166-1 alpha-2 codes such as DE");
        }
        for (field, list) in [("conditions.product_ids", &c.product_ids), ("conditions.categories", &c.categories)] {
            if list.as_ref().is_some_and(|l| l.is_empty() || l.len() > 1000) {
                invalid.add(field, "invalid", "must list 1 to 1000 values");
            }
        }
        match self.kind {
            RuleKind::Country if c.countries.is_none() => invalid.add("conditions.countries", "required", "a country rule needs countries"),
            RuleKind::QuantityTier if c.min_quantity.is_none_or(|q| q < 2) => {
                invalid.add("conditions.min_quantity", "required", "a quantity tier needs min_quantity of at least 2")
            }
            RuleKind::Demand => {
                if c.demand_window_hours.is_none_or(|h| !(1..=720).contains(&h)) {
                    invalid.add("conditions.demand_window_hours", "required", "a demand rule needs a window of 1 to 720 hours");
                }
                if c.demand_cap_bps.is_none_or(|b| !(1..=10_000).contains(&b)) {
                    invalid.add("conditions.demand_cap_bps", "required", "a demand rule needs a cap of 1 to 10000 basis points");
                }
                if self.effect.percent_bps.is_none_or(|p| p <= 0) {
                    invalid.add("effect.percent_bps", "invalid", "a demand rule needs a positive surcharge per order");
                }
            }
            _ => {}
        }
        if self.kind != RuleKind::Demand && (c.demand_window_hours.is_some() || c.demand_cap_bps.is_some()) {
            invalid.add("conditions", "invalid", "demand_window_hours and demand_cap_bps belong to demand rules");
        }
        self.name = self.name.trim().to_owned();
        invalid.finish().map(|()| self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: RuleKind, conditions: Conditions, effect: Effect) -> RuleSpec {
        RuleSpec { name: "Rule".into(), kind, priority: 0, active: true, starts_at: None, ends_at: None, conditions, effect }
    }

    fn usd(amount: i64) -> Option<Money> {
        Some(Money::new(amount, "USD"))
    }

    fn fields(r: Result<RuleSpec, Invalid>) -> Vec<String> {
        r.err().map(|e| e.0.into_iter().map(|f| f.field).collect()).unwrap_or_default()
    }

    #[test]
    fn each_kind_needs_its_conditions() {
        let pct = Effect { percent_bps: Some(-500), amount_off: None };
        assert_eq!(fields(spec(RuleKind::Country, Conditions::default(), pct.clone()).validate("USD")), ["conditions.countries"]);
        assert_eq!(fields(spec(RuleKind::QuantityTier, Conditions::default(), pct.clone()).validate("USD")), ["conditions.min_quantity"]);
        let demand = fields(spec(RuleKind::Demand, Conditions::default(), pct.clone()).validate("USD"));
        assert!(demand.contains(&"conditions.demand_window_hours".to_owned()) && demand.contains(&"effect.percent_bps".to_owned()));
        assert!(spec(RuleKind::Promotion, Conditions::default(), pct).validate("USD").is_ok());
    }

    #[test]
    fn effects_and_coupons_are_checked_and_normalised() {
        let both = Effect { percent_bps: Some(10), amount_off: usd(10) };
        assert_eq!(fields(spec(RuleKind::Promotion, Conditions::default(), both).validate("USD")), ["effect"]);
        let coupon = Conditions { coupon_code: Some(" spring-10 ".into()), ..Conditions::default() };
        let ok = spec(RuleKind::Promotion, coupon, Effect { percent_bps: None, amount_off: usd(100) }).validate("USD").unwrap();
        assert_eq!(ok.conditions.coupon_code.as_deref(), Some("SPRING-10"));
    }

    #[test]
    fn an_amount_off_is_money_in_the_deployments_currency() {
        let off =
            |amount: Option<Money>| spec(RuleKind::Promotion, Conditions::default(), Effect { percent_bps: None, amount_off: amount });
        assert!(off(usd(500)).validate("USD").is_ok());
        assert_eq!(fields(off(Some(Money::new(500, "EUR"))).validate("USD")), ["effect.amount_off.currency"]);
        assert_eq!(fields(off(usd(0)).validate("USD")), ["effect.amount_off.amount"]);
        assert_eq!(fields(off(usd(MAX_AMOUNT_OFF + 1)).validate("USD")), ["effect.amount_off.amount"]);
    }
}
