//! API keys: made by admins, shown once, acting for their maker within their scopes, limited
//! per key, rotated with a grace period, revoked at once, audited.

use reqwest::Method;
use serde_json::{Value, json};

use crate::checkout::product;
use crate::helpers::{PASSWORD, Reply, TestApp, Tokens, spawn_app, spawn_app_with};
use crate::poll::eventually;

/// Makes a key and remembers its text as a secret for the log scan.
async fn make_key(app: &TestApp, admin: &Tokens, body: Value) -> Value {
    let created = app.post_json_authed("/v1/admin/api-keys", &admin.access, &body).await.expect(201).json();
    crate::logs::remember_secret(created["key"].as_str().expect("the key"));
    created
}

fn key_of(created: &Value) -> String {
    created["key"].as_str().unwrap().to_owned()
}

async fn with_key(app: &TestApp, method: Method, path: &str, key: &str, body: Option<&Value>) -> Reply {
    app.call(method, path, Some(key), body).await
}

async fn listed(app: &TestApp, admin: &Tokens) -> Vec<Value> {
    app.get_authed("/v1/admin/api-keys", &admin.access).await.expect(200).json()["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_key_reaches_the_routes_of_its_scopes_and_no_others() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let created = make_key(&app, &admin, json!({ "name": "ERP stock sync", "scopes": ["products:write"] })).await;
    assert_eq!(created["scopes"], json!(["products:write"]));
    assert!(created["id"].as_str().unwrap().starts_with("key_"));
    let key = key_of(&created);
    assert!(key.starts_with("keel_sk_live_") && key.starts_with(created["prefix"].as_str().unwrap()));

    let body = json!({ "sku": "K-1", "name": "Kettle", "description": "", "category": "kitchen", "price": { "amount": 2500, "currency": "USD" }, "stock": 5 });
    let made = with_key(&app, Method::POST, "/v1/admin/products", &key, Some(&body)).await.expect(201).json();
    let id = made["id"].as_str().unwrap();
    with_key(&app, Method::GET, &format!("/v1/products/{id}"), &key, None).await.expect(200);
    let patch = json!({ "price": { "amount": 2700, "currency": "USD" } });
    with_key(&app, Method::PATCH, &format!("/v1/admin/products/{id}"), &key, Some(&patch)).await.expect(200);

    for (method, path) in [
        (Method::GET, "/v1/admin/orders"),
        (Method::GET, "/v1/admin/users"),
        (Method::GET, "/v1/admin/audit"),
        (Method::GET, "/v1/me"),
        (Method::GET, "/v1/cart"),
        (Method::GET, "/v1/wallet"),
        (Method::GET, "/v1/admin/api-keys"),
    ] {
        with_key(&app, method.clone(), path, &key, None).await.problem(403, "forbidden");
    }
    let another = json!({ "name": "child", "scopes": ["products:write"] });
    with_key(&app, Method::POST, "/v1/admin/api-keys", &key, Some(&another)).await.problem(403, "forbidden");

    // What the key did is audited as the key's doing.
    let audit = make_key(&app, &admin, json!({ "name": "auditor", "scopes": ["audit:read"] })).await;
    let entries = app.get_query_authed("/v1/admin/audit", &key_of(&audit), &[("action", "product.price_changed")]).await.expect(200).json();
    assert_eq!(entries["data"][0]["actor"], created["id"], "{entries}");
}

#[tokio::test]
async fn malformed_keys_and_wrong_checksums_are_refused() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let key = key_of(&make_key(&app, &admin, json!({ "name": "ERP", "scopes": ["orders:read"] })).await);
    // The last character belongs to the checksum; changing a middle one breaks it too.
    let mut wrong_checksum = key.clone();
    let last = wrong_checksum.pop().unwrap();
    wrong_checksum.push(if last == 'a' { 'b' } else { 'a' });
    let mut wrong_body = key.clone().into_bytes();
    wrong_body[20] = if wrong_body[20] == b'a' { b'b' } else { b'a' };
    let wrong_body = String::from_utf8(wrong_body).unwrap();
    for bad in ["keel_sk_live_", "keel_sk_live_short", "keel_sk_test_0123456789", &wrong_checksum, &wrong_body, &format!("{key}x")] {
        with_key(&app, Method::GET, "/v1/admin/orders", bad, None).await.problem(401, "invalid_token");
        with_key(&app, Method::GET, "/v1/products", bad, None).await.problem(401, "invalid_token");
    }
    with_key(&app, Method::GET, "/v1/admin/orders", &key, None).await.expect(200);
}

