//! Catalog and stock: public reads with caching headers, admin writes, search, pagination.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app, url_encode};

async fn admin(app: &TestApp) -> Tokens {
    app.create_admin("root@example.com", PASSWORD).await
}

async fn create(app: &TestApp, admin: &Tokens, sku: &str, name: &str, category: &str, price: i64, stock: i64) -> Value {
    let body = json!({ "sku": sku, "name": name, "description": format!("{name}, made to last"), "category": category,
        "price": { "amount": price, "currency": "USD" }, "stock": stock });
    app.post_json_authed("/v1/admin/products", &admin.access, &body).await.expect(201).json()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn an_admin_creates_a_product_everyone_can_read_with_an_etag() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let mug = create(&app, &admin, "MUG-1", "Red mug", "kitchen", 1250, 10).await;
    assert!(mug["id"].as_str().unwrap().starts_with("prd_"));
    assert_eq!(mug["price"], json!({ "amount": 1250, "currency": "USD" }));
    assert_eq!(mug["stock_available"], 10);
    assert_eq!(mug["version"], 1);

    let path = format!("/v1/products/{}", mug["id"].as_str().unwrap());
    let first = app.get(&path).await.expect(200);
    let etag = first.header("etag").expect("an ETag").to_owned();
    assert!(first.header("cache-control").unwrap().contains("must-revalidate"));
    let again = app.send(app.request(reqwest::Method::GET, &path).header("if-none-match", &etag)).await;
    assert_eq!(again.status, 304);
    assert!(again.text.is_empty());
    app.get("/v1/products/prd_nope").await.problem(404, "not_found");
}

#[tokio::test]
async fn creating_checks_every_field_the_sku_and_the_role() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let ada = app.customer("ada@example.com").await;
    create(&app, &admin, "MUG-1", "Red mug", "kitchen", 1250, 10).await;
    let dup = json!({ "sku": "MUG-1", "name": "Other", "category": "kitchen", "price": { "amount": 1, "currency": "USD" } });
    app.post_json_authed("/v1/admin/products", &admin.access, &dup).await.problem(409, "conflict");
    app.post_json_authed("/v1/admin/products", &ada.access, &dup).await.problem(403, "forbidden");
    let bad =
        json!({ "sku": "bad sku", "name": "", "category": "Kitchen Stuff", "price": { "amount": -1, "currency": "EUR" }, "stock": -5 });
    let problem = app.post_json_authed("/v1/admin/products", &admin.access, &bad).await.problem(422, "validation_failed");
    let fields: HashSet<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for f in ["sku", "name", "category", "price.amount", "price.currency", "stock"] {
        assert!(fields.contains(f), "{f} in {problem}");
    }
    let float = json!({ "sku": "X-1", "name": "X", "category": "kitchen", "price": { "amount": 1.5, "currency": "USD" } });
    app.post_json_authed("/v1/admin/products", &admin.access, &float).await.problem(422, "validation_failed");
}

#[tokio::test]
async fn a_stale_if_match_is_refused_with_412_and_a_fresh_one_applies() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let mug = create(&app, &admin, "MUG-1", "Red mug", "kitchen", 1250, 10).await;
    let path = format!("/v1/admin/products/{}", mug["id"].as_str().unwrap());
    let patch =
        |version: &str| app.request(reqwest::Method::PATCH, &path).bearer_auth(&admin.access).header("if-match", version.to_owned());
    let updated = app.send(patch("\"1\"").json(&json!({ "price": { "amount": 1500, "currency": "USD" } }))).await.expect(200).json();
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["price"]["amount"], 1500);
    app.send(patch("\"1\"").json(&json!({ "name": "Lost update" }))).await.problem(412, "precondition_failed");
    app.send(patch("garbage").json(&json!({ "name": "Lost update" }))).await.problem(412, "precondition_failed");
    // The public read reflects the committed change at once.
    let public = app.get(&format!("/v1/products/{}", mug["id"].as_str().unwrap())).await.expect(200).json();
    assert_eq!(public["price"]["amount"], 1500);
    assert_eq!(public["name"], "Red mug");
}

