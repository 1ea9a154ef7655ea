//! The back office's live feed (`GET /v1/admin/events`): every customer's order changes and
//! every product change, for staff only.

use serde_json::{Value, json};

use super::{Sse, ticket};
use crate::checkout::{add, checkout, shop};
use crate::helpers::{PASSWORD, spawn_app};
use crate::wallet::top_up;

/// The next `order.updated` of the feed; anything else on it must be a product change.
async fn next_order_event(feed: &mut Sse) -> Value {
    loop {
        let event = feed.event().await;
        match event["type"].as_str() {
            Some("order.updated") => return event,
            Some("product.updated") => continue,
            other => panic!("the staff feed carries order and product changes only, got {other:?}: {event}"),
        }
    }
}

#[tokio::test]
async fn the_staff_feed_carries_every_customers_order_changes_as_they_happen() {
    let app = spawn_app().await;
    let (admin, mug, ada) = shop(&app).await;
    let support = app.create_staff("help@example.com", PASSWORD, "support").await;
    let mut feed = Sse::open_at(&app, "/v1/admin/events", &support, None).await;
    top_up(&app, &ada, 5000, "tok_visa").await.expect(201);
    add(&app, &ada, &mug, 1).await;
    let order = checkout(&app, &ada, &json!({ "payment_method": "wallet" })).await.expect(201).json();

    let paid = next_order_event(&mut feed).await;
    assert_eq!(paid["data"]["id"], order["id"]);
    assert_eq!(paid["data"]["status"], "paid");
    app.post_json_authed(&format!("/v1/admin/orders/{}/ship", order["id"].as_str().unwrap()), &admin.access, &json!({})).await.expect(200);
    let shipped = next_order_event(&mut feed).await;
    assert_eq!((&shipped["data"]["id"], shipped["data"]["status"].as_str()), (&order["id"], Some("shipped")));
}

#[tokio::test]
async fn only_staff_may_open_the_staff_feed() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    app.get("/v1/admin/events").await.problem(401, "unauthenticated");
    app.get_authed("/v1/admin/events", &ada.access).await.problem(403, "forbidden");
    let ticket = ticket(&app, &ada).await;
    app.get(&format!("/v1/admin/events?ticket={ticket}")).await.problem(403, "forbidden");
}
