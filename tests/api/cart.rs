//! The cart: lines, live prices, coupons, bad input, and persistence across restarts.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app};

async fn product(app: &TestApp, admin: &Tokens, sku: &str, price: i64) -> String {
    let body = json!({ "sku": sku, "name": format!("Item {sku}"), "category": "misc", "price": { "amount": price, "currency": "USD" }, "stock": 100 });
    app.post_json_authed("/v1/admin/products", &admin.access, &body).await.expect(201).json()["id"].as_str().unwrap().to_owned()
}

async fn put(app: &TestApp, who: &Tokens, id: &str, quantity: Value) -> crate::helpers::Reply {
    app.call(reqwest::Method::PUT, &format!("/v1/cart/items/{id}"), Some(&who.access), Some(&json!({ "quantity": quantity }))).await
}

#[tokio::test]
async fn the_cart_is_priced_live_and_survives_a_restart() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let a = product(&app, &admin, "A-1", 1000).await;
    let b = product(&app, &admin, "B-1", 250).await;
    put(&app, &ada, &a, json!(2)).await.expect(200);
    let cart = put(&app, &ada, &b, json!(4)).await.expect(200).json();
    assert_eq!(cart["items"].as_array().unwrap().len(), 2);
    assert_eq!(cart["items"][0]["line_total"]["amount"], 2000);
    assert_eq!(cart["subtotal"]["amount"], 3000);
    assert_eq!(cart["total"]["amount"], 3000);
    assert!(cart["coupon_code"].is_null());

    // A price change shows at once.
    app.patch_json_authed(&format!("/v1/admin/products/{b}"), &admin.access, &json!({ "price": { "amount": 300, "currency": "USD" } }))
        .await
        .expect(200);
    assert_eq!(app.get_authed("/v1/cart", &ada.access).await.expect(200).json()["total"]["amount"], 3200);

    let app = app.restart().await;
    let cart = app.get_authed("/v1/cart", &ada.access).await.expect(200).json();
    assert_eq!(cart["items"].as_array().unwrap().len(), 2);
    let cart = put(&app, &ada, &a, json!(0)).await.expect(200).json();
    assert_eq!(cart["items"].as_array().unwrap().len(), 1);
    let cart = app.delete_authed(&format!("/v1/cart/items/{b}"), &ada.access).await.expect(200).json();
    assert!(cart["items"].as_array().unwrap().is_empty());
    assert_eq!(cart["total"]["amount"], 0);
}

#[tokio::test]
async fn coupons_apply_promotions_and_unknown_codes_are_refused() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let a = product(&app, &admin, "A-1", 1000).await;
    let promo =
        json!({ "name": "Welcome", "kind": "promotion", "conditions": { "coupon_code": "WELCOME10" }, "effect": { "percent_bps": -1000 } });
    app.post_json_authed("/v1/admin/pricing/rules", &admin.access, &promo).await.expect(201);
    put(&app, &ada, &a, json!(3)).await.expect(200);
    let coupon = |code: &str| {
        let body = json!({ "code": code });
        let (app, ada) = (&app, &ada);
        async move { app.call(reqwest::Method::PUT, "/v1/cart/coupon", Some(&ada.access), Some(&body)).await }
    };
    coupon("NOPE").await.field_error("code");
    let cart = coupon("welcome10").await.expect(200).json();
    assert_eq!(cart["coupon_code"], "WELCOME10");
    assert_eq!(cart["adjustments"][0]["amount"]["amount"], -300);
    assert_eq!(cart["total"]["amount"], 2700);
    let cart = app.delete_authed("/v1/cart/coupon", &ada.access).await.expect(200).json();
    assert_eq!(cart["total"]["amount"], 3000);
}

