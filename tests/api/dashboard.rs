//! The back office's dashboard: today's orders and revenue, the job queue and the outbox.

use serde_json::{Value, json};

use crate::checkout::{add, checkout, product};
use crate::helpers::{PASSWORD, spawn_app_with};
use crate::wallet::{idem_post, top_up, usd};

#[tokio::test]
async fn the_dashboard_counts_todays_orders_revenue_net_of_refunds_and_the_job_queue() {
    // No workers: the queued jobs stay where they are while the figures are compared.
    let app = spawn_app_with(&[("run_workers", "false")]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let support = app.create_staff("help@example.com", PASSWORD, "support").await;
    let ada = app.customer("ada@example.com").await;
    let mug = product(&app, &admin, "MUG-1", 1250, 10).await;

    let empty = app.get_authed("/v1/admin/dashboard", &support.access).await.expect(200).json();
    assert_eq!((empty["orders_today"].as_i64(), &empty["revenue_today"]), (Some(0), &usd(0)));

    top_up(&app, &ada, 5000, "tok_visa").await.expect(201);
    add(&app, &ada, &mug, 2).await;
    let paid = checkout(&app, &ada, &json!({ "payment_method": "wallet" })).await.expect(201).json();
    let id = paid["id"].as_str().unwrap();
    let refund = json!({ "amount": usd(500), "reason": "one mug arrived chipped" });
    idem_post(&app, &format!("/v1/admin/orders/{id}/refunds"), &admin, "refund-1", &refund).await.expect(201);
    add(&app, &ada, &mug, 1).await;
    checkout(&app, &ada, &json!({ "payment_method": "card", "card_token": "tok_chargeDeclined" })).await.problem(402, "payment_declined");

    let board = app.get_authed("/v1/admin/dashboard", &support.access).await.expect(200).json();
    assert_eq!(board["orders_today"], 2, "the paid order and the declined one: {board}");
    assert_eq!(board["revenue_today"], usd(2 * 1250 - 500), "only the paid order counts, net of its refund: {board}");
    let queued = app.get_authed("/v1/admin/jobs?state=queued&limit=100", &admin.access).await.expect(200).json();
    assert_eq!(board["jobs"]["queued"].as_u64(), Some(queued["data"].as_array().unwrap().len() as u64), "{board}");
    assert_eq!(board["jobs"]["dead"], 0);
    assert!(board["outbox_lag_events"].as_i64().is_some_and(|n| n >= 0), "{board}");
    let since: Value = board["since"].clone();
    assert!(since.as_str().is_some_and(|s| s.ends_with("T00:00:00Z")), "today starts at midnight UTC: {since}");

    app.get_authed("/v1/admin/dashboard", &ada.access).await.problem(403, "forbidden");
}
