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
    let long = format!("?coupon_code={}", "A".repeat(33));
    for bad in ["?quantity=0", "?quantity=1000", "?quantity=two", "?country=XX", "?country=de", "?coupon_code=A%00B", long.as_str()] {
        app.get(&format!("/v1/products/{id}/quote{bad}")).await.problem(422, "validation_failed");
    }
    app.get("/v1/products/prd_nope/quote").await.problem(404, "not_found");
    app.delete_authed(&format!("/v1/admin/products/{id}"), &admin.access).await.expect(204);
    app.get(&format!("/v1/products/{id}/quote")).await.problem(422, "validation_failed");
}

fn cache_count(metrics: &str, cache: &str, result: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("keel_cache_requests_total") && l.contains(&format!("cache=\"{cache}\"")))
        .filter(|l| l.contains(&format!("result=\"{result}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn quotes_are_served_from_the_cache_yet_follow_every_price_change() {
    let app = spawn_app().await;
    let (admin, id) = setup(&app).await;
    // The product's own creation event may still invalidate the first entry; after that,
    // repeated quotes are the same cached value (down to its expiry time).
    crate::support::eventually(5, "a quote served from the cache", || async {
        let (first, again) = (quote(&app, &id, "?quantity=2").await, quote(&app, &id, "?quantity=2").await);
        (first == again).then_some(())
    })
    .await;
    let metrics = app.get("/metrics").await.expect(200).text;
    assert!(cache_count(&metrics, "quote", "hit") >= 1.0, "quotes are cache hits:\n{metrics}");

    // A price change and a rule change each show in the very next quote.
    let price = json!({ "price": { "amount": 1200, "currency": "USD" } });
    app.patch_json_authed(&format!("/v1/admin/products/{id}"), &admin.access, &price).await.expect(200);
    assert_eq!(quote(&app, &id, "?quantity=2").await["total"]["amount"], 2400);
    rule(&app, &admin, json!({ "name": "Sale", "kind": "promotion", "effect": { "percent_bps": -5000 } })).await;
    assert_eq!(quote(&app, &id, "?quantity=2").await["total"]["amount"], 1200);
    app.delete_authed(&format!("/v1/admin/products/{id}"), &admin.access).await.expect(204);
    app.get(&format!("/v1/products/{id}/quote?quantity=2")).await.problem(422, "validation_failed");
}

#[tokio::test]
async fn a_promotion_starts_and_ends_on_time_even_for_cached_quotes() {
    let app = spawn_app().await;
    let (admin, id) = setup(&app).await;
    let at = |secs: i64| (chrono::Utc::now() + chrono::TimeDelta::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (starts, ends) = (at(2), at(4));
    rule(
        &app,
        &admin,
        json!({ "name": "Flash", "kind": "promotion", "starts_at": starts, "ends_at": ends, "effect": { "percent_bps": -1000 } }),
    )
    .await;
    assert_eq!(quote(&app, &id, "").await["total"]["amount"], 1000, "not started yet");
    let until = |t: &str| {
        let t = chrono::DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&chrono::Utc);
        (t - chrono::Utc::now()).to_std().unwrap_or_default() + std::time::Duration::from_millis(100)
    };
    tokio::time::sleep(until(&starts)).await;
    assert_eq!(quote(&app, &id, "").await["total"]["amount"], 900, "started");
    tokio::time::sleep(until(&ends)).await;
    assert_eq!(quote(&app, &id, "").await["total"]["amount"], 1000, "ended");
}

#[tokio::test]
async fn a_rule_change_reaches_another_instance_through_the_bus() {
    let app = spawn_app().await;
    let Some(other) = app.another_instance().await else {
        eprintln!("the bus is in-process: a second instance would not share it (run with KEEL_TEST_NATS_URL)");
        return;
    };
    let (admin, id) = setup(&app).await;
    assert_eq!(quote(&other, &id, "").await["total"]["amount"], 1000);
    let started = std::time::Instant::now();
    rule(&app, &admin, json!({ "name": "Sale", "kind": "promotion", "effect": { "percent_bps": -2000 } })).await;
    crate::support::eventually(10, "the rule on the other instance", || async {
        (quote(&other, &id, "").await["total"]["amount"] == 800).then_some(())
    })
    .await;
    eprintln!("the rule reached the other instance after {:?}", started.elapsed());
    let version = quote(&app, &id, "").await["rules_version"].clone();
    assert_eq!(quote(&other, &id, "").await["rules_version"], version);
}

#[tokio::test]
async fn demand_rules_count_recent_sales_over_their_own_window() {
    let app = spawn_app().await;
    let (admin, id) = setup(&app).await;
    rule(
        &app,
        &admin,
        json!({ "name": "Hot", "kind": "demand", "conditions": { "demand_window_hours": 24, "demand_cap_bps": 1500 },
        "effect": { "percent_bps": 100 } }),
    )
    .await;
    assert_eq!(quote(&app, &id, "").await["total"]["amount"], 1000, "no sales yet");
    crate::stock::sell(&app, &id, 3).await;
    let q = eventually_total(&app, &id, 1030).await;
    assert_eq!(q["adjustments"][0]["kind"], "demand");
}

async fn eventually_total(app: &TestApp, id: &str, total: i64) -> Value {
    crate::support::eventually(10, "the quote to follow the sales", || async {
        let q = quote(app, id, "").await;
        (q["total"]["amount"] == total).then_some(q)
    })
    .await
}
