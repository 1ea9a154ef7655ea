//! The load driver shared by the HTTP benchmarks: concurrent clients for a fixed time,
//! the Keel server on a fresh SQLite database, and a bare axum handler answering a body of the
//! same size as the baseline of each phase. A phase with errors, or with no request completed,
//! aborts the benchmark (exit code 1) instead of printing a meaningless rate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel::app::Application;
use keel::config::Config;

pub struct Report {
    pub requests: u64,
    pub errors: u64,
    /// What went wrong the first time, for the abort message.
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub latencies_us: Vec<u64>,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let idx = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[idx] as f64 / 1000.0
    }

    pub fn line(&self, name: &str) -> String {
        format!(
            "{name:<30} {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} requests, {} errors)",
            self.rate(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.requests,
            self.errors
        )
    }

    /// A phase with errors or without a single completed request measured nothing: stop the
    /// benchmark (exit code 1) rather than print a rate.
    pub fn require_clean(&self, name: &str) {
        if self.errors > 0 || self.requests == 0 {
            abort(&format!(
                "{name}: {} requests, {} errors; first error: {}",
                self.requests,
                self.errors,
                self.first_error.as_deref().unwrap_or("none")
            ));
        }
    }
}

/// Ends the benchmark with a message and a non-zero exit code.
pub fn abort(message: &str) -> ! {
    eprintln!("benchmark aborted: {message}");
    std::process::exit(1)
}

/// Drives `concurrency` clients for `secs`, each sending `make(client)` in a loop; `make`
/// says what went wrong when a request fails.
pub async fn drive<F, Fut>(concurrency: usize, secs: u64, make: F) -> Report
where
    F: Fn(reqwest::Client) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let make = Arc::new(make);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (make, stop, errors, first_error) = (make.clone(), stop.clone(), errors.clone(), first_error.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match make(client.clone()).await {
                    Ok(()) => latencies.push(t.elapsed().as_micros() as u64),
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e);
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    let first_error = first_error.lock().unwrap().take();
    Report { requests: latencies_us.len() as u64, errors: errors.load(Ordering::Relaxed), first_error, elapsed, latencies_us }
}

/// Sends a request and succeeds on `status`; returns the body length.
pub async fn expect_status(request: reqwest::RequestBuilder, status: u16) -> Result<usize, String> {
    let response = request.send().await.map_err(|e| format!("request failed: {e}"))?;
    let got = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| format!("reading the body: {e}"))?;
    if got == status { Ok(body.len()) } else { Err(format!("status {got} (expected {status}): {}", String::from_utf8_lossy(&body))) }
}

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

pub async fn start_keel(extra: &[(&str, &str)]) -> (String, std::path::PathBuf, tokio::sync::oneshot::Sender<()>) {
    let dir = std::env::temp_dir().join(format!("keel-bench-{}", uuid::Uuid::now_v7().simple()));
    let config = vec![
        ("listen", "127.0.0.1:0".to_owned()),
        ("data_dir", dir.display().to_string()),
        ("log", "error".to_owned()),
        ("rate_limit_auth_ip", "off".to_owned()),
        ("rate_limit_auth_account", "off".to_owned()),
        ("rate_limit_auth_account_ip", "off".to_owned()),
        ("rate_limit_mail_ip", "off".to_owned()),
        ("rate_limit_mail_account", "off".to_owned()),
    ]
    .into_iter()
    .chain(extra.iter().map(|(k, v)| (*k, (*v).to_owned())))
    .collect::<Vec<_>>();
    let config = Config::from_pairs(config).unwrap();
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    (base, dir, tx)
}

/// The baseline: the smallest axum handler, answering any request with a JSON body of exactly
/// `bytes` bytes (the size of what the Keel route under test answers).
pub async fn start_bare(bytes: usize) -> String {
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
