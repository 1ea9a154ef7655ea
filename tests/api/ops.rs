//! Operations endpoints: health, readiness, metrics, OpenAPI, docs, JWKS.

use reqwest::Method;

use crate::helpers::{ed25519_signature_valid, jwt_parts, spawn_app, spawn_app_process};
use crate::route_guards::{fill_path, openapi, v1_operations, with_unknown_ids};

/// Every `/v1` route of the contract, implemented or not yet.
const CONTRACT_V1: &[(&str, &str)] = &[
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/auth/sessions"),
    ("DELETE", "/v1/auth/sessions"),
    ("DELETE", "/v1/auth/sessions/{id}"),
    ("POST", "/v1/auth/verify-email"),
    ("POST", "/v1/auth/verify-email/resend"),
    ("POST", "/v1/auth/password/forgot"),
    ("POST", "/v1/auth/password/reset"),
    ("POST", "/v1/auth/password/change"),
    ("POST", "/v1/auth/mfa/totp/setup"),
    ("POST", "/v1/auth/mfa/totp/enable"),
    ("POST", "/v1/auth/mfa/totp/disable"),
    ("GET", "/v1/auth/oauth/providers"),
    ("GET", "/v1/auth/oauth/{provider}/authorize"),
    ("GET", "/v1/auth/oauth/{provider}/callback"),
    ("POST", "/v1/auth/oauth/exchange"),
    ("GET", "/v1/me/identities"),
    ("DELETE", "/v1/me/identities/{id}"),
    ("POST", "/v1/me/identities/{provider}"),
    ("POST", "/v1/auth/passkeys/register/start"),
    ("POST", "/v1/auth/passkeys/register/finish"),
    ("GET", "/v1/me/passkeys"),
    ("DELETE", "/v1/me/passkeys/{id}"),
    ("POST", "/v1/auth/passkeys/login/start"),
    ("POST", "/v1/auth/passkeys/login/finish"),
    ("POST", "/v1/admin/api-keys"),
    ("GET", "/v1/admin/api-keys"),
    ("POST", "/v1/admin/api-keys/{id}/rotate"),
    ("DELETE", "/v1/admin/api-keys/{id}"),
    ("GET", "/v1/me"),
    ("PATCH", "/v1/me"),
    ("DELETE", "/v1/me"),
    ("GET", "/v1/admin/users"),
    ("PATCH", "/v1/admin/users/{id}"),
    ("GET", "/v1/products"),
    ("GET", "/v1/products/{id}"),
    ("GET", "/v1/products/{id}/quote"),
    ("POST", "/v1/admin/products"),
    ("PATCH", "/v1/admin/products/{id}"),
    ("DELETE", "/v1/admin/products/{id}"),
    ("POST", "/v1/admin/products/{id}/stock-adjustments"),
    ("GET", "/v1/admin/pricing/rules"),
    ("POST", "/v1/admin/pricing/rules"),
    ("PATCH", "/v1/admin/pricing/rules/{id}"),
    ("DELETE", "/v1/admin/pricing/rules/{id}"),
    ("GET", "/v1/cart"),
    ("DELETE", "/v1/cart"),
    ("PUT", "/v1/cart/items/{product_id}"),
    ("DELETE", "/v1/cart/items/{product_id}"),
    ("PUT", "/v1/cart/coupon"),
    ("DELETE", "/v1/cart/coupon"),
    ("POST", "/v1/checkout"),
    ("GET", "/v1/orders"),
    ("GET", "/v1/orders/{id}"),
    ("POST", "/v1/orders/{id}/cancel"),
    ("GET", "/v1/admin/orders"),
    ("POST", "/v1/admin/orders/{id}/ship"),
    ("POST", "/v1/admin/orders/{id}/deliver"),
    ("POST", "/v1/admin/orders/{id}/refunds"),
    ("GET", "/v1/wallet"),
    ("GET", "/v1/wallet/transactions"),
    ("POST", "/v1/wallet/top-ups"),
    ("POST", "/v1/wallet/transfers"),
    ("GET", "/v1/admin/ledger/verify"),
    ("POST", "/v1/webhooks/payments"),
    ("GET", "/v1/notifications"),
    ("POST", "/v1/notifications/{id}/read"),
    ("POST", "/v1/notifications/read-all"),
    ("POST", "/v1/realtime/tickets"),
    ("GET", "/v1/events"),
    ("GET", "/v1/ws"),
    ("GET", "/v1/admin/jobs"),
    ("POST", "/v1/admin/jobs/{id}/retry"),
    ("DELETE", "/v1/admin/jobs/{id}"),
    ("POST", "/v1/admin/webhook-endpoints"),
    ("GET", "/v1/admin/webhook-endpoints"),
    ("DELETE", "/v1/admin/webhook-endpoints/{id}"),
    ("GET", "/v1/admin/webhook-endpoints/{id}/deliveries"),
    ("POST", "/v1/admin/webhook-endpoints/{id}/ping"),
    ("GET", "/v1/admin/audit"),
    ("GET", "/v1/admin/audit/verify"),
];

