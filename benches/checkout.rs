//! Money benchmark: wallet checkouts per second (p50/p99 of the checkout request) on SQLite,
//! under both `sqlite_synchronous` settings, and on PostgreSQL, each next to the ceiling of its
//! database measured in the same run at the same client count:
//! - SQLite: a raw sqlx loop of one transaction per payment (a balance `UPDATE` and a history
//!   `INSERT`) on a fresh file opened by Keel's own store, so with the same pragmas and the same
//!   single writer connection.
//! - PostgreSQL: `pgbench` TPC-B (scale = client count, `-j 2`) on a scratch database of its own.
//!
//! Every client is a customer of its own with a product of its own, so no two serialise on one
//! wallet or stock row. A client's loop puts one unit in its cart (`PUT /v1/cart/items/{id}`,
//! untimed) and checks out with its wallet (`POST /v1/checkout`, timed): one checkout per loop,
//! two write transactions. Any failed request aborts the run.
//!
//! Run: `cargo bench --bench checkout` (env: BENCH_SECS, default 10 per phase; BENCH_CONCURRENCY,
//! default 8; BENCH_PG_URL, see `postgres/mod.rs`). `pgbench` ships in Debian's
//! `postgresql-client-15`: `apt-get install postgresql-client-15`.

#[expect(dead_code, reason = "a checkout loop times only its checkout, not the cart write before it: no `common::drive` here")]
mod common;
mod postgres;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Report, abort, env_or, expect_status, http_client, run_clients, start_keel};
use keel::app::Services;
use keel::catalog::model::NewProduct;
use keel::config::Config;
use keel::store::{SqliteDurability, Store, StoreOptions};
use postgres::Scratch;
use serde_json::{Value, json};

/// What each customer's wallet is topped up with, and what one unit costs (minor units).
const WALLET: i64 = 10_000_000_000;
const PRICE: i64 = 100;

/// One simulated customer: signed in, wallet funded, with a product of its own.
struct Shopper {
    http: reqwest::Client,
    bearer: String,
    item_url: String,
    checkout_url: String,
}

impl Shopper {
    async fn sign_up(base: &str, n: usize, product_id: &str) -> Shopper {
        let http = http_client();
        let body = json!({ "email": format!("shopper{n}@example.com"), "password": "correct horse battery staple", "name": "Bench" });
        let reply: Value = http.post(format!("{base}/v1/auth/register")).json(&body).send().await.unwrap().json().await.unwrap();
        let token = reply["access_token"].as_str().unwrap_or_else(|| abort(&format!("register: {reply}")));
        let bearer = format!("Bearer {token}");
        let top_up = http
            .post(format!("{base}/v1/wallet/top-ups"))
            .header("authorization", &bearer)
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .json(&json!({ "amount": { "amount": WALLET, "currency": "USD" }, "card_token": "tok_visa" }));
        expect_status(top_up, 201).await.unwrap_or_else(|e| abort(&format!("top-up: {e}")));
        Shopper { http, bearer, item_url: format!("{base}/v1/cart/items/{product_id}"), checkout_url: format!("{base}/v1/checkout") }
    }

    /// One unit into the cart, then the timed wallet checkout.
    async fn buy(&self) -> Result<Duration, String> {
        let put = self.http.put(&self.item_url).header("authorization", &self.bearer).json(&json!({ "quantity": 1 }));
        expect_status(put, 200).await?;
        let checkout = self
            .http
            .post(&self.checkout_url)
            .header("authorization", &self.bearer)
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .json(&json!({ "payment_method": "wallet" }));
        let started = Instant::now();
        expect_status(checkout, 201).await?;
        Ok(started.elapsed())
    }
}

/// One product per client with stock for any run, created through the library on the
/// server's database.
async fn stock_products(dir: &std::path::Path, settings: &[(&str, &str)], clients: usize) -> Vec<String> {
    let pairs = [("data_dir", dir.display().to_string()), ("log", "error".to_owned())]
        .into_iter()
        .chain(settings.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let services = Services::build(&Config::from_pairs(pairs).unwrap()).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..clients {
        let product = NewProduct {
            sku: format!("BENCH-{n}"),
            name: format!("Bench item {n}"),
            description: String::new(),
            category: "bench".to_owned(),
            price: PRICE,
            stock: 1_000_000_000,
        };
        ids.push(services.catalog.create(product, "bench").await.unwrap_or_else(|e| abort(&format!("creating a product: {e}"))).id);
    }
    services.store.close().await;
    ids
}

/// Keel with `settings` on a fresh database: checkouts for `secs` from `clients` customers.
async fn keel_checkouts(name: &str, settings: &[(&str, &str)], clients: usize, secs: u64) -> Report {
    let keel = start_keel(&[settings, &[("access_token_ttl_secs", "3600")]].concat()).await;
    let products = stock_products(&keel.dir, settings, clients).await;
    let mut shoppers = Vec::new();
    for (n, product_id) in products.iter().enumerate() {
        shoppers.push(Shopper::sign_up(&keel.base, n, product_id).await);
    }
    let shoppers = Arc::new(shoppers);
    let report = run_clients(clients, secs, move |i| {
        let shoppers = shoppers.clone();
        async move { shoppers[i].buy().await }
    })
    .await;
    report.require_clean(name);
    keel.stop().await;
    report
}

/// The SQLite ceiling: a balance `UPDATE` and a history `INSERT` per transaction, through the
/// single writer connection of a store opened like Keel's (WAL, `durability`, same pragmas).
async fn sqlite_ceiling(durability: SqliteDurability, clients: usize, secs: u64) -> Report {
    let dir = std::env::temp_dir().join(format!("keel-bench-ceiling-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("ceiling.db").display());
    let store = Store::connect(&StoreOptions { url, max_connections: 2, sqlite_synchronous: durability }).await.unwrap();
    let Store::Sqlite { db, .. } = &store else { unreachable!("a sqlite: URL opens SQLite") };
    let pool = db.writer_pool().clone();
    sqlx::raw_sql(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
         CREATE TABLE history (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL REFERENCES accounts (id),
                               amount INTEGER NOT NULL, created_at TEXT NOT NULL);",
    )
    .execute(&pool)
    .await
    .unwrap();
    for n in 0..clients {
        sqlx::query("INSERT INTO accounts (id, balance) VALUES ($1, $2)").bind(n as i64).bind(WALLET).execute(&pool).await.unwrap();
    }
    let report = run_clients(clients, secs, move |i| {
        let pool = pool.clone();
        async move {
            let started = Instant::now();
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| e.to_string())?;
            sqlx::query("UPDATE accounts SET balance = balance - $1 WHERE id = $2")
                .bind(PRICE)
                .bind(i as i64)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query("INSERT INTO history (account_id, amount, created_at) VALUES ($1, $2, $3)")
                .bind(i as i64)
                .bind(-PRICE)
                .bind(keel::store::now())
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(started.elapsed())
        }
    })
    .await;
    report.require_clean("SQLite raw loop");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    report
}

/// `pgbench` on the PATH, else the newest one in PostgreSQL's own folders.
fn find_pgbench() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("pgbench")).find(|p| p.is_file()));
    on_path.or_else(|| {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin/pgbench")))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.pop()
    })
}

