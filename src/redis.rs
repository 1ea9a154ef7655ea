//! The Redis connection that the rate limiter and the cache's second tier share when
//! `redis_url` is configured. Keys live under one prefix (`redis_key_prefix`), calls have
//! explicit connect and response timeouts, and an outage is noticed once: after a failure,
//! calls skip Redis for a moment (their callers fall back) instead of each waiting out a
//! timeout, and the outage is logged when it starts and when it ends, not per request.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret as _, SecretString};

/// After a failed call, how long calls go straight to their fallback before one tries again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The `redis_*` settings.
pub struct RedisSettings {
    pub url: SecretString,
    /// Every key Keel writes starts with this, so several deployments (or tests) share a server.
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

pub struct Redis {
    conn: ConnectionManager,
    prefix: String,
    /// The longest a call may take, connecting included.
    deadline: Duration,
    started: Instant,
    /// Milliseconds since `started` before which calls skip Redis (0: it answers).
    skip_until_ms: AtomicU64,
    down: AtomicBool,
}

impl Redis {
    /// Prepares the connection without waiting for it: Keel starts while Redis is down, and
    /// reaches it once it answers (readiness says which).
    pub fn connect(settings: &RedisSettings) -> anyhow::Result<Redis> {
        let client = redis::Client::open(settings.url.expose_secret()).context("reading redis_url")?;
        // No retries inside a call: the availability gate spaces attempts instead.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.response_timeout))
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, config).context("setting up the Redis connection")?;
        crate::telemetry::record_redis_up(true);
        Ok(Redis {
            conn,
            prefix: settings.key_prefix.clone(),
            deadline: settings.connect_timeout + settings.response_timeout,
            started: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
            down: AtomicBool::new(false),
        })
    }

    /// `rest` under this deployment's prefix.
    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Runs one call on the connection; `None` when Redis failed, was too slow, or failed
    /// moments ago (the caller falls back to what it does without Redis).
    pub async fn call<T, F, Fut>(&self, what: &'static str, call: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.now_ms() < self.skip_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        let outcome = tokio::time::timeout(self.deadline, call(self.conn.clone())).await;
        match outcome {
            Ok(Ok(value)) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis answers again; shared rate limits and cache are back");
                    crate::telemetry::record_redis_up(true);
                }
                Some(value)
            }
            Ok(Err(e)) => {
                self.failed(what, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(what, "no answer in time");
                None
            }
        }
    }

    fn failed(&self, what: &'static str, error: &str) {
        self.skip_until_ms.store(self.now_ms() + RETRY_AFTER.as_millis() as u64, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                redis.call = what,
                error,
                "Redis is unavailable: rate limits fall back to this instance's limiter and cached reads go to the database"
            );
            crate::telemetry::record_redis_up(false);
        }
    }

    /// Readiness: one `PING` whatever the gate says; `ok`, `error` or `timeout`.
    pub async fn ping(&self) -> &'static str {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.deadline, redis::cmd("PING").query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "error",
            Err(_) => "timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test]
    async fn after_a_failure_calls_skip_redis_instead_of_each_waiting_for_it() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let redis = Redis::connect(&RedisSettings {
            url: SecretString::from(format!("redis://127.0.0.1:{port}")),
            key_prefix: "t:".into(),
            connect_timeout: Duration::from_millis(200),
            response_timeout: Duration::from_millis(200),
        })
        .unwrap();
        let tries = AtomicUsize::new(0);
        for _ in 0..3 {
            let answer = redis
                .call("test", |mut conn| {
                    tries.fetch_add(1, Ordering::SeqCst);
                    async move { redis::cmd("PING").query_async::<String>(&mut conn).await }
                })
                .await;
            assert!(answer.is_none());
        }
        assert_eq!(tries.load(Ordering::SeqCst), 1, "one probe, then the gate");
        assert_eq!(redis.ping().await, "error");
        assert_eq!(redis.key("rl:x"), "t:rl:x");
    }
}
