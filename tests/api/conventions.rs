//! Conventions every route follows: request ids, problem+json errors, JSON parsing, body
//! limits, security headers, CORS.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, spawn_app, spawn_app_with};

async fn get_with_request_id(app: &TestApp, path: &str, id: &str) -> crate::helpers::Reply {
    app.send(app.request(Method::GET, path).header("x-request-id", id)).await
}

/// POSTs a raw body with an optional content type.
async fn post_raw(app: &TestApp, path: &str, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> crate::helpers::Reply {
    let mut request = app.request(Method::POST, path).body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    app.send(request).await
}

#[tokio::test]
async fn a_safe_request_id_is_echoed_on_success_and_on_errors() {
    let app = spawn_app().await;
    let id = "client-42_trace.A:1";
    assert_eq!(get_with_request_id(&app, "/healthz", id).await.expect(200).header("x-request-id"), Some(id));
    let reply = get_with_request_id(&app, "/v1/no-such-route", id).await;
    assert_eq!(reply.problem(404, "not_found")["request_id"], id);
}

#[tokio::test]
async fn an_unsafe_or_overlong_request_id_is_replaced() {
    let app = spawn_app().await;
    let too_long = "a".repeat(129);
    for bad in ["has space", "quote\"d", "semi;colon", too_long.as_str()] {
        let reply = get_with_request_id(&app, "/healthz", bad).await.expect(200);
        let id = reply.header("x-request-id").expect("a request id");
        assert!(!id.is_empty() && id != bad, "{bad:?} was not replaced");
    }
    let longest = "b".repeat(128);
    assert_eq!(get_with_request_id(&app, "/healthz", &longest).await.header("x-request-id"), Some(longest.as_str()));
}

#[tokio::test]
async fn every_response_gets_its_own_request_id() {
    let app = spawn_app().await;
    let first = app.get("/healthz").await;
    let second = app.get("/v1/me").await;
    let (a, b) = (first.header("x-request-id").expect("an id"), second.header("x-request-id").expect("an id"));
    assert_ne!(a, b);
    assert_eq!(second.problem(401, "unauthenticated")["request_id"], b);
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = spawn_app().await;
    app.get("/v1/does-not-exist").await.problem(404, "not_found");
    app.get("/nothing/here").await.problem(404, "not_found");
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem() {
    let app = spawn_app().await;
    app.call(Method::PUT, "/v1/me", None, Some(&json!({}))).await.problem(405, "method_not_allowed");
    app.call(Method::GET, "/v1/auth/login", None, None).await.problem(405, "method_not_allowed");
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = spawn_app().await;
    for body in [r#"{"email": "ada@example.com","#, "not json at all", r#"{"email": 'single'}"#] {
        post_raw(&app, "/v1/auth/register", Some("application/json"), body).await.problem(400, "malformed_json");
    }
}

#[tokio::test]
async fn a_missing_or_wrong_content_type_is_a_415() {
    let app = spawn_app().await;
    let body = json!({ "email": "ada@example.com", "password": PASSWORD, "name": "Ada" }).to_string();
    post_raw(&app, "/v1/auth/register", None, body.clone()).await.problem(415, "unsupported_media_type");
    post_raw(&app, "/v1/auth/register", Some("text/plain"), body.clone()).await.problem(415, "unsupported_media_type");
    post_raw(&app, "/v1/auth/register", Some("application/x-www-form-urlencoded"), "email=a").await.problem(415, "unsupported_media_type");
    // The same body with the right type is fine: the refusals were about the type.
    post_raw(&app, "/v1/auth/register", Some("application/json"), body).await.expect(201);
}

#[tokio::test]
async fn an_unknown_field_is_a_422_naming_it() {
    let app = spawn_app().await;
    let reply = app
        .post_json("/v1/auth/register", &json!({ "email": "ada@example.com", "password": PASSWORD, "name": "Ada", "roles": ["admin"] }))
        .await;
    reply.field_error("roles");
}

#[tokio::test]
async fn a_wrong_type_is_a_422() {
    let app = spawn_app().await;
    let reply = app.post_json("/v1/auth/register", &json!({ "email": 42, "password": PASSWORD, "name": "Ada" })).await;
    reply.field_error("email");
    for body in [json!([1, 2]), json!("a string"), json!(null)] {
        app.post_json("/v1/auth/register", &body).await.problem(422, "validation_failed");
    }
}

#[tokio::test]
async fn an_array_body_is_a_422_even_when_its_items_would_fill_the_fields() {
    // serde fills a struct from an array in field order; every body of the contract is an object.
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    app.patch_json_authed("/v1/me", &tokens.access, &json!(["Grace Hopper"])).await.field_error_code("body", "invalid");
    assert_eq!(app.me(&tokens.access).await.expect(200).json()["name"], "Test Customer");
    // The same name in an object is taken (the array was refused for its shape alone).
    app.patch_json_authed("/v1/me", &tokens.access, &json!({ "name": "Grace Hopper" })).await.expect(200);
    assert_eq!(app.me(&tokens.access).await.expect(200).json()["name"], "Grace Hopper");
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let app = spawn_app_with(&[("body_limit_bytes", "1024")]).await;
    let big = json!({ "email": "ada@example.com", "password": PASSWORD, "name": "x".repeat(4000) });
    app.post_json("/v1/auth/register", &big).await.problem(413, "payload_too_large");
    // Whitespace padding is valid JSON: the size alone is refused.
    let padded = format!("{}{}", " ".repeat(2048), json!({ "email": "ada@example.com", "password": PASSWORD, "name": "Ada" }));
    post_raw(&app, "/v1/auth/register", Some("application/json"), padded).await.problem(413, "payload_too_large");
    // Under the limit the same route works.
    app.try_register("ada@example.com", PASSWORD, "Ada").await.expect(201);
}

#[tokio::test]
async fn security_headers_are_on_every_response() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let replies = [app.get("/healthz").await, app.me(&tokens.access).await, app.get("/v1/nope").await, app.me("bad").await];
    for reply in &replies {
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{:?}", reply.headers);
        let framing_denied = reply.header("x-frame-options").is_some_and(|v| v.eq_ignore_ascii_case("deny"))
            || reply.header("content-security-policy").is_some_and(|v| v.contains("frame-ancestors 'none'"));
        assert!(framing_denied, "framing is refused: {:?}", reply.headers);
        assert!(reply.header("referrer-policy").is_some(), "{:?}", reply.headers);
    }
}

#[tokio::test]
async fn token_responses_are_not_cached() {
    let app = spawn_app().await;
    let reply = app.try_register("ada@example.com", PASSWORD, "Ada").await.expect(201);
    assert!(reply.header("cache-control").is_some_and(|v| v.contains("no-store")), "{:?}", reply.headers);
    let reply = app.try_login("ada@example.com", PASSWORD).await.expect(200);
    assert!(reply.header("cache-control").is_some_and(|v| v.contains("no-store")), "{:?}", reply.headers);
}

const SHOP: &str = "https://shop.example";

async fn preflight(app: &TestApp, origin: &str) -> crate::helpers::Reply {
    app.send(
        app.request(Method::OPTIONS, "/v1/me")
            .header("origin", origin)
            .header("access-control-request-method", "PATCH")
            .header("access-control-request-headers", "authorization, content-type"),
    )
    .await
}

#[tokio::test]
async fn cors_allows_a_configured_origin() {
    let app = spawn_app_with(&[("cors_origins", "https://shop.example, http://localhost:5173")]).await;
    let reply = preflight(&app, SHOP).await;
    assert!(reply.status.is_success(), "preflight status {}", reply.status);
    assert_eq!(reply.header("access-control-allow-origin"), Some(SHOP));
    let methods = reply.header("access-control-allow-methods").unwrap_or_default().to_uppercase();
    assert!(methods.contains("PATCH"), "allowed methods {methods}");
    let headers = reply.header("access-control-allow-headers").unwrap_or_default().to_lowercase();
    assert!(headers.contains("authorization") && headers.contains("content-type"), "allowed headers {headers}");

    let reply = app.send(app.request(Method::GET, "/healthz").header("origin", "http://localhost:5173")).await.expect(200);
    assert_eq!(reply.header("access-control-allow-origin"), Some("http://localhost:5173"));
    let exposed = reply.header("access-control-expose-headers").unwrap_or_default().to_lowercase();
    assert!(exposed.contains("x-request-id"), "X-Request-Id is readable from browsers: {exposed:?}");
}

#[tokio::test]
async fn cors_refuses_other_origins() {
    let app = spawn_app_with(&[("cors_origins", SHOP)]).await;
    for origin in ["https://evil.example", "https://shop.example.evil.example", "http://shop.example"] {
        let reply = preflight(&app, origin).await;
        assert_eq!(reply.header("access-control-allow-origin"), None, "{origin} must not be allowed");
        let reply = app.send(app.request(Method::GET, "/healthz").header("origin", origin)).await;
        assert_eq!(reply.header("access-control-allow-origin"), None, "{origin} must not be allowed");
    }
}

#[tokio::test]
async fn cors_allows_no_origin_by_default() {
    let app = spawn_app().await;
    let reply = preflight(&app, SHOP).await;
    assert_eq!(reply.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn nul_characters_and_undecodable_ids_are_client_errors_everywhere() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let token = admin.access.as_str();
    // In a path: no resource has such an id.
    for (method, path) in [
        (Method::GET, "/v1/products/%00"),
        (Method::GET, "/v1/products/%FF%FE"),
        (Method::GET, "/v1/products/a%00b/quote"),
        (Method::PATCH, "/v1/admin/users/%00"),
        (Method::DELETE, "/v1/auth/sessions/%00"),
        (Method::POST, "/v1/notifications/%00/read"),
        (Method::POST, "/v1/admin/jobs/%00/retry"),
        (Method::DELETE, "/v1/admin/webhook-endpoints/%00"),
        (Method::DELETE, "/v1/admin/pricing/rules/%00"),
        (Method::PUT, "/v1/cart/items/%00"),
    ] {
        let reply = app.call(method.clone(), path, Some(token), Some(&json!({ "quantity": 1, "roles": ["customer"] }))).await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.text);
        reply.problem(404, "not_found");
    }
    // In a query string, or inside a cursor.
    let cursor = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, br#"["\u0000","usr_x"]"#);
    for path in [
        "/v1/admin/jobs?kind=%00".to_owned(),
        "/v1/admin/users?email_prefix=a%00".to_owned(),
        "/v1/products?q=%00".to_owned(),
        format!("/v1/admin/users?cursor={cursor}"),
    ] {
        app.get_authed(&path, token).await.problem(422, "validation_failed");
    }
    // In a JSON string.
    app.patch_json_authed("/v1/me", token, &json!({ "name": "Ada\u{0}" })).await.problem(422, "validation_failed");
    app.post_json("/v1/auth/login", &json!({ "email": "root@example.com\u{0}", "password": PASSWORD }))
        .await
        .problem(422, "validation_failed");
    // A backslash followed by the text u0000 is just text.
    let me = app.patch_json_authed("/v1/me", token, &json!({ "name": "Ada \\u0000" })).await.expect(200).json();
    assert_eq!(me["name"], "Ada \\u0000");
}

#[tokio::test]
async fn a_request_over_the_time_limit_is_a_503_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = spawn_app_with(&[("request_timeout_secs", "1")]).await;
    // A body that never finishes arriving (a slow or stalled client) holds nothing for long.
    let authority = app.address.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let head =
        format!("POST /v1/auth/login HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n");
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(br#"{"email":"#).await.unwrap();
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read(&mut response)).await.expect("an answer").unwrap();
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("application/problem+json") && response.contains("\"code\":\"timeout\""), "{response}");
}
