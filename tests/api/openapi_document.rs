//! The OpenAPI document's conventions, read from the served `/openapi.json`: what generated
//! clients and contract tests rely on and must not regress (CI also runs openapi-spec-validator,
//! schemathesis and a generated TypeScript client against it: .ci/api-contract).

use serde_json::Value;

use crate::helpers::spawn_app;
use crate::route_guards::{openapi, resolve};

/// Each `(method, path, operation)` of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            ops.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    assert!(ops.len() >= 45, "the document lists every operation: {}", ops.len());
    ops
}

fn parameter<'a>(op: &'a Value, name: &str) -> Option<&'a Value> {
    op["parameters"].as_array()?.iter().find(|p| p["name"] == name)
}

fn responses(op: &Value) -> impl Iterator<Item = (&String, &Value)> {
    op["responses"].as_object().expect("responses").iter()
}

#[tokio::test]
async fn the_document_names_a_server_and_describes_only_what_exists() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    assert!(doc["servers"][0]["url"].as_str().is_some_and(|u| !u.is_empty()), "a servers entry: {}", doc["servers"]);
    let description = doc["info"]["description"].as_str().expect("a description").to_lowercase();
    let paths: Vec<&String> = doc["paths"].as_object().expect("paths").keys().collect();
    for (word, path_part) in [("order", "/orders"), ("wallet", "/wallet"), ("payment", "/payments"), ("real-time", "/events")] {
        if description.contains(word) {
            assert!(paths.iter().any(|p| p.contains(path_part)), "the description mentions {word} but no route serves it");
        }
    }
}

#[tokio::test]
async fn limit_and_cursor_are_optional_query_parameters_on_every_list_route() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let mut lists = Vec::new();
    for (method, path, op) in operations(&doc) {
        for p in op["parameters"].as_array().into_iter().flatten() {
            let in_template = path.contains(&format!("{{{}}}", p["name"].as_str().unwrap_or_default()));
            assert_eq!(p["in"] == "path", in_template, "{method} {path}: parameter {p} is in the path exactly when the template names it");
        }
        let ok = resolve(&doc, &op["responses"]["200"]["content"]["application/json"]["schema"]);
        if ok["properties"].get("data").is_none() || ok["properties"].get("next_cursor").is_none() {
            continue;
        }
        lists.push(path.clone());
        assert_eq!(ok["required"], serde_json::json!(["data", "next_cursor"]), "{method} {path}: both page fields are always sent");
        for name in ["limit", "cursor"] {
            let p = parameter(&op, name).unwrap_or_else(|| panic!("{method} {path} documents `{name}`"));
            assert_eq!(p["in"], "query", "{method} {path}: `{name}`");
            assert_ne!(p["required"], true, "{method} {path}: `{name}` is optional");
        }
        let limit = &parameter(&op, "limit").expect("limit")["schema"];
        assert_eq!(
            (&limit["type"], &limit["minimum"], &limit["maximum"], &limit["default"]),
            (&"integer".into(), &1.into(), &100.into(), &20.into()),
            "{method} {path}: limit {limit}"
        );
    }
    for path in [
        "/v1/products",
        "/v1/auth/sessions",
        "/v1/notifications",
        "/v1/admin/users",
        "/v1/admin/jobs",
        "/v1/admin/pricing/rules",
        "/v1/admin/webhook-endpoints",
        "/v1/admin/webhook-endpoints/{id}/deliveries",
    ] {
        assert!(lists.iter().any(|p| p == path), "{path} is a list route: {lists:?}");
    }
}

#[tokio::test]
async fn every_response_has_a_description_and_the_request_id_header() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let request_id = &doc["components"]["headers"]["X-Request-Id"];
    assert_eq!(request_id["required"], true, "X-Request-Id is always sent: {request_id}");
    for (method, path, op) in operations(&doc) {
        for (status, response) in responses(&op) {
            let response = resolve(&doc, response);
            assert!(response["description"].as_str().is_some_and(|d| !d.is_empty()), "{method} {path} {status}: a description");
            assert!(response["headers"].get("X-Request-Id").is_some(), "{method} {path} {status}: X-Request-Id");
        }
    }
}

