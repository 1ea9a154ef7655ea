//! Card checkouts against a fake Stripe-shaped provider (`payment_provider=http`): one charge
//! per Idempotency-Key under concurrency, 5xx answers retried with one key, the circuit breaker
//! opening and recovering, and a decline that holds nothing.

use serde_json::{Value, json};

use crate::checkout::{add, available, checkout, orders_of};
use crate::fake_provider::{API_KEY, FakeProvider, Fault};
use crate::helpers::{TestApp, Tokens, spawn_app_with};
use crate::support::eventually;
use crate::wallet::{balance, idem_post, top_up, verify};

/// A shop whose provider is `fake`: an admin, a product with 10 in stock, and Ada.
struct Shop {
    app: TestApp,
    admin: Tokens,
    ada: Tokens,
    mug: String,
}

/// Keel with the fake as its payment provider, and `overrides`.
pub async fn app_on_fake(fake: &FakeProvider, overrides: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![("payment_provider", "http"), ("payment_api_base", fake.base.as_str()), ("payment_api_key", API_KEY)];
    settings.extend_from_slice(overrides);
    spawn_app_with(&settings).await
}

async fn shop(fake: &FakeProvider, overrides: &[(&str, &str)]) -> Shop {
    let app = app_on_fake(fake, overrides).await;
    let (admin, mug, ada) = crate::checkout::shop(&app).await;
    Shop { app, admin, ada, mug }
}

