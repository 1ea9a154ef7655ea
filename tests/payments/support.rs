//! A client for the fake provider with fast retries and a clock the test moves.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use keel::payments::breaker::BreakerConfig;
use keel::payments::http::HttpProvider;
use keel::payments::resilient::{Clock, Resilient, RetryPolicy};
use keel::payments::{ChargeRequest, PaymentProvider};
use secrecy::SecretString;

use crate::fake_provider::{API_KEY, FakeProvider};

pub const TIMEOUT: Duration = Duration::from_millis(300);
pub const COOLDOWN: Duration = Duration::from_secs(30);
/// Longest `Retry-After` honoured in these tests, so a test never waits a whole second.
pub const MAX_RETRY_AFTER: Duration = Duration::from_millis(200);

pub struct ManualClock(Mutex<Instant>);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

pub fn http_provider(base: &str, key: &str) -> HttpProvider {
    HttpProvider::new(base, SecretString::from(key.to_owned()), TIMEOUT, TIMEOUT).unwrap()
}

pub struct Client {
    pub provider: Resilient<HttpProvider>,
    pub clock: Arc<ManualClock>,
}

pub fn client(fake: &FakeProvider, max_retries: u32, failure_threshold: u32) -> Client {
    client_at(&fake.base, max_retries, failure_threshold)
}

pub fn client_at(base: &str, max_retries: u32, failure_threshold: u32) -> Client {
    let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
    let policy = RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: MAX_RETRY_AFTER,
    };
    let provider = Resilient::new(http_provider(base, API_KEY), policy, BreakerConfig { failure_threshold, cooldown: COOLDOWN })
        .with_clock(clock.clone());
    Client { provider, clock }
}

pub fn charge(token: &str, key: &str) -> ChargeRequest {
    ChargeRequest {
        amount: 1234,
        currency: "USD".into(),
        card_token: token.into(),
        idempotency_key: key.into(),
        metadata: [("order_id".to_owned(), "ord_0190abc".to_owned())].into(),
    }
}

/// Installs Keel's tracing in this test process, once and logging nothing, so spans get trace
/// ids as they do in `keel serve`.
pub fn trace_spans() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let config = keel::config::Config::from_pairs([("log", "off")]).expect("a valid configuration");
        keel::telemetry::init_logging(&config).expect("tracing without export installs");
    });
}

/// A provider behind a trait object, as the application will hold it.
pub fn as_dyn(provider: impl PaymentProvider + 'static) -> Arc<dyn PaymentProvider> {
    Arc::new(provider)
}