#[tokio::test]
async fn errors_are_problem_documents_and_each_operation_lists_what_it_can_refuse_with() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "detail", "code", "request_id"] {
        assert!(problem["required"].as_array().is_some_and(|r| r.contains(&field.into())), "Problem requires {field}: {problem}");
    }
    let field_error = resolve(&doc, &problem["properties"]["errors"]["items"]);
    assert_eq!(field_error["required"], serde_json::json!(["field", "code", "message"]), "{field_error}");

    for (method, path, op) in operations(&doc) {
        let declared = |status: &str| op["responses"].get(status).is_some();
        for (status, response) in responses(&op).filter(|(s, _)| s.starts_with('4')) {
            let content = resolve(&doc, response)["content"].as_object().cloned().unwrap_or_default();
            let types: Vec<&String> = content.keys().collect();
            assert_eq!(types, ["application/problem+json"], "{method} {path} {status}");
            assert_eq!(content["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem", "{method} {path} {status}");
        }
        if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
            assert!(declared("401"), "{method} {path} is secured: 401");
        }
        if path.starts_with("/v1/admin/") {
            assert!(declared("403"), "{method} {path} needs a role: 403");
        }
        if path.contains('{') {
            assert!(declared("404"), "{method} {path} names a resource: 404");
        }
        if op.get("requestBody").is_some() {
            for status in ["400", "413", "415", "422"] {
                assert!(declared(status), "{method} {path} takes a JSON body: {status}");
            }
        }
    }
}

#[tokio::test]
async fn limited_and_cacheable_operations_document_their_headers() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let mut limited = Vec::new();
    for (method, path, op) in operations(&doc) {
        let headers = |status: &str| op["responses"][status]["headers"].as_object().cloned().unwrap_or_default();
        if op["responses"].get("429").is_some() {
            limited.push(path.clone());
            assert!(headers("429").contains_key("Retry-After"), "{method} {path} 429: Retry-After");
            for (status, _) in responses(&op) {
                for name in ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"] {
                    assert!(headers(status).contains_key(name), "{method} {path} {status}: {name}");
                }
            }
        }
        if op["responses"].get("304").is_some() {
            assert!(headers("200").contains_key("ETag") && headers("304").contains_key("ETag"), "{method} {path}: ETag");
            assert!(parameter(&op, "If-None-Match").is_some_and(|p| p["in"] == "header"), "{method} {path}: If-None-Match");
        }
    }
    for path in [
        "/v1/auth/login",
        "/v1/auth/register",
        "/v1/auth/password/forgot",
        "/v1/auth/password/reset",
        "/v1/auth/verify-email",
        "/v1/products",
        "/v1/me",
        "/v1/checkout",
        "/v1/admin/users",
    ] {
        assert!(limited.iter().any(|p| p == path), "{path} is rate limited: {limited:?}");
    }
    assert!(!limited.iter().any(|p| p == "/v1/webhooks/payments"), "the provider's signed webhooks are not limited");
    for path in ["/v1/me", "/v1/products", "/v1/products/{id}"] {
        assert!(doc["paths"][path]["get"]["responses"].get("304").is_some(), "GET {path} sends an ETag");
    }
}