/// True when the reply is the router's own answer for a route or method it does not serve.
fn not_served(reply: &crate::helpers::Reply) -> bool {
    match reply.status.as_u16() {
        404 => reply.json()["detail"] == "route not found",
        405 => true,
        _ => false,
    }
}

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
    // A process of its own: metrics are process-wide, and `cargo test` runs every test in one.
    let app = spawn_app_process().await;
    let tokens = app.customer("ada@example.com").await;
    app.me(&tokens.access).await.expect(200);
    app.me("garbage").await.problem(401, "invalid_token");
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
    // A process of its own: metrics are process-wide, and `cargo test` runs every test in one.
    let app = spawn_app_process().await;
    let tokens = app.customer("ada@example.com").await;
    app.delete_authed("/v1/auth/sessions/ses_doesnotexist123", &tokens.access).await.problem(404, "not_found");
    let text = app.get("/metrics").await.expect(200).text;
    assert!(!text.contains("ses_doesnotexist123"), "route labels are templates, not raw paths:\n{text}");
    assert!(text.contains("route=\"/v1/auth/sessions/{id}\""), "templated route label in:\n{text}");
}

#[tokio::test]
async fn openapi_is_version_3_1_and_documents_exactly_the_served_v1_routes() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "openapi version: {}", doc["openapi"]);
    assert!(doc["info"]["title"].is_string());
    let ops = v1_operations(&doc);

    // Every documented operation is served, and answers (here without a token or a body)
    // with an X-Request-Id, and with problem+json carrying that id when it refuses.
    for op in &ops {
        let reply = app.call(op.method.clone(), &with_unknown_ids(&op.path), None, None).await;
        assert!(!not_served(&reply), "{} is documented but not served: {}", op.name(), reply.text);
        assert!(reply.header("x-request-id").is_some_and(|id| !id.is_empty()), "{}: X-Request-Id", op.name());
        if !reply.status.is_success() {
            let code = reply.json()["code"].as_str().unwrap_or_default().to_owned();
            reply.problem(reply.status.as_u16(), &code);
        }
        if op.secured {
            reply.problem(401, "unauthenticated");
        }
    }
    // On a documented path, an undocumented method is not served either.
    let mut paths: Vec<&str> = ops.iter().map(|op| op.path.as_str()).collect();
    paths.dedup();
    for path in paths {
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            if ops.iter().any(|op| op.path == path && op.method == method) {
                continue;
            }
            let reply = app.call(method.clone(), &with_unknown_ids(path), None, None).await;
            reply.problem(405, "method_not_allowed");
        }
    }
    // Every route of the contract is either documented or not served at all (not yet built).
    // Parameter names aside: one position of a path has one name (`/v1/me/identities/{id}` is
    // the contract's `{provider}` for POST and `{id}` for DELETE).
    let template = |path: &str| path.split('/').map(|s| if s.starts_with('{') { "{}" } else { s }).collect::<Vec<_>>().join("/");
    for (method, path) in CONTRACT_V1 {
        let method: Method = method.parse().unwrap();
        if ops.iter().any(|op| template(&op.path) == template(path) && op.method == method) {
            continue;
        }
        let reply = app.call(method.clone(), &fill_path(path, |_| "nope_1".to_owned()), None, None).await;
        assert!(not_served(&reply), "{method} {path} is served but not documented: {} {}", reply.status, reply.text);
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
async fn every_metric_family_is_described_and_process_and_build_metrics_are_there() {
    let app = spawn_app_process().await;
    // Touch every part that records: HTTP, the job queue (a verification mail), the cache.
    app.customer("ada@example.com").await;
    app.get("/v1/products").await.expect(200);
    let text = crate::support::eventually(20, "the mail job in the metrics", || async {
        let text = app.get("/metrics").await.expect(200).text;
        text.contains("keel_job_duration_seconds_bucket{").then_some(text)
    })
    .await;
    let described = |prefix: &str| -> Vec<String> {
        text.lines().filter_map(|l| l.strip_prefix(prefix)).filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
    };
    let (types, helps) = (described("# TYPE "), described("# HELP "));
    for family in &types {
        assert!(helps.contains(family), "# HELP for {family} in:\n{text}");
    }
    for family in [
        "keel_http_requests_total",
        "keel_http_request_duration_seconds",
        "keel_db_pool_connections",
        "keel_jobs",
        "keel_job_wait_seconds",
        "keel_job_duration_seconds",
        "keel_outbox_lag_events",
        "keel_cache_requests_total",
        "keel_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
        "process_start_time_seconds",
    ] {
        assert!(types.iter().any(|t| t == family), "family {family} in:\n{text}");
    }
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in:\n{text}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("a value in {line}"))
    };
    assert_eq!(value(&format!("keel_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))), 1.0);
    assert!(value("process_resident_memory_bytes") > 1e6, "a real resident size");
    assert!(value("process_open_fds") >= 3.0 && value("process_max_fds") >= value("process_open_fds"));
    let started = value("process_start_time_seconds");
    assert!((started - crate::helpers::unix_now() as f64).abs() < 600.0, "started just now: {started}");
}

#[tokio::test]
async fn metrics_show_the_job_queue_its_latency_and_the_outbox_lag() {
    // A process of its own: metrics are process-wide, and `cargo test` runs every test in one.
    let app = spawn_app_process().await;
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

    // A request whose body is still arriving when the signal comes. `Expect: 100-continue`
    // gives the positive signal that the handler is reading the body: the interim 100.
    let body = br#"{"email":"nobody@example.com","password":"not the password"}"#;
    let mut socket = tokio::net::TcpStream::connect(&listen).await.unwrap();
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: {listen}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(std::time::Duration::from_secs(30), socket.read(&mut byte)).await.expect("an interim response");
        assert_eq!(read.unwrap(), 1, "the connection stays open; so far: {:?}", String::from_utf8_lossy(&interim));
        interim.push(byte[0]);
    }
    assert!(interim.starts_with(b"HTTP/1.1 100"), "100 Continue: {:?}", String::from_utf8_lossy(&interim));
    socket.write_all(&body[..10]).await.unwrap();
    let pid = rustix::process::Pid::from_raw(keel.id().expect("keel is running") as i32).expect("a process id");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("sending SIGTERM");
    // The listener closes (no new connections) while the request above is still open.
    crate::support::eventually(30, "the listener to close", || async {
        tokio::net::TcpStream::connect(&listen).await.is_err().then_some(())
    })
    .await;

    socket.write_all(&body[10..]).await.unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 401"), "the in-flight request completes: {response}");
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), keel.wait()).await.expect("keel exits").unwrap();
    assert!(status.success(), "a clean exit: {status}");
}
