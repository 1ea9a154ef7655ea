//! Cluster benchmark: `keel serve` ×1, ×2 and ×3 behind HAProxy (`deploy/local-cluster`, on a
//! scratch PostgreSQL database and a Redis and NATS of the cluster's own), the same clients
//! driving a cached `GET /v1/products/{id}` and an authenticated `GET /v1/me` through the
//! balancer; with one instance, the same requests straight to the instance (the balancer's hop)
//! and one client's round trip to PostgreSQL and to Redis (the hops behind the instance). Data is
//! seeded through the API (the admin through `keel admin create`). Every cluster started is
//! stopped (`deploy/local-cluster down`), also when a phase fails or the run is interrupted.
//!
//! Run: `cargo bench --bench cluster` (env: BENCH_SECS, BENCH_CONCURRENCY, BENCH_PG_URL,
//! BENCH_CLUSTER_PORT: the balancer's port, instance I on port + I, Redis and NATS on port + 98
//! and + 99; default 17190, outside the test suite's blocks and the default cluster's ports).

#[expect(dead_code, reason = "the instances are processes of their own: no in-process Keel here")]
mod common;
mod local_cluster;
mod postgres;

use std::sync::Arc;
use std::time::Instant;

use common::{Report, abort, drive, env_or, expect_status, run_clients};
use local_cluster::LocalCluster;
use serde_json::{Value, json};
use sqlx::Connection as _;

const PASSWORD: &str = "correct horse battery staple";
/// Instance counts measured after one (which also gives the hops).
const MORE_INSTANCES: [usize; 2] = [2, 3];
/// Untimed load before each phase: every instance has the product in its in-process cache and
/// HAProxy its connections to every instance.
const WARM_UP_SECS: u64 = 1;

/// What the phases read: a product and a signed-in shopper's token.
struct Seed {
    product_path: String,
    bearer: Arc<String>,
}

/// The figures of one instance count.
struct Phases {
    product: Report,
    me: Report,
}

fn main() {
    let secs: u64 = env_or("BENCH_SECS", 5);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 32);
    let port: u16 = env_or("BENCH_CLUSTER_PORT", 17190);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" ");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let Some(admin_url) = postgres::admin_url() else { abort("the cluster runs on PostgreSQL (BENCH_PG_URL=off)") };
        let database = postgres::Scratch::create(&admin_url).await.unwrap_or_else(|e| abort(&e));
        let settings = [("KEEL_LOG", "error"), ("KEEL_RATE_LIMIT_ENABLED", "false")];
        let cluster = match LocalCluster::new(port, &database.url, &settings) {
            Ok(cluster) => cluster,
            Err(e) => {
                database.remove().await;
                abort(&e)
            }
        };
        let build = if cfg!(debug_assertions) { "debug" } else { "release" };
        println!(
            "\nkeel cluster benchmark — {cores} cores, {concurrency} connections, {secs} s per phase after {WARM_UP_SECS} s of warm-up; \
             {build} `keel serve` ×N behind HAProxy (round robin), PostgreSQL, Redis and NATS JetStream; load average {load} before the run"
        );
        println!(
            "On {cores} cores every instance, HAProxy, PostgreSQL, Redis, NATS and this load generator share the same cores: \
             a second and third instance add processes and scheduling, not CPU, so N = 2 and 3 show overhead, not speed-up."
        );
        // Dropping the measurement (interrupted) drops its running cluster, which stops it.
        let outcome = tokio::select! {
            outcome = measure(&cluster, &database.url, concurrency, secs) => outcome,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
        };
        database.remove().await;
        match outcome {
            Ok(()) => cluster.remove(),
            Err(e) => abort(&format!("{e}\n(the cluster's logs are in {})", cluster.logs().display())),
        }
    });
}

async fn measure(cluster: &LocalCluster, database_url: &str, concurrency: usize, secs: u64) -> Result<(), String> {
    let running = cluster.up(1)?;
    let seed = seed_data(cluster).await?;
    let one = reads(concurrency, secs, &cluster.balancer, &seed).await?;
    let direct = reads(concurrency, secs, &cluster.instance(1), &seed).await?;
    let database = postgres_round_trip(database_url, secs).await?;
    let redis = redis_round_trip(&cluster.redis_url(), secs).await?;
    drop(running);
    for (name, via, direct) in [("GET /v1/products/{id}", &one.product, &direct.product), ("GET /v1/me", &one.me, &direct.me)] {
        println!("{}", via.line(&format!("{name} via HAProxy, 1 instance")));
        println!("{}", direct.line("  direct to the instance"));
        println!("  via HAProxy/direct = {:.2}", via.rate() / direct.rate());
    }
    print_hops(&one, &direct, &database, &redis);

    for n in MORE_INSTANCES {
        let running = cluster.up(n)?;
        let many = reads(concurrency, secs, &cluster.balancer, &seed).await?;
        drop(running);
        for (name, now, before) in [("GET /v1/products/{id}", &many.product, &one.product), ("GET /v1/me", &many.me, &one.me)] {
            println!("{}", now.line(&format!("{name} via HAProxy, {n} instances")));
            println!("{}", before.line("  via HAProxy, 1 instance"));
            println!("  {n} instances/1 instance = {:.2}", now.rate() / before.rate());
        }
    }
    Ok(())
}

/// Both reads at `base`, one after the other.
async fn reads(concurrency: usize, secs: u64, base: &str, seed: &Seed) -> Result<Phases, String> {
    Ok(Phases { product: phase(concurrency, secs, base, seed, false).await?, me: phase(concurrency, secs, base, seed, true).await? })
}

