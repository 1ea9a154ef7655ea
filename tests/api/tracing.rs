//! Tracing: a caller's `traceparent` continued by the request and answered with the request's
//! own span; the trace carried into jobs, outbox events, webhook deliveries and payment provider
//! calls; trace ids in log lines; spans exported over OTLP/HTTP to a collector in the test.
//!
//! The trace layer and the exporter are process-wide, so every test here runs `keel serve` as a
//! process of its own.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::fake_provider::{API_KEY, FakeProvider};
use crate::helpers::{PASSWORD, Reply, TestApp, Tokens, spawn_app_process, spawn_app_process_with};
use crate::support::{eventually, webhook_receiver};

/// The caller's span, parent of the requests in these tests.
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-{CALLER_SPAN}-01")
}

/// The trace id and span id of a well-formed version-00 `traceparent`.
#[track_caller]
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    assert!(
        parts.len() == 4 && parts[0] == "00" && hex(parts[1], 32) && hex(parts[2], 16) && hex(parts[3], 2),
        "a version-00 traceparent: {traceparent:?}"
    );
    assert!(parts[1] != "0".repeat(32) && parts[2] != "0".repeat(16), "valid ids: {traceparent:?}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// The ids of the span a response names in its `traceparent`.
#[track_caller]
fn answered(reply: &Reply) -> (String, String) {
    ids(reply.header("traceparent").expect("the response names its span in traceparent"))
}

async fn with_traceparent(app: &TestApp, method: Method, path: &str, traceparent: &str) -> Reply {
    app.send(app.request(method, path).header("traceparent", traceparent)).await
}

#[tokio::test]
async fn a_request_continues_the_callers_trace_in_a_new_span_named_in_the_response_and_its_log_line() {
    let app = spawn_app_process().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply = with_traceparent(&app, Method::GET, "/healthz", &traceparent(trace_id)).await.expect(200);
    let (answered_trace, span_id) = answered(&reply);
    assert_eq!(answered_trace, trace_id, "the caller's trace goes on");
    assert_ne!(span_id, CALLER_SPAN, "the request has a span of its own");

    let line = eventually(30, "the request's log line", || async {
        app.process_logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["message"] == "request finished" && line["trace_id"] == trace_id)
    })
    .await;
    assert_eq!(line["span_id"], span_id.as_str(), "the line names the request's span: {line}");
    assert_eq!(line["span"]["http.route"], "/healthz", "{line}");
}

#[tokio::test]
async fn a_warning_inside_a_request_names_its_trace_when_the_request_span_is_filtered_out_of_the_log() {
    // Keel's own `listening` line (target `keel`) stays, which the helper waits for; the HTTP
    // layer's info (the request span among it) and the sign-in code's are filtered out.
    let app = spawn_app_process_with(&[("log", "warn,keel=info,keel::http=warn,keel::auth=warn")]).await;
    let ada = app.customer("ada@example.com").await;
    app.refresh(&ada.refresh).await.expect(200);
    let trace_id = "9f3a1e5c7b2d4e6f8a0b1c2d3e4f5a6b";
    let request = app.request(Method::POST, "/v1/auth/refresh").header("traceparent", traceparent(trace_id));
    let reply = app.send(request.json(&json!({ "refresh_token": ada.refresh }))).await;
    reply.problem(401, "token_reused");
    let (_, span_id) = answered(&reply);

    let line = eventually(30, "the warning about the spent token", || async {
        app.process_logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["message"] == "a spent refresh token was presented; its session is revoked")
    })
    .await;
    assert_eq!((line["trace_id"].as_str(), line["span_id"].as_str()), (Some(trace_id), Some(span_id.as_str())), "{line}");
    assert!(line.get("span").is_none(), "the log itself does not show the filtered request span: {line}");
    let logs = app.process_logs();
    assert!(!logs.contains("request finished"), "the HTTP layer's info lines are filtered out:\n{logs}");
}