async fn run_pgbench(pgbench: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new(pgbench).args(args).output().await.map_err(|e| format!("running pgbench: {e}"))?;
    if !out.status.success() {
        return Err(format!("pgbench {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// TPC-B transactions per second from `pgbench`, on a scratch database initialised at scale
/// `clients` (pgbench's advice: at least one branch row per client, or they queue on one).
async fn pgbench_tps(pgbench: &std::path::Path, admin_url: &str, clients: usize, secs: u64) -> Result<f64, String> {
    let scratch = Scratch::create(admin_url).await?;
    let (clients, threads, secs) = (clients.to_string(), clients.min(2).to_string(), secs.to_string());
    let ran = match run_pgbench(pgbench, &["-i", "-q", "-s", &clients, &scratch.url]).await {
        Ok(_) => run_pgbench(pgbench, &["-c", &clients, "-j", &threads, "-T", &secs, &scratch.url]).await,
        Err(e) => Err(e),
    };
    scratch.remove().await;
    let out = ran?;
    // "tps = 1234.567890 (without initial connection time)"
    out.lines()
        .find_map(|l| l.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no tps line in pgbench's output:\n{out}"))
}

/// One row of the closing table.
struct Row {
    setting: &'static str,
    keel: Report,
    ceiling: Result<f64, String>,
    aim: f64,
}

fn main() {
    let secs: u64 = env_or("BENCH_SECS", 10);
    let clients: usize = env_or("BENCH_CONCURRENCY", 8);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        println!("\nkeel checkout benchmark — {cores} cores, {clients} clients, {secs} s per phase");
        let mut rows = Vec::new();
        for (setting, value, durability) in [
            ("SQLite, synchronous=full", "full", SqliteDurability::Full),
            ("SQLite, synchronous=normal", "normal", SqliteDurability::Normal),
        ] {
            let keel = keel_checkouts(setting, &[("sqlite_synchronous", value)], clients, secs).await;
            println!("{}", keel.line(&format!("{setting}: checkout")));
            let ceiling = sqlite_ceiling(durability, clients, secs).await;
            println!("{}", ceiling.line(&format!("{setting}: raw loop")));
            rows.push(Row { setting, keel, ceiling: Ok(ceiling.rate()), aim: 0.30 });
        }
        match postgres::admin_url() {
            None => println!("PostgreSQL skipped: BENCH_PG_URL=off"),
            Some(admin_url) => match Scratch::create(&admin_url).await {
                Err(e) => println!("PostgreSQL skipped: {e}"),
                Ok(scratch) => {
                    let setting = "PostgreSQL";
                    let keel = keel_checkouts(setting, &[("database_url", scratch.url.as_str())], clients, secs).await;
                    scratch.remove().await;
                    println!("{}", keel.line("PostgreSQL: checkout"));
                    let ceiling = match find_pgbench() {
                        Some(pgbench) => pgbench_tps(&pgbench, &admin_url, clients, secs).await,
                        None => Err("pgbench not found: install it with `apt-get install postgresql-client-15`".to_owned()),
                    };
                    match &ceiling {
                        Ok(tps) => println!("PostgreSQL: pgbench TPC-B {tps:>9.0} tx/s"),
                        Err(e) => println!("PostgreSQL: no ceiling: {e}"),
                    }
                    rows.push(Row { setting, keel, ceiling, aim: 0.50 });
                }
            },
        }
        println!("\n| setting | Keel checkouts/s | p50 ms | p99 ms | ceiling tx/s | ratio (aim) |");
        println!("|---|---:|---:|---:|---:|---:|");
        for row in &rows {
            let (ceiling, ratio) = match &row.ceiling {
                Ok(tps) => (format!("{tps:.0}"), format!("{:.2} (≥ {:.2})", row.keel.rate() / tps, row.aim)),
                Err(_) => ("—".to_owned(), "—".to_owned()),
            };
            println!(
                "| {} | {:.0} | {:.2} | {:.2} | {ceiling} | {ratio} |",
                row.setting,
                row.keel.rate(),
                row.keel.percentile(0.50),
                row.keel.percentile(0.99)
            );
        }
    });
}
