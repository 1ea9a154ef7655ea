//! Card orders whose answer was lost (`202`) settle later, exactly once: by reconciliation
//! asking the fake provider again with the charge's key, or by the provider's signed webhook.
//! Also the webhook's refusals and the receipt mail of a paid order.

use std::time::Duration;

use serde_json::{Value, json};

use crate::checkout::{add, available, checkout, shop};
use crate::fake_provider::{Call, FakeProvider, Fault};
use crate::helpers::{Reply, TestApp, Tokens, spawn_app};
use crate::payments_faults::app_on_fake;
use crate::support::{eventually, mail_files};
use crate::wallet::{top_up, verify};

const SECRET: &str = "whsec_settlement_tests_0123";

/// Keel on the fake provider: one attempt per call (no retries) with a short timeout, so a
/// scripted lost answer is a timeout at once; reconciliation after `reconcile_secs`.
async fn app_on(fake: &FakeProvider, reconcile_secs: &str) -> TestApp {
    app_on_fake(
        fake,
        &[
            ("payment_max_retries", "0"),
            ("payment_timeout_ms", "300"),
            ("payment_reconcile_delay_secs", reconcile_secs),
            ("payment_webhook_secret", SECRET),
        ],
    )
    .await
}

struct Pending {
    admin: Tokens,
    ada: Tokens,
    mug: String,
    order: Value,
}

/// A card checkout whose charge and lookup both lose their answers: `202`, `pending_payment`.
async fn pending_order(app: &TestApp, fake: &FakeProvider) -> Pending {
    let (admin, mug, ada) = shop(app).await;
    add(app, &ada, &mug, 2).await;
    let lost = Fault::LoseAnswer(Duration::from_secs(1));
    fake.script([lost.clone(), lost]);
    let order = checkout(app, &ada, &json!({ "payment_method": "card", "card_token": "tok_visa" })).await.expect(202).json();
    assert_eq!((order["status"].as_str(), order["payment"]["status"].as_str()), (Some("pending_payment"), Some("pending")));
    assert_eq!(available(app, &mug).await, 8, "the stock stays held while the answer is unknown");
    Pending { admin, ada, mug, order }
}

async fn order(app: &TestApp, who: &Tokens, id: &str) -> Value {
    app.get_authed(&format!("/v1/orders/{id}"), &who.access).await.expect(200).json()
}

async fn settled(app: &TestApp, who: &Tokens, id: &str) -> Value {
    eventually(30, "the order to settle", || async {
        let o = order(app, who, id).await;
        (o["status"] != "pending_payment").then_some(o)
    })
    .await
}

fn event(id: &str, kind: &str, order_id: &str, amount: i64, currency: &str) -> String {
    json!({
        "id": id, "type": kind, "created": chrono::Utc::now().timestamp(),
        "data": { "object": {
            "id": "pi_from_webhook", "object": "payment_intent", "amount": amount, "currency": currency,
            "metadata": { "order_id": order_id },
            "last_payment_error": if kind.ends_with("failed") { json!({"code": "card_declined", "decline_code": "expired_card"}) } else { Value::Null },
        }},
    })
    .to_string()
}

