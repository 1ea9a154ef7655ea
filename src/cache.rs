//! The read cache for products, product lists and quotes: serialized values by key, behind a
//! small trait so a shared tier (Redis) can join later without touching callers.
//!
//! Keys are `<family>:<rest>`; the family (`product`, `list`, `quote`) labels the metrics.

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

/// Every cached quote of a product starts with this.
pub fn quotes_prefix(product_id: &str) -> String {
    format!("{QUOTE_PREFIX}{product_id}|")
}

/// A cache of serialized values.
///
/// A reader that misses loads from the database and then stores what it loaded. An
/// invalidation landing between the load and the store must win, or the cache would keep a
/// value older than the last write: readers take `epoch()` before loading and pass it to
/// `put`, which drops the value when any invalidation happened since.
#[async_trait::async_trait]
pub trait Cache: Send + Sync {
    async fn get(&self, key: &str) -> Option<Arc<[u8]>>;
    fn epoch(&self) -> u64;
    async fn put(&self, key: &str, value: Arc<[u8]>, loaded_at_epoch: u64);
    async fn invalidate(&self, key: &str);
    /// Drops every key starting with `prefix` (all cached list pages, say).
    async fn invalidate_prefix(&self, prefix: &str);
}

/// In-process cache (TinyLFU admission, LRU eviction, TTL as a safety net: writes and
/// bus events invalidate explicitly). Counts hits and misses for `/metrics`.
pub struct LocalCache {
    entries: moka::future::Cache<String, Arc<[u8]>>,
    epoch: AtomicU64,
}

impl LocalCache {
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let entries = moka::future::Cache::builder().max_capacity(capacity).time_to_live(ttl).support_invalidation_closures().build();
        Self { entries, epoch: AtomicU64::new(0) }
    }
}

fn family(key: &str) -> &'static str {
    match key.split_once(':').map(|(family, _)| family) {
        Some("product") => "product",
        Some("list") => "list",
        Some("quote") => "quote",
        _ => "other",
    }
}

#[async_trait::async_trait]
impl Cache for LocalCache {
    async fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        let found = self.entries.get(key).await;
        crate::telemetry::record_cache_lookup(family(key), found.is_some());
        found
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    async fn put(&self, key: &str, value: Arc<[u8]>, loaded_at_epoch: u64) {
        if self.epoch() != loaded_at_epoch {
            return;
        }
        self.entries.insert(key.to_owned(), value).await;
        // An invalidation that ran between the check and the insert bumped the epoch first:
        // undo the insert. (One that bumps after this check removes the entry itself.)
        if self.epoch() != loaded_at_epoch {
            self.entries.invalidate(key).await;
        }
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
        let before = cache.epoch();
        cache.invalidate(&product_key("prd_1")).await;
        cache.put(&product_key("prd_1"), Arc::from(&b"old"[..]), before).await;
        assert!(cache.get(&product_key("prd_1")).await.is_none());
        let now = cache.epoch();
        cache.put(&product_key("prd_1"), Arc::from(&b"new"[..]), now).await;
        assert_eq!(cache.get(&product_key("prd_1")).await.as_deref(), Some(&b"new"[..]));
    }

    #[tokio::test]
    async fn prefixes_drop_only_their_family() {
        let cache = LocalCache::new(100, Duration::from_secs(60));
        for key in [format!("{}2|x", quotes_prefix("prd_1")), format!("{}2|x", quotes_prefix("prd_2")), product_key("prd_1")] {
            cache.put(&key, Arc::from(&b"v"[..]), cache.epoch()).await;
        }
        cache.invalidate_prefix(&quotes_prefix("prd_1")).await;
        assert!(cache.get(&format!("{}2|x", quotes_prefix("prd_1"))).await.is_none());
        assert!(cache.get(&format!("{}2|x", quotes_prefix("prd_2"))).await.is_some());
        assert!(cache.get(&product_key("prd_1")).await.is_some());
        assert_eq!(family("quote:prd_1|x"), "quote");
        assert_eq!(family("nonsense"), "other");
    }
}
