//! The load driver shared by the HTTP benchmarks: concurrent clients for a fixed time (any work,
//! or one HTTP request each), their latencies, and Keel serving in-process on a fresh database
//! (the bare baseline the read benchmarks compare it to is in `baseline/`). A phase with errors,
//! or with no request completed, aborts the benchmark (exit code 1) instead of printing a
//! meaningless rate.

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

    /// A phase with errors or without a single completed request measured nothing: says so.
    pub fn check(&self, name: &str) -> Result<(), String> {
        if self.errors > 0 || self.requests == 0 {
            return Err(format!(
                "{name}: {} requests, {} errors; first error: {}",
                self.requests,
                self.errors,
                self.first_error.as_deref().unwrap_or("none")
            ));
        }
        Ok(())
    }

    /// Like `check`, but stops the benchmark (exit code 1) rather than print a rate.
    pub fn require_clean(&self, name: &str) {
        if let Err(e) = self.check(name) {
            abort(&e);
        }
    }
}

/// Ends the benchmark with a message and a non-zero exit code.
pub fn abort(message: &str) -> ! {
    eprintln!("benchmark aborted: {message}");
    std::process::exit(1)
}

/// Runs `concurrency` clients for `secs`, client `i` calling `make(i)` in a loop; each call
/// returns the latency of the part it times (its whole work, or one request of several), or
/// what went wrong.
pub async fn run_clients<F, Fut>(concurrency: usize, secs: u64, make: F) -> Report
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Duration, String>> + Send,
{
    let make = Arc::new(make);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let (make, stop, errors, first_error) = (make.clone(), stop.clone(), errors.clone(), first_error.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match make(i).await {
                    Ok(took) => latencies.push(took.as_micros() as u64),
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

/// Drives `concurrency` HTTP clients for `secs`, each with a connection of its own, sending
/// `make(client)` in a loop and timing the whole of it; `make` says what went wrong when a
/// request fails.
pub async fn drive<F, Fut>(concurrency: usize, secs: u64, make: F) -> Report
where
    F: Fn(reqwest::Client) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let clients: Vec<_> = (0..concurrency).map(|_| http_client()).collect();
    run_clients(concurrency, secs, move |i| {
        let call = make(clients[i].clone());
        async move {
            let started = Instant::now();
            call.await.map(|()| started.elapsed())
        }
    })
    .await
}

/// An HTTP client of its own for one simulated client: one kept-alive connection.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap()
}

/// Sends a request and succeeds on `status`; returns the body length.
pub async fn expect_status(request: reqwest::RequestBuilder, status: u16) -> Result<usize, String> {
    let response = request.send().await.map_err(|e| format!("request failed: {e}"))?;
    let got = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| format!("reading the body: {e}"))?;
    if got == status { Ok(body.len()) } else { Err(format!("status {got} (expected {status}): {}", String::from_utf8_lossy(&body))) }
}

/// Keel serving in this process on a fresh data directory.
pub struct Keel {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    pub dir: std::path::PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Keel {
    /// Shuts the server down and waits until its workers have stopped and its pools are closed.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Ok(Err(e)) = self.served.await {
            abort(&format!("keel did not stop cleanly: {e:#}"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts Keel on a fresh data directory (SQLite unless `extra` sets `database_url`), with every
/// rate limit off; `extra` adds or overrides settings.
pub async fn start_keel(extra: &[(&str, &str)]) -> Keel {
    let dir = std::env::temp_dir().join(format!("keel-bench-{}", uuid::Uuid::now_v7().simple()));
    let config = vec![
        ("listen", "127.0.0.1:0".to_owned()),
        ("data_dir", dir.display().to_string()),
        ("log", "error".to_owned()),
        ("rate_limit_enabled", "false".to_owned()),
    ]
    .into_iter()
    .chain(extra.iter().map(|(k, v)| (*k, (*v).to_owned())))
    .collect::<Vec<_>>();
    let config = Config::from_pairs(config).unwrap();
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, rx) = tokio::sync::oneshot::channel();
    let served = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    Keel { base, dir, stop, served }
}

/// `name` parsed from the environment, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
