//! Every integer a client sends, at its extremes: `i64::MIN`, `i64::MAX`, `-1` and `0`, and
//! numbers no 64-bit integer holds. Each is either taken (where it is in range) or refused with
//! `422 validation_failed` naming the field, never a 409, a 500 or a panic.

use reqwest::Method;
use serde_json::{Value, json};

use crate::checkout::{add, checkout, product};
use crate::helpers::{PASSWORD, Reply, TestApp, Tokens, spawn_app};
use crate::wallet::top_up;

/// Stands for the number under test in a body template.
const N: &str = "__N__";

/// What a value should get: a success status, or `422` naming a field.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Ok(u16),
    Invalid,
}
use Expect::{Invalid, Ok};

/// The four extremes, then three numbers that fit no `i64`, each with what it should get.
fn extremes(min: Expect, max: Expect, minus_one: Expect, zero: Expect) -> Vec<(String, Expect)> {
    let mut cases: Vec<(String, Expect)> =
        [(i64::MIN, min), (i64::MAX, max), (-1, minus_one), (0, zero)].into_iter().map(|(n, e)| (n.to_string(), e)).collect();
    cases.extend(["9223372036854775808", "-9223372036854775809", "1.5", "1e400"].map(|n| (n.to_owned(), Invalid)));
    cases
}

/// The JSON text of `template` with the placeholder replaced by the raw number `n`.
fn body_with(template: &Value, n: &str) -> String {
    template.to_string().replace(&format!("\"{N}\""), n)
}

async fn send(app: &TestApp, method: Method, path: &str, who: &Tokens, body: Option<String>) -> Reply {
    let mut request = app.request(method, path).bearer_auth(&who.access).header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body);
    }
    app.send(request).await
}

/// Sends `template` with each case in place of the placeholder and checks the answer.
async fn check_body(app: &TestApp, method: Method, path: &str, who: &Tokens, template: Value, field: &str, cases: Vec<(String, Expect)>) {
    for (n, expect) in cases {
        let reply = send(app, method.clone(), &path.replace(N, &n), who, Some(body_with(&template, &n))).await;
        expect_reply(&reply, expect, field, &format!("{method} {path} with {field} = {n}"));
    }
}

/// Sends `path` (with the placeholder in its query) for each case and checks the answer.
async fn check_query(app: &TestApp, path: &str, who: &Tokens, field: &str, cases: Vec<(String, Expect)>) {
    for (n, expect) in cases {
        let reply = send(app, Method::GET, &path.replace(N, &n), who, None).await;
        expect_reply(&reply, expect, field, &format!("GET {path} with {field} = {n}"));
    }
}

#[track_caller]
fn expect_reply(reply: &Reply, expect: Expect, field: &str, what: &str) {
    match expect {
        Ok(status) => assert_eq!(reply.status.as_u16(), status, "{what}: {}", reply.text),
        Invalid => {
            assert_eq!(reply.status.as_u16(), 422, "{what}: {}", reply.text);
            let errors = reply.problem(422, "validation_failed")["errors"].clone();
            assert!(errors.as_array().unwrap().iter().any(|e| e["field"] == field), "{what}: names `{field}` in {errors}");
        }
    }
}

fn usd(amount: &str) -> Value {
    json!({ "amount": amount, "currency": "USD" })
}

#[tokio::test]
async fn catalog_integers_at_their_extremes() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let create =
        |sku: &str, price: Value, stock: Value| json!({ "sku": sku, "name": "Item", "category": "misc", "price": price, "stock": stock });
    let mut sku = 0;
    for (n, expect) in extremes(Invalid, Invalid, Invalid, Ok(201)) {
        sku += 1;
        let body = body_with(&create(&format!("P-{sku}"), usd(N), json!(5)), &n);
        let reply = send(&app, Method::POST, "/v1/admin/products", &admin, Some(body)).await;
        expect_reply(&reply, expect, "price.amount", &format!("price {n}"));
        sku += 1;
        let body = body_with(&create(&format!("P-{sku}"), json!({ "amount": 100, "currency": "USD" }), json!(N)), &n);
        let reply = send(&app, Method::POST, "/v1/admin/products", &admin, Some(body)).await;
        expect_reply(&reply, expect, "stock", &format!("stock {n}"));
    }
    let id = product(&app, &admin, "MUG-1", 100, 5).await;
    let patch = format!("/v1/admin/products/{id}");
    check_body(
        &app,
        Method::PATCH,
        &patch,
        &admin,
        json!({ "price": usd(N) }),
        "price.amount",
        extremes(Invalid, Invalid, Invalid, Ok(200)),
    )
    .await;
    let adjust = format!("/v1/admin/products/{id}/stock-adjustments");
    let body = json!({ "delta": N, "reason": "count" });
    check_body(&app, Method::POST, &adjust, &admin, body, "delta", extremes(Invalid, Invalid, Ok(200), Invalid)).await;
    check_query(&app, "/v1/products?min_price=__N__", &admin, "min_price", extremes(Invalid, Invalid, Invalid, Ok(200))).await;
    check_query(&app, "/v1/products?max_price=__N__", &admin, "max_price", extremes(Invalid, Invalid, Invalid, Ok(200))).await;
    check_query(&app, &format!("/v1/products/{id}/quote?quantity=__N__"), &admin, "quantity", extremes(Invalid, Invalid, Invalid, Invalid))
        .await;
    for list in ["/v1/products?limit=__N__", "/v1/admin/pricing/rules?limit=__N__", "/v1/admin/jobs?limit=__N__"] {
        check_query(&app, list, &admin, "limit", extremes(Invalid, Invalid, Invalid, Invalid)).await;
    }
}

