//! The baseline of the HTTP read benchmarks: a bare axum handler answering a body of the same
//! size as the Keel route under test, driven with the same load in the same run.

use std::sync::Arc;

use crate::common::{Report, drive, expect_status};

/// Runs one phase against Keel, then the same load against a bare handler answering a body of
/// the same size, and prints both with their ratio. Aborts when either phase had errors.
pub async fn compare<F, Fut>(name: &str, concurrency: usize, secs: u64, body_bytes: usize, keel: F) -> Report
where
    F: Fn(reqwest::Client) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let keel_report = drive(concurrency, secs, keel).await;
    keel_report.require_clean(name);
    let bare = Arc::new(start_bare(body_bytes).await);
    let bare_report = drive(concurrency, secs, move |c| {
        let bare = bare.clone();
        async move { expect_status(c.get(bare.as_str()), 200).await.map(drop) }
    })
    .await;
    let bare_name = format!("bare handler, {body_bytes} B body");
    bare_report.require_clean(&bare_name);
    println!("{}", keel_report.line(name));
    println!("{}", bare_report.line(&format!("  {bare_name}")));
    println!("  keel/bare = {:.2}", keel_report.rate() / bare_report.rate());
    keel_report
}

/// The baseline: the smallest axum handler, answering any request with a JSON body of exactly
/// `bytes` bytes (the size of what the Keel route under test answers).
async fn start_bare(bytes: usize) -> String {
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(bytes.saturating_sub(10)));
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}
