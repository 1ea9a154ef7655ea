//! Products and stock: types and rules, no I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::money::Money;
use crate::validation::Invalid;

/// Prices up to a hundred million major units; beyond that, input is a mistake.
pub const MAX_PRICE: i64 = 10_000_000_000;
pub const MAX_STOCK: i64 = 1_000_000_000;

/// A product as everyone sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: Money,
    /// On hand minus reserved; never negative.
    pub stock_available: i64,
    pub active: bool,
    /// Increases with every change; send it back in `If-Match` to update safely.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The strong ETag of a product's JSON `body` at `version`: `"<version>-<digest of body>"`.
/// The digest makes the tag change with everything in the body, including `stock_available`,
/// which orders move without a new version; the version part lets the tag serve as `If-Match`.
pub fn product_etag(version: i64, body: &[u8]) -> String {
    format!("\"{version}-{}\"", &crate::security::sha256_hex(body)[..ETAG_DIGEST_LEN])
}

const ETAG_DIGEST_LEN: usize = 16;

/// What an `If-Match` header asks of a product update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current version.
    Any,
    /// The product must be at this version.
    Version(i64),
    /// Names no version of this product (a weak tag, another resource's tag, a list): never matches.
    Never,
}

impl IfMatch {
    /// Reads one `If-Match` value: a product ETag (`"3-…"`, as `GET` sends it) or its version,
    /// quoted (`"3"`) or bare (`3`). A change by orders alone (stock) keeps the version, so an
    /// ETag taken before such a change still matches: it does not conflict with an edit.
    pub fn parse(value: &str) -> IfMatch {
        let value = value.trim();
        if value == "*" {
            return IfMatch::Any;
        }
        let tag = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        let (version, digest) = tag.split_once('-').map_or((tag, None), |(v, d)| (v, Some(d)));
        let digest_ok = digest.is_none_or(|d| d.len() == ETAG_DIGEST_LEN && d.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        match version.parse::<i64>() {
            Ok(v) if v >= 1 && digest_ok && version.bytes().all(|b| b.is_ascii_digit()) => IfMatch::Version(v),
            _ => IfMatch::Never,
        }
    }
}

/// A product to create, checked.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: i64,
    pub stock: i64,
}

/// Changes to a product, checked; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub price: Option<i64>,
    pub active: Option<bool>,
}

pub fn parse_sku(field: &str, raw: &str) -> Result<String, Invalid> {
    let sku = raw.trim();
    if (1..=64).contains(&sku.len()) && sku.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        Ok(sku.to_owned())
    } else {
        Err(Invalid::one(field, "invalid", "must be 1 to 64 letters, digits, '-', '_' or '.'"))
    }
}

pub fn parse_text(field: &str, raw: &str, max: usize, required: bool) -> Result<String, Invalid> {
    let text = raw.trim();
    let len = text.chars().count();
    if (required && len == 0) || len > max || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Invalid::one(field, "invalid", format!("must be {} to {max} characters", usize::from(required))));
    }
    Ok(text.to_owned())
}

/// Categories are slugs (`kitchen`, `outdoor-gear`), so they filter exactly.
pub fn parse_category(field: &str, raw: &str) -> Result<String, Invalid> {
    let c = raw.trim();
    if (1..=64).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        Ok(c.to_owned())
    } else {
        Err(Invalid::one(field, "invalid", "must be a slug of 1 to 64 lower-case letters, digits and '-'"))
    }
}

/// The orders a product list can take. Each is a keyset over (value, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    CreatedAsc,
    CreatedDesc,
    PriceAsc,
    PriceDesc,
    Name,
}

impl Sort {
    /// Each order by its name in `?sort=`; the first is the default.
    pub const NAMES: [(&'static str, Sort); 5] = [
        ("created_at", Sort::CreatedAsc),
        ("-created_at", Sort::CreatedDesc),
        ("price", Sort::PriceAsc),
        ("-price", Sort::PriceDesc),
        ("name", Sort::Name),
    ];

    pub fn parse(raw: Option<&str>) -> Result<Sort, Invalid> {
        let Some(raw) = raw else { return Ok(Self::NAMES[0].1) };
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == raw)
            .map(|(_, sort)| *sort)
            .ok_or_else(|| Invalid::one("sort", "invalid", "must be one of created_at, -created_at, price, -price, name"))
    }

    /// The sort key of `p`, as carried in a cursor.
    pub fn key(self, p: &Product) -> String {
        match self {
            Sort::CreatedAsc | Sort::CreatedDesc => p.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            Sort::PriceAsc | Sort::PriceDesc => p.price.amount.to_string(),
            Sort::Name => p.name.clone(),
        }
    }
}

/// What a product list is filtered by.
#[derive(Debug, Clone, Default)]
pub struct ProductFilter {
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    /// Words to search for in name and description.
    pub words: Vec<String>,
}

/// Splits a search string into words (letters and digits), at most 8 of up to 64 characters.
pub fn search_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(8)
        .map(|w| w.chars().take(64).collect::<String>().to_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_drop_operators_and_punctuation() {
        assert_eq!(search_words("  Red \"mug\" OR* (cup)-x"), vec!["red", "mug", "or", "cup", "x"]);
        assert!(search_words("***").is_empty());
    }

    #[test]
    fn skus_and_categories_are_strict() {
        assert!(parse_sku("sku", "MUG-001").is_ok());
        assert!(parse_sku("sku", "mug 001").is_err());
        assert!(parse_category("category", "outdoor-gear").is_ok());
        assert!(parse_category("category", "Outdoor Gear").is_err());
    }

    #[test]
    fn if_match_takes_the_etag_or_the_version() {
        let etag = product_etag(3, b"{}");
        assert!(etag.starts_with("\"3-") && etag.ends_with('"') && etag.len() == 2 + 2 + ETAG_DIGEST_LEN, "{etag}");
        assert_ne!(etag, product_etag(3, b"{ }"), "the tag covers the body");
        assert_eq!(IfMatch::parse(&etag), IfMatch::Version(3));
        for version in ["\"3\"", "3", " \"3\" "] {
            assert_eq!(IfMatch::parse(version), IfMatch::Version(3), "{version}");
        }
        assert_eq!(IfMatch::parse("*"), IfMatch::Any);
        let weak = format!("W/{etag}");
        let list = format!("{etag}, \"4\"");
        for never in ["garbage", "\"\"", "\"-3\"", "\"+3\"", "\"0\"", "\"3-xyz\"", "\"3-0123456789ABCDEF\"", weak.as_str(), list.as_str()] {
            assert_eq!(IfMatch::parse(never), IfMatch::Never, "{never}");
        }
    }

    #[test]
    fn sorts_parse() {
        assert_eq!(Sort::parse(None).unwrap(), Sort::CreatedAsc);
        assert_eq!(Sort::parse(Some("-price")).unwrap(), Sort::PriceDesc);
        assert!(Sort::parse(Some("rating")).is_err());
    }
}