#[tokio::test]
async fn a_malformed_traceparent_is_ignored_and_the_request_starts_a_new_trace() {
    let app = spawn_app_process().await;
    let given = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut traces = HashSet::new();
    for bad in [
        "not a traceparent".to_owned(),
        format!("01-{given}-{CALLER_SPAN}-01"),
        format!("00-{}-{CALLER_SPAN}-01", "0".repeat(32)),
        format!("00-{given}-{}-01", "0".repeat(16)),
        format!("00-{}-{CALLER_SPAN}-01", given.to_uppercase()),
        format!("00-{given}-{CALLER_SPAN}"),
        format!("00-{given}-{CALLER_SPAN}-01-00"),
    ] {
        let reply = with_traceparent(&app, Method::GET, "/v1/products", &bad).await.expect(200);
        let (trace_id, _) = answered(&reply);
        assert_ne!(trace_id, given, "{bad:?} is not continued");
        assert!(traces.insert(trace_id), "each request starts a trace of its own");
    }
    let (trace_id, _) = answered(&app.get("/v1/products").await.expect(200));
    assert!(traces.insert(trace_id), "without a traceparent, a new trace too");
}

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
}

/// An OTLP/HTTP collector: decodes each protobuf `POST /v1/traces` and keeps its spans.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Exported>>>,
}

impl Collector {
    async fn start() -> Collector {
        let spans: Arc<Mutex<Vec<Exported>>> = Arc::default();
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let kept = kept.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
                    let mut kept = kept.lock().unwrap();
                    for resource_spans in request.resource_spans {
                        let service = resource_spans
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.name")
                            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                                any_value::Value::StringValue(name) => Some(name.clone()),
                                _ => None,
                            })
                            .unwrap_or_default();
                        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                            kept.push(Exported {
                                service: service.clone(),
                                trace_id: hex::encode(&span.trace_id),
                                span_id: hex::encode(&span.span_id),
                                parent_span_id: hex::encode(&span.parent_span_id),
                                name: span.name,
                                kind: span.kind,
                            });
                        }
                    }
                    ([(CONTENT_TYPE, "application/x-protobuf")], Vec::<u8>::new())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Collector { url, spans }
    }

    /// Waits until every `(trace id, span name)` has arrived; returns all spans received.
    async fn wait_for(&self, wanted: &[(&str, &str)]) -> Vec<Exported> {
        eventually(60, "the spans to be exported", || async {
            let spans = self.spans.lock().unwrap().clone();
            wanted.iter().all(|(trace, name)| spans.iter().any(|s| s.trace_id == *trace && s.name == *name)).then_some(spans)
        })
        .await
    }
}

#[track_caller]
fn span<'a>(spans: &'a [Exported], trace_id: &str, name: &str) -> &'a Exported {
    let found: Vec<&Exported> = spans.iter().filter(|s| s.trace_id == trace_id && s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name:?} span in trace {trace_id}: {spans:#?}");
    found[0]
}

