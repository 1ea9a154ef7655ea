//! Retries, idempotency keys, lost answers and the circuit breaker, seen from the provider's side.

use std::collections::HashSet;
use std::time::Instant;

use keel::payments::breaker::State;
use keel::payments::{ChargeLookup, ChargeStatus, PaymentProvider as _, ProviderError};

use crate::fake_provider::{FakeProvider, Fault};
use crate::support::{COOLDOWN, MAX_RETRY_AFTER, charge, client, client_at, trace_spans};

fn keys(fake: &FakeProvider) -> HashSet<Option<String>> {
    fake.calls().into_iter().map(|c| c.idempotency_key).collect()
}

#[tokio::test]
async fn answers_503_503_200_make_three_calls_with_one_key_and_one_charge() {
    let fake = FakeProvider::start().await;
    fake.script([Fault::Status(503), Fault::Status(503)]);
    let c = client(&fake, 2, 5);

    let result = c.provider.charge(&charge("tok_visa", "chk_1")).await.unwrap();

    assert_eq!(result.status, ChargeStatus::Succeeded);
    assert_eq!(fake.calls().len(), 3);
    assert_eq!(keys(&fake), HashSet::from([Some("chk_1".to_owned())]));
    assert_eq!(fake.intents_created(), 1);
}

#[tokio::test]
async fn every_attempt_sends_the_traceparent_of_a_span_of_its_own_in_the_callers_trace() {
    use tracing::Instrument as _;
    trace_spans();
    let fake = FakeProvider::start().await;
    fake.script([Fault::Status(503)]);
    let c = client(&fake, 2, 5);
    // Keel's own spans (target `keel`) are traced, as a request's or a job's would be.
    let caller = tracing::info_span!(target: "keel", "caller");
    let caller_traceparent = keel::telemetry::trace::traceparent_of(&caller).expect("the caller's span is traced");
    let (caller_trace, caller_span) = {
        let parts: Vec<&str> = caller_traceparent.split('-').collect();
        (parts[1].to_owned(), parts[2].to_owned())
    };

    c.provider.charge(&charge("tok_visa", "chk_1")).instrument(caller).await.unwrap();

    let sent: Vec<String> = fake.calls().into_iter().map(|c| c.traceparent.expect("every attempt carries a traceparent")).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let spans: HashSet<&str> = sent
        .iter()
        .map(|t| {
            assert_eq!(t.split('-').nth(1), Some(caller_trace.as_str()), "{t} continues the caller's trace");
            t.split('-').nth(2).unwrap()
        })
        .collect();
    assert_eq!(spans.len(), 2, "each attempt is a span of its own: {sent:?}");
    assert!(!spans.contains(caller_span.as_str()));
}

