//! Load benchmark for accounts: login/s against the Argon2 bound, and authenticated
//! `GET /v1/me` against a bare axum JSON handler, measured in the same run.
//!
//! Run: `cargo bench --bench auth` (optional env: BENCH_SECS, BENCH_CONCURRENCY).
//! The load generator shares the machine with the servers, so compare the ratios printed
//! here, not absolute figures across machines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keel::app::Application;
use keel::auth::password::Hasher;
use keel::config::Config;
use serde_json::{Value, json};

struct Report {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Report {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let idx = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[idx] as f64 / 1000.0
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<28} {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} requests, {} errors)",
            self.rate(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.requests,
            self.errors
        )
    }
}

/// Drives `concurrency` clients for `secs`, each sending `make(client)` in a loop.
async fn drive<F, Fut>(concurrency: usize, secs: u64, make: F) -> Report
where
    F: Fn(reqwest::Client) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let make = Arc::new(make);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (make, stop, errors) = (make.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if make(client.clone()).await {
                    latencies.push(t.elapsed().as_micros() as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
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
    Report { requests: latencies_us.len() as u64, errors: errors.load(Ordering::Relaxed), elapsed, latencies_us }
}

async fn start_keel() -> (String, tokio::sync::oneshot::Sender<()>) {
    let dir = std::env::temp_dir().join(format!("keel-bench-{}", uuid::Uuid::now_v7().simple()));
    let config = Config::from_pairs([
        ("listen", "127.0.0.1:0".to_owned()),
        ("data_dir", dir.display().to_string()),
        ("log", "error".to_owned()),
        ("rate_limit_auth_ip", "off".to_owned()),
        ("rate_limit_auth_account", "off".to_owned()),
    ])
    .unwrap();
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    (base, tx)
}

/// The baseline: the smallest axum handler that returns a JSON body of similar size.
async fn start_bare() -> String {
    let body = json!({"id": "usr_0", "email": "bench@example.com", "email_verified": false, "name": "Bench",
        "roles": ["customer"], "country": null, "phone": null, "address": null, "mfa_enabled": false,
        "created_at": "2026-01-01T00:00:00Z"});
    let app = axum::Router::new().route("/me", axum::routing::get(move || async move { axum::Json(body.clone()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn main() {
    let secs: u64 = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY").ok().and_then(|s| s.parse().ok()).unwrap_or(32);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        // One Argon2id hash, the unit of login cost.
        let hasher = Hasher::new().unwrap();
        let mut samples = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            hasher.hash("correct horse battery").await.unwrap();
            samples.push(t.elapsed());
        }
        samples.sort();
        let hash_time = samples[samples.len() / 2];
        let bound = cores as f64 / hash_time.as_secs_f64();

        let (keel, _stop) = start_keel().await;
        let bare = start_bare().await;
        let client = reqwest::Client::new();
        let registered: Value = client
            .post(format!("{keel}/v1/auth/register"))
            .json(&json!({"email": "bench@example.com", "password": "correct horse battery", "name": "Bench"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = Arc::new(format!("Bearer {}", registered["access_token"].as_str().unwrap()));

        let url = Arc::new(format!("{bare}/me"));
        let bare_report = drive(concurrency, secs, move |c| {
            let url = url.clone();
            async move { matches!(c.get(url.as_str()).send().await, Ok(r) if r.status() == 200) }
        })
        .await;

        let url = Arc::new(format!("{keel}/v1/me"));
        let me_report = drive(concurrency, secs, move |c| {
            let (url, token) = (url.clone(), token.clone());
            async move { matches!(c.get(url.as_str()).header("authorization", token.as_str()).send().await, Ok(r) if r.status() == 200) }
        })
        .await;

        let url = Arc::new(format!("{keel}/v1/auth/login"));
        let login_report = drive(concurrency, secs, move |c| {
            let url = url.clone();
            async move {
                let body = json!({"email": "bench@example.com", "password": "correct horse battery"});
                matches!(c.post(url.as_str()).json(&body).send().await, Ok(r) if r.status() == 200)
            }
        })
        .await;

        println!("\nkeel auth benchmark — {cores} cores, {concurrency} connections, {secs} s per phase, SQLite");
        println!(
            "argon2id hash (m=19 MiB, t=2, p=1): median {:.2} ms → bound {:.1} logins/s ({cores} cores ÷ hash time)",
            hash_time.as_secs_f64() * 1e3,
            bound
        );
        println!("{}", login_report.line("POST /v1/auth/login"));
        println!("  = {:.0} % of the argon2 bound", 100.0 * login_report.rate() / bound);
        println!("{}", bare_report.line("bare axum JSON handler"));
        println!("{}", me_report.line("GET /v1/me (authenticated)"));
        println!("  = {:.0} % of the bare handler's rate", 100.0 * me_report.rate() / bare_report.rate());
    });
}
