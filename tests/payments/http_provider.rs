//! The wire format of the Stripe-shaped client, and the provider built from configuration.

use keel::config::Config;
use keel::payments::{ChargeLookup, ChargeStatus, PaymentProvider, ProviderError, RefundRequest, RefundStatus, build_provider};

use crate::fake_provider::{API_KEY, FakeProvider};
use crate::support::{as_dyn, charge, client, http_provider};

#[tokio::test]
async fn a_charge_is_a_form_encoded_confirmed_intent_with_the_bearer_key_and_metadata() {
    let fake = FakeProvider::start().await;
    let c = client(&fake, 0, 5);

    let result = c.provider.charge(&charge("tok_visa", "chk_1")).await.unwrap();

    assert_eq!((result.amount, result.currency.as_str()), (1234, "USD"));
    let calls = fake.calls();
    let call = &calls[0];
    assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", "/v1/payment_intents"));
    assert_eq!(call.authorization.as_deref(), Some(format!("Bearer {API_KEY}").as_str()));
    assert_eq!(call.idempotency_key.as_deref(), Some("chk_1"));
    assert_eq!(call.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    assert_eq!(call.field("amount"), Some("1234"));
    assert_eq!(call.field("currency"), Some("usd"));
    assert_eq!(call.field("payment_method"), Some("tok_visa"));
    assert_eq!(call.field("confirm"), Some("true"));
    assert_eq!(call.field("metadata[order_id]"), Some("ord_0190abc"));
}

#[tokio::test]
async fn a_wrong_api_key_is_refused_once_and_not_retried() {
    let fake = FakeProvider::start().await;
    let provider = as_dyn(http_provider(&fake.base, "sk_wrong"));

    let err = provider.charge(&charge("tok_visa", "chk_1")).await.unwrap_err();

    assert!(matches!(&err, ProviderError::Rejected { status: 401, .. }), "{err:?}");
    assert!(!err.to_string().contains("sk_wrong"), "the key is never in an error: {err}");
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn a_charge_is_read_back_by_get_and_an_unknown_one_is_not_found() {
    let fake = FakeProvider::start().await;
    let c = client(&fake, 0, 5);
    let made = c.provider.charge(&charge("tok_visa", "chk_1")).await.unwrap();

    let read = c.provider.retrieve(&ChargeLookup::ProviderRef(made.provider_ref.clone().unwrap())).await.unwrap();
    assert_eq!(read, made);
    let get = fake.calls().pop().unwrap();
    assert_eq!((get.method.as_str(), get.path), ("GET", format!("/v1/payment_intents/{}", made.provider_ref.unwrap())));

    let err = c.provider.retrieve(&ChargeLookup::ProviderRef("pi_nope".into())).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { status: 404, .. }), "{err:?}");
}

#[tokio::test]
async fn refunds_are_form_encoded_with_their_own_key_and_never_exceed_the_charge() {
    let fake = FakeProvider::start().await;
    let c = client(&fake, 0, 5);
    let made = c.provider.charge(&charge("tok_visa", "chk_1")).await.unwrap();
    let refund =
        |amount, key: &str| RefundRequest { provider_ref: made.provider_ref.clone().unwrap(), amount, idempotency_key: key.into() };

    let first = c.provider.refund(&refund(1000, "ref_1")).await.unwrap();
    assert_eq!((first.amount, first.status), (1000, RefundStatus::Succeeded));
    let call = fake.calls().pop().unwrap();
    assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", "/v1/refunds"));
    assert_eq!(call.idempotency_key.as_deref(), Some("ref_1"));
    assert_eq!(call.field("payment_intent"), made.provider_ref.as_deref());
    assert_eq!(call.field("amount"), Some("1000"));

    assert_eq!(c.provider.refund(&refund(1000, "ref_1")).await.unwrap(), first, "replayed by key");
    let err = c.provider.refund(&refund(235, "ref_2")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { status: 400, .. }), "{err:?}");
}

#[tokio::test]
async fn the_configured_http_provider_reaches_the_configured_base() {
    let fake = FakeProvider::start().await;
    let config =
        Config::from_pairs([("payment_provider", "http"), ("payment_api_base", fake.base.as_str()), ("payment_api_key", API_KEY)]).unwrap();

    let provider = build_provider(&config.payment).unwrap();
    let result = provider.charge(&charge("tok_visa", "chk_1")).await.unwrap();

    assert_eq!(result.status, ChargeStatus::Succeeded);
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn the_default_sandbox_keeps_the_contract_behind_the_resilience_layer() {
    let provider = build_provider(&Config::from_pairs(Vec::<(String, String)>::new()).unwrap().payment).unwrap();

    assert_eq!(provider.charge(&charge("tok_visa", "k1")).await.unwrap().status, ChargeStatus::Succeeded);
    assert_eq!(
        provider.charge(&charge("tok_chargeDeclined", "k2")).await.unwrap().status,
        ChargeStatus::Declined { code: "card_declined".into() }
    );
    let lost = charge("tok_timeout", "k3");
    assert_eq!(provider.charge(&lost).await.unwrap_err(), ProviderError::Timeout);
    assert_eq!(provider.retrieve(&ChargeLookup::IdempotencyKey(lost)).await.unwrap().status, ChargeStatus::Succeeded);
    assert_eq!(provider.charge(&charge("tok_error", "k4")).await.unwrap_err(), ProviderError::Server { status: 503 });
}