fn card(token: &str) -> Value {
    json!({ "payment_method": "card", "card_token": token })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_checkouts_with_one_key_place_one_order_and_charge_the_card_once() {
    let fake = FakeProvider::start().await;
    // Fifty checkouts from one customer at once: more than the money budget allows a minute.
    let Shop { app, admin, ada, mug } = shop(&fake, &[("rate_limit_money", "off")]).await;
    add(&app, &ada, &mug, 2).await;
    let body = card("tok_visa");

    let replies = futures::future::join_all((0..50).map(|_| idem_post(&app, "/v1/checkout", &ada, "chk-burst", &body))).await;
    let firsts: Vec<_> = replies.iter().filter(|r| r.status == 201 && r.header("idempotent-replayed").is_none()).collect();
    assert_eq!(firsts.len(), 1, "exactly one request ran");
    let first = firsts[0];
    let mut replayed = 0;
    for reply in &replies {
        match reply.status.as_u16() {
            201 => {
                assert_eq!(reply.text, first.text, "byte-identical");
                replayed += usize::from(reply.header("idempotent-replayed") == Some("true"));
            }
            409 => {
                reply.problem(409, "idempotency_key_in_use");
            }
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    let in_use = replies.iter().filter(|r| r.status == 409).count();
    assert_eq!(1 + replayed + in_use, 50, "every other 201 is a replay");
    let order = first.json();
    assert_eq!(order["status"], "paid");

    let again = idem_post(&app, "/v1/checkout", &ada, "chk-burst", &body).await.expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text);

    let orders = app.all_pages("/v1/admin/orders", &admin.access, &[], 100).await.concat();
    assert_eq!(orders.len(), 1, "{orders:#?}");
    assert_eq!(orders[0]["id"], order["id"]);
    assert_eq!(fake.intents_created(), 1, "one charge");
    assert_eq!(fake.calls().len(), 1, "one call reached the provider");
    assert_eq!(available(&app, &mug).await, 8);
    assert_eq!(verify(&app, &admin).await["balanced"], true);
}

#[tokio::test]
async fn a_checkout_through_503_503_then_200_is_paid_after_three_calls_with_one_key_and_one_charge() {
    let fake = FakeProvider::start().await;
    fake.script([Fault::Status(503), Fault::Status(503)]);
    let Shop { app, admin, ada, mug } = shop(&fake, &[("payment_max_retries", "2")]).await;
    add(&app, &ada, &mug, 3).await;

    let order = checkout(&app, &ada, &card("tok_visa")).await.expect(201).json();
    assert_eq!(order["status"], "paid");

    let calls = fake.calls();
    assert_eq!(calls.len(), 3, "{calls:#?}");
    for call in &calls {
        assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", "/v1/payment_intents"));
        assert_eq!(call.field("metadata[order_id]"), order["id"].as_str());
    }
    let key = calls[0].idempotency_key.clone();
    assert!(key.as_deref().is_some_and(|k| !k.is_empty()), "{calls:#?}");
    assert!(calls.iter().all(|c| c.idempotency_key == key), "one key for every attempt: {calls:#?}");
    assert_eq!(fake.intents_created(), 1, "one charge");
    assert!(order["payment"]["provider_ref"].as_str().is_some_and(|r| r.starts_with("pi_fake_")), "{order}");
    assert_eq!(available(&app, &mug).await, 7);
    assert_eq!(verify(&app, &admin).await["balanced"], true);
}

#[tokio::test]
async fn an_open_breaker_fails_checkouts_fast_without_calling_then_a_probe_after_the_cool_down_closes_it() {
    let fake = FakeProvider::start().await;
    fake.script([Fault::Status(503), Fault::Status(503)]);
    // The cool-down must outlast the moment between the breaker opening and the next checkout,
    // on a busy machine too; the wait for it below is a poll, not a sleep.
    let overrides = [("payment_max_retries", "0"), ("payment_breaker_failures", "2"), ("payment_breaker_cooldown_secs", "3")];
    let Shop { app, admin, ada, mug } = shop(&fake, &overrides).await;
    add(&app, &ada, &mug, 1).await;

    // A 5xx may have charged, so checkout asks again by the charge's key: that second 503 is the
    // breaker's second consecutive failure.
    checkout(&app, &ada, &card("tok_visa")).await.problem(503, "payment_provider_unavailable");
    assert_eq!(fake.calls().len(), 2, "the charge and its lookup by key: {:#?}", fake.calls());
    checkout(&app, &ada, &card("tok_visa")).await.problem(503, "payment_provider_unavailable");
    assert_eq!(fake.calls().len(), 2, "the breaker is open: nothing reached the provider");
    let states: Vec<_> = orders_of(&app, &ada).await.iter().map(|o| (o["status"].clone(), o["payment"]["status"].clone())).collect();
    assert_eq!(states, [(json!("failed"), json!("failed")), (json!("failed"), json!("failed"))]);
    assert_eq!(available(&app, &mug).await, 10, "both orders' stock is released");

    let order = eventually(30, "the breaker's cool-down to end", || async {
        let reply = checkout(&app, &ada, &card("tok_visa")).await;
        if reply.status == 201 {
            return Some(reply.json());
        }
        reply.problem(503, "payment_provider_unavailable");
        assert_eq!(fake.calls().len(), 2, "nothing is sent while the breaker is open");
        None
    })
    .await;
    assert_eq!(order["status"], "paid");
    assert_eq!(fake.calls().len(), 3, "one probe, which closed the breaker");
    assert_eq!(available(&app, &mug).await, 9);

    add(&app, &ada, &mug, 1).await;
    checkout(&app, &ada, &card("tok_visa")).await.expect(201);
    assert_eq!(fake.calls().len(), 4);
    assert_eq!(fake.intents_created(), 2);
    assert_eq!(available(&app, &mug).await, 8);
    let failed = app.get_authed("/v1/orders?status=failed&limit=100", &ada.access).await.expect(200).json();
    assert!(failed["data"].as_array().unwrap().len() >= 2, "{failed}");
    assert_eq!(verify(&app, &admin).await["balanced"], true);
}

#[tokio::test]
async fn a_declined_card_is_402_payment_declined_and_holds_no_stock_and_moves_no_money() {
    let fake = FakeProvider::start().await;
    let Shop { app, admin, ada, mug } = shop(&fake, &[]).await;
    top_up(&app, &ada, 5000, "tok_visa").await.expect(201);
    add(&app, &ada, &mug, 2).await;
    let (calls, books) = (fake.calls().len(), verify(&app, &admin).await);

    checkout(&app, &ada, &card("tok_chargeDeclined")).await.problem(402, "payment_declined");

    assert_eq!(fake.calls().len(), calls + 1, "a decline is an answer: not retried");
    assert_eq!(available(&app, &mug).await, 10, "nothing held");
    assert_eq!(balance(&app, &ada).await, 5000);
    assert_eq!(verify(&app, &admin).await, books, "no ledger entry");
    let orders = orders_of(&app, &ada).await;
    assert_eq!(orders.len(), 1, "{orders:#?}");
    assert_eq!((orders[0]["status"].clone(), orders[0]["payment"]["status"].clone()), (json!("failed"), json!("declined")));
    let cart = app.get_authed("/v1/cart", &ada.access).await.expect(200).json();
    assert_eq!(cart["items"].as_array().unwrap().len(), 1, "the cart is kept for another card: {cart}");
}
