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
async fn the_etag_of_a_read_is_accepted_as_if_match_and_changes_when_orders_move_stock() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let mug = create(&app, &admin, "MUG-1", "Red mug", "kitchen", 1250, 10).await;
    let id = mug["id"].as_str().unwrap();
    let public = format!("/v1/products/{id}");
    let before_sale = app.get(&public).await.expect(200).header("etag").unwrap().to_owned();
    assert!(before_sale.starts_with("\"1-"), "a strong ETag naming the version: {before_sale}");

    // A sale moves stock without a new version: the representation, hence the ETag, changes.
    crate::stock::sell(&app, id, 1).await;
    let read = crate::support::eventually(10, "the sale in the public read", || async {
        let read = app.get(&public).await.expect(200);
        (read.json()["stock_available"] == 9).then_some(read)
    })
    .await;
    assert_eq!(read.json()["version"], 1);
    let etag = read.header("etag").unwrap().to_owned();
    assert_ne!(etag, before_sale);
    let conditional = |tag: &str| app.send(app.request(reqwest::Method::GET, &public).header("if-none-match", tag.to_owned()));
    assert_eq!(conditional(&before_sale).await.expect(200).json()["stock_available"], 9);
    conditional(&etag).await.expect(304);

    let path = format!("/v1/admin/products/{id}");
    let patch = |if_match: Option<&str>, name: &str| {
        let request = app.request(reqwest::Method::PATCH, &path).bearer_auth(&admin.access).json(&json!({ "name": name }));
        app.send(match if_match {
            Some(tag) => request.header("if-match", tag.to_owned()),
            None => request,
        })
    };
    // The ETag just read is a valid precondition, and it is spent once the product changes.
    assert_eq!(patch(Some(&etag), "Mug v2").await.expect(200).json()["version"], 2);
    patch(Some(&etag), "Lost update").await.problem(412, "precondition_failed");
    let fresh = app.get(&public).await.expect(200).header("etag").unwrap().to_owned();
    assert!(fresh.starts_with("\"2-"), "{fresh}");
    patch(Some(&format!("W/{fresh}")), "Weak tags never match").await.problem(412, "precondition_failed");
    // The version, bare or quoted, still works; `*` and no If-Match at all take any version.
    assert_eq!(patch(Some("2"), "Mug v3").await.expect(200).json()["version"], 3);
    assert_eq!(patch(Some("\"3\""), "Mug v4").await.expect(200).json()["version"], 4);
    assert_eq!(patch(Some("*"), "Mug v5").await.expect(200).json()["version"], 5);
    assert_eq!(patch(None, "Mug v6").await.expect(200).json()["version"], 6);
    assert_eq!(app.get(&public).await.expect(200).json()["name"], "Mug v6");
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
    let id = |p: Value| p["id"].as_str().unwrap().to_owned();
    let red = id(create(&app, &admin, "MUG-1", "Red ceramic mug", "kitchen", 1200, 5).await);
    let blue = id(create(&app, &admin, "MUG-2", "Blue ceramic mug", "kitchen", 900, 5).await);
    let tent = id(create(&app, &admin, "TENT-1", "Mountain tent", "outdoor", 25000, 5).await);
    let orchid = id(create(&app, &admin, "POT-1", "Orchid pot", "garden", 3000, 5).await);
    let found = |query: &'static str| {
        let app = &app;
        async move { ids(&app.get(&format!("/v1/products?{query}")).await.expect(200).json()) }
    };
    // Exact results, in order: what must be found is found, and nothing else.
    assert_eq!(found("q=ceram&sort=price").await, [blue.as_str(), red.as_str()]);
    assert_eq!(found("q=mug%20red").await, [red.as_str()]);
    assert_eq!(found("q=MOUNT").await, [tent.as_str()]);
    assert_eq!(found("category=outdoor").await, [tent.as_str()]);
    assert_eq!(found("min_price=1000&max_price=20000&sort=price").await, [red.as_str(), orchid.as_str()]);
    assert_eq!(found("sort=-price&limit=1").await, [tent.as_str()]);
    assert_eq!(found("sort=name").await, [blue.as_str(), tent.as_str(), orchid.as_str(), red.as_str()]);
    assert!(found("q=sofa").await.is_empty());
    // Query syntax is not interpreted: `")OR*` is the plain word prefix "or" (only the orchid),
    // and `mug OR tent` needs all three words (no product has them all).
    assert_eq!(found("q=%22%29OR*").await, [orchid.as_str()]);
    assert!(found("q=mug%20OR%20tent").await.is_empty());
    assert_eq!(found("q=%22mug%22%20-blue").await, [blue.as_str()], "`-blue` is the word blue, not an exclusion");
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