#[tokio::test]
async fn cart_adjustments_are_listed_in_the_order_the_rules_apply() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let a = product(&app, &admin, "A-1", 1000).await;
    let b = product(&app, &admin, "B-1", 250).await;
    // Created in the opposite order of their priorities; the first line sees only the later rule.
    let rule = |body: Value| {
        let (app, admin) = (&app, &admin);
        async move { app.post_json_authed("/v1/admin/pricing/rules", &admin.access, &body).await.expect(201).json()["id"].clone() }
    };
    let everything = rule(json!({ "name": "Everything", "kind": "promotion", "priority": 20, "effect": { "percent_bps": -1000 } })).await;
    let only_b = rule(json!({ "name": "Only B", "kind": "promotion", "priority": -5, "conditions": { "product_ids": [b] },
        "effect": { "amount_off": { "amount": 100, "currency": "USD" } } }))
    .await;
    put(&app, &ada, &a, json!(1)).await.expect(200);
    put(&app, &ada, &b, json!(4)).await.expect(200);
    let cart = app.get_authed("/v1/cart", &ada.access).await.expect(200).json();
    let adjustments: Vec<(Value, i64)> =
        cart["adjustments"].as_array().unwrap().iter().map(|a| (a["rule_id"].clone(), a["amount"]["amount"].as_i64().unwrap())).collect();
    // A: 1000 − 10 % = 900. B: 1000 − 4 × 100 = 600, − 10 % = 540. Summed per rule, in priority order.
    assert_eq!(adjustments, [(only_b, -400), (everything, -160)]);
    assert_eq!(cart["subtotal"]["amount"], 2000);
    assert_eq!(cart["total"]["amount"], 1440);
}

#[tokio::test]
async fn bad_lines_are_refused_and_deactivated_products_leave_the_cart() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let a = product(&app, &admin, "A-1", 1000).await;
    put(&app, &ada, &a, json!(1000)).await.field_error("quantity");
    put(&app, &ada, &a, json!(-1)).await.problem(422, "validation_failed");
    put(&app, &ada, &a, json!("two")).await.problem(422, "validation_failed");
    put(&app, &ada, "prd_nope", json!(1)).await.field_error("product_id");
    put(&app, &ada, &a, json!(2)).await.expect(200);
    app.delete_authed(&format!("/v1/admin/products/{a}"), &admin.access).await.expect(204);
    put(&app, &ada, &a, json!(3)).await.field_error("product_id");
    assert!(app.get_authed("/v1/cart", &ada.access).await.expect(200).json()["items"].as_array().unwrap().is_empty());
    app.get("/v1/cart").await.problem(401, "unauthenticated");
}

#[tokio::test]
async fn clearing_a_cart_empties_its_lines_and_coupon_and_no_other_cart() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    let a = product(&app, &admin, "A-1", 1000).await;
    let b = product(&app, &admin, "B-1", 250).await;
    let promo =
        json!({ "name": "Welcome", "kind": "promotion", "conditions": { "coupon_code": "WELCOME10" }, "effect": { "percent_bps": -1000 } });
    app.post_json_authed("/v1/admin/pricing/rules", &admin.access, &promo).await.expect(201);
    for who in [&ada, &bob] {
        put(&app, who, &a, json!(2)).await.expect(200);
        put(&app, who, &b, json!(1)).await.expect(200);
        app.call(reqwest::Method::PUT, "/v1/cart/coupon", Some(&who.access), Some(&json!({ "code": "WELCOME10" }))).await.expect(200);
    }
    // The control: a full cart with a coupon and a discount.
    let full = app.get_authed("/v1/cart", &ada.access).await.expect(200).json();
    assert_eq!(full["items"].as_array().unwrap().len(), 2);
    assert_eq!((full["coupon_code"].as_str(), full["total"]["amount"].as_i64()), (Some("WELCOME10"), Some(2025)), "{full}");
    let stock = |id: String| {
        let app = &app;
        async move { app.get(&format!("/v1/products/{id}")).await.expect(200).json()["stock_available"].clone() }
    };
    let stock_before = (stock(a.clone()).await, stock(b.clone()).await);

    let cleared = app.delete_authed("/v1/cart", &ada.access).await.expect(204);
    assert!(cleared.text.is_empty());
    let cart = app.get_authed("/v1/cart", &ada.access).await.expect(200).json();
    assert!(cart["items"].as_array().unwrap().is_empty(), "{cart}");
    assert!(cart["coupon_code"].is_null() && cart["adjustments"].as_array().unwrap().is_empty(), "{cart}");
    assert_eq!((cart["subtotal"]["amount"].as_i64(), cart["total"]["amount"].as_i64()), (Some(0), Some(0)));
    // A cart holds no stock: clearing it leaves what is available as it was.
    assert_eq!((stock(a.clone()).await, stock(b.clone()).await), stock_before);
    // Bob's cart is untouched, and clearing an empty cart is still 204.
    assert_eq!(app.get_authed("/v1/cart", &bob.access).await.expect(200).json(), full);
    app.delete_authed("/v1/cart", &ada.access).await.expect(204);
    // A cleared cart fills again from scratch (no leftover lines come back).
    let refilled = put(&app, &ada, &b, json!(1)).await.expect(200).json();
    assert_eq!(refilled["items"].as_array().unwrap().len(), 1);
    assert!(refilled["coupon_code"].is_null());
}

