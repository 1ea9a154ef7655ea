//! Orders after checkout: the caller's list and reads, and the back office's list and state moves.

use serde_json::json;

use crate::checkout::{add, available, checkout, product};
use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app};
use crate::wallet::{balance, idem_post, top_up, usd, verify};

async fn refund(app: &TestApp, admin: &Tokens, id: &str, body: &serde_json::Value) -> crate::helpers::Reply {
    idem_post(app, &format!("/v1/admin/orders/{id}/refunds"), admin, &uuid::Uuid::new_v4().to_string(), body).await
}

async fn cancel(app: &TestApp, who: &Tokens, id: &str) -> crate::helpers::Reply {
    app.post_json_authed(&format!("/v1/orders/{id}/cancel"), &who.access, &json!({})).await
}

/// A shop with an admin and Ada, who tops up 1000 and pays one product of `price` from her wallet:
/// `(app, admin, ada, order id)`.
async fn paid_wallet_order(price: i64) -> (TestApp, Tokens, Tokens, String) {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let mug = product(&app, &admin, "MUG-1", price, 10).await;
    let ada = app.customer("ada@example.com").await;
    top_up(&app, &ada, 1000, "tok_visa").await.expect(201);
    add(&app, &ada, &mug, 1).await;
    let id = checkout(&app, &ada, &json!({ "payment_method": "wallet" })).await.expect(201).json()["id"].as_str().unwrap().to_owned();
    (app, admin, ada, id)
}

#[tokio::test]
async fn a_user_sees_only_their_own_orders_newest_first_and_filtered_by_state() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let mug = product(&app, &admin, "MUG-1", 100, 10).await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    top_up(&app, &ada, 1000, "tok_visa").await.expect(201);
    let mut ids = Vec::new();
    for _ in 0..3 {
        add(&app, &ada, &mug, 1).await;
        ids.push(checkout(&app, &ada, &json!({ "payment_method": "wallet" })).await.expect(201).json()["id"].as_str().unwrap().to_owned());
    }
    add(&app, &ada, &mug, 1).await;
    checkout(&app, &ada, &json!({ "payment_method": "card", "card_token": "tok_chargeDeclined" })).await.problem(402, "payment_declined");

    let pages = app.all_pages("/v1/orders", &ada.access, &[("status", "paid")], 2).await;
    let listed: Vec<String> = pages.concat().iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect();
    ids.reverse();
    assert_eq!(listed, ids);
    let failed = app.get_authed("/v1/orders?status=failed", &ada.access).await.expect(200).json();
    assert_eq!(failed["data"].as_array().unwrap().len(), 1);
    app.get_authed("/v1/orders?status=lost", &ada.access).await.field_error_code("status", "invalid");

    assert_eq!(app.get_authed("/v1/orders", &bob.access).await.expect(200).json()["data"], json!([]));
    app.get_authed(&format!("/v1/orders/{}", ids[0]), &bob.access).await.problem(404, "not_found");
    app.get_authed(&format!("/v1/orders/{}", ids[0]), &ada.access).await.expect(200);
}

#[tokio::test]
async fn orders_ship_then_deliver_and_other_moves_are_invalid_state() {
    let (app, admin, ada, id) = paid_wallet_order(100).await;
    let support = app.create_staff("help@example.com", PASSWORD, "support").await;

    let deliver = format!("/v1/admin/orders/{id}/deliver");
    let ship = format!("/v1/admin/orders/{id}/ship");
    app.post_json_authed(&deliver, &admin.access, &json!({})).await.problem(409, "invalid_state");
    assert_eq!(app.post_json_authed(&ship, &admin.access, &json!({})).await.expect(200).json()["status"], "shipped");
    app.post_json_authed(&ship, &admin.access, &json!({})).await.problem(409, "invalid_state");
    assert_eq!(app.post_json_authed(&deliver, &admin.access, &json!({})).await.expect(200).json()["status"], "delivered");

    let all = app.get_query_authed("/v1/admin/orders", &support.access, &[("user_id", &ada.user_id())]).await.expect(200).json();
    assert_eq!(all["data"][0]["id"], id.as_str());
    assert_eq!(all["data"][0]["status"], "delivered");
    let none = app.get_query_authed("/v1/admin/orders", &support.access, &[("status", "paid")]).await.expect(200).json();
    assert_eq!(none["data"], json!([]));
}

