//! The second cache tier, in Redis, shared by every instance.
//!
//! Each family and each group of keys has a generation counter in Redis; a value is stored
//! under its key and the generations it was loaded at, and invalidating is one `INCR` of a
//! counter (no key scans): values stored under older generations are never read again and
//! expire. One round trip per read (a Lua script) returns the current generations and, unless
//! the in-process copy is already current, the shared value. So the in-process tier stays
//! first (it saves the transfer) and never serves a value another instance has invalidated.
//!
//! While Redis is unavailable, reads go straight to the database and nothing is cached; an
//! invalidation that could not reach Redis is made good when it answers again, by moving
//! every family to a new generation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::Script;

use super::{Cache, Entry, FAMILIES, LocalCache, Lookup, Ticket, family_and_group, family_label};
use crate::redis::Redis;

/// How long a shared value lives (a safety net: invalidation is by generation).
const VALUE_TTL: Duration = Duration::from_secs(300);

/// How long a generation counter outlives its last change; far longer than `VALUE_TTL`, so a
/// counter that expires (back to 0) can never make an old value current again.
const GENERATION_TTL: Duration = Duration::from_secs(86_400);

/// KEYS: the family's and the group's counters, the value key without its generations.
/// ARGV[1]: the generations of the in-process copy (or ""). Returns {generations, value or
/// nil, 1 when the in-process copy is current}.
const READ: &str = r"
local g = (redis.call('GET', KEYS[1]) or '0') .. '.' .. (redis.call('GET', KEYS[2]) or '0')
if ARGV[1] == g then return {g, false, 1} end
return {g, redis.call('GET', KEYS[3] .. '@' .. g), 0}
";

/// KEYS: counters to move on. ARGV[1]: their lifetime (s).
const BUMP: &str = r"
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[1])
end
return 1
";

pub struct SharedCache {
    local: LocalCache,
    redis: Arc<Redis>,
    read: Script,
    bump: Script,
    /// An invalidation did not reach Redis: every family moves on before anything is read.
    missed_invalidation: AtomicBool,
}

impl SharedCache {
    pub fn new(local: LocalCache, redis: Arc<Redis>) -> Self {
        Self { local, redis, read: Script::new(READ), bump: Script::new(BUMP), missed_invalidation: AtomicBool::new(false) }
    }

    fn counter(&self, scope: &str) -> String {
        self.redis.key(&format!("gen:{scope}"))
    }

    /// A value's key, without its generations: its family, then a digest of the whole key
    /// (list keys hold a client's search words; Redis keys stay short and plain).
    fn value_key(&self, key: &str) -> String {
        let (family, _) = family_and_group(key);
        self.redis.key(&format!("c:{family}{}", &crate::security::sha256_hex(key.as_bytes())[..32]))
    }

    /// Moves the counters of `scopes` on; `false` when Redis did not take it.
    async fn bump(&self, scopes: &[&str]) -> bool {
        let counters: Vec<String> = scopes.iter().map(|s| self.counter(s)).collect();
        let script = &self.bump;
        self.redis
            .call("cache invalidation", |mut conn| async move {
                script.key(counters).arg(GENERATION_TTL.as_secs()).invoke_async::<u8>(&mut conn).await
            })
            .await
            .is_some()
    }

    async fn invalidate_scope(&self, scope: &str) {
        if !self.bump(&[scope]).await {
            self.missed_invalidation.store(true, Ordering::SeqCst);
        }
    }

    /// Makes good invalidations that did not reach Redis; `false` while that fails.
    async fn catch_up(&self) -> bool {
        if !self.missed_invalidation.swap(false, Ordering::SeqCst) {
            return true;
        }
        if self.bump(&FAMILIES).await {
            return true;
        }
        self.missed_invalidation.store(true, Ordering::SeqCst);
        false
    }
}

#[async_trait::async_trait]
impl Cache for SharedCache {
    async fn get(&self, key: &str) -> Lookup {
        let Ticket { epoch, .. } = self.local.ticket();
        let local = self.local.entry(key).await;
        let (family, group) = family_and_group(key);
        let (counters, value_key) = ([self.counter(family), self.counter(group)], self.value_key(key));
        let known = local.as_ref().and_then(|e| e.generations.clone()).unwrap_or_default();
        let script = &self.read;
        let answer = match self.catch_up().await {
            true => {
                self.redis
                    .call("cache read", |mut conn| async move {
                        script.key(&counters).key(value_key).arg(known).invoke_async::<(String, Option<Vec<u8>>, u8)>(&mut conn).await
                    })
                    .await
            }
            false => None,
        };
        let (value, generations) = match answer {
            // Unavailable: straight to the database, and nothing is kept.
            None => (None, None),
            Some((generations, _, 1)) => (local.map(|e| e.value), Some(generations)),
            Some((generations, Some(shared), _)) => {
                let value: Arc<[u8]> = shared.into();
                let entry = Entry { value: value.clone(), generations: Some(generations.clone()) };
                self.local.store(key, entry, epoch).await;
                (Some(value), Some(generations))
            }
            Some((generations, None, _)) => (None, Some(generations)),
        };
        crate::telemetry::record_cache_lookup(family_label(key), value.is_some());
        Lookup { value, ticket: Ticket { epoch, generations } }
    }

    async fn put(&self, key: &str, value: Arc<[u8]>, ticket: Ticket) {
        let Some(generations) = ticket.generations.clone() else { return };
        let shared_key = format!("{}@{generations}", self.value_key(key));
        let bytes = value.to_vec();
        self.redis
            .call("cache write", |mut conn| async move {
                redis::cmd("SET").arg(shared_key).arg(bytes).arg("PX").arg(VALUE_TTL.as_millis() as u64).query_async::<()>(&mut conn).await
            })
            .await;
        self.local.store(key, Entry { value, generations: Some(generations) }, ticket.epoch).await;
    }

    /// The shared counter first: a reader between the two steps still finds the in-process
    /// copy, and one after them finds neither copy current.
    async fn invalidate(&self, key: &str) {
        self.invalidate_scope(family_and_group(key).1).await;
        self.local.invalidate(key).await;
    }

    async fn invalidate_prefix(&self, prefix: &str) {
        self.invalidate_scope(prefix).await;
        self.local.invalidate_prefix(prefix).await;
    }
}
