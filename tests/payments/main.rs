//! The payment provider client against a fake Stripe-shaped server with scripted faults:
//! retries, idempotency keys, lost answers, the circuit breaker and the wire format.

#[path = "../common/fake_provider.rs"]
mod fake_provider;
mod http_provider;
mod resilience;
mod support;
