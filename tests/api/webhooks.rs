//! Outgoing webhooks: endpoints, signed deliveries, retries and the attempt log.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app, spawn_app_with};
use crate::support::{eventually, signature_is_valid, webhook_receiver};

async fn create_endpoint(app: &TestApp, admin: &Tokens, url: &str, events: Value) -> Value {
    let endpoint = app
        .post_json_authed("/v1/admin/webhook-endpoints", &admin.access, &json!({ "url": url, "events": events }))
        .await
        .expect(201)
        .json();
    crate::logs::remember_secret(endpoint["secret"].as_str().unwrap_or_default());
    endpoint
}

async fn deliveries(app: &TestApp, admin: &Tokens, id: &str) -> Vec<Value> {
    app.get_authed(&format!("/v1/admin/webhook-endpoints/{id}/deliveries"), &admin.access).await.expect(200).json()["data"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_four_logged_attempts_and_one_success() {
    let app = spawn_app_with(&[("webhook_retry_base_ms", "50")]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let receiver = webhook_receiver(vec![500, 503, 500]).await;
    let endpoint = create_endpoint(&app, &admin, &receiver.url, json!(["account.password_changed"])).await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    let id = endpoint["id"].as_str().unwrap().to_owned();

    app.post_json_authed(
        "/v1/auth/password/change",
        &admin.access,
        &json!({ "current_password": PASSWORD, "new_password": "a brand new passphrase" }),
    )
    .await
    .expect(204);

    let log = eventually(30, "a successful delivery", || async {
        let log = deliveries(&app, &admin, &id).await;
        log.iter().any(|d| d["status_code"] == 200).then_some(log)
    })
    .await;
    assert_eq!(log.len(), 4, "{log:#?}");
    assert_eq!(log.iter().filter(|d| d["status_code"] == 200).count(), 1);
    let mut attempts: Vec<u64> = log.iter().map(|d| d["attempt"].as_u64().unwrap()).collect();
    attempts.sort();
    assert_eq!(attempts, [1, 2, 3, 4]);
    assert!(log.iter().filter(|d| d["status_code"] != 200).all(|d| d["error"].is_string() && d["next_retry_at"].is_string()));

    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(received.len(), 4);
    for r in &received {
        assert!(signature_is_valid(&secret, &r.signature, &r.body), "the documented recipe verifies {:?}", r.signature);
        let event: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(event["type"], "account.password_changed");
        assert!(event.get("user_id").is_none(), "internal ids stay inside");
    }
    assert!(!signature_is_valid("whsec_wrong", &received[0].signature, &received[0].body));
}

#[tokio::test]
async fn ping_delivers_a_signed_ping_event_to_one_endpoint() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let receiver = webhook_receiver(vec![]).await;
    let endpoint = create_endpoint(&app, &admin, &receiver.url, json!(["*"])).await;
    let id = endpoint["id"].as_str().unwrap();
    app.post_json_authed(&format!("/v1/admin/webhook-endpoints/{id}/ping"), &admin.access, &json!({})).await.expect(202);
    let ping = eventually(20, "the ping", || async {
        receiver.received.lock().unwrap().iter().find(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["type"] == "ping").cloned()
    })
    .await;
    assert!(signature_is_valid(endpoint["secret"].as_str().unwrap(), &ping.signature, &ping.body));
}

#[tokio::test]
async fn endpoints_are_managed_by_admins_only_and_validated() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let path = "/v1/admin/webhook-endpoints";
    app.post_json_authed(path, &ada.access, &json!({ "url": "https://hooks.example/x", "events": ["*"] })).await.problem(403, "forbidden");
    for bad in [
        json!({ "url": "ftp://hooks.example", "events": ["*"] }),
        json!({ "url": "https://hooks.example", "events": [] }),
        json!({ "url": "https://hooks.example", "events": ["Bad Type"] }),
    ] {
        app.post_json_authed(path, &admin.access, &bad).await.problem(422, "validation_failed");
    }
    let created = create_endpoint(&app, &admin, "https://hooks.example/x", json!(["product.updated"])).await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("whe_") && created["secret"].as_str().unwrap().starts_with("whsec_"));
    let list = app.get_authed(path, &admin.access).await.expect(200).json();
    assert_eq!(list["data"][0]["id"], id);
    assert!(list["data"][0].get("secret").is_none(), "the secret is shown once, at creation");
    app.delete_authed(&format!("{path}/{id}"), &admin.access).await.expect(204);
    app.delete_authed(&format!("{path}/{id}"), &admin.access).await.problem(404, "not_found");
    app.get_authed(&format!("{path}/{id}/deliveries"), &admin.access).await.problem(404, "not_found");
}

