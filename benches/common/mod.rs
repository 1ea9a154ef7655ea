//! The load driver shared by the HTTP benchmarks: concurrent clients for a fixed time,
//! the Keel server on a fresh SQLite database, and a bare axum handler as the baseline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keel::app::Application;
use keel::config::Config;
use serde_json::json;

pub struct Report {
    pub requests: u64,
    pub errors: u64,
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
pub async fn drive<F, Fut>(concurrency: usize, secs: u64, make: F) -> Report
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

pub async fn start_keel(extra: &[(&str, &str)]) -> (String, std::path::PathBuf, tokio::sync::oneshot::Sender<()>) {
    let dir = std::env::temp_dir().join(format!("keel-bench-{}", uuid::Uuid::now_v7().simple()));
    let config = vec![
        ("listen", "127.0.0.1:0".to_owned()),
        ("data_dir", dir.display().to_string()),
        ("log", "error".to_owned()),
        ("rate_limit_auth_ip", "off".to_owned()),
        ("rate_limit_auth_account", "off".to_owned()),
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

/// The baseline: the smallest axum handler that returns a JSON body of similar size.
pub async fn start_bare() -> String {
    let body = json!({"id": "usr_0", "email": "bench@example.com", "email_verified": false, "name": "Bench",
        "roles": ["customer"], "country": null, "phone": null, "address": null, "mfa_enabled": false,
        "created_at": "2026-01-01T00:00:00Z"});
    let app = axum::Router::new().route("/me", axum::routing::get(move || async move { axum::Json(body.clone()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}