/// `t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`, computed here independently of Keel.
fn signature(secret: &str, at: i64, body: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let mac = aws_lc_rs::hmac::sign(&key, format!("{at}.{body}").as_bytes());
    format!("t={at},v1={}", mac.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

async fn deliver(app: &TestApp, signature: Option<String>, body: &str) -> Reply {
    let mut request = app.request(reqwest::Method::POST, "/v1/webhooks/payments").header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("Keel-Signature", signature);
    }
    app.send(request.body(body.to_owned())).await
}

async fn webhook(app: &TestApp, body: &str) -> Reply {
    deliver(app, Some(signature(SECRET, chrono::Utc::now().timestamp(), body)), body).await
}

fn charge_keys(fake: &FakeProvider) -> Vec<Option<String>> {
    fake.calls().into_iter().filter(|c| c.path == "/v1/payment_intents").map(|c| c.idempotency_key).collect()
}

fn refund_calls(fake: &FakeProvider) -> Vec<Call> {
    fake.calls().into_iter().filter(|c| c.path == "/v1/refunds").collect()
}

/// The refund calls, once the void of a charge has reached the provider.
async fn void_refunds(fake: &FakeProvider) -> Vec<Call> {
    eventually(30, "the void refund", || async {
        let refunds = refund_calls(fake);
        (!refunds.is_empty()).then_some(refunds)
    })
    .await
}

#[tokio::test]
async fn a_lost_answer_is_202_then_reconciliation_pays_it_once_and_tells_the_customer() {
    let fake = FakeProvider::start().await;
    let app = app_on(&fake, "1").await;
    let Pending { admin, ada, mug, order: pending } = pending_order(&app, &fake).await;
    let id = pending["id"].as_str().unwrap();

    let paid = settled(&app, &ada, id).await;
    assert_eq!((paid["status"].as_str(), paid["payment"]["status"].as_str()), (Some("paid"), Some("succeeded")));
    assert_eq!(paid["payment"]["provider_ref"], "pi_fake_1");
    assert_eq!(fake.intents_created(), 1, "one charge, however many times it was asked for");
    let keys = charge_keys(&fake);
    assert_eq!(keys.len(), 3, "the charge, the lookup, the reconciliation: {keys:?}");
    assert!(keys.iter().all(|k| *k == Some(format!("keel_charge_{id}"))), "{keys:?}");
    assert_eq!(available(&app, &mug).await, 8, "the held units are sold");
    let ledger = verify(&app, &admin).await;
    assert_eq!((ledger["balanced"].as_bool(), ledger["entries"].as_i64()), (Some(true), Some(2)), "one card payment posted");

    let paid_notes = eventually(30, "the paid notification", || async {
        let notes = app.get_authed("/v1/notifications", &ada.access).await.expect(200).json()["data"].as_array().unwrap().clone();
        let paid: Vec<_> = notes.into_iter().filter(|n| n["title"] == "Order paid").collect();
        (!paid.is_empty()).then_some(paid)
    })
    .await;
    assert_eq!(paid_notes.len(), 1);
    let jobs = app.get_authed("/v1/admin/jobs?kind=payments.reconcile", &admin.access).await.expect(200).json();
    assert_eq!(jobs["data"].as_array().unwrap().len(), 1);
    assert_eq!(jobs["data"][0]["state"], "done");
}

#[tokio::test]
async fn reconciliation_keeps_asking_while_the_provider_is_down_then_settles_a_decline_as_failed() {
    let fake = FakeProvider::start().await;
    let app = app_on(&fake, "1").await;
    let (admin, mug, ada) = shop(&app).await;
    add(&app, &ada, &mug, 1).await;
    let lost = Fault::LoseAnswer(Duration::from_secs(1));
    // Charge and lookup lost; the first reconciliation meets a 503; the next one gets the decline.
    fake.script([lost.clone(), lost, Fault::Status(503)]);
    let body = json!({ "payment_method": "card", "card_token": "tok_chargeDeclined" });
    let pending = checkout(&app, &ada, &body).await.expect(202).json();
    let id = pending["id"].as_str().unwrap();

    let failed = settled(&app, &ada, id).await;
    assert_eq!((failed["status"].as_str(), failed["payment"]["status"].as_str()), (Some("failed"), Some("declined")));
    assert_eq!(available(&app, &mug).await, 10, "the held unit is released");
    assert_eq!(verify(&app, &admin).await["entries"], 0, "no money moved");
    assert_eq!(charge_keys(&fake).len(), 4, "charge, lookup, a reconciliation that met the 503, the one that settled");
    let job = &app.get_authed("/v1/admin/jobs?kind=payments.reconcile", &admin.access).await.expect(200).json()["data"][0];
    assert_eq!((job["state"].as_str(), job["attempts"].as_i64()), (Some("done"), Some(2)));
}

#[tokio::test]
async fn the_webhook_settles_a_pending_order_once_and_a_redelivery_changes_nothing() {
    let fake = FakeProvider::start().await;
    // Reconciliation waits an hour: the webhook comes first.
    let app = app_on(&fake, "3600").await;
    let Pending { admin, ada, mug, order: pending } = pending_order(&app, &fake).await;
    let id = pending["id"].as_str().unwrap();

    let succeeded = event("evt_1", "payment_intent.succeeded", id, 2500, "usd");
    assert_eq!(webhook(&app, &succeeded).await.expect(200).json(), json!({ "received": true }));
    let paid = order(&app, &ada, id).await;
    assert_eq!((paid["status"].as_str(), paid["payment"]["provider_ref"].as_str()), (Some("paid"), Some("pi_from_webhook")));
    let after_first = verify(&app, &admin).await;
    assert_eq!((after_first["balanced"].as_bool(), after_first["entries"].as_i64()), (Some(true), Some(2)));

    // The same event again, and another success event for the same order: no second payment.
    webhook(&app, &succeeded).await.expect(200);
    webhook(&app, &event("evt_2", "payment_intent.succeeded", id, 2500, "usd")).await.expect(200);
    assert_eq!(verify(&app, &admin).await["entries"], 2, "paid once");
    assert_eq!(order(&app, &ada, id).await["updated_at"], paid["updated_at"]);
    assert_eq!(available(&app, &mug).await, 8);
}

#[tokio::test]
async fn a_webhook_faster_than_the_charges_answer_leaves_the_checkout_a_201_and_one_payment() {
    let fake = FakeProvider::start().await;
    let app = app_on_fake(&fake, &[("payment_timeout_ms", "10000"), ("payment_webhook_secret", SECRET)]).await;
    let (admin, mug, ada) = shop(&app).await;
    add(&app, &ada, &mug, 2).await;
    // The charge is taken at once but its answer takes 3 s; the webhook comes in between.
    fake.script([Fault::LoseAnswer(Duration::from_secs(3))]);
    let body = json!({ "payment_method": "card", "card_token": "tok_visa" });
    let (placed, id) = tokio::join!(checkout(&app, &ada, &body), async {
        let id = eventually(30, "the pending order", || async {
            let orders = app.get_authed("/v1/admin/orders?status=pending_payment", &admin.access).await.expect(200).json();
            orders["data"][0]["id"].as_str().map(str::to_owned)
        })
        .await;
        webhook(&app, &event("evt_fast", "payment_intent.succeeded", &id, 2500, "usd")).await.expect(200);
        id
    });
    let placed = placed.expect(201).json();
    assert_eq!((placed["id"].as_str(), placed["status"].as_str()), (Some(id.as_str()), Some("paid")));
    assert_eq!(verify(&app, &admin).await["entries"], 2, "paid once");
    assert_eq!(available(&app, &mug).await, 8);
    assert_eq!(app.get_authed("/v1/cart", &ada.access).await.expect(200).json()["items"], json!([]));
}

#[tokio::test]
async fn a_webhook_for_another_amount_or_currency_never_marks_the_order_paid() {
    let fake = FakeProvider::start().await;
    let app = app_on(&fake, "3600").await;
    let Pending { admin, ada, order: pending, .. } = pending_order(&app, &fake).await;
    let id = pending["id"].as_str().unwrap();

    webhook(&app, &event("evt_low", "payment_intent.succeeded", id, 1, "usd")).await.expect(200);
    webhook(&app, &event("evt_eur", "payment_intent.succeeded", id, 2500, "eur")).await.expect(200);
    assert_eq!(order(&app, &ada, id).await["status"], "pending_payment");
    assert_eq!(verify(&app, &admin).await["entries"], 0);

    webhook(&app, &event("evt_right", "payment_intent.succeeded", id, 2500, "usd")).await.expect(200);
    assert_eq!(order(&app, &ada, id).await["status"], "paid", "the matching event still settles it");
}

#[tokio::test]
async fn a_failed_payment_webhook_fails_the_pending_order_and_releases_its_stock() {
    let fake = FakeProvider::start().await;
    let app = app_on(&fake, "3600").await;
    let Pending { admin, ada, mug, order: pending } = pending_order(&app, &fake).await;
    let id = pending["id"].as_str().unwrap();

    webhook(&app, &event("evt_f", "payment_intent.payment_failed", id, 2500, "usd")).await.expect(200);
    let failed = order(&app, &ada, id).await;
    assert_eq!((failed["status"].as_str(), failed["payment"]["status"].as_str()), (Some("failed"), Some("declined")));
    assert_eq!(available(&app, &mug).await, 10);
    // A success arriving after the failure finds the order settled and gives the charge back.
    webhook(&app, &event("evt_s", "payment_intent.succeeded", id, 2500, "usd")).await.expect(200);
    assert_eq!(order(&app, &ada, id).await["status"], "failed");
    assert_eq!(verify(&app, &admin).await["entries"], 0);
    let voids = refund_calls(&fake);
    assert_eq!(voids.len(), 1, "{voids:?}");
    assert_eq!(voids[0].idempotency_key, Some(format!("keel_void_{id}")));
    assert_eq!((voids[0].field("payment_intent"), voids[0].field("amount")), (Some("pi_from_webhook"), Some("2500")));
}

#[tokio::test]
async fn a_charge_found_for_an_order_cancelled_meanwhile_is_given_back_whole() {
    let fake = FakeProvider::start().await;
    let app = app_on(&fake, "3600").await;
    let Pending { admin, ada, mug, order: pending } = pending_order(&app, &fake).await;
    let id = pending["id"].as_str().unwrap();
    let cancelled = app.post_json_authed(&format!("/v1/orders/{id}/cancel"), &ada.access, &json!({})).await.expect(200).json();
    assert_eq!(cancelled["status"], "cancelled");

    // The provider's late success event meets the cancelled order: the charge goes back.
    webhook(&app, &event("evt_late", "payment_intent.succeeded", id, 2500, "usd")).await.expect(200);
    let refunds = void_refunds(&fake).await;
    assert_eq!(refunds[0].field("amount"), Some("2500"));
    assert_eq!(order(&app, &ada, id).await["status"], "cancelled");
    assert_eq!(available(&app, &mug).await, 10);
    assert_eq!(verify(&app, &admin).await["entries"], 0);
}

#[tokio::test]
async fn reconciliation_gives_back_a_charge_taken_for_an_order_cancelled_while_pending() {
    let fake = FakeProvider::start().await;
    let app = app_on(&fake, "2").await;
    let Pending { admin, ada, mug, order: pending } = pending_order(&app, &fake).await;
    let id = pending["id"].as_str().unwrap();
    app.post_json_authed(&format!("/v1/orders/{id}/cancel"), &ada.access, &json!({})).await.expect(200);

    let refunds = void_refunds(&fake).await;
    assert_eq!((refunds[0].field("payment_intent"), refunds[0].field("amount")), (Some("pi_fake_1"), Some("2500")));
    assert_eq!(refunds[0].idempotency_key, Some(format!("keel_void_{id}")));
    assert_eq!(order(&app, &ada, id).await["status"], "cancelled");
    assert_eq!(available(&app, &mug).await, 10);
    assert_eq!(verify(&app, &admin).await["entries"], 0);
}

#[tokio::test]
async fn unsigned_forged_stale_and_unconfigured_webhooks_are_400_invalid_signature() {
    let fake = FakeProvider::start().await;
    let app = app_on(&fake, "3600").await;
    let body = event("evt_x", "payment_intent.succeeded", "ord_unknown", 100, "usd");
    let now = chrono::Utc::now().timestamp();
    deliver(&app, None, &body).await.problem(400, "invalid_signature");
    deliver(&app, Some(signature("another secret entirely", now, &body)), &body).await.problem(400, "invalid_signature");
    deliver(&app, Some(signature(SECRET, now - 301, &body)), &body).await.problem(400, "invalid_signature");
    deliver(&app, Some("t=1,v1=zz".to_owned()), &body).await.problem(400, "invalid_signature");
    let garbage = "{\"not\": \"an event\"}";
    deliver(&app, Some(signature(SECRET, now, garbage)), garbage).await.problem(400, "malformed_json");
    // Signed and read, but it names no order of this shop: acknowledged, nothing to do.
    webhook(&app, &body).await.expect(200);
    webhook(&app, &json!({"id": "evt_c", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}).to_string()).await.expect(200);

    let unconfigured = spawn_app().await;
    deliver(&unconfigured, Some(signature(SECRET, now, &body)), &body).await.problem(400, "invalid_signature");
}

#[tokio::test]
async fn a_paid_order_is_mailed_one_receipt() {
    let app = spawn_app().await;
    let (admin, mug, ada) = shop(&app).await;
    top_up(&app, &ada, 5000, "tok_visa").await.expect(201);
    add(&app, &ada, &mug, 2).await;
    let paid = checkout(&app, &ada, &json!({ "payment_method": "wallet" })).await.expect(201).json();
    let id = paid["id"].as_str().unwrap();

    let subject = format!("Receipt for your order {id}");
    let receipt =
        eventually(30, "the receipt mail", || async { mail_files(&app.data_dir).into_iter().find(|m| m.contains(&subject)) }).await;
    assert!(receipt.contains("To: ada@example.com"), "{receipt}");
    assert!(receipt.contains("25.00 USD"), "the total: {receipt}");
    let job = &app.get_authed("/v1/admin/jobs?kind=orders.receipt", &admin.access).await.expect(200).json()["data"][0];
    assert_eq!(job["state"], "done");
    assert_eq!(mail_files(&app.data_dir).iter().filter(|m| m.contains(&subject)).count(), 1);
}
