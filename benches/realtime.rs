//! Real-time benchmark: server memory per idle WebSocket and the fan-out of one public event
//! to every client, for `keel serve` and, in the same run, a bare axum server that only
//! broadcasts (the same small read buffer), each in a process of its own so its resident memory
//! is its alone. Then a sustained rate of events to fewer clients, counting disconnects.
//!
//! The sustained events are committed straight into Keel's outbox from this process, one
//! transaction per event as a use case commits them (`Effects`), by several producers: an
//! admin's `PATCH`es, which the fan-out rounds use, top out below the rate asked (≈ 280/s from
//! one client), and what is measured here is the path from the outbox to the sockets.
//!
//! Run: `cargo bench --bench realtime` (env: BENCH_CLIENTS, default 10000; BENCH_ROUNDS, 20;
//! BENCH_RATE_CLIENTS, 1000; BENCH_RATE, 1000 events/s; BENCH_SECS, 5; BENCH_PRODUCERS, 4).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

/// Set in the child process that serves as the bare baseline.
const BARE_ROLE: &str = "KEEL_BENCH_BARE_SERVER";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn abort(message: &str) -> ! {
    eprintln!("benchmark aborted: {message}");
    std::process::exit(1)
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The baseline: a WebSocket per client fed from one broadcast channel, `POST /fire` sends a frame.
async fn bare_server(port: u16) {
    use axum::extract::State;
    use axum::extract::ws::{Message as AxumMessage, Utf8Bytes, WebSocketUpgrade};
    use tokio::sync::broadcast;
    let (tx, _) = broadcast::channel::<Utf8Bytes>(1024);
    let app = axum::Router::new()
        .route(
            "/ws",
            axum::routing::get(|State(tx): State<broadcast::Sender<Utf8Bytes>>, upgrade: WebSocketUpgrade| async move {
                upgrade.read_buffer_size(4096).write_buffer_size(0).on_upgrade(move |socket| async move {
                    let (mut sink, mut stream) = socket.split();
                    let mut frames = tx.subscribe();
                    if sink.send(AxumMessage::text(r#"{"type":"subscribed"}"#)).await.is_err() {
                        return;
                    }
                    loop {
                        tokio::select! {
                            frame = frames.recv() => match frame {
                                Ok(frame) => if sink.send(AxumMessage::Text(frame)).await.is_err() { return },
                                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                                Err(broadcast::error::RecvError::Closed) => return,
                            },
                            incoming = stream.next() => if !matches!(incoming, Some(Ok(_))) { return },
                        }
                    }
                })
            }),
        )
        .route(
            "/fire",
            axum::routing::post(|State(tx): State<broadcast::Sender<Utf8Bytes>>, body: String| async move {
                let _ = tx.send(Utf8Bytes::from(body));
            }),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    println!("ready");
    axum::serve(listener, app).await.unwrap();
}

struct Server {
    child: tokio::process::Child,
    base: String,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or_else(|| abort("the server exited"))
    }

    async fn wait_ready(&self, path: &str) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if client.get(format!("{}{path}", self.base)).send().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        abort(&format!("{} did not come up", self.base));
    }
}

async fn start_keel(dir: &std::path::Path) -> Server {
    let port = free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("serve")
        .envs(keel_env(dir))
        .env("KEEL_LISTEN", format!("127.0.0.1:{port}"))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| abort(&format!("starting keel serve: {e}")));
    let server = Server { child, base: format!("http://127.0.0.1:{port}") };
    server.wait_ready("/healthz").await;
    server
}

fn keel_env(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("KEEL_DATA_DIR", dir.display().to_string()),
        ("KEEL_LOG", "error".into()),
        ("KEEL_RATE_LIMIT_ENABLED", "false".into()),
        ("KEEL_ACCESS_TOKEN_TTL_SECS", "3600".into()),
        ("KEEL_REALTIME_MAX_CONNECTIONS", "1000000".into()),
        ("KEEL_REALTIME_MAX_PER_USER", "1000".into()),
    ]
}

async fn start_bare() -> Server {
    let port = free_port();
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env(BARE_ROLE, port.to_string())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| abort(&format!("starting the bare server: {e}")));
    let server = Server { child, base: format!("http://127.0.0.1:{port}") };
    server.wait_ready("/").await;
    server
}

