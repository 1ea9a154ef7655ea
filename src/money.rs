//! Money: integer minor units and the deployment's one currency.

use std::fmt;

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

/// Digits after the decimal point of an ISO 4217 currency (2 unless listed).
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// For people: `5.00 USD`, `-1.50 USD`, `500 JPY`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = minor_digits(&self.currency);
        let sign = if self.amount < 0 { "-" } else { "" };
        let (units, minor) = (self.amount.unsigned_abs() / 10u64.pow(digits), self.amount.unsigned_abs() % 10u64.pow(digits));
        match digits {
            0 => write!(f, "{sign}{units} {}", self.currency),
            d => write!(f, "{sign}{units}.{minor:0width$} {}", self.currency, width = d as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Money;

    #[test]
    fn shows_major_units_with_the_currency_digits() {
        assert_eq!(Money::new(500, "USD").to_string(), "5.00 USD");
        assert_eq!(Money::new(-150, "EUR").to_string(), "-1.50 EUR");
        assert_eq!(Money::new(7, "USD").to_string(), "0.07 USD");
        assert_eq!(Money::new(500, "JPY").to_string(), "500 JPY");
        assert_eq!(Money::new(1234, "KWD").to_string(), "1.234 KWD");
    }
}
