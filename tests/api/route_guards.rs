//! The guards every route has, table-driven from the served OpenAPI document (so a new route
//! is covered as soon as it is documented): 401 without a token, 403 for the wrong role, 422
//! for bad bodies and bad paging, 404 for unknown ids. One test per route family.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, Reply, TestApp, Tokens, spawn_app, spawn_app_with};

/// One documented operation.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: Method,
    /// The path template, e.g. `/v1/admin/users/{id}`.
    pub path: String,
    /// It declares a security requirement (a bearer token).
    pub secured: bool,
    /// It takes a JSON body.
    pub body: bool,
    /// Top-level fields its body schema requires.
    pub required: Vec<String>,
    /// Its 200 answer is a list page (`{data, next_cursor}`).
    pub list: bool,
}

impl Operation {
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    pub fn has_path_id(&self) -> bool {
        self.path.contains('{')
    }
}

/// The served OpenAPI document.
pub async fn openapi(app: &TestApp) -> Value {
    let reply = app.get("/openapi.json").await.expect(200);
    assert!(reply.header("content-type").unwrap_or_default().starts_with("application/json"));
    reply.json()
}

/// Follows local `$ref`s to what they name.
pub fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str().and_then(|r| r.strip_prefix("#/")) {
        Some(pointer) => resolve(doc, doc.pointer(&format!("/{pointer}")).unwrap_or_else(|| panic!("dangling $ref {pointer}"))),
        None => value,
    }
}

/// Every `/v1` operation of the document.
pub fn v1_operations(doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/v1/") {
            continue;
        }
        for (method, op) in item.as_object().expect("a path item") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            let body_schema = &op["requestBody"]["content"]["application/json"]["schema"];
            let required = resolve(doc, body_schema)["required"]
                .as_array()
                .map(|r| r.iter().filter_map(|f| f.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let ok = resolve(doc, &op["responses"]["200"]["content"]["application/json"]["schema"]);
            ops.push(Operation {
                method,
                path: path.clone(),
                secured: op["security"].as_array().is_some_and(|s| !s.is_empty()),
                body: !body_schema.is_null(),
                required,
                list: ok["properties"].get("next_cursor").is_some() && ok["properties"].get("data").is_some(),
            });
        }
    }
    assert!(ops.len() >= 40, "the document lists the v1 operations: {}", ops.len());
    ops
}

/// A well-formed id that names nothing, with the prefix of the collection it is used in.
fn unknown_id(collection: &str) -> String {
    let prefix = match collection {
        "users" => "usr",
        "sessions" => "ses",
        "products" | "items" => "prd",
        "rules" => "rul",
        "notifications" => "ntf",
        "jobs" => "job",
        "webhook-endpoints" => "whe",
        "orders" => "ord",
        "api-keys" => "key",
        "identities" => "idn",
        // A provider's name: any unconfigured one.
        "oauth" => "nosuchprovider",
        "passkeys" => "pky",
        other => panic!("no id prefix for the collection `{other}`: add it here"),
    };
    format!("{prefix}_01900000000070008000000000000000")
}

