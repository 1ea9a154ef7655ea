//! Payments through a third-party provider: the [`PaymentProvider`] seam, the in-process
//! `sandbox`, the Stripe-shaped `http` client, `resilient` (retries and a circuit breaker)
//! wrapped around whichever is configured, and `webhook` (reading the provider's signed events).
//!
//! A decline is an answer, not an error: `charge` returns `Ok` with [`ChargeStatus::Declined`].
//! Errors are failures to get an answer, and say whether money may have moved
//! ([`ProviderError::outcome_unknown`]): a checkout that gets such an error keeps the order
//! `pending_payment` and lets reconciliation ask again with the same idempotency key.

pub mod breaker;
pub mod config;
pub mod http;
pub mod resilient;
pub mod sandbox;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use config::{PaymentConfig, ProviderKind};

/// One charge. Sending the same request again with the same `idempotency_key` never charges
/// twice: the provider answers with the original result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Minor units, positive.
    pub amount: i64,
    /// ISO 4217, upper case as Keel keeps it (the http provider sends it lower case).
    pub currency: String,
    pub card_token: String,
    pub idempotency_key: String,
    /// Sent as `metadata[<key>]`, e.g. `order_id`, so the provider's events lead back to us.
    pub metadata: BTreeMap<String, String>,
}

/// How to find a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeLookup {
    ProviderRef(String),
    /// A charge whose answer was lost, by its idempotency key. It carries the whole original
    /// request because Stripe-shaped APIs find a charge by key only by replaying the request with
    /// that key: the original result comes back, and if the first attempt never arrived the
    /// charge is made now. Never a second one.
    IdempotencyKey(ChargeRequest),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The provider's id (`pi_…`); `None` only for a decline answered without one.
    pub provider_ref: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub status: ChargeStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeStatus {
    Succeeded,
    /// The provider has not decided yet (processing, or waiting for the customer).
    Pending,
    /// `code` is the provider's (`card_declined`, `insufficient_funds`, …); maps to `402 payment_declined`.
    Declined {
        code: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// The charge's `provider_ref`.
    pub provider_ref: String,
    pub amount: i64,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub provider_ref: String,
    pub amount: i64,
    pub status: RefundStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    Succeeded,
    Pending,
    Failed,
}

/// Why no answer came. Never carries the API key or a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No connection: the request never left.
    #[error("could not connect to the payment provider: {0}")]
    Connect(String),
    /// Sent, but no answer in time.
    #[error("the payment provider did not answer in time")]
    Timeout,
    /// Sent, then the connection failed.
    #[error("the connection to the payment provider failed: {0}")]
    Network(String),
    /// 5xx: the provider may or may not have done it.
    #[error("the payment provider answered {status}")]
    Server { status: u16 },
    /// 429: not done; try again after `retry_after` when given.
    #[error("the payment provider is rate limiting us")]
    RateLimited { retry_after: Option<Duration> },
    /// Any other 4xx: the request is wrong (bad key, unknown card token, …) and retrying will not help.
    #[error("the payment provider refused the request ({status} {code})")]
    Rejected { status: u16, code: String, message: String },
    /// An answer we cannot read.
    #[error("the payment provider's answer could not be read: {0}")]
    Malformed(String),
    /// The circuit breaker is open: nothing was sent. Maps to `503 payment_provider_unavailable`.
    #[error("the payment provider is unavailable")]
    Unavailable,
}

impl ProviderError {
    /// Worth another attempt with the same idempotency key (connection errors, timeouts, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Timeout | Self::Network(_) | Self::Server { .. } | Self::RateLimited { .. })
    }

    /// The provider may have acted on the request: the caller must not assume "no charge".
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Timeout | Self::Network(_) | Self::Server { .. } | Self::Malformed(_))
    }

    /// Counts against the circuit breaker: the provider (or the way to it) is failing. A 4xx
    /// means it is up and answering, so it does not count.
    pub fn is_provider_failure(&self) -> bool {
        self.is_retryable() || matches!(self, Self::Malformed(_))
    }
}

/// A payment provider. Implementations do one attempt per call; retries and the breaker are
/// `resilient`'s.
#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, ProviderError>;

    /// The charge as it stands now (reconciliation asks this after a lost answer).
    async fn retrieve(&self, lookup: &ChargeLookup) -> Result<Charge, ProviderError>;

    async fn refund(&self, request: &RefundRequest) -> Result<Refund, ProviderError>;
}

/// The provider `config` chooses, behind retries and a circuit breaker.
pub fn build_provider(config: &PaymentConfig) -> Result<Arc<dyn PaymentProvider>, http::SetupError> {
    Ok(match &config.provider {
        ProviderKind::Sandbox => Arc::new(resilient::Resilient::new(sandbox::SandboxProvider::default(), config.retry, config.breaker)),
        ProviderKind::Http { api_base, api_key } => {
            let http = http::HttpProvider::new(api_base, api_key.clone(), config.timeout, config.connect_timeout)?;
            Arc::new(resilient::Resilient::new(http, config.retry, config.breaker))
        }
    })
}
