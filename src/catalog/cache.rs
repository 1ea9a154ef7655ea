//! The read cache for products: serialized responses by key, behind a small trait so a
//! shared tier (Redis) can join later without touching callers.

use std::sync::Arc;
use std::time::Duration;

/// A cache of response bodies.
#[async_trait::async_trait]
pub trait Cache: Send + Sync {
    async fn get(&self, key: &str) -> Option<Arc<[u8]>>;
    async fn put(&self, key: &str, value: Arc<[u8]>);
    async fn invalidate(&self, key: &str);
    /// Drops every key starting with `prefix` (all cached list pages, say).
    async fn invalidate_prefix(&self, prefix: &str);
}

/// In-process cache (TinyLFU admission, LRU eviction, TTL as a safety net: writes and
/// bus events invalidate explicitly). Counts hits and misses for `/metrics`.
pub struct LocalCache {
    name: &'static str,
    entries: moka::future::Cache<String, Arc<[u8]>>,
}

impl LocalCache {
    pub fn new(name: &'static str, capacity: u64, ttl: Duration) -> Self {
        let entries = moka::future::Cache::builder().max_capacity(capacity).time_to_live(ttl).support_invalidation_closures().build();
        Self { name, entries }
    }
}

#[async_trait::async_trait]
impl Cache for LocalCache {
    async fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        let found = self.entries.get(key).await;
        let result = if found.is_some() { "hit" } else { "miss" };
        metrics::counter!("keel_cache_requests_total", "cache" => self.name, "result" => result).increment(1);
        found
    }

    async fn put(&self, key: &str, value: Arc<[u8]>) {
        self.entries.insert(key.to_owned(), value).await;
    }

    async fn invalidate(&self, key: &str) {
        self.entries.invalidate(key).await;
    }

    async fn invalidate_prefix(&self, prefix: &str) {
        let prefix = prefix.to_owned();
        if let Err(e) = self.entries.invalidate_entries_if(move |k, _| k.starts_with(&prefix)) {
            // Only fails when invalidation closures are not enabled; fall back to everything.
            tracing::warn!(error = %e, "cache prefix invalidation failed; clearing the cache");
            self.entries.invalidate_all();
        }
    }
}
