//! Payment settings with their defaults; `crate::config` fills them from `KEEL_PAYMENT_*`.

use std::time::Duration;

use secrecy::SecretString;

use super::breaker::BreakerConfig;
use super::resilient::RetryPolicy;

/// Which provider takes the charges.
#[derive(Debug, Clone)]
pub enum ProviderKind {
    /// In-process, no network; card tokens decide the outcome (see `sandbox`).
    Sandbox,
    /// A Stripe-shaped HTTP API at `api_base` (no trailing slash), authenticated with `api_key`.
    Http { api_base: String, api_key: SecretString },
}

#[derive(Debug, Clone)]
pub struct PaymentConfig {
    /// Default: the sandbox.
    pub provider: ProviderKind,
    /// Secret of the provider's signed webhooks (`Keel-Signature`); without it incoming payment
    /// webhooks are refused.
    pub webhook_secret: Option<SecretString>,
    /// Total time for one attempt, connect included (default 8 s). Keep
    /// `(max_retries + 1) × timeout` under `request_timeout_secs` so a checkout can answer.
    pub timeout: Duration,
    /// Time to open the connection: 2 s, or `timeout` when shorter.
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    /// How long after a lost answer reconciliation first asks the provider again (default 30 s).
    pub reconcile_delay: Duration,
}

/// Default per-attempt timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(8);
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl PaymentConfig {
    /// Sets the per-attempt timeout and the connect timeout that follows from it.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.connect_timeout = timeout.min(MAX_CONNECT_TIMEOUT);
        self
    }
}

impl Default for PaymentConfig {
    fn default() -> Self {
        Self {
            provider: ProviderKind::Sandbox,
            webhook_secret: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: MAX_CONNECT_TIMEOUT,
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            reconcile_delay: Duration::from_secs(30),
        }
    }
}