#[tokio::test]
async fn the_key_is_shown_once_and_never_again() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let created = make_key(&app, &admin, json!({ "name": "ERP", "scopes": ["orders:read", "products:read"] })).await;
    let key = key_of(&created);
    let rotated =
        app.post_json_authed(&format!("/v1/admin/api-keys/{}/rotate", created["id"].as_str().unwrap()), &admin.access, &json!({})).await;
    let rotated = rotated.expect(201).json();
    crate::logs::remember_secret(rotated["key"].as_str().unwrap());

    let list = listed(&app, &admin).await;
    assert_eq!(list.len(), 2);
    let text = serde_json::to_string(&list).unwrap();
    for secret in [key.as_str(), rotated["key"].as_str().unwrap()] {
        assert!(!text.contains(secret), "the list shows a key: {text}");
        assert!(!text.contains(&secret["keel_sk_live_".len() + 6..]), "the list shows most of a key: {text}");
    }
    assert!(list.iter().all(|k| k.get("key").is_none()));
    assert_eq!(list[1]["scopes"], json!(["products:read", "orders:read"]));
    let trail = app.all_pages("/v1/admin/audit", &admin.access, &[], 100).await.concat();
    let trail = serde_json::to_string(&trail).unwrap();
    assert!(trail.contains("api_key.created") && trail.contains("api_key.rotated"));
    assert!(!trail.contains(&key) && !trail.contains(rotated["key"].as_str().unwrap()), "an audit entry holds a key");
}

