//! Retries and a circuit breaker around any [`PaymentProvider`].
//!
//! Only retryable failures are retried (connection errors, timeouts, 5xx, 429), with exponential
//! backoff and jitter, honouring a 429's `Retry-After` up to a cap. Each retry sends the very same
//! request, so the idempotency key is the same and the provider charges at most once. Every
//! attempt asks the breaker first; an open breaker ends the call with `Unavailable` and sends
//! nothing.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::breaker::{Breaker, BreakerConfig, State};
use super::{Charge, ChargeLookup, ChargeRequest, PaymentProvider, ProviderError, Refund, RefundRequest};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first (default 2, so 3 in all).
    pub max_retries: u32,
    /// The first delay, doubling per retry (default 100 ms), scaled by a jitter of ±25 %.
    pub base_delay: Duration,
    /// The longest backoff delay (default 2 s).
    pub max_delay: Duration,
    /// The longest wait a `Retry-After` can ask for (default 5 s); a longer one is cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based) after `error`; `jitter` in [0, 1].
    pub fn delay(&self, retry: u32, error: &ProviderError, jitter: f64) -> Duration {
        match error {
            ProviderError::RateLimited { retry_after: Some(after) } => (*after).min(self.max_retry_after),
            _ => crate::jobs::model::backoff(retry, self.base_delay, self.max_delay, jitter),
        }
    }
}

/// Where time comes from, so tests can move it without sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

pub struct Resilient<P> {
    inner: P,
    policy: RetryPolicy,
    breaker: Mutex<Breaker>,
    clock: Arc<dyn Clock>,
}

impl<P: PaymentProvider> Resilient<P> {
    pub fn new(inner: P, policy: RetryPolicy, breaker: BreakerConfig) -> Self {
        Self { inner, policy, breaker: Mutex::new(Breaker::new(breaker)), clock: Arc::new(SystemClock) }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn breaker_state(&self) -> State {
        self.breaker().state()
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // The breaker's state is valid after any panic (each change is one assignment).
        self.breaker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn call<T, F, Fut>(&self, operation: &'static str, mut attempt: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        // The first failure that may have moved money: if a later attempt fails in a way that
        // says "nothing happened" (refused by the breaker, a 4xx), this one still tells the truth.
        let mut unknown_outcome: Option<ProviderError> = None;
        let mut retry = 0;
        loop {
            if self.breaker().try_acquire(self.clock.now()).is_err() {
                return Err(unknown_outcome.unwrap_or(ProviderError::Unavailable));
            }
            let result = attempt().await;
            match &result {
                Err(e) if e.is_provider_failure() => {
                    if self.breaker().on_failure(self.clock.now()) {
                        tracing::warn!(payment.operation = operation, error = %e, "payment provider failing; circuit breaker open");
                    }
                }
                _ => self.breaker().on_success(),
            }
            let error = match result {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if error.outcome_unknown() && unknown_outcome.is_none() {
                unknown_outcome = Some(error.clone());
            }
            if !error.is_retryable() || retry >= self.policy.max_retries {
                return Err(if error.outcome_unknown() { error } else { unknown_outcome.unwrap_or(error) });
            }
            retry += 1;
            let delay = self.policy.delay(retry, &error, jitter());
            tracing::info!(payment.operation = operation, payment.retry = retry, error = %error, delay_ms = delay.as_millis() as u64, "retrying the payment provider");
            tokio::time::sleep(delay).await;
        }
    }
}

fn jitter() -> f64 {
    f64::from(crate::security::random_bytes::<1>()[0]) / 255.0
}

#[async_trait::async_trait]
impl<P: PaymentProvider> PaymentProvider for Resilient<P> {
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, ProviderError> {
        self.call("charge", || self.inner.charge(request)).await
    }

    async fn retrieve(&self, lookup: &ChargeLookup) -> Result<Charge, ProviderError> {
        self.call("retrieve", || self.inner.retrieve(lookup)).await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<Refund, ProviderError> {
        self.call("refund", || self.inner.refund(request)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy::default();
        let e = ProviderError::Server { status: 503 };
        assert_eq!(p.delay(1, &e, 0.5), Duration::from_millis(100));
        assert_eq!(p.delay(2, &e, 0.5), Duration::from_millis(200));
        assert_eq!(p.delay(2, &e, 0.0), Duration::from_millis(150));
        assert_eq!(p.delay(2, &e, 1.0), Duration::from_millis(250));
        assert_eq!(p.delay(10, &e, 0.5), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = RetryPolicy::default();
        let after = |secs| ProviderError::RateLimited { retry_after: Some(Duration::from_secs(secs)) };
        assert_eq!(p.delay(1, &after(3), 0.5), Duration::from_secs(3));
        assert_eq!(p.delay(1, &after(600), 0.5), Duration::from_secs(5));
        assert_eq!(p.delay(1, &ProviderError::RateLimited { retry_after: None }, 0.5), Duration::from_millis(100));
    }
}