#[tokio::test]
async fn schemas_are_typed_and_satisfiable() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    for (method, path, op) in operations(&doc) {
        if let Some(body) = op.get("requestBody") {
            // JSON, or a form where a provider posts one (the social login callback).
            let content = &body["content"];
            let media = content.get("application/json").or_else(|| content.get("application/x-www-form-urlencoded"));
            let schema = resolve(&doc, &media.unwrap_or(&serde_json::Value::Null)["schema"]);
            assert!(schema["properties"].as_object().is_some_and(|p| !p.is_empty()), "{method} {path}: a typed body, not {schema}");
        }
    }
    // `allOf` with a closed schema admits no object (the extra fields break `additionalProperties: false`).
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        for part in schema["allOf"].as_array().into_iter().flatten() {
            assert_ne!(resolve(&doc, part)["additionalProperties"], false, "{name} extends a closed schema with allOf");
        }
    }
    let rule = &doc["components"]["schemas"]["Rule"];
    assert!(rule["required"].as_array().is_some_and(|r| r.contains(&"id".into()) && r.contains(&"effect".into())), "{rule}");
    let amount_off = resolve(&doc, &doc["components"]["schemas"]["Effect"]["properties"]["amount_off"]);
    assert!(amount_off.to_string().contains("#/components/schemas/Money"), "amount_off is Money: {amount_off}");
    let sort = &parameter(&doc["paths"]["/v1/products"]["get"], "sort").expect("sort")["schema"];
    assert_eq!(sort["enum"], serde_json::json!(["created_at", "-created_at", "price", "-price", "name"]), "{sort}");
    let state = resolve(&doc, &parameter(&doc["paths"]["/v1/admin/jobs"]["get"], "state").expect("state")["schema"]);
    assert!(state["enum"].as_array().is_some_and(|e| e.len() == 6), "job states: {state}");
    let password = &doc["components"]["schemas"]["RegisterRequest"]["properties"]["password"];
    assert_eq!((&password["minLength"], &password["maxLength"]), (&8.into(), &128.into()), "{password}");
}

/// The schema of `property` of the component `schema`, `$ref`s followed.
fn property<'a>(doc: &'a Value, schema: &str, property: &str) -> &'a Value {
    let value = &doc["components"]["schemas"][schema]["properties"][property];
    assert!(!value.is_null(), "{schema}.{property} is documented");
    resolve(doc, value)
}

#[tokio::test]
async fn enumerations_are_enums_and_enforced_limits_are_in_the_schemas() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let strings = |names: &[&str]| serde_json::json!(names);
    let kinds = strings(&["country", "quantity_tier", "demand", "promotion"]);
    assert_eq!(property(&doc, "Rule", "kind")["enum"], kinds);
    assert_eq!(property(&doc, "QuoteAdjustment", "kind")["enum"], kinds);
    let roles = strings(&["customer", "support", "admin"]);
    assert_eq!(resolve(&doc, &property(&doc, "UpdateUserRequest", "roles")["items"])["enum"], roles);
    let role = resolve(&doc, &parameter(&doc["paths"]["/v1/admin/users"]["get"], "role").expect("role")["schema"]);
    assert_eq!(role["enum"], roles);
    // Webhook event types: what an endpoint subscribes to is the catalogue or `*`; what a
    // delivery reports is one type of the catalogue.
    let subscribable = resolve(&doc, &property(&doc, "NewEndpoint", "events")["items"])["enum"].clone();
    let delivered = property(&doc, "Delivery", "event_type")["enum"].clone();
    let mut expected = delivered.as_array().expect("event types are an enum").clone();
    assert!(expected.contains(&"product.updated".into()) && !expected.contains(&"*".into()), "{delivered}");
    expected.push("*".into());
    assert_eq!(subscribable, Value::Array(expected));

    for schema in ["RegisterRequest", "LoginRequest", "ForgotRequest"] {
        assert_eq!(property(&doc, schema, "email")["format"], "email", "{schema}.email");
    }
    for (schema, field) in [("RegisterRequest", "password"), ("ChangePasswordRequest", "new_password"), ("ResetRequest", "new_password")] {
        let password = property(&doc, schema, field);
        assert_eq!((&password["minLength"], &password["maxLength"]), (&8.into(), &128.into()), "{schema}.{field}");
    }
    let line = property(&doc, "SetQuantity", "quantity");
    assert_eq!((&line["minimum"], &line["maximum"]), (&0.into(), &999.into()), "a cart line's quantity: {line}");
    let quoted = &parameter(&doc["paths"]["/v1/products/{id}/quote"]["get"], "quantity").expect("quantity")["schema"];
    assert_eq!((&quoted["minimum"], &quoted["maximum"], &quoted["default"]), (&1.into(), &999.into(), &1.into()), "{quoted}");

    // Whether a PATCH without If-Match overwrites is said where a client looks for it.
    let if_match = parameter(&doc["paths"]["/v1/admin/products/{id}"]["patch"], "If-Match").expect("If-Match");
    assert_eq!((&if_match["in"], &if_match["schema"]["type"]), (&"header".into(), &"string".into()), "{if_match}");
    assert_ne!(if_match["required"], true);
    assert!(if_match["description"].as_str().is_some_and(|d| d.contains("without it the update overwrites")), "{if_match}");
}