/// Every event type Keel emits, as the README's catalogue lists them.
const CATALOGUE: [&str; 11] = [
    "product.updated",
    "pricing.rules_changed",
    "notification.created",
    "account.email_verified",
    "account.password_changed",
    "account.password_reset",
    "account.mfa_enabled",
    "account.mfa_disabled",
    "wallet.updated",
    "order.updated",
    "ping",
];

#[tokio::test]
async fn endpoint_events_come_from_the_catalogue_and_unknown_names_are_named() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let path = "/v1/admin/webhook-endpoints";
    let all = create_endpoint(&app, &admin, "https://hooks.example/all", json!(CATALOGUE)).await;
    assert_eq!(all["events"], json!(CATALOGUE));
    create_endpoint(&app, &admin, "https://hooks.example/star", json!(["*"])).await;

    let body = json!({ "url": "https://hooks.example/x", "events": ["product.updated", "order.shipped", "account.*", "Product.Updated"] });
    let problem = app.post_json_authed(path, &admin.access, &body).await.problem(422, "validation_failed");
    let errors = problem["errors"].as_array().unwrap();
    let fields: Vec<&str> = errors.iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["events[1]", "events[2]", "events[3]"], "{problem}");
    for (error, name) in errors.iter().zip(["order.shipped", "account.*", "Product.Updated"]) {
        assert_eq!(error["code"], "unknown_event_type");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("\"{name}\"")) && message.contains("product.updated"),
            "names the unknown type and the known ones: {message}"
        );
    }
    let listed = app.get_authed(path, &admin.access).await.expect(200).json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 2, "nothing was created by the refused request");

    // The OpenAPI document offers the same catalogue for `events`.
    let document = app.get("/openapi.json").await.expect(200).json();
    let offered = &document["components"]["schemas"]["EventSubscription"]["enum"];
    let mut expected = CATALOGUE.to_vec();
    expected.push("*");
    assert_eq!(offered, &json!(expected));
}

#[tokio::test]
async fn endpoints_page_with_limit_and_cursor() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let path = "/v1/admin/webhook-endpoints";
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(create_endpoint(&app, &admin, &format!("https://hooks.example/{i}"), json!(["*"])).await["id"].clone());
    }
    let pages = app.all_pages(path, &admin.access, &[], 2).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let ids: Vec<Value> = pages.concat().iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids, created, "every endpoint once, oldest first");
    for bad in ["limit=0", "limit=101", "limit=two", "cursor=garbled!"] {
        app.get_authed(&format!("{path}?{bad}"), &admin.access).await.problem(422, "validation_failed");
    }
}

#[tokio::test]
async fn endpoints_that_reach_loopback_private_link_local_or_metadata_addresses_are_refused() {
    let app = spawn_app_with(&[("webhook_allowed_networks", "")]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let path = "/v1/admin/webhook-endpoints";
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://0x7f000001/hook",
        "http://2130706433/hook",
        "http://127.1/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost:8080/hook",
        "http://10.0.0.5/hook",
        "http://172.16.4.2/hook",
        "http://192.168.1.1/hook",
        "http://100.100.100.200/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://[fd00:ec2::254]/hook",
        "http://0.0.0.0/hook",
    ] {
        let reply = app.post_json_authed(path, &admin.access, &json!({ "url": url, "events": ["*"] })).await;
        let error = reply.field_error("url");
        assert_eq!(error["code"], "forbidden_address", "{url}: {error}");
        assert!(error["message"].as_str().unwrap().contains("refused"), "{url}: {error}");
    }
    create_endpoint(&app, &admin, "https://203.0.114.7/hook", json!(["*"])).await;
    let listed = app.get_authed(path, &admin.access).await.expect(200).json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "only the public endpoint was created: {listed}");
}

#[tokio::test]
async fn a_delivery_to_an_address_that_is_no_longer_allowed_sends_nothing_and_says_why() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let receiver = webhook_receiver(vec![]).await;
    let by_address = create_endpoint(&app, &admin, &receiver.url, json!(["*"])).await["id"].as_str().unwrap().to_owned();
    let by_name = create_endpoint(&app, &admin, &receiver.url.replace("127.0.0.1", "localhost"), json!(["*"])).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The endpoints were accepted while loopback was allowed; now it is not (as if DNS changed).
    let app = app.restart_with(&[("webhook_allowed_networks", "")]).await;
    for id in [&by_address, &by_name] {
        app.post_json_authed(&format!("/v1/admin/webhook-endpoints/{id}/ping"), &admin.access, &json!({})).await.expect(202);
        let log = eventually(20, "a logged attempt", || async {
            let log = deliveries(&app, &admin, id).await;
            (!log.is_empty()).then_some(log)
        })
        .await;
        assert!(log[0]["status_code"].is_null(), "{log:#?}");
        let error = log[0]["error"].as_str().unwrap();
        assert!(error.contains("refused") && error.contains("loopback"), "{error}");
    }
    assert!(receiver.received.lock().unwrap().is_empty(), "no request reached the receiver");
}
