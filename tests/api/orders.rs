//! Orders after checkout: the caller's list and reads, and the back office's list and state moves.

use serde_json::json;

use crate::checkout::{add, checkout, product};
use crate::helpers::{PASSWORD, spawn_app};
use crate::wallet::top_up;

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
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let support = app.create_staff("help@example.com", PASSWORD, "support").await;
    let mug = product(&app, &admin, "MUG-1", 100, 10).await;
    let ada = app.customer("ada@example.com").await;
    top_up(&app, &ada, 1000, "tok_visa").await.expect(201);
    add(&app, &ada, &mug, 1).await;
    let id = checkout(&app, &ada, &json!({ "payment_method": "wallet" })).await.expect(201).json()["id"].as_str().unwrap().to_owned();

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