#[tokio::test]
async fn bad_bodies_are_clear_client_errors() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let a = product(&app, &admin, "A-1", 1000).await;
    let raw = |path: String, body: &'static str, content_type: &'static str| {
        let (app, ada) = (&app, &ada);
        async move {
            let request = app.request(reqwest::Method::PUT, &path).bearer_auth(&ada.access).header("content-type", content_type).body(body);
            app.send(request).await
        }
    };
    let item = format!("/v1/cart/items/{a}");
    raw(item.clone(), "{\"quantity\": 1", "application/json").await.problem(400, "malformed_json");
    raw(item.clone(), "{\"quantity\": 1}", "text/plain").await.problem(415, "unsupported_media_type");
    raw(item.clone(), "{}", "application/json").await.field_error("quantity");
    raw(item.clone(), "{\"quantity\": 1, \"price\": 1}", "application/json").await.problem(422, "validation_failed");
    raw(item.clone(), "{\"quantity\": 1.5}", "application/json").await.field_error("quantity");
    raw(item, "{\"quantity\": 99999999999999999999}", "application/json").await.field_error("quantity");
    let coupon = "/v1/cart/coupon".to_owned();
    raw(coupon.clone(), "{}", "application/json").await.field_error("code");
    raw(coupon.clone(), "{\"code\": 7}", "application/json").await.field_error("code");
    raw(coupon.clone(), "{\"code\": \"\"}", "application/json").await.field_error("code");
    raw(coupon, "{\"code\": \"x\\u0000y\"}", "application/json").await.problem(422, "validation_failed");
    // Nothing of that changed the cart.
    let cart = app.get_authed("/v1/cart", &ada.access).await.expect(200).json();
    assert!(cart["items"].as_array().unwrap().is_empty() && cart["coupon_code"].is_null());
}

#[tokio::test]
async fn one_users_concurrent_line_writes_and_clears_never_fail_and_leave_a_consistent_cart() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let a = product(&app, &admin, "A-1", 1000).await;
    // Two tabs: one sets a line while the other empties the cart, over and over. Both lock the
    // cart row before its lines, so neither deadlocks the other (a deadlock would answer 500).
    let rounds = (1..=40).map(|n| {
        let (app, ada, a) = (&app, &ada, &a);
        async move {
            let (set, cleared) = tokio::join!(put(app, ada, a, json!(n)), app.delete_authed("/v1/cart", &ada.access));
            (set.status.as_u16(), cleared.status.as_u16())
        }
    });
    for (set, cleared) in futures::future::join_all(rounds).await {
        assert_eq!((set, cleared), (200, 204));
    }
    assert_eq!(
        app.execute_sql("DELETE FROM cart_items WHERE user_id NOT IN (SELECT user_id FROM carts)").await,
        0,
        "no line outlives its cart"
    );
    let cart = put(&app, &ada, &a, json!(3)).await.expect(200).json();
    assert_eq!(cart["items"].as_array().unwrap().len(), 1);
    assert_eq!(cart["items"][0]["quantity"], 3);
}