/// The path with every parameter replaced by `id(collection)`, the collection being the
/// segment before the parameter.
pub fn fill_path(path: &str, id: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("a closed parameter") + start;
        out.push_str(&rest[..start]);
        let collection = out.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_owned();
        out.push_str(&id(&collection));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The path with every parameter replaced by an unknown id.
pub fn with_unknown_ids(path: &str) -> String {
    fill_path(path, unknown_id)
}

/// A valid body for each operation that takes one. Every documented body must be here, so
/// a new route cannot skip the bad-body checks.
fn valid_body(op: &Operation) -> Value {
    let usd = |amount: i64| json!({ "amount": amount, "currency": "USD" });
    match (op.method.as_str(), op.path.as_str()) {
        ("POST", "/v1/auth/register") => json!({ "email": "new@example.com", "password": PASSWORD, "name": "New" }),
        ("POST", "/v1/auth/login") => json!({ "email": "nobody@example.com", "password": PASSWORD }),
        ("POST", "/v1/auth/refresh" | "/v1/auth/logout") => json!({ "refresh_token": "not-a-token" }),
        ("POST", "/v1/auth/verify-email") => json!({ "token": "not-a-token" }),
        ("POST", "/v1/auth/password/forgot") => json!({ "email": "nobody@example.com" }),
        ("POST", "/v1/auth/password/reset") => json!({ "token": "not-a-token", "new_password": "a brand new passphrase" }),
        ("POST", "/v1/auth/password/change") => json!({ "current_password": "wrong password", "new_password": "a brand new passphrase" }),
        ("POST", "/v1/auth/mfa/totp/enable") => json!({ "code": "123456" }),
        ("POST", "/v1/auth/mfa/totp/disable") | ("DELETE", "/v1/me") => json!({ "password": "wrong password" }),
        ("PATCH", "/v1/me") => json!({ "name": "Renamed" }),
        ("POST", "/v1/auth/passkeys/register/finish") => json!({ "challenge_id": "no-such-challenge", "credential": {}, "name": "Laptop" }),
        ("POST", "/v1/auth/passkeys/login/start") => json!({ "email": "nobody@example.com" }),
        ("POST", "/v1/auth/passkeys/login/finish") => json!({ "challenge_id": "no-such-challenge", "credential": {} }),
        ("PATCH", "/v1/admin/users/{id}") => json!({ "disabled": false }),
        ("POST", "/v1/admin/products") => {
            json!({ "sku": "NEW-1", "name": "New", "category": "misc", "price": usd(100), "stock": 1 })
        }
        ("PATCH", "/v1/admin/products/{id}") => json!({ "name": "Renamed" }),
        ("POST", "/v1/admin/products/{id}/stock-adjustments") => json!({ "delta": 1, "reason": "recount" }),
        ("POST", "/v1/admin/pricing/rules") => json!({ "name": "Sale", "kind": "promotion", "effect": { "percent_bps": -100 } }),
        ("PATCH", "/v1/admin/pricing/rules/{id}") => json!({ "name": "Renamed" }),
        ("PUT", "/v1/cart/items/{product_id}") => json!({ "quantity": 1 }),
        ("PUT", "/v1/cart/coupon") => json!({ "code": "NOPE" }),
        ("POST", "/v1/admin/webhook-endpoints") => json!({ "url": "https://hooks.example.com/keel", "events": ["*"] }),
        ("POST", "/v1/wallet/top-ups") => json!({ "amount": usd(100), "card_token": "tok_visa" }),
        ("POST", "/v1/wallet/transfers") => json!({ "to_email": "nobody@example.com", "amount": usd(100) }),
        ("POST", "/v1/checkout") => json!({ "payment_method": "wallet" }),
        ("POST", "/v1/admin/orders/{id}/refunds") => json!({ "amount": usd(100), "reason": "damaged" }),
        ("POST", "/v1/admin/api-keys") => json!({ "name": "ERP", "scopes": ["orders:read"] }),
        ("POST", "/v1/admin/api-keys/{id}/rotate") => json!({ "grace_seconds": 60 }),
        ("POST", "/v1/auth/oauth/exchange") => json!({ "code": "not-a-code" }),
        ("POST", "/v1/me/identities/{id}") => json!({ "redirect_to": "https://shop.example/auth/done" }),
        _ => panic!("{} takes a body: add a valid one to `valid_body`", op.name()),
    }
}

/// A value of another JSON type than `value`.
fn wrong_type(value: &Value) -> Value {
    match value {
        Value::String(_) => json!(12345),
        _ => json!("not the right type"),
    }
}

/// Sends `op` on `path` with `token`, with its valid body when it takes one.
async fn send(app: &TestApp, op: &Operation, path: &str, token: Option<&str>) -> Reply {
    let body = op.body.then(|| valid_body(op));
    call(app, op.method.clone(), path, token, body.as_ref()).await
}

/// `app.call` with a fresh `Idempotency-Key` (routes without [idem] ignore it), so idempotent
/// routes get past their key to the checks below.
async fn call(app: &TestApp, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
    let mut request = app.request(method, path).header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    app.send(request).await
}

/// Operations open without a token; every other `/v1` operation must declare and enforce one.
const PUBLIC: &[(&str, &str)] = &[
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("POST", "/v1/auth/verify-email"),
    ("POST", "/v1/auth/password/forgot"),
    ("POST", "/v1/auth/password/reset"),
    // Social login: the browser comes and goes between Keel and the provider before anyone is signed in.
    ("GET", "/v1/auth/oauth/providers"),
    ("GET", "/v1/auth/oauth/{provider}/authorize"),
    ("GET", "/v1/auth/oauth/{provider}/callback"),
    ("POST", "/v1/auth/oauth/{provider}/callback"),
    ("POST", "/v1/auth/oauth/exchange"),
    ("POST", "/v1/auth/passkeys/login/start"),
    ("POST", "/v1/auth/passkeys/login/finish"),
    ("GET", "/v1/products"),
    ("GET", "/v1/products/{id}"),
    ("GET", "/v1/products/{id}/quote"),
    // Authenticated by a ticket or the first message, not a header (browsers cannot send one).
    ("GET", "/v1/ws"),
    // Signed by the payment provider (`Keel-Signature`), not a user's token.
    ("POST", "/v1/webhooks/payments"),
];

/// Back-office reads open to `support`; every other `/v1/admin` operation is admin only.
const STAFF_READS: &[(&str, &str)] = &[
    ("GET", "/v1/admin/users"),
    ("GET", "/v1/admin/jobs"),
    ("GET", "/v1/admin/pricing/rules"),
    ("GET", "/v1/admin/ledger/verify"),
    ("GET", "/v1/admin/orders"),
    ("GET", "/v1/admin/dashboard"),
];

/// Back-office streams open to `support`: checked by their status, never read to the end.
const STAFF_STREAMS: &[(&str, &str)] = &[("GET", "/v1/admin/events")];

/// What an unknown id answers where it is not `404 not_found`.
fn unknown_id_answer(op: &Operation) -> Option<(u16, &'static str)> {
    match (op.method.as_str(), op.path.as_str()) {
        // A cart line names a product to buy: an unknown one is a bad value (field `product_id`).
        ("PUT", "/v1/cart/items/{product_id}") => Some((422, "validation_failed")),
        // Removing what the cart does not hold leaves the cart as it is.
        ("DELETE", "/v1/cart/items/{product_id}") => Some((200, "")),
        _ => None,
    }
}

fn listed(table: &[(&str, &str)], op: &Operation) -> bool {
    table.iter().any(|(m, p)| *m == op.method.as_str() && *p == op.path)
}

struct Cast {
    app: TestApp,
    customer: Tokens,
    support: Tokens,
    admin: Tokens,
    ops: Vec<Operation>,
    /// An existing resource per collection, for checks that must get past the lookup.
    existing: std::collections::HashMap<&'static str, String>,
}

impl Cast {
    async fn new() -> Cast {
        let app = spawn_app().await;
        let admin = app.create_admin("root@example.com", PASSWORD).await;
        let support = app.create_staff("help@example.com", PASSWORD, "support").await;
        let customer = app.customer("ada@example.com").await;
        let ops = v1_operations(&openapi(&app).await);
        let created = |path: &'static str, body: Value| {
            let (app, admin) = (&app, &admin);
            async move { app.post_json_authed(path, &admin.access, &body).await.expect(201).json()["id"].as_str().unwrap().to_owned() }
        };
        let product = created(
            "/v1/admin/products",
            json!({ "sku": "HAVE-1", "name": "Have", "category": "misc", "price": { "amount": 100, "currency": "USD" }, "stock": 5 }),
        )
        .await;
        let rule =
            created("/v1/admin/pricing/rules", json!({ "name": "Have", "kind": "promotion", "effect": { "percent_bps": -100 } })).await;
        let endpoint = created("/v1/admin/webhook-endpoints", json!({ "url": "https://hooks.example.com/have", "events": ["*"] })).await;
        let existing = [
            ("users", customer.user_id()),
            ("products", product.clone()),
            ("items", product),
            ("rules", rule),
            ("webhook-endpoints", endpoint),
        ]
        .into_iter()
        .collect();
        Cast { app, customer, support, admin, ops, existing }
    }

    /// The path naming existing resources (unknown ids where the cast has none).
    fn existing_path(&self, op: &Operation) -> String {
        fill_path(&op.path, |collection| self.existing.get(collection).cloned().unwrap_or_else(|| unknown_id(collection)))
    }

    /// The operations of one family (by path prefix); there must be some.
    fn family(&self, prefixes: &[&str]) -> Vec<Operation> {
        let ops: Vec<Operation> =
            self.ops.iter().filter(|op| prefixes.iter().any(|p| op.path == *p || op.path.starts_with(&format!("{p}/")))).cloned().collect();
        assert!(!ops.is_empty(), "no operations under {prefixes:?}");
        ops
    }

    /// The token that may use `op`.
    fn entitled(&self, op: &Operation) -> Option<&str> {
        if !op.secured {
            None
        } else if op.path.starts_with("/v1/admin/") {
            Some(&self.admin.access)
        } else {
            Some(&self.customer.access)
        }
    }

    /// Runs every guard check on the operations under `prefixes`.
    async fn check(&self, prefixes: &[&str]) {
        let app = &self.app;
        for op in self.family(prefixes) {
            let name = op.name();
            let path = with_unknown_ids(&op.path);

            // Authentication: declared in the document exactly where it is enforced.
            assert_eq!(op.secured, !listed(PUBLIC, &op), "{name}: the document's security requirement");
            if op.secured {
                send(app, &op, &path, None).await.problem(401, "unauthenticated");
                send(app, &op, &path, Some("not-a-token")).await.problem(401, "invalid_token");
            }

            // Roles: customers stay out of the back office; support only reads some of it.
            if op.path.starts_with("/v1/admin/") {
                send(app, &op, &path, Some(&self.customer.access)).await.problem(403, "forbidden");
                if listed(STAFF_STREAMS, &op) {
                    let stream = app.request(op.method.clone(), &path).bearer_auth(&self.support.access).send().await.unwrap();
                    assert_eq!(stream.status(), 200, "{name} for support");
                } else if listed(STAFF_READS, &op) {
                    send(app, &op, &path, Some(&self.support.access)).await.expect(200);
                } else {
                    send(app, &op, &path, Some(&self.support.access)).await.problem(403, "forbidden");
                }
            }

            let token = self.entitled(&op);
            // Unknown ids.
            if op.has_path_id() {
                let reply = send(app, &op, &path, token).await;
                match unknown_id_answer(&op) {
                    None => drop(reply.problem(404, "not_found")),
                    Some((422, code)) => drop(reply.problem(422, code)),
                    Some((status, _)) => drop(reply.expect(status)),
                }
            }

            // Bad bodies: not an object, each field of the wrong type, each required field missing.
            let path = self.existing_path(&op);
            if op.body {
                let valid = valid_body(&op);
                let bad = call(app, op.method.clone(), &path, token, Some(&json!([valid.clone()]))).await;
                assert_eq!(bad.status, 422, "{name} with an array body: {}", bad.text);
                bad.problem(422, "validation_failed");
                for (field, value) in valid.as_object().expect("an object body") {
                    let mut body = valid.clone();
                    body[field] = wrong_type(value);
                    let reply = call(app, op.method.clone(), &path, token, Some(&body)).await;
                    assert_eq!(reply.status, 422, "{name} with `{field}` of the wrong type: {}", reply.text);
                    reply.field_error(field);
                }
                for field in &op.required {
                    let mut body = valid.clone();
                    assert!(body.as_object_mut().expect("an object body").remove(field).is_some(), "{name}: the valid body has `{field}`");
                    let reply = call(app, op.method.clone(), &path, token, Some(&body)).await;
                    assert_eq!(reply.status, 422, "{name} without `{field}`: {}", reply.text);
                    reply.field_error(field);
                }
            }

            // Bad paging on list routes.
            if op.list {
                for query in ["limit=0", "limit=101", "limit=ten", "limit=-1", "cursor=garbage!", "cursor="] {
                    let reply = call(app, Method::GET, &format!("{path}?{query}"), token, None).await;
                    assert_eq!(reply.status, 422, "{name} with ?{query}: {}", reply.text);
                    reply.problem(422, "validation_failed");
                }
                // The control: a good page answers.
                call(app, Method::GET, &format!("{path}?limit=1"), token, None).await.expect(200);
            }
        }
        // Nothing above changed the callers: every token still works.
        for who in [&self.customer, &self.support, &self.admin] {
            app.me(&who.access).await.expect(200);
        }
    }
}