#[tokio::test]
async fn pricing_rule_integers_at_their_extremes() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let rules = "/v1/admin/pricing/rules";
    let percent =
        |conditions: Value| json!({ "name": "R", "kind": "promotion", "conditions": conditions, "effect": { "percent_bps": -500 } });
    let mut body = percent(json!({}));
    body["priority"] = json!(N);
    check_body(&app, Method::POST, rules, &admin, body, "priority", extremes(Invalid, Invalid, Ok(201), Ok(201))).await;
    let body = json!({ "name": "R", "kind": "promotion", "effect": { "percent_bps": N } });
    check_body(&app, Method::POST, rules, &admin, body, "effect.percent_bps", extremes(Invalid, Invalid, Ok(201), Invalid)).await;
    let body = json!({ "name": "R", "kind": "promotion", "effect": { "amount_off": usd(N) } });
    check_body(&app, Method::POST, rules, &admin, body, "effect.amount_off.amount", extremes(Invalid, Invalid, Invalid, Invalid)).await;
    let body = json!({ "name": "R", "kind": "quantity_tier", "conditions": { "min_quantity": N }, "effect": { "percent_bps": -500 } });
    check_body(&app, Method::POST, rules, &admin, body, "conditions.min_quantity", extremes(Invalid, Invalid, Invalid, Invalid)).await;
    let demand = |window: Value, cap: Value| json!({ "name": "D", "kind": "demand", "conditions": { "demand_window_hours": window, "demand_cap_bps": cap }, "effect": { "percent_bps": 10 } });
    let field = "conditions.demand_window_hours";
    check_body(&app, Method::POST, rules, &admin, demand(json!(N), json!(500)), field, extremes(Invalid, Invalid, Invalid, Invalid)).await;
    let field = "conditions.demand_cap_bps";
    check_body(&app, Method::POST, rules, &admin, demand(json!(24), json!(N)), field, extremes(Invalid, Invalid, Invalid, Invalid)).await;

    let created = app.post_json_authed(rules, &admin.access, &percent(json!({}))).await.expect(201).json();
    let path = format!("{rules}/{}", created["id"].as_str().unwrap());
    let body = json!({ "effect": { "percent_bps": N } });
    check_body(&app, Method::PATCH, &path, &admin, body, "effect.percent_bps", extremes(Invalid, Invalid, Ok(200), Invalid)).await;
    check_body(&app, Method::PATCH, &path, &admin, json!({ "priority": N }), "priority", extremes(Invalid, Invalid, Ok(200), Ok(200)))
        .await;
}

#[tokio::test]
async fn cart_wallet_and_refund_integers_at_their_extremes() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let mug = product(&app, &admin, "MUG-1", 100, 10).await;
    let ada = app.customer("ada@example.com").await;
    app.customer("bob@example.com").await;
    let item = format!("/v1/cart/items/{mug}");
    check_body(&app, Method::PUT, &item, &ada, json!({ "quantity": N }), "quantity", extremes(Invalid, Invalid, Invalid, Ok(200))).await;

    let top_ups = "/v1/wallet/top-ups";
    let body = json!({ "amount": usd(N), "card_token": "tok_visa" });
    check_body(&app, Method::POST, top_ups, &ada, body, "amount.amount", extremes(Invalid, Invalid, Invalid, Invalid)).await;
    let body = json!({ "amount": usd(N), "to_email": "bob@example.com" });
    check_body(&app, Method::POST, "/v1/wallet/transfers", &ada, body, "amount.amount", extremes(Invalid, Invalid, Invalid, Invalid)).await;

    top_up(&app, &ada, 1000, "tok_visa").await.expect(201);
    add(&app, &ada, &mug, 1).await;
    let order = checkout(&app, &ada, &json!({ "payment_method": "wallet" })).await.expect(201).json();
    let refunds = format!("/v1/admin/orders/{}/refunds", order["id"].as_str().unwrap());
    let body = json!({ "amount": usd(N), "reason": "test" });
    check_body(&app, Method::POST, &refunds, &admin, body, "amount.amount", extremes(Invalid, Invalid, Invalid, Invalid)).await;
}
