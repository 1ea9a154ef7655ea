//! Checkout: wallet and card payments, every provider outcome, stock held all-or-nothing, no
//! oversell under concurrency, and idempotent replays.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, Reply, TestApp, Tokens, spawn_app};
use crate::wallet::{balance, idem_post, top_up, usd, verify};

pub async fn product(app: &TestApp, admin: &Tokens, sku: &str, price: i64, stock: i64) -> String {
    let body = json!({ "sku": sku, "name": format!("Item {sku}"), "category": "misc", "price": usd(price), "stock": stock });
    app.post_json_authed("/v1/admin/products", &admin.access, &body).await.expect(201).json()["id"].as_str().unwrap().to_owned()
}

pub async fn add(app: &TestApp, who: &Tokens, product_id: &str, quantity: u32) {
    let path = format!("/v1/cart/items/{product_id}");
    app.call(reqwest::Method::PUT, &path, Some(&who.access), Some(&json!({ "quantity": quantity }))).await.expect(200);
}

pub async fn checkout(app: &TestApp, who: &Tokens, body: &Value) -> Reply {
    idem_post(app, "/v1/checkout", who, &uuid::Uuid::new_v4().to_string(), body).await
}

pub async fn available(app: &TestApp, product_id: &str) -> i64 {
    app.get(&format!("/v1/products/{product_id}")).await.expect(200).json()["stock_available"].as_i64().unwrap()
}

pub async fn orders_of(app: &TestApp, who: &Tokens) -> Vec<Value> {
    app.get_authed("/v1/orders?limit=100", &who.access).await.expect(200).json()["data"].as_array().unwrap().clone()
}

/// The usual cast: an admin, a product `MUG-1` at 12.50 with 10 in stock, and a customer.
pub async fn shop(app: &TestApp) -> (Tokens, String, Tokens) {
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let mug = product(app, &admin, "MUG-1", 1250, 10).await;
    (admin, mug, app.customer("ada@example.com").await)
}

