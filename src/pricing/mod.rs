//! Dynamic pricing: rules (country, quantity tiers, demand, promotions) and quotes.

pub mod engine;
pub mod model;
pub mod repo;
pub mod routes;
pub mod service;

pub use engine::{Adjustment, Priced, QuoteInput, price};
pub use model::{Conditions, Effect, Rule, RuleKind, RuleSpec};
pub use repo::PricingRepo;
pub use service::Pricing;
