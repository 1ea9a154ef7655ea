//! Money: integer minor units and the deployment's one currency.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validation::Invalid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Minor units (cents for USD).
    pub amount: i64,
    /// ISO 4217 code; always the deployment's currency.
    #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
    pub currency: String,
}

impl Money {
    pub fn new(amount: i64, currency: &str) -> Self {
        Money { amount, currency: currency.to_owned() }
    }

    /// Checks an amount given by a client: the deployment's currency, `0..=max`.
    pub fn parse(self, field: &str, currency: &str, max: i64) -> Result<i64, Invalid> {
        let mut invalid = Invalid::default();
        if self.currency != currency {
            invalid.add(&format!("{field}.currency"), "invalid", format!("must be {currency}"));
        }
        if !(0..=max).contains(&self.amount) {
            invalid.add(&format!("{field}.amount"), "out_of_range", format!("must be an integer from 0 to {max} (minor units)"));
        }
        invalid.finish().map(|()| self.amount)
    }
}
