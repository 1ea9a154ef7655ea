//! Catalog read benchmark: cached `GET /v1/products/{id}`, the first page of
//! `GET /v1/products` and a quote under the demo pricing rules, each against a bare axum
//! handler answering a body of the same size in the same run, with the cache's hit ratio read
//! from `/metrics`. Any failed request aborts the run.
//!
//! Run: `cargo bench --bench catalog` (env: BENCH_SECS, BENCH_CONCURRENCY).

mod baseline;
mod common;

use std::sync::Arc;

use baseline::compare;
use common::{abort, env_or, expect_status, start_keel};
use keel::app::Services;
use keel::config::Config;

/// Sums `keel_cache_requests_total` samples with the given result label.
fn cache_count(metrics: &str, result: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("keel_cache_requests_total") && l.contains(&format!("result=\"{result}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() {
    let secs: u64 = env_or("BENCH_SECS", 5);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 32);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let server = start_keel(&[]).await;
        let keel = server.base.clone();
        // Seed the demo catalog through a second handle on the same database.
        let config = Config::from_pairs([("data_dir", server.dir.display().to_string()), ("log", "error".to_owned())]).unwrap();
        let services = Services::build(&config).await.unwrap();
        let seeded = keel::demo::seed(&services).await.unwrap();
        services.store.close().await;
        let client = reqwest::Client::new();
        let first: serde_json::Value = client.get(format!("{keel}/v1/products?limit=20")).send().await.unwrap().json().await.unwrap();
        let Some(product_id) = first["data"][0]["id"].as_str().map(str::to_owned) else {
            abort(&format!("the demo seed left no products to read: {first}"));
        };

        println!(
            "\nkeel catalog benchmark — {cores} cores, {concurrency} connections, {secs} s per phase, SQLite, {} demo products",
            seeded.products_created
        );
        let before = client.get(format!("{keel}/metrics")).send().await.unwrap().text().await.unwrap();
        for (name, path) in [
            ("GET /v1/products/{id}", format!("/v1/products/{product_id}")),
            ("GET /v1/products (page 1)", "/v1/products?limit=20".to_owned()),
            ("GET /v1/products/{id}/quote", format!("/v1/products/{product_id}/quote?quantity=12&country=DE")),
        ] {
            let url = Arc::new(format!("{keel}{path}"));
            let bytes = expect_status(client.get(url.as_str()), 200).await.unwrap_or_else(|e| abort(&format!("{name}: {e}")));
            compare(name, concurrency, secs, bytes, move |c| {
                let url = url.clone();
                async move { expect_status(c.get(url.as_str()), 200).await.map(drop) }
            })
            .await;
        }
        let after = client.get(format!("{keel}/metrics")).send().await.unwrap().text().await.unwrap();
        let hits = cache_count(&after, "hit") - cache_count(&before, "hit");
        let misses = cache_count(&after, "miss") - cache_count(&before, "miss");
        println!("cache hit ratio over the three phases: {:.4} ({hits} hits, {misses} misses)", hits / (hits + misses).max(1.0));
        server.stop().await;
    });
}