#[tokio::test]
async fn every_v1_operation_belongs_to_a_checked_family() {
    let app = spawn_app().await;
    let families = [
        "/v1/auth",
        "/v1/me",
        "/v1/admin/users",
        "/v1/admin/products",
        "/v1/products",
        "/v1/admin/pricing",
        "/v1/cart",
        "/v1/notifications",
        "/v1/admin/jobs",
        "/v1/admin/webhook-endpoints",
        "/v1/wallet",
        "/v1/admin/ledger",
        "/v1/realtime",
        "/v1/events",
        "/v1/ws",
        "/v1/checkout",
        "/v1/orders",
        "/v1/admin/orders",
        "/v1/webhooks",
        "/v1/admin/audit",
        "/v1/admin/dashboard",
        "/v1/admin/events",
        "/v1/admin/api-keys",
    ];
    for op in v1_operations(&openapi(&app).await) {
        assert!(
            families.iter().any(|f| op.path == *f || op.path.starts_with(&format!("{f}/"))),
            "{} is in no family of route_guards.rs: add a test for it",
            op.name()
        );
    }
}

/// Incoming webhooks are public but signed: no body is read, well-formed or not, before its
/// signature is checked (the settlement tests cover signed ones).
#[tokio::test]
async fn incoming_webhooks_read_nothing_before_the_signature() {
    let app = spawn_app_with(&[("payment_webhook_secret", "whsec_route_guards_0123")]).await;
    let ops: Vec<_> = v1_operations(&openapi(&app).await).into_iter().filter(|op| op.path.starts_with("/v1/webhooks/")).collect();
    assert!(!ops.is_empty(), "no webhook operations");
    for op in ops {
        assert!(!op.secured && listed(PUBLIC, &op), "{}: public, signed instead", op.name());
        for body in [json!([]), json!({ "id": 1 }), json!({ "id": "evt_1", "type": "payment_intent.succeeded", "data": {} })] {
            call(&app, op.method.clone(), &op.path, None, Some(&body)).await.problem(400, "invalid_signature");
        }
    }
}