#[tokio::test]
async fn deactivated_products_leave_the_list_but_keep_their_page() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let mug = create(&app, &admin, "MUG-1", "Red mug", "kitchen", 1250, 10).await;
    let id = mug["id"].as_str().unwrap();
    assert_eq!(ids(&app.get("/v1/products").await.expect(200).json()), vec![id.to_owned()]);
    app.delete_authed(&format!("/v1/admin/products/{id}"), &admin.access).await.expect(204);
    assert!(ids(&app.get("/v1/products").await.expect(200).json()).is_empty());
    assert_eq!(app.get(&format!("/v1/products/{id}")).await.expect(200).json()["active"], false);
    app.delete_authed("/v1/admin/products/prd_nope", &admin.access).await.problem(404, "not_found");
}

#[tokio::test]
async fn stock_adjustments_never_go_below_zero_and_are_validated() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let mug = create(&app, &admin, "MUG-1", "Red mug", "kitchen", 1250, 10).await;
    let path = format!("/v1/admin/products/{}/stock-adjustments", mug["id"].as_str().unwrap());
    let after = app.post_json_authed(&path, &admin.access, &json!({ "delta": -4, "reason": "breakage" })).await.expect(200).json();
    assert_eq!(after["stock_available"], 6);
    app.post_json_authed(&path, &admin.access, &json!({ "delta": -7, "reason": "breakage" })).await.problem(409, "insufficient_stock");
    app.post_json_authed(&path, &admin.access, &json!({ "delta": 0, "reason": "nothing" })).await.problem(422, "validation_failed");
    app.post_json_authed(&path, &admin.access, &json!({ "delta": 5, "reason": "" })).await.problem(422, "validation_failed");
    app.post_json_authed(&path, &admin.access, &json!({ "delta": 5 })).await.problem(422, "validation_failed");
}

#[tokio::test]
async fn search_filters_and_sorts_combine() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    create(&app, &admin, "MUG-1", "Red ceramic mug", "kitchen", 1200, 5).await;
    create(&app, &admin, "MUG-2", "Blue ceramic mug", "kitchen", 900, 5).await;
    create(&app, &admin, "TENT-1", "Mountain tent", "outdoor", 25000, 5).await;
    let names = |page: Value| page["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(app.get("/v1/products?q=ceram&sort=price").await.expect(200).json()), ["Blue ceramic mug", "Red ceramic mug"]);
    assert_eq!(names(app.get("/v1/products?q=mug%20red").await.expect(200).json()), ["Red ceramic mug"]);
    assert_eq!(names(app.get("/v1/products?category=outdoor").await.expect(200).json()), ["Mountain tent"]);
    assert_eq!(names(app.get("/v1/products?min_price=1000&max_price=20000").await.expect(200).json()), ["Red ceramic mug"]);
    assert_eq!(names(app.get("/v1/products?sort=-price&limit=1").await.expect(200).json()), ["Mountain tent"]);
    assert!(names(app.get("/v1/products?q=%22%29OR*").await.expect(200).json()).len() <= 3, "query syntax is not interpreted");
    for bad in ["sort=rating", "min_price=-1", "max_price=abc", "min_price=10&max_price=5", "limit=0", "cursor=nope", "category=Kitchen"] {
        app.get(&format!("/v1/products?{bad}")).await.problem(422, "validation_failed");
    }
}

#[tokio::test]
async fn every_sort_order_pages_without_duplicates_or_gaps_while_products_are_added() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let mut original = HashSet::new();
    for i in 0..23 {
        let p = create(&app, &admin, &format!("SKU-{i}"), &format!("Item {:02}", (i * 7) % 23), "misc", 100 + (i % 5) * 10, 1).await;
        original.insert(p["id"].as_str().unwrap().to_owned());
    }
    for sort in ["created_at", "-created_at", "price", "-price", "name"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut added = 0;
        loop {
            let mut query = vec![("limit", "5".to_owned()), ("sort", sort.to_owned())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", url_encode(v))).collect();
            let page = app.get(&format!("/v1/products?{}", query.join("&"))).await.expect(200).json();
            seen.extend(ids(&page));
            // Inserts between pages must not shift what the cursor points at.
            create(&app, &admin, &format!("NEW-{sort}-{added}"), "Item 11", "misc", 120, 1).await;
            added += 1;
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{sort}: no duplicates");
        assert!(original.iter().all(|id| unique.contains(id)), "{sort}: every product that existed throughout was seen");
    }
}
