//! The rate limiter shared by every instance: each decision is one atomic round trip to Redis
//! (GCRA in a Lua script on Redis's own clock, so instances need no synchronised clocks).
//! When Redis does not answer, decisions fall back to this instance's own limiter with the
//! same policies: limits stay on (per instance) and no request fails because of Redis.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::rate_limit::{Decision, Limiter, LocalLimiter, Policies, Policy, Rate};
use crate::redis::Redis;

/// GCRA on one cell (the stored value is the theoretical arrival time in µs). The same rule
/// as [`super::rate_limit::gcra`]: ARGV = interval (µs), period (µs). Returns
/// {allowed, remaining, reset after (µs)}. Numbers are written with `%d`: Lua's default
/// conversion keeps only 14 digits.
const CHECK: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
  return {0, 0, allow_at - now}
end
local used = new_tat - now
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.max(1, math.ceil(used / 1000)))
return {1, math.floor((period - math.min(used, period)) / interval), used}
";

/// Gives one request back (ARGV = interval in µs); a cell at or before now is deleted.
const REFUND: &str = r"
local tat = redis.call('GET', KEYS[1])
if not tat then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local new_tat = tonumber(tat) - tonumber(ARGV[1])
if new_tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
end
return 1
";

pub struct RedisLimiter {
    redis: Arc<Redis>,
    policies: Policies,
    /// Decides while Redis is unavailable.
    local: LocalLimiter,
    check: Script,
    refund: Script,
}

impl RedisLimiter {
    pub fn new(redis: Arc<Redis>, policies: Policies, local: LocalLimiter) -> Self {
        Self { redis, policies, local, check: Script::new(CHECK), refund: Script::new(REFUND) }
    }

    fn cell(&self, policy: Policy, key: &str) -> String {
        self.redis.key(&format!("rl:{}:{key}", policy.name()))
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// The time one request adds to a cell, in µs (at least 1).
fn interval_us(rate: Rate) -> u64 {
    (micros(rate.period) / u64::from(rate.burst)).max(1)
}

#[async_trait::async_trait]
impl Limiter for RedisLimiter {
    async fn check(&self, policy: Policy, key: &str) -> Option<Decision> {
        let rate = self.policies.rate(policy)?;
        let cell = self.cell(policy, key);
        let script = &self.check;
        let answer = self
            .redis
            .call("rate limit", |mut conn| async move {
                script.key(cell).arg(interval_us(rate)).arg(micros(rate.period)).invoke_async::<(u8, u32, u64)>(&mut conn).await
            })
            .await;
        match answer {
            Some((allowed, remaining, reset_us)) => {
                Some(Decision { allowed: allowed == 1, limit: rate.burst, remaining, reset_after: Duration::from_micros(reset_us) })
            }
            None => {
                crate::telemetry::record_rate_limit_fallback();
                self.local.check(policy, key).await
            }
        }
    }

    async fn refund(&self, policy: Policy, key: &str) {
        let Some(rate) = self.policies.rate(policy) else { return };
        let cell = self.cell(policy, key);
        let script = &self.refund;
        let done = self
            .redis
            .call(
                "rate limit refund",
                |mut conn| async move { script.key(cell).arg(interval_us(rate)).invoke_async::<u8>(&mut conn).await },
            )
            .await;
        if done.is_none() {
            self.local.refund(policy, key).await;
        }
    }

    /// Redis expires its cells itself; only the fallback's need sweeping.
    async fn sweep(&self) {
        self.local.sweep().await;
    }
}