#[tokio::test]
async fn auth_and_session_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/auth"]).await;
}

#[tokio::test]
async fn profile_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/me"]).await;
}

#[tokio::test]
async fn admin_user_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/admin/users"]).await;
}

#[tokio::test]
async fn catalog_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/admin/products", "/v1/products"]).await;
}

#[tokio::test]
async fn pricing_rule_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/admin/pricing"]).await;
}

#[tokio::test]
async fn cart_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/cart"]).await;
}

#[tokio::test]
async fn notification_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/notifications"]).await;
}

#[tokio::test]
async fn job_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/admin/jobs"]).await;
}

#[tokio::test]
async fn wallet_and_ledger_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/wallet", "/v1/admin/ledger"]).await;
}

#[tokio::test]
async fn checkout_and_order_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/checkout", "/v1/orders", "/v1/admin/orders"]).await;
}

#[tokio::test]
async fn webhook_endpoint_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/admin/webhook-endpoints"]).await;
}

#[tokio::test]
async fn audit_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/admin/audit"]).await;
}

#[tokio::test]
async fn realtime_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/realtime", "/v1/events", "/v1/ws"]).await;
}

#[tokio::test]
async fn dashboard_and_staff_feed_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/admin/dashboard", "/v1/admin/events"]).await;
}

#[tokio::test]
async fn api_key_routes_guard_their_input() {
    Cast::new().await.check(&["/v1/admin/api-keys"]).await;
}