#[tokio::test]
async fn a_request_its_job_its_event_and_the_webhook_they_cause_are_exported_as_one_trace() {
    let collector = Collector::start().await;
    let receiver = webhook_receiver(vec![]).await;
    let app = spawn_app_process_with(&[("otlp_endpoint", collector.url.as_str()), ("otlp_service_name", "keel-under-test")]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let endpoint = app
        .post_json_authed(
            "/v1/admin/webhook-endpoints",
            &admin.access,
            &json!({ "url": receiver.url, "events": ["account.password_changed"] }),
        )
        .await
        .expect(201)
        .json();
    crate::logs::remember_secret(endpoint["secret"].as_str().unwrap_or_default());

    // Registering enqueues the verification mail: a job.
    let register_trace = "0af7651916cd43dd8448eb211c80319c";
    let body = json!({ "email": "ada@example.com", "password": PASSWORD, "name": "Ada" });
    let request = app.request(Method::POST, "/v1/auth/register").header("traceparent", traceparent(register_trace)).json(&body);
    let reply = app.send(request).await.expect(201);
    let (_, register_span) = answered(&reply);
    let ada = Tokens::from_reply(reply);

    // Changing the password writes an event; the webhook subscriber makes delivering it a job.
    let change_trace = "5b8efff798038103d269b633813fc60c";
    let new_password = "a brand new passphrase";
    crate::logs::remember_secret(new_password);
    let request = app
        .request(Method::POST, "/v1/auth/password/change")
        .bearer_auth(&ada.access)
        .header("traceparent", traceparent(change_trace))
        .json(&json!({ "current_password": PASSWORD, "new_password": new_password }));
    let reply = app.send(request).await.expect(204);
    let (_, change_span) = answered(&reply);

    let delivery = eventually(30, "the webhook delivery", || async { receiver.received.lock().unwrap().first().cloned() }).await;
    let (delivery_trace, post_span) = ids(delivery.traceparent.as_deref().expect("the delivery carries a traceparent"));
    assert_eq!(delivery_trace, change_trace, "the delivery continues the trace of the request that caused it");

    let spans = collector
        .wait_for(&[
            (register_trace, "POST /v1/auth/register"),
            (register_trace, "job mail.send"),
            (change_trace, "POST /v1/auth/password/change"),
            (change_trace, "publish account.password_changed"),
            (change_trace, "webhooks account.password_changed"),
            (change_trace, "job webhook.deliver"),
            (change_trace, "POST webhook"),
        ])
        .await;

    let register = span(&spans, register_trace, "POST /v1/auth/register");
    assert_eq!((register.span_id.as_str(), register.parent_span_id.as_str()), (register_span.as_str(), CALLER_SPAN));
    assert_eq!((register.kind, register.service.as_str()), (SpanKind::Server as i32, "keel-under-test"));
    let mail = span(&spans, register_trace, "job mail.send");
    assert_eq!(mail.parent_span_id, register_span, "the job runs in a child of the request that enqueued it");

    let change = span(&spans, change_trace, "POST /v1/auth/password/change");
    assert_eq!((change.span_id.as_str(), change.parent_span_id.as_str()), (change_span.as_str(), CALLER_SPAN));
    let publish = span(&spans, change_trace, "publish account.password_changed");
    assert_eq!((publish.parent_span_id.as_str(), publish.kind), (change_span.as_str(), SpanKind::Producer as i32));
    let handle = span(&spans, change_trace, "webhooks account.password_changed");
    assert_eq!((handle.parent_span_id.as_str(), handle.kind), (publish.span_id.as_str(), SpanKind::Consumer as i32));
    let deliver = span(&spans, change_trace, "job webhook.deliver");
    assert_eq!(deliver.parent_span_id, handle.span_id, "the delivery job was enqueued by the subscriber");
    let post = span(&spans, change_trace, "POST webhook");
    assert_eq!((post.parent_span_id.as_str(), post.kind), (deliver.span_id.as_str(), SpanKind::Client as i32));
    assert_eq!(post.span_id, post_span, "the receiver was told the delivery's own span");
}

#[cfg(unix)]
#[tokio::test]
async fn spans_still_buffered_are_sent_before_keel_exits() {
    let collector = Collector::start().await;
    let mut app = spawn_app_process_with(&[("otlp_endpoint", collector.url.as_str())]).await;
    let trace_id = "d4cda95b652f4a1592b449d5929fda1b";
    with_traceparent(&app, Method::GET, "/healthz", &traceparent(trace_id)).await.expect(200);
    let status = app.terminate().await;
    assert!(status.success(), "a clean exit: {status}");
    // The exporter's last POST was answered before the process ended.
    let spans = collector.spans.lock().unwrap().clone();
    let request = span(&spans, trace_id, "GET /healthz");
    assert_eq!((request.parent_span_id.as_str(), request.service.as_str()), (CALLER_SPAN, "keel"));
}

#[tokio::test]
async fn a_payment_provider_call_carries_the_traceparent_of_its_own_span() {
    let fake = FakeProvider::start().await;
    let app =
        spawn_app_process_with(&[("payment_provider", "http"), ("payment_api_base", fake.base.as_str()), ("payment_api_key", API_KEY)])
            .await;
    let ada = app.customer("ada@example.com").await;
    let trace_id = "a3ce929d0e0e47364bf92f3577b34da6";
    let request = app
        .request(Method::POST, "/v1/wallet/top-ups")
        .bearer_auth(&ada.access)
        .header("Idempotency-Key", "top-up-1")
        .header("traceparent", traceparent(trace_id))
        .json(&json!({ "amount": crate::wallet::usd(500), "card_token": "tok_visa" }));
    let reply = app.send(request).await.expect(201);
    let (_, request_span) = answered(&reply);
    let call = fake.calls().into_iter().find(|c| c.path == "/v1/payment_intents").expect("the top-up charged the card");
    let (call_trace, call_span) = ids(call.traceparent.as_deref().expect("the provider call carries a traceparent"));
    assert_eq!(call_trace, trace_id, "the call continues the request's trace");
    assert!(call_span != request_span && call_span != CALLER_SPAN, "the call has a span of its own");
}
