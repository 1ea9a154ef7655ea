//! Load benchmark for accounts: login/s against the Argon2 bound, and authenticated
//! `GET /v1/me`, each against a bare axum handler answering a body of the same size, measured
//! in the same run. Any failed request aborts the run.
//!
//! Run: `cargo bench --bench auth` (optional env: BENCH_SECS, BENCH_CONCURRENCY).
//! The load generator shares the machine with the servers, so compare the ratios printed
//! here, not absolute figures across machines.

mod baseline;
mod common;

use std::sync::Arc;
use std::time::Instant;

use baseline::compare;
use common::{abort, env_or, expect_status, start_keel};
use keel::auth::password::Hasher;
use serde_json::{Value, json};

fn main() {
    let secs: u64 = env_or("BENCH_SECS", 5);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 32);
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
        // The same hashes, `cores` at a time (as a login flood runs them): what the machine
        // really gives when they share its caches and memory bandwidth.
        let started = Instant::now();
        let mut hashed = 0usize;
        while started.elapsed().as_secs() < 3 {
            let batch: Vec<_> = (0..cores).map(|_| hasher.hash("correct horse battery")).collect();
            for done in futures::future::join_all(batch).await {
                done.unwrap();
                hashed += 1;
            }
        }
        let parallel = hashed as f64 / started.elapsed().as_secs_f64();

        let server = start_keel(&[]).await;
        let keel = server.base.clone();
        let client = reqwest::Client::new();
        let credentials = json!({"email": "bench@example.com", "password": "correct horse battery", "name": "Bench"});
        let registered = client.post(format!("{keel}/v1/auth/register")).json(&credentials).send().await.unwrap();
        if registered.status() != 201 {
            abort(&format!("registering the bench user: {} {}", registered.status(), registered.text().await.unwrap_or_default()));
        }
        let registered: Value = registered.json().await.unwrap();
        let token = Arc::new(format!("Bearer {}", registered["access_token"].as_str().unwrap()));

        println!("\nkeel auth benchmark — {cores} cores, {concurrency} connections, {secs} s per phase, SQLite");
        println!(
            "argon2id hash (m=19 MiB, t=2, p=1): median {:.2} ms → bound {:.1} logins/s ({cores} cores ÷ hash time)",
            hash_time.as_secs_f64() * 1e3,
            bound
        );
        println!("argon2id, {cores} hashes at a time: {parallel:.1} hashes/s = {:.0} % of the bound", 100.0 * parallel / bound);

        let url = Arc::new(format!("{keel}/v1/me"));
        let me = |c: &reqwest::Client, url: &str, token: &str| c.get(url).header("authorization", token);
        let bytes = expect_status(me(&client, &url, &token), 200).await.unwrap_or_else(|e| abort(&format!("GET /v1/me: {e}")));
        compare("GET /v1/me (authenticated)", concurrency, secs, bytes, move |c| {
            let (url, token) = (url.clone(), token.clone());
            async move { expect_status(me(&c, &url, &token), 200).await.map(drop) }
        })
        .await;

        let url = Arc::new(format!("{keel}/v1/auth/login"));
        let body = Arc::new(json!({"email": "bench@example.com", "password": "correct horse battery"}));
        let bytes = expect_status(client.post(url.as_str()).json(&*body), 200).await.unwrap_or_else(|e| abort(&format!("login: {e}")));
        let login = compare("POST /v1/auth/login", concurrency, secs, bytes, move |c| {
            let (url, body) = (url.clone(), body.clone());
            async move { expect_status(c.post(url.as_str()).json(&*body), 200).await.map(drop) }
        })
        .await;
        println!(
            "  = {:.0} % of the argon2 bound, {:.0} % of {cores} hashes at a time",
            100.0 * login.rate() / bound,
            100.0 * login.rate() / parallel
        );
        server.stop().await;
    });
}