#[tokio::test]
async fn a_rotated_key_works_through_its_grace_period_then_stops() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let created = make_key(&app, &admin, json!({ "name": "ERP", "scopes": ["orders:read"] })).await;
    let (old_id, old) = (created["id"].as_str().unwrap().to_owned(), key_of(&created));
    let rotate = format!("/v1/admin/api-keys/{old_id}/rotate");
    let rotated = app.post_json_authed(&rotate, &admin.access, &json!({ "grace_seconds": 3 })).await.expect(201).json();
    let new = key_of(&rotated);
    crate::logs::remember_secret(&new);
    assert_eq!((&rotated["name"], &rotated["scopes"]), (&created["name"], &created["scopes"]));
    assert_ne!(new, old);

    // Both work during the overlap; the old one names its successor.
    with_key(&app, Method::GET, "/v1/admin/orders", &old, None).await.expect(200);
    with_key(&app, Method::GET, "/v1/admin/orders", &new, None).await.expect(200);
    let list = listed(&app, &admin).await;
    let old_view = list.iter().find(|k| k["id"] == old_id.as_str()).unwrap();
    assert_eq!(old_view["rotated_to"], rotated["id"]);
    app.post_json_authed(&rotate, &admin.access, &json!({})).await.problem(409, "invalid_state");

    // Then the old one stops, and the new one goes on.
    eventually(15, "the old key to be refused", || async {
        (with_key(&app, Method::GET, "/v1/admin/orders", &old, None).await.status == 401).then_some(())
    })
    .await;
    with_key(&app, Method::GET, "/v1/admin/orders", &new, None).await.expect(200);

    // Without a grace period the old key stops at once.
    let next = format!("/v1/admin/api-keys/{}/rotate", rotated["id"].as_str().unwrap());
    let third = app.post_json_authed(&next, &admin.access, &json!({ "grace_seconds": 0 })).await.expect(201).json();
    crate::logs::remember_secret(third["key"].as_str().unwrap());
    with_key(&app, Method::GET, "/v1/admin/orders", &new, None).await.problem(401, "invalid_token");
    with_key(&app, Method::GET, "/v1/admin/orders", third["key"].as_str().unwrap(), None).await.expect(200);
    for grace in [json!(-1), json!(604_801), json!("1")] {
        let path = format!("/v1/admin/api-keys/{}/rotate", third["id"].as_str().unwrap());
        app.post_json_authed(&path, &admin.access, &json!({ "grace_seconds": grace })).await.problem(422, "validation_failed");
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_on_every_instance() {
    // Instances share the encryption key, as a scaled-out deployment must (keys are hashed under it).
    let app = spawn_app_with(&[("encryption_key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")]).await;
    let other = app.same_database_instance().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let created = make_key(&app, &admin, json!({ "name": "ERP", "scopes": ["users:read"] })).await;
    let key = key_of(&created);
    with_key(&other, Method::GET, "/v1/admin/users", &key, None).await.expect(200);
    app.delete_authed(&format!("/v1/admin/api-keys/{}", created["id"].as_str().unwrap()), &admin.access).await.expect(204);
    with_key(&app, Method::GET, "/v1/admin/users", &key, None).await.problem(401, "invalid_token");
    with_key(&other, Method::GET, "/v1/admin/users", &key, None).await.problem(401, "invalid_token");
    assert!(listed(&app, &admin).await.is_empty());
    app.delete_authed(&format!("/v1/admin/api-keys/{}", created["id"].as_str().unwrap()), &admin.access).await.problem(404, "not_found");
    let revoked = app.get_query_authed("/v1/admin/audit", &admin.access, &[("action", "api_key.revoked")]).await.expect(200).json();
    assert_eq!(revoked["data"][0]["target"], created["id"]);
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let key = key_of(&make_key(&app, &admin, json!({ "name": "temp", "scopes": ["orders:read"], "expires_at": soon })).await);
    eventually(15, "the expired key to be refused", || async {
        (with_key(&app, Method::GET, "/v1/admin/orders", &key, None).await.status == 401).then_some(())
    })
    .await;
    with_key(&app, Method::GET, "/v1/admin/orders", &key, None).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn a_key_records_when_it_was_last_used() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let key = key_of(&make_key(&app, &admin, json!({ "name": "ERP", "scopes": ["products:read"] })).await);
    assert_eq!(listed(&app, &admin).await[0]["last_used_at"], Value::Null);
    with_key(&app, Method::GET, "/v1/products", &key, None).await.expect(200);
    let used = listed(&app, &admin).await[0]["last_used_at"].as_str().map(str::to_owned).expect("a time of last use");
    assert!(chrono::DateTime::parse_from_rfc3339(&used).is_ok());
}

#[tokio::test]
async fn a_key_stops_working_when_its_maker_is_disabled() {
    let app = spawn_app().await;
    let maker = app.create_admin("maker@example.com", PASSWORD).await;
    let boss = app.create_admin("boss@example.com", PASSWORD).await;
    let key = key_of(&make_key(&app, &maker, json!({ "name": "ERP", "scopes": ["users:read"] })).await);
    with_key(&app, Method::GET, "/v1/admin/users", &key, None).await.expect(200);
    let maker_id = maker.user["id"].as_str().unwrap();
    app.patch_json_authed(&format!("/v1/admin/users/{maker_id}"), &boss.access, &json!({ "disabled": true })).await.expect(200);
    with_key(&app, Method::GET, "/v1/admin/users", &key, None).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn only_admins_make_keys_and_bad_input_is_named() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let support = app.create_staff("help@example.com", PASSWORD, "support").await;
    let good = json!({ "name": "ERP", "scopes": ["orders:read"] });
    app.post_json_authed("/v1/admin/api-keys", &support.access, &good).await.problem(403, "forbidden");
    app.get_authed("/v1/admin/api-keys", &support.access).await.problem(403, "forbidden");
    let cases = [
        (json!({ "name": "ERP", "scopes": ["orders:read", "admin:all"] }), "scopes[1]", "invalid"),
        (json!({ "name": "ERP", "scopes": [] }), "scopes", "required"),
        (json!({ "name": "", "scopes": ["orders:read"] }), "name", "invalid"),
        (json!({ "scopes": ["orders:read"] }), "name", "required"),
        (json!({ "name": "ERP", "scopes": ["orders:read"], "expires_at": "2020-01-01T00:00:00Z" }), "expires_at", "invalid"),
        (json!({ "name": "ERP", "scopes": ["orders:read"], "expires_at": "tomorrow" }), "expires_at", "invalid"),
    ];
    for (body, field, code) in cases {
        let reply = app.post_json_authed("/v1/admin/api-keys", &admin.access, &body).await;
        reply.problem(422, "validation_failed");
        reply.field_error_code(field, code);
    }
    app.post_json_authed("/v1/admin/api-keys/key_0190f3c1e1b27c3f8a4d5e6f70819203/rotate", &admin.access, &json!({}))
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn each_key_has_a_rate_limit_of_its_own() {
    let app = spawn_app_with(&[("rate_limit_api_key", "3/h")]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let first = key_of(&make_key(&app, &admin, json!({ "name": "one", "scopes": ["products:read"] })).await);
    let second = key_of(&make_key(&app, &admin, json!({ "name": "two", "scopes": ["products:read"] })).await);
    product(&app, &admin, "R-1", 100, 1).await;
    for _ in 0..3 {
        let reply = with_key(&app, Method::GET, "/v1/products", &first, None).await.expect(200);
        assert!(reply.header("ratelimit-limit").is_some());
    }
    let refused = with_key(&app, Method::GET, "/v1/products", &first, None).await;
    refused.problem(429, "rate_limited");
    assert!(refused.header("retry-after").is_some());
    with_key(&app, Method::GET, "/v1/products", &second, None).await.expect(200);
    app.get_authed("/v1/admin/api-keys", &admin.access).await.expect(200);
}