#[tokio::test]
async fn cancelling_a_paid_order_returns_the_money_and_the_stock() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let mug = product(&app, &admin, "MUG-1", 300, 10).await;
    let ada = app.customer("ada@example.com").await;
    top_up(&app, &ada, 1000, "tok_visa").await.expect(201);
    add(&app, &ada, &mug, 2).await;
    let by_wallet = checkout(&app, &ada, &json!({ "payment_method": "wallet" })).await.expect(201).json();
    add(&app, &ada, &mug, 1).await;
    let by_card = checkout(&app, &ada, &json!({ "payment_method": "card", "card_token": "tok_visa" })).await.expect(201).json();
    assert_eq!((balance(&app, &ada).await, available(&app, &mug).await), (400, 7));

    let cancelled = cancel(&app, &ada, by_wallet["id"].as_str().unwrap()).await.expect(200).json();
    assert_eq!((cancelled["status"].clone(), cancelled["refunded"].clone()), (json!("cancelled"), usd(600)));
    assert_eq!((balance(&app, &ada).await, available(&app, &mug).await), (1000, 9));
    let cancelled = cancel(&app, &ada, by_card["id"].as_str().unwrap()).await.expect(200).json();
    assert_eq!(cancelled["payment"]["status"], "refunded");
    assert_eq!(available(&app, &mug).await, 10);

    cancel(&app, &ada, by_wallet["id"].as_str().unwrap()).await.problem(409, "invalid_state");
    let bob = app.customer("bob@example.com").await;
    cancel(&app, &bob, by_card["id"].as_str().unwrap()).await.problem(404, "not_found");
    assert_eq!(verify(&app, &admin).await["balanced"], true);
}

#[tokio::test]
async fn partial_refunds_add_up_to_the_total_and_no_further() {
    let (app, admin, ada, id) = paid_wallet_order(1000).await;
    let path = format!("/v1/admin/orders/{id}/refunds");
    let scratched = json!({ "amount": usd(400), "reason": "scratched" });
    let first = idem_post(&app, &path, &admin, "refund-1", &scratched).await.expect(201);
    let again = idem_post(&app, &path, &admin, "refund-1", &scratched).await.expect(201);
    assert_eq!((again.header("idempotent-replayed"), again.text.as_str()), (Some("true"), first.text.as_str()), "one refund, replayed");
    let first = first.json();
    assert_eq!((first["status"].clone(), first["refunded"].clone()), (json!("partially_refunded"), usd(400)));
    refund(&app, &admin, &id, &json!({ "amount": usd(601), "reason": "more" })).await.field_error_code("amount.amount", "out_of_range");
    let rest = refund(&app, &admin, &id, &json!({ "reason": "the rest" })).await.expect(201).json();
    assert_eq!((rest["status"].clone(), rest["refunded"].clone()), (json!("refunded"), usd(1000)));
    refund(&app, &admin, &id, &json!({ "amount": usd(1), "reason": "again" })).await.problem(409, "invalid_state");
    cancel(&app, &ada, &id).await.problem(409, "invalid_state");
    assert_eq!(balance(&app, &ada).await, 1000);
    assert_eq!(verify(&app, &admin).await["balanced"], true);
}

#[tokio::test]
async fn concurrent_partial_refunds_never_exceed_the_total() {
    // A wallet order: no provider caps the refunds, only the locked order row does.
    let (app, admin, ada, id) = paid_wallet_order(1000).await;
    let body = json!({ "amount": usd(300), "reason": "goodwill" });
    let replies = futures::future::join_all((0..10).map(|_| refund(&app, &admin, &id, &body))).await;
    let accepted = replies.iter().filter(|r| r.status == 201).count();
    for reply in replies.iter().filter(|r| r.status != 201) {
        reply.field_error_code("amount.amount", "out_of_range");
    }
    assert_eq!(accepted, 3, "3 × 300 fit in 1000, a fourth does not");
    let order = app.get_authed(&format!("/v1/orders/{id}"), &ada.access).await.expect(200).json();
    assert_eq!((order["status"].clone(), order["refunded"].clone()), (json!("partially_refunded"), usd(900)));
    assert_eq!(balance(&app, &ada).await, 900);
    assert_eq!(verify(&app, &admin).await["balanced"], true);
}

#[tokio::test]
async fn the_customer_is_notified_when_the_order_is_paid_shipped_and_refunded() {
    let (app, admin, ada, id) = paid_wallet_order(1000).await;
    app.post_json_authed(&format!("/v1/admin/orders/{id}/ship"), &admin.access, &json!({})).await.expect(200);
    refund(&app, &admin, &id, &json!({ "amount": usd(100), "reason": "late" })).await.expect(201);
    let titles = crate::support::eventually(20, "three order notifications", || async {
        let list = app.get_authed("/v1/notifications", &ada.access).await.expect(200).json()["data"].as_array().unwrap().clone();
        let titles: Vec<String> =
            list.iter().filter(|n| n["kind"] == "order.updated").map(|n| n["title"].as_str().unwrap().to_owned()).collect();
        (titles.len() == 3).then_some(titles)
    })
    .await;
    assert_eq!(titles, ["Refund issued", "Order shipped", "Order paid"], "newest first");
}