async fn cart_total(app: &TestApp, who: &Tokens) -> usize {
    app.get_authed("/v1/cart", &who.access).await.expect(200).json()["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_wallet_checkout_pays_from_the_wallet_sells_the_stock_and_empties_the_cart() {
    let app = spawn_app().await;
    let (admin, mug, ada) = shop(&app).await;
    top_up(&app, &ada, 5000, "tok_visa").await.expect(201);
    add(&app, &ada, &mug, 2).await;

    let order = checkout(&app, &ada, &json!({ "payment_method": "wallet" })).await.expect(201).json();
    assert!(order["id"].as_str().unwrap().starts_with("ord_"), "{order}");
    assert_eq!(order["status"], "paid");
    assert_eq!((order["subtotal"].clone(), order["total"].clone(), order["refunded"].clone()), (usd(2500), usd(2500), usd(0)));
    assert_eq!(order["payment"], json!({ "method": "wallet", "status": "succeeded", "provider_ref": null }));
    assert_eq!(
        order["items"],
        json!([{ "product_id": mug, "name": "Item MUG-1", "quantity": 2, "unit_price": usd(1250), "line_total": usd(2500) }])
    );
    assert_eq!(balance(&app, &ada).await, 2500);
    assert_eq!(available(&app, &mug).await, 8);
    assert_eq!(cart_total(&app, &ada).await, 0);
    assert_eq!(app.get_authed(&format!("/v1/orders/{}", order["id"].as_str().unwrap()), &ada.access).await.expect(200).json(), order);
    assert_eq!(verify(&app, &admin).await["balanced"], true);
}

#[tokio::test]
async fn insufficient_funds_is_402_and_holds_nothing() {
    let app = spawn_app().await;
    let (_admin, mug, ada) = shop(&app).await;
    top_up(&app, &ada, 1000, "tok_visa").await.expect(201);
    add(&app, &ada, &mug, 1).await;
    checkout(&app, &ada, &json!({ "payment_method": "wallet" })).await.problem(402, "insufficient_funds");
    assert_eq!(balance(&app, &ada).await, 1000);
    assert_eq!(available(&app, &mug).await, 10);
    assert_eq!(cart_total(&app, &ada).await, 1);
    assert_eq!(orders_of(&app, &ada).await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_card_checkout_with_tok_visa_is_paid_and_posted_from_clearing() {
    let app = spawn_app().await;
    let (admin, mug, ada) = shop(&app).await;
    add(&app, &ada, &mug, 3).await;
    let order = checkout(&app, &ada, &json!({ "payment_method": "card", "card_token": "tok_visa" })).await.expect(201).json();
    assert_eq!(order["status"], "paid");
    assert_eq!(order["payment"]["method"], "card");
    assert_eq!(order["payment"]["status"], "succeeded");
    assert!(order["payment"]["provider_ref"].as_str().is_some_and(|r| r.starts_with("pi_")), "{order}");
    assert_eq!(available(&app, &mug).await, 7);
    assert_eq!(cart_total(&app, &ada).await, 0);
    assert_eq!(verify(&app, &admin).await["balanced"], true);
}

#[tokio::test]
async fn a_declined_or_failing_card_fails_the_order_and_holds_nothing() {
    let app = spawn_app().await;
    let (admin, mug, ada) = shop(&app).await;
    add(&app, &ada, &mug, 4).await;
    checkout(&app, &ada, &json!({ "payment_method": "card", "card_token": "tok_chargeDeclined" })).await.problem(402, "payment_declined");
    assert_eq!(available(&app, &mug).await, 10);
    checkout(&app, &ada, &json!({ "payment_method": "card", "card_token": "tok_error" }))
        .await
        .problem(503, "payment_provider_unavailable");
    assert_eq!(available(&app, &mug).await, 10);
    let orders = orders_of(&app, &ada).await;
    let states: Vec<_> = orders.iter().map(|o| (o["status"].clone(), o["payment"]["status"].clone())).collect();
    assert_eq!(states, [(json!("failed"), json!("failed")), (json!("failed"), json!("declined"))], "newest first");
    assert_eq!(cart_total(&app, &ada).await, 1, "a failed checkout keeps the cart");
    assert_eq!(verify(&app, &admin).await["entries"], 0, "no money moved");
}

/// The sandbox takes a `tok_timeout` charge and loses every answer to `charge`; checkout asks
/// again by the charge's idempotency key, finds it succeeded, and the order is paid once.
#[tokio::test]
async fn a_lost_card_answer_is_found_by_its_key_and_paid_once() {
    let app = spawn_app().await;
    let (admin, mug, ada) = shop(&app).await;
    add(&app, &ada, &mug, 1).await;
    let order = checkout(&app, &ada, &json!({ "payment_method": "card", "card_token": "tok_timeout" })).await.expect(201).json();
    assert_eq!(order["status"], "paid");
    assert_eq!(available(&app, &mug).await, 9);
    assert_eq!(verify(&app, &admin).await["balanced"], true);
}

#[tokio::test]
async fn short_lines_are_flagged_in_the_cart_named_by_checkout_and_nothing_is_held() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let plenty = product(&app, &admin, "PLENTY", 100, 10).await;
    let scarce = product(&app, &admin, "SCARCE", 100, 1).await;
    let ada = app.customer("ada@example.com").await;
    top_up(&app, &ada, 5000, "tok_visa").await.expect(201);
    add(&app, &ada, &plenty, 2).await;
    add(&app, &ada, &scarce, 3).await;
    let cart = app.get_authed("/v1/cart", &ada.access).await.expect(200).json();
    let flags: Vec<_> =
        cart["items"].as_array().unwrap().iter().map(|i| (i["available"].clone(), i["insufficient_stock"].clone())).collect();
    assert_eq!(flags, [(json!(10), json!(false)), (json!(1), json!(true))], "{cart}");
    let reply = checkout(&app, &ada, &json!({ "payment_method": "wallet" })).await;
    let problem = reply.problem(409, "insufficient_stock");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 1, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "items[1]");
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains(&scarce), "{problem}");
    assert_eq!((available(&app, &plenty).await, available(&app, &scarce).await), (10, 1));
    assert_eq!(balance(&app, &ada).await, 5000);
}

