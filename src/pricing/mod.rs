//! Dynamic pricing: rules (country, quantity tiers, demand, promotions) and quotes.

pub mod engine;
pub mod model;

pub use engine::{Adjustment, Priced, QuoteInput, price};
pub use model::{Conditions, Effect, Rule, RuleKind, RuleSpec};
