//! Keyset pagination: `?limit=&cursor=` in, `{data, next_cursor}` out. A cursor is the
//! opaque, URL-safe encoding of the sort key of the last row served (never an offset).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::validation::Invalid;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// The raw paging parameters (kept as text so a bad value is a field error, not a 400).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Validated paging: fetch `limit + 1` rows after `after` to know whether a next page exists.
#[derive(Debug, Clone)]
pub struct PageRequest<K> {
    pub limit: u32,
    pub after: Option<K>,
}

impl PageQuery {
    pub fn parse<K: DeserializeOwned>(&self) -> Result<PageRequest<K>, Invalid> {
        let limit = match &self.limit {
            None => DEFAULT_LIMIT,
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| Invalid::one("limit", "out_of_range", format!("limit must be an integer from 1 to {MAX_LIMIT}")))?,
        };
        let after = match &self.cursor {
            None => None,
            Some(raw) => Some(decode_cursor(raw).ok_or_else(|| Invalid::one("cursor", "invalid", "the cursor is not valid"))?),
        };
        Ok(PageRequest { limit, after })
    }
}

fn decode_cursor<K: DeserializeOwned>(raw: &str) -> Option<K> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    if super::extract::has_nul_escape(&bytes) {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

fn encode_cursor<K: Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).expect("cursor keys serialise"))
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows, `key` giving each row's sort key.
    pub fn from_rows<K: Serialize>(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> K) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|last| encode_cursor(&key(last))) } else { None };
        Page { data: rows, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { data: self.data.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_pages_with_cursors() {
        let page = Page::from_rows(vec![1, 2, 3], 2, |n| *n);
        assert_eq!(page.data, vec![1, 2]);
        let q = PageQuery { limit: Some("2".into()), cursor: page.next_cursor };
        assert_eq!(q.parse::<i32>().unwrap().after, Some(2));
        assert!(Page::from_rows(vec![1, 2], 2, |n| *n).next_cursor.is_none());
    }

    #[test]
    fn refuses_bad_limits_and_garbled_cursors() {
        for limit in ["0", "101", "abc", "-1"] {
            assert!(PageQuery { limit: Some(limit.into()), cursor: None }.parse::<String>().is_err());
        }
        assert!(PageQuery { limit: None, cursor: Some("%%%".into()) }.parse::<String>().is_err());
        assert!(PageQuery { limit: None, cursor: Some("bm90IGpzb24".into()) }.parse::<String>().is_err());
    }
}
