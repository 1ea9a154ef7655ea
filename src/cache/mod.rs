//! The read cache for products, product lists and quotes: serialized values by key, behind a
//! small trait. The in-process tier (`LocalCache`) is always first; with Redis configured a
//! second tier shared by every instance joins it (`shared::SharedCache`).
//!
//! Keys are `<family>:<rest>`; the family (`product`, `list`, `quote`) labels the metrics. A
//! family is divided into groups: the part of a key up to its first `|`, or the whole key when
//! it has none (`quote:<product>|…` is the group of one product's quotes). `invalidate_prefix`
//! takes a family (`list:`) or a group (`quote:<product>|`), which lets the shared tier
//! invalidate by generation counters instead of scanning keys.

pub mod shared;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The key of a product's JSON.
pub fn product_key(id: &str) -> String {
    format!("product:{id}")
}

/// Every cached list page starts with this.
pub const LIST_PREFIX: &str = "list:";

/// Every cached quote starts with this.
pub const QUOTE_PREFIX: &str = "quote:";

/// Every family of keys.
pub const FAMILIES: [&str; 3] = ["product:", LIST_PREFIX, QUOTE_PREFIX];

/// Every cached quote of a product starts with this.
pub fn quotes_prefix(product_id: &str) -> String {
    format!("{QUOTE_PREFIX}{product_id}|")
}

/// A key's family (`list:`) and group (`quote:<product>|`, or the key itself).
fn family_and_group(key: &str) -> (&str, &str) {
    let family = key.find(':').map_or(key, |i| &key[..=i]);
    let group = key.find('|').map_or(key, |i| &key[..=i]);
    (family, group)
}

/// What a lookup found, and the ticket a reader that loads the value itself hands to `put`.
pub struct Lookup {
    pub value: Option<Arc<[u8]>>,
    pub ticket: Ticket,
}

/// Taken before a reader loads from the database. An invalidation landing between the load
/// and the `put` must win, or the cache would keep a value older than the last write: `put`
/// drops the value when any invalidation happened since the ticket was taken.
#[derive(Debug, Clone)]
pub struct Ticket {
    epoch: u64,
    /// The shared tier's generations of the key's family and group, when it answered.
    generations: Option<String>,
}

/// A cache of serialized values.
#[async_trait::async_trait]
pub trait Cache: Send + Sync {
    async fn get(&self, key: &str) -> Lookup;
    async fn put(&self, key: &str, value: Arc<[u8]>, ticket: Ticket);
    async fn invalidate(&self, key: &str);
    /// Drops every key of a family (`list:`) or of a group (`quote:<product>|`).
    async fn invalidate_prefix(&self, prefix: &str);
}

/// An in-process entry, with the shared tier's generations it was current at (if any).
#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    generations: Option<String>,
}

/// In-process cache (TinyLFU admission, LRU eviction, TTL as a safety net: writes and
/// bus events invalidate explicitly). Counts hits and misses for `/metrics`.
pub struct LocalCache {
    entries: moka::future::Cache<String, Entry>,
    epoch: AtomicU64,
}

impl LocalCache {
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let entries = moka::future::Cache::builder().max_capacity(capacity).time_to_live(ttl).support_invalidation_closures().build();
        Self { entries, epoch: AtomicU64::new(0) }
    }

    fn ticket(&self) -> Ticket {
        Ticket { epoch: self.epoch.load(Ordering::SeqCst), generations: None }
    }

    async fn entry(&self, key: &str) -> Option<Entry> {
        self.entries.get(key).await
    }

    async fn store(&self, key: &str, entry: Entry, epoch: u64) {
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        self.entries.insert(key.to_owned(), entry).await;
        // An invalidation that ran between the check and the insert bumped the epoch first:
        // undo the insert. (One that bumps after this check removes the entry itself.)
        if self.epoch.load(Ordering::SeqCst) != epoch {
            self.entries.invalidate(key).await;
        }
    }
}

fn family_label(key: &str) -> &'static str {
    match key.split_once(':').map(|(family, _)| family) {
        Some("product") => "product",
        Some("list") => "list",
        Some("quote") => "quote",
        _ => "other",
    }
}

#[async_trait::async_trait]
impl Cache for LocalCache {
    async fn get(&self, key: &str) -> Lookup {
        let ticket = self.ticket();
        let value = self.entry(key).await.map(|e| e.value);
        crate::telemetry::record_cache_lookup(family_label(key), value.is_some());
        Lookup { value, ticket }
    }

    async fn put(&self, key: &str, value: Arc<[u8]>, ticket: Ticket) {
        self.store(key, Entry { value, generations: ticket.generations }, ticket.epoch).await;
    }

    async fn invalidate(&self, key: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate(key).await;
    }

    async fn invalidate_prefix(&self, prefix: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let prefix = prefix.to_owned();
        if let Err(e) = self.entries.invalidate_entries_if(move |k, _| k.starts_with(&prefix)) {
            // Only fails when invalidation closures are not enabled; fall back to everything.
            tracing::warn!(error = %e, "cache prefix invalidation failed; clearing the cache");
            self.entries.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_value_loaded_before_an_invalidation_is_not_kept() {
        let cache = LocalCache::new(100, Duration::from_secs(60));
        let before = cache.get(&product_key("prd_1")).await.ticket;
        cache.invalidate(&product_key("prd_1")).await;
        cache.put(&product_key("prd_1"), Arc::from(&b"old"[..]), before).await;
        let lookup = cache.get(&product_key("prd_1")).await;
        assert!(lookup.value.is_none());
        cache.put(&product_key("prd_1"), Arc::from(&b"new"[..]), lookup.ticket).await;
        assert_eq!(cache.get(&product_key("prd_1")).await.value.as_deref(), Some(&b"new"[..]));
    }

    #[tokio::test]
    async fn prefixes_drop_only_their_family() {
        let cache = LocalCache::new(100, Duration::from_secs(60));
        for key in [format!("{}2|x", quotes_prefix("prd_1")), format!("{}2|x", quotes_prefix("prd_2")), product_key("prd_1")] {
            let ticket = cache.get(&key).await.ticket;
            cache.put(&key, Arc::from(&b"v"[..]), ticket).await;
        }
        cache.invalidate_prefix(&quotes_prefix("prd_1")).await;
        assert!(cache.get(&format!("{}2|x", quotes_prefix("prd_1"))).await.value.is_none());
        assert!(cache.get(&format!("{}2|x", quotes_prefix("prd_2"))).await.value.is_some());
        assert!(cache.get(&product_key("prd_1")).await.value.is_some());
        assert_eq!(family_label("quote:prd_1|x"), "quote");
        assert_eq!(family_label("nonsense"), "other");
    }

    #[test]
    fn keys_fall_in_a_family_and_a_group() {
        assert_eq!(family_and_group("product:prd_1"), ("product:", "product:prd_1"));
        assert_eq!(family_and_group(&format!("{}3|2|US|", quotes_prefix("prd_1"))), ("quote:", "quote:prd_1|"));
        assert_eq!(family_and_group("list:x|y"), ("list:", "list:x|"));
    }
}
