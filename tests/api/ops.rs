//! Operations endpoints: health, readiness, metrics, OpenAPI, docs, JWKS.

use serde_json::Value;

use crate::helpers::{ed25519_signature_valid, jwt_parts, spawn_app};

/// Every `/v1` route (path, method) of accounts and sessions.
const V1_ROUTES: &[(&str, &str)] = &[
    ("/v1/auth/register", "post"),
    ("/v1/auth/login", "post"),
    ("/v1/auth/refresh", "post"),
    ("/v1/auth/logout", "post"),
    ("/v1/auth/sessions", "get"),
    ("/v1/auth/sessions", "delete"),
    ("/v1/auth/sessions/{id}", "delete"),
    ("/v1/auth/password/change", "post"),
    ("/v1/me", "get"),
    ("/v1/me", "patch"),
    ("/v1/me", "delete"),
    ("/v1/admin/users", "get"),
    ("/v1/admin/users/{id}", "patch"),
];

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let reply = app.get("/healthz").await.expect(200);
    assert_eq!(reply.json()["status"], "ok");
}

#[tokio::test]
async fn readyz_reports_the_database_check() {
    let app = spawn_app().await;
    let reply = app.get("/readyz").await.expect(200);
    let body = reply.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_time_them() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    app.me(&tokens.access).await.expect(200);
    app.me("garbage").await.expect(401);
    let reply = app.get("/metrics").await.expect(200);
    assert!(reply.header("content-type").unwrap_or_default().starts_with("text/plain"));
    let text = &reply.text;
    let me_lines: Vec<&str> =
        text.lines().filter(|l| l.starts_with("keel_http_requests_total{") && l.contains("route=\"/v1/me\"")).collect();
    assert!(me_lines.iter().any(|l| l.contains("status=\"200\"")), "a 200 counter for /v1/me in:\n{text}");
    assert!(me_lines.iter().any(|l| l.contains("status=\"401\"")), "a 401 counter for /v1/me in:\n{text}");
    assert!(
        text.lines().any(|l| l.starts_with("keel_http_requests_total{") && l.contains("route=\"/v1/auth/register\"")),
        "a counter for register in:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("keel_http_request_duration_seconds_bucket{") && l.contains("route=\"/v1/me\"")),
        "a latency histogram for /v1/me in:\n{text}"
    );
}

#[tokio::test]
async fn metrics_do_not_label_requests_with_raw_paths() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    app.delete_authed("/v1/auth/sessions/ses_doesnotexist123", &tokens.access).await.expect(404);
    let text = app.get("/metrics").await.expect(200).text;
    assert!(!text.contains("ses_doesnotexist123"), "route labels are templates, not raw paths:\n{text}");
    assert!(text.contains("route=\"/v1/auth/sessions/{id}\""), "templated route label in:\n{text}");
}

async fn openapi(app: &crate::helpers::TestApp) -> Value {
    let reply = app.get("/openapi.json").await.expect(200);
    assert!(reply.header("content-type").unwrap_or_default().starts_with("application/json"));
    reply.json()
}

#[tokio::test]
async fn openapi_is_version_3_1_and_lists_every_v1_route() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "openapi version: {}", doc["openapi"]);
    assert!(doc["info"]["title"].is_string());
    for (path, method) in V1_ROUTES {
        assert!(doc["paths"][path][method].is_object(), "{} {path} is documented", method.to_uppercase());
    }
}

#[tokio::test]
async fn openapi_documents_bearer_auth_and_problem_responses() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
    assert!(
        schemes.values().any(|s| s["type"] == "http" && s["scheme"].as_str().is_some_and(|v| v.eq_ignore_ascii_case("bearer"))),
        "{schemes:?}"
    );
    let me = &doc["paths"]["/v1/me"]["get"];
    assert!(me["security"].is_array(), "GET /v1/me declares its security: {me}");
    assert!(me["responses"]["401"].is_object(), "GET /v1/me documents 401: {me}");
    let register = &doc["paths"]["/v1/auth/register"]["post"];
    for status in ["201", "409", "422"] {
        assert!(register["responses"][status].is_object(), "register documents {status}: {register}");
    }
}

#[tokio::test]
async fn docs_page_is_html() {
    let app = spawn_app().await;
    let reply = app.get("/docs").await.expect(200);
    assert!(reply.header("content-type").unwrap_or_default().starts_with("text/html"));
    assert!(reply.text.to_lowercase().contains("<html"), "{}", reply.text);
}

#[tokio::test]
async fn jwks_publishes_the_key_that_signs_access_tokens() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let jwks = app.get("/.well-known/jwks.json").await.expect(200).json();
    let keys = jwks["keys"].as_array().expect("keys");
    assert!(!keys.is_empty());
    let (header, _) = jwt_parts(&tokens.access);
    let key = keys.iter().find(|k| k["kid"] == header["kid"]).unwrap_or_else(|| panic!("kid {} in {jwks}", header["kid"]));
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert!(key.get("d").is_none(), "no private part in the JWKS");
    assert!(ed25519_signature_valid(&tokens.access, key["x"].as_str().expect("x")), "the published key verifies the token");
}

#[tokio::test]
async fn metrics_show_the_job_queue_its_latency_and_the_outbox_lag() {
    let app = spawn_app().await;
    // Registering queues a verification mail, which a worker sends (to a file).
    app.customer("ada@example.com").await;
    let metrics = crate::support::eventually(20, "the mail job in the metrics", || async {
        let text = app.get("/metrics").await.expect(200).text;
        text.contains("keel_job_duration_seconds_bucket{kind=\"mail.send\",outcome=\"done\"").then_some(text)
    })
    .await;
    for expected in ["keel_job_wait_seconds_bucket{kind=\"mail.send\"", "keel_jobs{state=\"done\"}", "keel_outbox_lag_events"] {
        assert!(metrics.contains(expected), "{expected} missing from\n{metrics}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_then_exits_cleanly() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = crate::helpers::spawn_app().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut keel = crate::support::spawn_keel(&app, &["serve"], &[("KEEL_LISTEN", listen.as_str()), ("KEEL_RUN_WORKERS", "false")]);
    crate::support::eventually(30, "keel serve to answer", || async {
        app.client.get(format!("http://{listen}/healthz")).send().await.ok().filter(|r| r.status() == 200).map(|_| ())
    })
    .await;

    // A request whose body is still arriving when the signal comes.
    let body = br#"{"email":"nobody@example.com","password":"not the password"}"#;
    let mut socket = tokio::net::TcpStream::connect(&listen).await.unwrap();
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: {listen}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let pid = keel.id().expect("keel is running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(tokio::net::TcpStream::connect(&listen).await.is_err(), "no new connections once shutting down");

    socket.write_all(&body[10..]).await.unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 401"), "the in-flight request completes: {response}");
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), keel.wait()).await.expect("keel exits").unwrap();
    assert!(status.success(), "a clean exit: {status}");
}