/// Fields that hold money wherever they appear.
const MONEY_FIELDS: [&str; 9] =
    ["amount", "amount_off", "price", "unit_price", "subtotal", "total", "line_total", "balance", "balance_after"];

/// Walks `value` (at JSON pointer `at`): each money-named property that is a `Money` (directly,
/// or as one branch of a nullable `oneOf`) counts in `found`; each other one goes into `wrong`.
fn money_outside_money(value: &Value, at: &str, found: &mut usize, wrong: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (name, schema) in object.get("properties").and_then(Value::as_object).into_iter().flatten() {
                if !MONEY_FIELDS.contains(&name.as_str()) {
                    continue;
                }
                let money = "#/components/schemas/Money";
                let branches = schema["oneOf"].as_array().into_iter().flatten();
                if schema["$ref"] == money || branches.clone().any(|b| b["$ref"] == money) {
                    *found += 1;
                } else {
                    wrong.push(format!("{at}/properties/{name}: {schema}"));
                }
            }
            for (key, child) in object {
                money_outside_money(child, &format!("{at}/{key}"), found, wrong);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                money_outside_money(child, &format!("{at}/{i}"), found, wrong);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn every_money_field_is_money() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let money = &doc["components"]["schemas"]["Money"];
    assert_eq!(money["required"], serde_json::json!(["amount", "currency"]), "{money}");
    assert_eq!(money["properties"]["amount"]["type"], "integer", "minor units: {money}");
    let (mut found, mut wrong) = (0, Vec::new());
    // The payment provider's own (Stripe-shaped) event, which Keel reads but does not define.
    let foreign = ["PaymentProviderObject"];
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        if name != "Money" && !foreign.contains(&name.as_str()) {
            money_outside_money(schema, &format!("#/components/schemas/{name}"), &mut found, &mut wrong);
        }
    }
    money_outside_money(&doc["paths"], "#/paths", &mut found, &mut wrong);
    assert!(wrong.is_empty(), "money that is not Money:\n{}", wrong.join("\n"));
    // The control: the walk sees the money fields there are (product, quote, cart, rule).
    assert!(found >= 10, "only {found} money fields seen");
}

#[tokio::test]
async fn idempotent_operations_document_their_key_codes_and_replay_header() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    for path in ["/v1/wallet/top-ups", "/v1/wallet/transfers"] {
        let op = &doc["paths"][path]["post"];
        let key = parameter(op, "Idempotency-Key").unwrap_or_else(|| panic!("POST {path}: Idempotency-Key"));
        assert_eq!((key["in"].as_str(), key["required"].as_bool()), (Some("header"), Some(true)), "POST {path}");
        for (status, code) in [("400", "idempotency_key_required"), ("409", "idempotency_key_in_use"), ("422", "idempotency_key_reuse")] {
            let description = op["responses"][status]["description"].as_str().unwrap_or_default();
            assert!(description.contains(code), "POST {path} {status}: {description}");
        }
        for status in ["201", "402"] {
            assert!(op["responses"][status]["headers"].get("Idempotent-Replayed").is_some(), "POST {path} {status}");
        }
    }
    assert!(doc["paths"]["/v1/wallet/transfers"]["post"]["responses"].get("402").is_some());
    assert!(doc["paths"]["/v1/wallet/top-ups"]["post"]["responses"].get("503").is_some());
}
