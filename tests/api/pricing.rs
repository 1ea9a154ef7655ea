//! Pricing rules and quotes.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app};

async fn setup(app: &TestApp) -> (Tokens, String) {
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let body =
        json!({ "sku": "MUG-1", "name": "Red mug", "category": "kitchen", "price": { "amount": 1000, "currency": "USD" }, "stock": 50 });
    let product = app.post_json_authed("/v1/admin/products", &admin.access, &body).await.expect(201).json();
    (admin, product["id"].as_str().unwrap().to_owned())
}

async fn rule(app: &TestApp, admin: &Tokens, body: Value) -> Value {
    app.post_json_authed("/v1/admin/pricing/rules", &admin.access, &body).await.expect(201).json()
}

async fn quote(app: &TestApp, id: &str, query: &str) -> Value {
    app.get(&format!("/v1/products/{id}/quote{query}")).await.expect(200).json()
}

#[tokio::test]
async fn a_quote_without_rules_is_the_list_price() {
    let app = spawn_app().await;
    let (_, id) = setup(&app).await;
    let q = quote(&app, &id, "?quantity=3").await;
    assert_eq!(q["unit_price"], json!({ "amount": 1000, "currency": "USD" }));
    assert_eq!(q["subtotal"]["amount"], 3000);
    assert_eq!(q["total"]["amount"], 3000);
    assert_eq!(q["adjustments"], json!([]));
    assert!(q["rules_version"].as_i64().unwrap() >= 1);
    assert!(q["expires_at"].is_string());
}

#[tokio::test]
async fn rules_apply_by_country_quantity_and_coupon_and_each_change_bumps_the_version() {
    let app = spawn_app().await;
    let (admin, id) = setup(&app).await;
    let v0 = quote(&app, &id, "").await["rules_version"].as_i64().unwrap();
    let vat = rule(
        &app,
        &admin,
        json!({ "name": "DE surcharge", "kind": "country", "priority": 1,
        "conditions": { "countries": ["DE"] }, "effect": { "percent_bps": 1900 } }),
    )
    .await;
    assert!(vat["id"].as_str().unwrap().starts_with("rul_"));
    rule(
        &app,
        &admin,
        json!({ "name": "Volume", "kind": "quantity_tier", "priority": 2,
        "conditions": { "min_quantity": 10 }, "effect": { "percent_bps": -1000 } }),
    )
    .await;
    rule(
        &app,
        &admin,
        json!({ "name": "Spring", "kind": "promotion", "priority": 3,
        "conditions": { "coupon_code": "spring" }, "effect": { "amount_off": 50 } }),
    )
    .await;

    let q = quote(&app, &id, "?quantity=10&country=DE&coupon_code=SPRING").await;
    assert_eq!(q["rules_version"].as_i64().unwrap(), v0 + 3);
    let amounts: Vec<i64> = q["adjustments"].as_array().unwrap().iter().map(|a| a["amount"]["amount"].as_i64().unwrap()).collect();
    // 10 000 → +19 % = 11 900 → −10 % = 10 710 → −50 × 10 = 10 210
    assert_eq!(amounts, [1900, -1190, -500]);
    assert_eq!(q["total"]["amount"], 10210);
    assert_eq!(quote(&app, &id, "?quantity=1&country=FR").await["total"]["amount"], 1000);

    let id_vat = vat["id"].as_str().unwrap();
    let changed = app
        .patch_json_authed(&format!("/v1/admin/pricing/rules/{id_vat}"), &admin.access, &json!({ "active": false }))
        .await
        .expect(200)
        .json();
    assert_eq!(changed["active"], false);
    assert_eq!(changed["name"], "DE surcharge");
    assert_eq!(quote(&app, &id, "?country=DE").await["total"]["amount"], 1000);
    app.delete_authed(&format!("/v1/admin/pricing/rules/{id_vat}"), &admin.access).await.expect(204);
    app.delete_authed(&format!("/v1/admin/pricing/rules/{id_vat}"), &admin.access).await.problem(404, "not_found");
    let listed = app.get_authed("/v1/admin/pricing/rules", &admin.access).await.expect(200).json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert_eq!(quote(&app, &id, "").await["rules_version"].as_i64().unwrap(), v0 + 5);
}

#[tokio::test]
async fn rules_are_validated_and_only_admins_write_them() {
    let app = spawn_app().await;
    let (admin, _) = setup(&app).await;
    let ada = app.customer("ada@example.com").await;
    let support = app.create_staff("help@example.com", PASSWORD, "support").await;
    let ok = json!({ "name": "Sale", "kind": "promotion", "effect": { "percent_bps": -500 } });
    app.post_json_authed("/v1/admin/pricing/rules", &ada.access, &ok).await.problem(403, "forbidden");
    app.post_json_authed("/v1/admin/pricing/rules", &support.access, &ok).await.problem(403, "forbidden");
    app.get_authed("/v1/admin/pricing/rules", &support.access).await.expect(200);
    for (bad, field) in [
        (json!({ "name": "X", "kind": "weather", "effect": { "percent_bps": 1 } }), "kind"),
        (json!({ "name": "X", "kind": "country", "effect": { "percent_bps": 100 } }), "conditions.countries"),
        (json!({ "name": "X", "kind": "promotion", "effect": { "percent_bps": 20000 } }), "effect.percent_bps"),
        (json!({ "name": "X", "kind": "promotion", "effect": {} }), "effect"),
        (
            json!({ "name": "X", "kind": "promotion", "effect": { "amount_off": 5 }, "starts_at": "2026-02-01T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z" }),
            "ends_at",
        ),
        (json!({ "name": "X", "kind": "demand", "effect": { "percent_bps": 10 } }), "conditions.demand_window_hours"),
    ] {
        app.post_json_authed("/v1/admin/pricing/rules", &admin.access, &bad).await.field_error(field);
    }
    app.patch_json_authed("/v1/admin/pricing/rules/rul_nope", &admin.access, &json!({ "active": false })).await.problem(404, "not_found");
}

#[tokio::test]
async fn quotes_check_their_input() {
    let app = spawn_app().await;
    let (admin, id) = setup(&app).await;
    for bad in ["?quantity=0", "?quantity=1000", "?quantity=two", "?country=XX", "?country=de"] {
        app.get(&format!("/v1/products/{id}/quote{bad}")).await.problem(422, "validation_failed");
    }
    app.get("/v1/products/prd_nope/quote").await.problem(404, "not_found");
    app.delete_authed(&format!("/v1/admin/products/{id}"), &admin.access).await.expect(204);
    app.get(&format!("/v1/products/{id}/quote")).await.problem(422, "validation_failed");
}