#[tokio::test]
async fn a_decline_is_an_answer_after_one_call_and_is_not_retried() {
    let fake = FakeProvider::start().await;
    let c = client(&fake, 2, 5);

    let result = c.provider.charge(&charge("tok_insufficientFunds", "chk_1")).await.unwrap();

    assert_eq!(result.status, ChargeStatus::Declined { code: "insufficient_funds".into() });
    assert!(result.provider_ref.is_some_and(|r| r.starts_with("pi_")), "the declined intent is named");
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn client_errors_other_than_429_are_not_retried() {
    for status in [400, 401, 403, 404, 409, 422] {
        let fake = FakeProvider::start().await;
        fake.script([Fault::Status(status)]);
        let c = client(&fake, 2, 5);

        let err = c.provider.charge(&charge("tok_visa", "chk_1")).await.unwrap_err();

        assert!(matches!(err, ProviderError::Rejected { status: s, .. } if s == status), "{status}: {err:?}");
        assert!(!err.outcome_unknown());
        assert_eq!(fake.calls().len(), 1, "{status}");
    }
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_cut_to_the_cap() {
    let fake = FakeProvider::start().await;
    fake.script([Fault::RateLimited { retry_after_secs: 1 }]);
    let c = client(&fake, 2, 5);

    let started = Instant::now();
    let result = c.provider.charge(&charge("tok_visa", "chk_1")).await.unwrap();
    let waited = started.elapsed();

    assert_eq!(result.status, ChargeStatus::Succeeded);
    assert_eq!(fake.calls().len(), 2);
    assert_eq!(keys(&fake).len(), 1);
    assert!(waited >= MAX_RETRY_AFTER, "waited {waited:?}: Retry-After honoured (up to the cap)");
    assert!(waited < std::time::Duration::from_secs(1), "waited {waited:?}: the cap cuts a longer Retry-After");
}

#[tokio::test]
async fn retries_stop_after_the_configured_number() {
    let fake = FakeProvider::start().await;
    fake.script([Fault::Status(500), Fault::Status(502), Fault::Status(503), Fault::Status(504)]);
    let c = client(&fake, 2, 10);

    let err = c.provider.charge(&charge("tok_visa", "chk_1")).await.unwrap_err();

    assert_eq!(err, ProviderError::Server { status: 503 });
    assert!(err.outcome_unknown(), "a 5xx may have charged: reconcile, do not fail the order");
    assert_eq!(fake.calls().len(), 3);
}

#[tokio::test]
async fn a_lost_answer_is_a_timeout_and_its_key_later_finds_the_one_charge() {
    let fake = FakeProvider::start().await;
    fake.script([Fault::LoseAnswer(crate::support::TIMEOUT * 4)]);
    let c = client(&fake, 0, 5);
    let request = charge("tok_visa", "chk_lost");

    let err = c.provider.charge(&request).await.unwrap_err();
    assert_eq!(err, ProviderError::Timeout);
    assert!(err.outcome_unknown());
    assert_eq!(fake.intents_created(), 1, "the provider took the charge");

    // Reconciliation: the same key finds it, and charges nothing more.
    let found = c.provider.retrieve(&ChargeLookup::IdempotencyKey(request)).await.unwrap();
    assert_eq!(found.status, ChargeStatus::Succeeded);
    assert_eq!(fake.intents_created(), 1);
    assert_eq!(keys(&fake), HashSet::from([Some("chk_lost".to_owned())]));

    let by_ref = c.provider.retrieve(&ChargeLookup::ProviderRef(found.provider_ref.clone().unwrap())).await.unwrap();
    assert_eq!(by_ref, found);
}

#[tokio::test]
async fn a_lost_answer_retried_with_the_same_key_is_charged_once() {
    let fake = FakeProvider::start().await;
    fake.script([Fault::LoseAnswer(crate::support::TIMEOUT * 4)]);
    let c = client(&fake, 2, 5);

    let result = c.provider.charge(&charge("tok_visa", "chk_1")).await.unwrap();

    assert_eq!(result.status, ChargeStatus::Succeeded);
    assert_eq!(fake.calls().len(), 2);
    assert_eq!(keys(&fake).len(), 1);
    assert_eq!(fake.intents_created(), 1);
}

#[tokio::test]
async fn the_breaker_opens_after_n_failures_fails_fast_then_one_probe_closes_it() {
    let fake = FakeProvider::start().await;
    fake.script([Fault::Status(503), Fault::Status(503), Fault::Status(503)]);
    let c = client(&fake, 0, 3);

    for i in 0..3 {
        let err = c.provider.charge(&charge("tok_visa", &format!("chk_{i}"))).await.unwrap_err();
        assert_eq!(err, ProviderError::Server { status: 503 });
    }
    assert!(matches!(c.provider.breaker_state(), State::Open { .. }));

    let started = Instant::now();
    let err = c.provider.charge(&charge("tok_visa", "chk_fast")).await.unwrap_err();
    assert_eq!(err, ProviderError::Unavailable);
    assert!(!err.outcome_unknown(), "nothing was sent");
    assert!(started.elapsed() < std::time::Duration::from_millis(50), "fails fast");
    assert_eq!(fake.calls().len(), 3, "no request reached the provider");

    c.clock.advance(COOLDOWN);
    let probe = c.provider.charge(&charge("tok_visa", "chk_probe")).await.unwrap();
    assert_eq!(probe.status, ChargeStatus::Succeeded);
    assert_eq!(fake.calls().len(), 4, "one probe");
    assert_eq!(c.provider.breaker_state(), State::Closed { consecutive_failures: 0 });

    c.provider.charge(&charge("tok_visa", "chk_after")).await.unwrap();
    assert_eq!(fake.calls().len(), 5);
}

#[tokio::test]
async fn declines_and_client_errors_do_not_open_the_breaker() {
    let fake = FakeProvider::start().await;
    fake.script([Fault::Status(400), Fault::Status(404)]);
    let c = client(&fake, 0, 2);

    c.provider.charge(&charge("tok_visa", "chk_1")).await.unwrap_err();
    c.provider.charge(&charge("tok_visa", "chk_2")).await.unwrap_err();
    c.provider.charge(&charge("tok_chargeDeclined", "chk_3")).await.unwrap();
    c.provider.charge(&charge("tok_chargeDeclined", "chk_4")).await.unwrap();

    assert_eq!(c.provider.breaker_state(), State::Closed { consecutive_failures: 0 });
}

#[tokio::test]
async fn a_breaker_opening_mid_retries_does_not_hide_an_earlier_lost_answer() {
    let fake = FakeProvider::start().await;
    fake.script([Fault::LoseAnswer(crate::support::TIMEOUT * 4), Fault::Status(503)]);
    let c = client(&fake, 2, 2);

    let err = c.provider.charge(&charge("tok_visa", "chk_1")).await.unwrap_err();

    // The first attempt may have charged: "unavailable" would let checkout fail the order.
    assert_eq!(err, ProviderError::Timeout);
    assert_eq!(fake.calls().len(), 2, "the third attempt was refused by the open breaker");
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_known_not_to_have_charged() {
    // A port that was just free: nothing listens there.
    let base = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let c = client_at(&base, 2, 10);

    let err = c.provider.charge(&charge("tok_visa", "chk_1")).await.unwrap_err();

    assert!(matches!(err, ProviderError::Connect(_)), "{err:?}");
    assert!(err.is_retryable() && !err.outcome_unknown());
    assert_eq!(c.provider.breaker_state(), State::Closed { consecutive_failures: 3 }, "three attempts, each counted");
}