/// Counts frames every client received; wakes the waiter when a round is complete.
#[derive(Default)]
struct Tally {
    frames: AtomicUsize,
    closed: AtomicUsize,
    done: Notify,
}

/// Opens a WebSocket at `url`, sends `hello` messages, waits for a `subscribed` reply, then
/// counts what arrives in the background.
async fn client(url: String, hello: Vec<Value>, tally: Arc<Tally>, target: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap_or_else(|e| abort(&format!("connecting: {e}")));
    for message in hello {
        ws.send(Message::text(message.to_string())).await.unwrap();
    }
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"subscribed\"") => break,
            Some(Ok(_)) => continue,
            other => abort(&format!("handshake: {other:?}")),
        }
    }
    tokio::spawn(async move {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Text(_)) => {
                    if tally.frames.fetch_add(1, Ordering::AcqRel) + 1 == target.load(Ordering::Acquire) {
                        tally.done.notify_one();
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        tally.closed.fetch_add(1, Ordering::AcqRel);
    })
}

/// Connects `n` clients, 200 handshakes at a time.
async fn connect_all(
    n: usize,
    make: impl Fn(usize) -> (String, Vec<Value>),
    tally: &Arc<Tally>,
    target: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    futures::stream::iter(0..n)
        .map(|i| {
            let (url, hello) = make(i);
            client(url, hello, tally.clone(), target.clone())
        })
        .buffer_unordered(200)
        .collect()
        .await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs `rounds` fan-outs: `fire()`, then the time until every one of `n` clients has the frame.
async fn fan_out<F, Fut>(rounds: usize, n: usize, tally: &Tally, target: &AtomicUsize, fire: F) -> Vec<Duration>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut took = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let base = tally.frames.load(Ordering::Acquire);
        target.store(base + n, Ordering::Release);
        let started = Instant::now();
        fire(round).await;
        if tally.frames.load(Ordering::Acquire) < base + n
            && tokio::time::timeout(Duration::from_secs(60), tally.done.notified()).await.is_err()
        {
            abort(&format!("round {round}: {} of {n} clients got the event", tally.frames.load(Ordering::Acquire) - base));
        }
        took.push(started.elapsed());
    }
    took.sort();
    took
}

async fn register(http: &reqwest::Client, base: &str, email: &str) -> String {
    let body = json!({ "email": email, "password": "correct horse battery staple", "name": "Bench" });
    let reply: Value = http.post(format!("{base}/v1/auth/register")).json(&body).send().await.unwrap().json().await.unwrap();
    reply["access_token"].as_str().unwrap_or_else(|| abort(&format!("register: {reply}"))).to_owned()
}

async fn admin(dir: &std::path::Path, http: &reqwest::Client, base: &str) -> String {
    use tokio::io::AsyncWriteExt as _;
    let mut cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["admin", "create", "--email", "root@example.com", "--password-stdin", "--role", "admin"])
        .envs(keel_env(dir))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    cli.stdin.take().unwrap().write_all(b"correct horse battery staple\n").await.unwrap();
    if !cli.wait().await.unwrap().success() {
        abort("keel admin create failed");
    }
    let body = json!({ "email": "root@example.com", "password": "correct horse battery staple" });
    let reply: Value = http.post(format!("{base}/v1/auth/login")).json(&body).send().await.unwrap().json().await.unwrap();
    reply["access_token"].as_str().unwrap_or_else(|| abort(&format!("login: {reply}"))).to_owned()
}

/// Runs [`produce`] on a thread and runtime of its own, so the clients' tasks of this process do
/// not hold its commits back.
async fn produce_apart(dir: &std::path::Path, product: &str, rate: u64, secs: u64, producers: usize) -> usize {
    let (dir, product) = (dir.to_owned(), product.to_owned());
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _ = done.send(runtime.block_on(produce(&dir, &product, rate, secs, producers)));
    });
    result.await.unwrap_or_else(|_| abort("the producers' thread failed"))
}