#[tokio::test]
async fn an_empty_cart_or_a_missing_card_token_is_422() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let mug = product(&app, &admin, "MUG-1", 100, 10).await;
    let ada = app.customer("ada@example.com").await;
    checkout(&app, &ada, &json!({ "payment_method": "wallet" })).await.field_error_code("items", "empty");
    add(&app, &ada, &mug, 1).await;
    checkout(&app, &ada, &json!({ "payment_method": "card" })).await.field_error_code("card_token", "required");
    checkout(&app, &ada, &json!({ "payment_method": "wallet", "card_token": "tok_visa" }))
        .await
        .field_error_code("card_token", "unexpected");
}

#[tokio::test]
async fn the_same_key_twice_places_one_order_and_replays_it() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let mug = product(&app, &admin, "MUG-1", 100, 10).await;
    let ada = app.customer("ada@example.com").await;
    top_up(&app, &ada, 1000, "tok_visa").await.expect(201);
    add(&app, &ada, &mug, 1).await;
    let body = json!({ "payment_method": "wallet" });
    let first = idem_post(&app, "/v1/checkout", &ada, "checkout-1", &body).await.expect(201);
    let again = idem_post(&app, "/v1/checkout", &ada, "checkout-1", &body).await.expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text);
    assert_eq!(orders_of(&app, &ada).await.len(), 1);
    assert_eq!(balance(&app, &ada).await, 900);
    assert_eq!(available(&app, &mug).await, 9);
}

/// `n` customers, each with `funds` in the wallet and one `product_id` in the cart, set up 16 at
/// a time: registering hashes a password (Argon2), which the server spreads over every core.
async fn buyers(app: &TestApp, n: usize, funds: i64, product_id: &str) -> Vec<Tokens> {
    use futures::StreamExt as _;
    futures::stream::iter(0..n)
        .map(|i| async move {
            let who = app.customer(&format!("buyer{i}@example.com")).await;
            top_up(app, &who, funds, "tok_visa").await.expect(201);
            add(app, &who, product_id, 1).await;
            who
        })
        .buffer_unordered(16)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_checkouts_for_ten_units_sell_exactly_ten() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let mug = product(&app, &admin, "MUG-1", 100, 10).await;
    let buyers = buyers(&app, 200, 100, &mug).await;

    let wallet = json!({ "payment_method": "wallet" });
    let replies = futures::future::join_all(buyers.iter().map(|who| checkout(&app, who, &wallet))).await;
    let mut paid = Vec::new();
    for reply in replies {
        if reply.status == 201 {
            let order = reply.json();
            assert_eq!(order["status"], "paid", "{order}");
            paid.push(order["id"].as_str().unwrap().to_owned());
        } else {
            reply.problem(409, "insufficient_stock");
        }
    }
    assert_eq!(paid.len(), 10, "exactly the stock is sold; the other 190 are 409 insufficient_stock");
    assert_eq!(available(&app, &mug).await, 0);

    let orders = app.all_pages("/v1/admin/orders", &admin.access, &[], 100).await.concat();
    let mut listed: Vec<String> = orders.iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect();
    assert!(orders.iter().all(|o| o["status"] == "paid"), "a refused checkout leaves no order: {orders:#?}");
    listed.sort();
    paid.sort();
    assert_eq!(listed, paid);
    // Only the ten buyers paid: every other wallet still holds its top-up.
    let balances = futures::future::join_all(buyers.iter().map(|who| balance(&app, who))).await;
    assert_eq!(balances.iter().filter(|b| **b == 0).count(), 10, "{balances:?}");
    assert_eq!(balances.iter().filter(|b| **b == 100).count(), 190, "{balances:?}");
    let report = verify(&app, &admin).await;
    assert_eq!(report["balanced"], true, "{report}");
}