/// The admin (through the command line) creates a product through the balancer; a shopper
/// registers there too. Both stay in the database for the later instance counts, and the
/// shopper's token stays valid (`deploy/local-cluster` keeps the keys in its state dir).
async fn seed_data(cluster: &LocalCluster) -> Result<Seed, String> {
    let email = "bench-admin@example.com";
    cluster.keel(&["admin", "create", "--email", email, "--password-stdin", "--role", "admin"], &format!("{PASSWORD}\n"))?;
    let http = reqwest::Client::new();
    let base = &cluster.balancer;
    let admin = post(&http, &format!("{base}/v1/auth/login"), None, &json!({ "email": email, "password": PASSWORD }), 200).await?;
    let admin = format!("Bearer {}", admin["access_token"].as_str().ok_or("no access token for the admin")?);
    let product =
        json!({ "sku": "BENCH-1", "name": "Bench item", "category": "misc", "price": { "amount": 1999, "currency": "USD" }, "stock": 100 });
    let product = post(&http, &format!("{base}/v1/admin/products"), Some(&admin), &product, 201).await?;
    let product_id = product["id"].as_str().ok_or("no product id")?;
    let shopper = json!({ "email": "bench-shopper@example.com", "password": PASSWORD, "name": "Bench" });
    let shopper = post(&http, &format!("{base}/v1/auth/register"), None, &shopper, 201).await?;
    let bearer = format!("Bearer {}", shopper["access_token"].as_str().ok_or("no access token for the shopper")?);
    Ok(Seed { product_path: format!("/v1/products/{product_id}"), bearer: Arc::new(bearer) })
}

async fn post(http: &reqwest::Client, url: &str, bearer: Option<&str>, body: &Value, status: u16) -> Result<Value, String> {
    let mut request = http.post(url).json(body);
    if let Some(bearer) = bearer {
        request = request.header("authorization", bearer);
    }
    let response = request.send().await.map_err(|e| format!("POST {url}: {e}"))?;
    let got = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    if got == status { Ok(body) } else { Err(format!("POST {url}: status {got} (expected {status}): {body}")) }
}

/// One read at `base` by every client for `secs`, after the warm-up: the product, or the
/// shopper's profile (`me`). The seed outlives each cluster (same database, same keys).
async fn phase(concurrency: usize, secs: u64, base: &str, seed: &Seed, me: bool) -> Result<Report, String> {
    let url = Arc::new(format!("{base}{}", if me { "/v1/me" } else { &seed.product_path }));
    let bearer = seed.bearer.clone();
    let read = move |c: reqwest::Client| {
        let request = if me { c.get(url.as_str()).header("authorization", bearer.as_str()) } else { c.get(url.as_str()) };
        async move { expect_status(request, 200).await.map(drop) }
    };
    let read = Arc::new(read);
    let name = format!("GET {}{base}", if me { "/v1/me at " } else { "the product at " });
    let warm = read.clone();
    drive(concurrency, WARM_UP_SECS, move |c| warm(c)).await.check(&format!("warming up: {name}"))?;
    let report = drive(concurrency, secs, move |c| read(c)).await;
    report.check(&name)?;
    Ok(report)
}

/// What one hop costs: the difference between two phases' percentiles.
fn hop(name: &str, with: &Report, without: &Report, what: &str) {
    let p = |q| with.percentile(q) - without.percentile(q);
    println!("  {name}: {:+.2} ms p50, {:+.2} ms p99   ({what})", p(0.50), p(0.99));
}

fn print_hops(via: &Phases, direct: &Phases, database: &Report, redis: &Report) {
    println!("cost of each hop, 1 instance, the same clients (differences of the percentiles above):");
    let balancer = "client → HAProxy → keel minus client → keel";
    hop("HAProxy, GET /v1/products/{id}", &via.product, &direct.product, balancer);
    hop("HAProxy, GET /v1/me", &via.me, &direct.me, balancer);
    // The product read checks its in-process copy's generation in Redis (one script call); the
    // profile read looks the session and its user up in PostgreSQL (one SELECT with a join).
    hop(
        "PostgreSQL session lookup instead of a Redis cache check",
        &direct.me,
        &direct.product,
        "GET /v1/me minus GET /v1/products/{id}, both straight to the instance",
    );
    // Indented: these are not Keel's figures, so the report keeps them out of its summary.
    println!("{}", database.line("  PostgreSQL round trip (SELECT 1), 1 client"));
    println!("{}", redis.line("  Redis round trip (PING), 1 client"));
}

/// One client's `SELECT 1` on a connection of its own to the cluster's database.
async fn postgres_round_trip(url: &str, secs: u64) -> Result<Report, String> {
    let conn = sqlx::PgConnection::connect(url).await.map_err(|e| format!("connecting to the cluster's database: {e}"))?;
    let conn = Arc::new(tokio::sync::Mutex::new(conn));
    let report = run_clients(1, secs, move |_| {
        let conn = conn.clone();
        async move {
            let mut conn = conn.lock().await;
            let started = Instant::now();
            sqlx::query("SELECT 1").execute(&mut *conn).await.map_err(|e| e.to_string())?;
            Ok(started.elapsed())
        }
    })
    .await;
    report.check("PostgreSQL round trip")?;
    Ok(report)
}

/// One client's `PING` to the cluster's Redis.
async fn redis_round_trip(url: &str, secs: u64) -> Result<Report, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let conn = client.get_multiplexed_async_connection().await.map_err(|e| format!("connecting to the cluster's Redis: {e}"))?;
    let report = run_clients(1, secs, move |_| {
        let mut conn = conn.clone();
        async move {
            let started = Instant::now();
            redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| e.to_string())?;
            Ok(started.elapsed())
        }
    })
    .await;
    report.check("Redis round trip")?;
    Ok(report)
}