/// Commits `rate` `product.updated` events a second for `secs` into the outbox of the Keel whose
/// data dir is `dir`, from `producers` tasks pacing themselves; returns how many it committed.
async fn produce(dir: &std::path::Path, product: &str, rate: u64, secs: u64, producers: usize) -> usize {
    use keel::events::{Effects, EventType};
    let store = keel::store::Store::connect(&keel::store::StoreOptions {
        url: format!("sqlite://{}", dir.join("keel.db").display()),
        max_connections: 2,
        sqlite_synchronous: Default::default(),
    })
    .await
    .unwrap_or_else(|e| abort(&format!("opening Keel's database: {e:#}")));
    let total = (rate * secs) as usize;
    let next = Arc::new(AtomicUsize::new(0));
    let period = Duration::from_secs_f64(producers as f64 / rate as f64);
    let tasks: Vec<_> = (0..producers)
        .map(|p| {
            let (store, next, product) = (store.clone(), next.clone(), product.to_owned());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period.mul_f64(p as f64 / producers as f64), period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                loop {
                    tick.tick().await;
                    let n = next.fetch_add(1, Ordering::AcqRel);
                    if n >= total {
                        return;
                    }
                    let data = json!({ "id": product, "price": { "amount": n, "currency": "USD" }, "stock_available": 1, "active": true, "version": n });
                    let effects = Effects::default().public_event(EventType::ProductUpdated, data);
                    let mut tx = store.begin().await.unwrap_or_else(|e| abort(&format!("beginning: {e}")));
                    effects.write(&mut tx, keel::store::now()).await.unwrap_or_else(|e| abort(&format!("writing an event: {e}")));
                    tx.commit().await.unwrap_or_else(|e| abort(&format!("committing: {e}")));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    store.close().await;
    total
}

fn line(name: &str, took: &[Duration]) -> String {
    format!(
        "{name:<34} p50 {:>8.2} ms   p99 {:>8.2} ms",
        percentile(took, 0.5).as_secs_f64() * 1e3,
        percentile(took, 0.99).as_secs_f64() * 1e3
    )
}

fn main() {
    if let Ok(port) = std::env::var(BARE_ROLE) {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        return runtime.block_on(bare_server(port.parse().unwrap()));
    }
    let clients: usize = env_or("BENCH_CLIENTS", 10_000);
    let rounds: usize = env_or("BENCH_ROUNDS", 20);
    let rate_clients: usize = env_or("BENCH_RATE_CLIENTS", 1000).min(clients);
    let rate: u64 = env_or("BENCH_RATE", 1000);
    let secs: u64 = env_or("BENCH_SECS", 5);
    let producers: usize = env_or("BENCH_PRODUCERS", 4);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let dir = std::env::temp_dir().join(format!("keel-bench-{}", uuid::Uuid::now_v7().simple()));
        let keel = start_keel(&dir).await;
        let http = reqwest::Client::new();
        let admin = admin(&dir, &http, &keel.base).await;
        let product: Value = http
            .post(format!("{}/v1/admin/products", keel.base))
            .bearer_auth(&admin)
            .json(&json!({ "sku": "BENCH", "name": "Bench", "category": "misc", "price": { "amount": 1, "currency": "USD" }, "stock": 1 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let product = product["id"].as_str().unwrap_or_else(|| abort(&format!("creating a product: {product}"))).to_owned();
        // The per-user cap is 1000 at most: spread the clients over enough users.
        let mut tokens = Vec::new();
        for u in 0..clients.div_ceil(1000) {
            tokens.push(register(&http, &keel.base, &format!("bench{u}@example.com")).await);
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        println!("\nkeel real-time benchmark — {cores} cores, {clients} WebSocket clients in this process, servers in their own, SQLite");

        let keel_tally = Arc::new(Tally::default());
        let keel_target = Arc::new(AtomicUsize::new(usize::MAX));
        let idle = rss_kib(keel.pid());
        let ws_url = format!("{}/v1/ws", keel.base.replacen("http", "ws", 1));
        let channel = format!("product:{product}");
        let started = Instant::now();
        let mut keel_clients = connect_all(
            clients,
            |i| {
                let hello = vec![json!({ "type": "auth", "token": tokens[i / 1000] }), json!({ "type": "subscribe", "channel": channel })];
                (ws_url.clone(), hello)
            },
            &keel_tally,
            &keel_target,
        )
        .await;
        let connect_time = started.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let keel_rss = rss_kib(keel.pid());

        let per = |before: u64, after: u64| (after.saturating_sub(before)) as f64 / clients as f64;
        println!("connected {clients} authenticated, subscribed Keel clients in {:.1} s", connect_time.as_secs_f64());

        // One frame of Keel's size for the bare server.
        let sample = r#"{"id":"evt_0000000000000000000000000000","type":"product.updated","data":{"active":true,"id":"prd_0000000000000000000000000000","price":{"amount":1,"currency":"USD"},"stock_available":1,"version":2},"created_at":"2026-01-01T00:00:00.000000Z"}"#;
        let keel_took = fan_out(rounds, clients, &keel_tally, &keel_target, |round| {
            let request = http
                .patch(format!("{}/v1/admin/products/{product}", keel.base))
                .bearer_auth(&admin)
                .json(&json!({ "price": { "amount": 2 + round, "currency": "USD" } }));
            async move {
                let status = request.send().await.unwrap().status();
                if status != 200 {
                    abort(&format!("PATCH answered {status}"));
                }
            }
        })
        .await;

        // Sustained: keep `rate_clients`, commit `rate` events/s for `secs`, count disconnects.
        for c in keel_clients.drain(rate_clients..) {
            c.abort();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let closed_before = keel_tally.closed.load(Ordering::Acquire);
        let frames_before = keel_tally.frames.load(Ordering::Acquire);
        let started = Instant::now();
        let events = produce_apart(&dir, &product, rate, secs, producers).await;
        let committing = started.elapsed().as_secs_f64();
        let expected = events * rate_clients;
        let deadline = Instant::now() + Duration::from_secs(30);
        while keel_tally.frames.load(Ordering::Acquire) - frames_before < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let delivered = keel_tally.frames.load(Ordering::Acquire) - frames_before;
        let elapsed = started.elapsed().as_secs_f64();
        let sustained = format!(
            "sustained: {events} events committed in {committing:.1} s ({:.0}/s, asked {rate}/s, {producers} producers) to {rate_clients} clients: \
             {delivered} of {expected} frames in {elapsed:.1} s, {} disconnects",
            events as f64 / committing,
            keel_tally.closed.load(Ordering::Acquire) - closed_before,
        );
        for c in keel_clients {
            c.abort();
        }
        drop(keel);
        let _ = std::fs::remove_dir_all(&dir);

        // The baseline, once Keel's clients are gone (both sets at once would pass the fd limit).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let bare = start_bare().await;
        let bare_tally = Arc::new(Tally::default());
        let bare_target = Arc::new(AtomicUsize::new(usize::MAX));
        let bare_idle = rss_kib(bare.pid());
        let bare_url = format!("{}/ws", bare.base.replacen("http", "ws", 1));
        let bare_clients = connect_all(clients, |_| (bare_url.clone(), Vec::new()), &bare_tally, &bare_target).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let bare_rss = rss_kib(bare.pid());
        let bare_took = fan_out(rounds, clients, &bare_tally, &bare_target, |_| {
            let request = http.post(format!("{}/fire", bare.base)).body(sample);
            async move {
                request.send().await.unwrap();
            }
        })
        .await;
        for c in bare_clients {
            c.abort();
        }

        println!("idle memory per connection (server RSS growth / clients):");
        println!("  keel  {:>8.2} KiB   ({} → {} KiB)", per(idle, keel_rss), idle, keel_rss);
        println!("  bare  {:>8.2} KiB   ({} → {} KiB)", per(bare_idle, bare_rss), bare_idle, bare_rss);
        println!("fan-out of one event to all {clients} clients, until the last has it ({rounds} rounds each):");
        println!("  {}", line("bare broadcast loop", &bare_took));
        println!("  {}  (PATCH sent → last client: commit, outbox, relay, bus, hub)", line("keel", &keel_took));
        println!(
            "  p99 ratio keel / bare: {:.2}",
            percentile(&keel_took, 0.99).as_secs_f64() / percentile(&bare_took, 0.99).as_secs_f64()
        );
        println!("{sustained}");
    });
}
