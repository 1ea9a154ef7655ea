//! Load benchmark for accounts: login/s against the Argon2 bound, and authenticated
//! `GET /v1/me` against a bare axum JSON handler, measured in the same run.
//!
//! Run: `cargo bench --bench auth` (optional env: BENCH_SECS, BENCH_CONCURRENCY).
//! The load generator shares the machine with the servers, so compare the ratios printed
//! here, not absolute figures across machines.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{drive, start_bare, start_keel};
use keel::auth::password::Hasher;
use serde_json::{Value, json};

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

        let (keel, _dir, _stop) = start_keel(&[]).await;
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
