//! Evaluating rules: a pure function of the rules and the quote's inputs.
//!
//! Rules apply one after another to the running total, in priority order (then by id, so
//! equal priorities are deterministic). A percentage is of the running total; an amount
//! off is per unit. Rounding rule, the only one: every percentage is rounded to the minor
//! unit half away from zero. The total never goes below zero; an adjustment records what
//! was actually applied, so `subtotal + Σ adjustments = total` always holds.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::model::{Rule, RuleKind};

/// What a price depends on besides the rules.
#[derive(Debug, Clone)]
pub struct QuoteInput {
    pub product_id: String,
    pub category: String,
    pub unit_price: i64,
    pub quantity: u32,
    pub country: Option<String>,
    pub coupon_code: Option<String>,
    /// Recent orders of the product as `(window in hours, orders in that window)`, one pair
    /// for each window a demand rule uses (the caller counts them); a missing window counts 0.
    pub recent_orders: Vec<(u32, u32)>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Adjustment {
    pub rule_id: String,
    pub kind: RuleKind,
    pub description: String,
    /// Minor units; negative is a discount.
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub unit_price: i64,
    pub subtotal: i64,
    pub adjustments: Vec<Adjustment>,
    pub total: i64,
}

/// `value × bps / 10000`, rounded half away from zero.
fn percent_of(value: i128, bps: i64) -> i128 {
    let product = value * i128::from(bps);
    let (q, r) = (product / 10_000, product % 10_000);
    if r.abs() * 2 >= 10_000 { q + product.signum() } else { q }
}

fn applies(rule: &Rule, input: &QuoteInput) -> bool {
    let s = &rule.spec;
    let c = &s.conditions;
    let contains =
        |list: &Option<Vec<String>>, value: Option<&str>| list.as_ref().is_none_or(|l| value.is_some_and(|v| l.iter().any(|x| x == v)));
    s.active
        && s.starts_at.is_none_or(|t| t <= input.now)
        && s.ends_at.is_none_or(|t| input.now < t)
        && contains(&c.countries, input.country.as_deref())
        && contains(&c.product_ids, Some(&input.product_id))
        && contains(&c.categories, Some(&input.category))
        && c.min_quantity.is_none_or(|q| input.quantity >= q)
        && c.coupon_code.as_ref().is_none_or(|code| input.coupon_code.as_ref().is_some_and(|given| given.eq_ignore_ascii_case(code)))
}

fn describe(rule: &Rule, bps: Option<i64>) -> String {
    match (bps, &rule.spec.effect.amount_off) {
        (Some(b), _) => format!("{}: {}{}.{:02}%", rule.spec.name, if b < 0 { "-" } else { "+" }, b.abs() / 100, b.abs() % 100),
        (None, Some(a)) => format!("{}: {a} off each", rule.spec.name),
        _ => rule.spec.name.clone(),
    }
}

/// Rules apply by this key, ascending: priority, then id.
pub fn order_key(rule: &Rule) -> (i32, &str) {
    (rule.spec.priority, &rule.id)
}

pub fn price(rules: &[Rule], input: &QuoteInput) -> Priced {
    let subtotal = i128::from(input.unit_price) * i128::from(input.quantity);
    let mut ordered: Vec<&Rule> = rules.iter().filter(|r| applies(r, input)).collect();
    ordered.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    let mut total = subtotal;
    let mut adjustments = Vec::new();
    for rule in ordered {
        let amount_off = rule.spec.effect.amount_off.as_ref().map(|m| m.amount);
        let (change, bps) = match (rule.spec.kind, rule.spec.effect.percent_bps, amount_off) {
            (RuleKind::Demand, Some(per_order), _) => {
                let c = &rule.spec.conditions;
                let orders = input.recent_orders.iter().find(|(hours, _)| Some(*hours) == c.demand_window_hours).map_or(0, |(_, n)| *n);
                let bps = (i64::from(orders) * per_order).min(c.demand_cap_bps.unwrap_or(0));
                (percent_of(total, bps), Some(bps))
            }
            (_, Some(bps), _) => (percent_of(total, bps), Some(bps)),
            (_, None, Some(off)) => (-(i128::from(off) * i128::from(input.quantity)), None),
            _ => (0, None),
        };
        // Never below zero: a discount takes at most what is left.
        let applied = change.max(-total);
        if applied != 0 {
            total += applied;
            adjustments.push(Adjustment {
                rule_id: rule.id.clone(),
                kind: rule.spec.kind,
                description: describe(rule, bps),
                amount: clamp(applied),
            });
        }
    }
    Priced { unit_price: input.unit_price, subtotal: clamp(subtotal), adjustments, total: clamp(total) }
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::money::Money;
    use crate::pricing::model::{Conditions, Effect, RuleSpec};

    fn rule(id: &str, kind: RuleKind, priority: i32, conditions: Conditions, effect: Effect) -> Rule {
        Rule {
            id: id.into(),
            spec: RuleSpec { name: id.into(), kind, priority, active: true, starts_at: None, ends_at: None, conditions, effect },
        }
    }

    fn percent(bps: i64) -> Effect {
        Effect { percent_bps: Some(bps), amount_off: None }
    }

    fn off(amount: i64) -> Effect {
        Effect { percent_bps: None, amount_off: Some(Money::new(amount, "USD")) }
    }

    fn input(unit_price: i64, quantity: u32) -> QuoteInput {
        QuoteInput {
            product_id: "prd_1".into(),
            category: "kitchen".into(),
            unit_price,
            quantity,
            country: Some("DE".into()),
            coupon_code: None,
            recent_orders: Vec::new(),
            now: Utc::now(),
        }
    }

    #[test]
    fn rules_apply_in_priority_order_to_the_running_total() {
        let rules = [
            rule("rul_b", RuleKind::Promotion, 2, Conditions::default(), off(100)),
            rule("rul_a", RuleKind::Promotion, 1, Conditions::default(), percent(-1000)),
        ];
        let p = price(&rules, &input(1000, 2));
        assert_eq!(p.subtotal, 2000);
        assert_eq!(p.adjustments.iter().map(|a| (a.rule_id.as_str(), a.amount)).collect::<Vec<_>>(), [("rul_a", -200), ("rul_b", -200)]);
        assert_eq!(p.total, 1600);
    }

    #[test]
    fn percentages_round_half_away_from_zero() {
        assert_eq!(percent_of(333, 1500), 50); // 49.95
        assert_eq!(percent_of(333, -1500), -50);
        assert_eq!(percent_of(10, 2500), 3); // 2.5
        assert_eq!(percent_of(10, -2500), -3);
        assert_eq!(percent_of(10, 2400), 2); // 2.4
    }

    #[test]
    fn conditions_select_the_rules_that_apply() {
        let de = Conditions { countries: Some(vec!["DE".into()]), ..Conditions::default() };
        let fr = Conditions { countries: Some(vec!["FR".into()]), ..Conditions::default() };
        let tier = Conditions { min_quantity: Some(10), ..Conditions::default() };
        let coupon = Conditions { coupon_code: Some("SPRING".into()), ..Conditions::default() };
        let rules = [
            rule("rul_de", RuleKind::Country, 0, de, percent(1900)),
            rule("rul_fr", RuleKind::Country, 0, fr, percent(2000)),
            rule("rul_tier", RuleKind::QuantityTier, 1, tier, percent(-500)),
            rule("rul_coupon", RuleKind::Promotion, 2, coupon, percent(-1000)),
        ];
        let ids = |i: &QuoteInput| price(&rules, i).adjustments.into_iter().map(|a| a.rule_id).collect::<Vec<_>>();
        assert_eq!(ids(&input(100, 1)), ["rul_de"]);
        assert_eq!(ids(&input(100, 10)), ["rul_de", "rul_tier"]);
        let with_coupon = QuoteInput { coupon_code: Some("spring".into()), ..input(100, 1) };
        assert_eq!(ids(&with_coupon), ["rul_de", "rul_coupon"]);
    }

    #[test]
    fn time_windows_and_inactive_rules_are_respected() {
        let mut r = rule("rul_a", RuleKind::Promotion, 0, Conditions::default(), percent(-1000));
        let now = Utc::now();
        r.spec.starts_at = Some(now + chrono::TimeDelta::hours(1));
        assert!(price(std::slice::from_ref(&r), &input(100, 1)).adjustments.is_empty());
        r.spec.starts_at = Some(now - chrono::TimeDelta::hours(1));
        r.spec.ends_at = Some(now - chrono::TimeDelta::minutes(1));
        assert!(price(std::slice::from_ref(&r), &input(100, 1)).adjustments.is_empty());
        r.spec.ends_at = None;
        r.spec.active = false;
        assert!(price(&[r], &input(100, 1)).adjustments.is_empty());
    }

    #[test]
    fn demand_scales_with_recent_orders_up_to_its_cap() {
        let c = Conditions { demand_window_hours: Some(24), demand_cap_bps: Some(1500), ..Conditions::default() };
        let rules = [rule("rul_d", RuleKind::Demand, 0, c, percent(100))];
        let with = |orders| price(&rules, &QuoteInput { recent_orders: vec![(24, orders)], ..input(1000, 1) }).total;
        assert_eq!(with(0), 1000);
        assert_eq!(with(5), 1050);
        assert_eq!(with(100), 1150);
        // Orders counted over another window do not move this rule.
        assert_eq!(price(&rules, &QuoteInput { recent_orders: vec![(48, 100)], ..input(1000, 1) }).total, 1000);
    }

    #[test]
    fn discounts_stop_at_zero() {
        let rules = [rule("rul_a", RuleKind::Promotion, 0, Conditions::default(), off(5000))];
        let p = price(&rules, &input(1000, 3));
        assert_eq!(p.total, 0);
        assert_eq!(p.adjustments[0].amount, -3000);
    }

    fn any_rule() -> impl Strategy<Value = Rule> {
        (0u8..4, -3i32..3, -10_000i64..=10_000, 1i64..5000, any::<bool>(), 1u32..20).prop_map(
            |(kind, priority, bps, amount, use_percent, min_q)| {
                let kind = [RuleKind::Country, RuleKind::QuantityTier, RuleKind::Demand, RuleKind::Promotion][usize::from(kind)];
                let mut conditions = Conditions::default();
                if kind == RuleKind::QuantityTier {
                    conditions.min_quantity = Some(min_q);
                }
                if kind == RuleKind::Demand {
                    conditions.demand_window_hours = Some(24);
                    conditions.demand_cap_bps = Some(2000);
                }
                let effect = if use_percent || kind == RuleKind::Demand { percent(bps.max(1)) } else { off(amount) };
                let effect = if use_percent && kind != RuleKind::Demand { percent(bps) } else { effect };
                rule(&format!("rul_{priority}_{bps}_{amount}"), kind, priority, conditions, effect)
            },
        )
    }

    proptest! {
        #[test]
        fn totals_are_never_negative_and_adjustments_add_up(
            rules in prop::collection::vec(any_rule(), 0..8),
            unit in 0i64..1_000_000,
            qty in 1u32..1000,
            orders in 0u32..50,
        ) {
            let p = price(&rules, &QuoteInput { recent_orders: vec![(24, orders)], ..input(unit, qty) });
            prop_assert!(p.total >= 0);
            prop_assert_eq!(p.subtotal + p.adjustments.iter().map(|a| a.amount).sum::<i64>(), p.total);
            if unit == 0 {
                prop_assert_eq!(p.total, 0);
            }
        }

        #[test]
        fn the_order_of_the_rule_list_does_not_matter(mut rules in prop::collection::vec(any_rule(), 0..8), unit in 0i64..100_000, qty in 1u32..50) {
            let a = price(&rules, &input(unit, qty));
            rules.reverse();
            prop_assert_eq!(a, price(&rules, &input(unit, qty)));
        }

        #[test]
        fn more_units_never_cost_more_each_under_discount_tiers(
            tiers in prop::collection::vec((2u32..50, -5000i64..0), 1..5),
            unit in 1i64..100_000,
            qty in 1u32..100,
        ) {
            let rules: Vec<Rule> = tiers.iter().enumerate().map(|(i, (min_q, bps))| {
                rule(&format!("rul_{i}"), RuleKind::QuantityTier, 0, Conditions { min_quantity: Some(*min_q), ..Conditions::default() }, percent(*bps))
            }).collect();
            let a = price(&rules, &input(unit, qty));
            let b = price(&rules, &input(unit, qty + 1));
            // per-unit(a) >= per-unit(b)  ⇔  a.total × (qty+1) >= b.total × qty, allowing one minor unit of rounding per rule
            let slack = i128::from(qty + 1) * rules.len() as i128;
            prop_assert!(i128::from(a.total) * i128::from(qty + 1) + slack >= i128::from(b.total) * i128::from(qty));
        }
    }
}
