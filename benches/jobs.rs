//! Job queue and outbox benchmark: jobs/s (enqueue, then complete no-op jobs with 4 workers,
//! one job at a time each and 8 at a time each; completion counts distinct jobs, checked
//! against the jobs the queue marked done, and aborts if any is lost) and outbox → subscriber
//! latency, on SQLite
//! and, when reachable, PostgreSQL (a scratch database, dropped afterwards).
//!
//! Run: `cargo bench --bench jobs` (env: BENCH_JOBS, BENCH_EVENTS, BENCH_PG_URL — default
//! `postgres://postgres@127.0.0.1:5432/postgres`; set it to `off` to skip PostgreSQL).

mod postgres;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel::events::{Bus, Effects, Event, LocalBus, NewEvent, Outbox};
use keel::jobs::worker::{Worker, WorkerSettings};
use keel::jobs::{Completion, Done, Job, JobHandler, JobState, Jobs, NewJob, Registry};
use keel::store::{Store, StoreOptions};
use postgres::Scratch;
use tokio::sync::{Notify, watch};

/// Does nothing but note which job ran, and tells the benchmark when `target` distinct jobs
/// ran (a job run twice counts once).
struct Noop {
    calls: Arc<AtomicUsize>,
    ran: Arc<Mutex<HashSet<String>>>,
    target: usize,
    all_done: Arc<Notify>,
}

#[async_trait::async_trait]
impl JobHandler for Noop {
    fn kind(&self) -> &'static str {
        "bench.noop"
    }

    async fn run(&self, job: &Job, completion: Completion) -> anyhow::Result<Done> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let done = completion.done().await?;
        let mut ran = self.ran.lock().unwrap();
        if ran.insert(job.id.clone()) && ran.len() == self.target {
            self.all_done.notify_one();
        }
        Ok(done)
    }
}

/// Jobs in state `done` in the database.
async fn done_in_db(jobs: &Jobs) -> i64 {
    let depth = jobs.repo().depth().await.expect("reading the queue depth");
    depth.into_iter().filter(|(state, _)| *state == JobState::Done).map(|(_, n)| n).sum()
}

/// Ends the benchmark with a message and a non-zero exit code.
fn abort(message: &str) -> ! {
    eprintln!("benchmark aborted: {message}");
    std::process::exit(1)
}

async fn open(url: &str) -> Store {
    let store = Store::connect(&StoreOptions { url: url.to_owned(), max_connections: 10, sqlite_synchronous: Default::default() })
        .await
        .expect("connecting");
    store.migrate().await.expect("migrating");
    store
}

/// Enqueues `count` no-op jobs from 8 tasks, then runs them with 4 workers of `slots` each.
/// Returns the enqueue rate, the completion rate (distinct jobs done), and how many handler
/// calls ran a job a second time.
async fn jobs_per_second(store: &Store, count: usize, slots: usize) -> (f64, f64, usize) {
    let jobs = Jobs::new(store.clone());
    let started = Instant::now();
    let mut enqueuers = Vec::new();
    for part in 0..8 {
        let jobs = jobs.clone();
        enqueuers.push(tokio::spawn(async move {
            for i in (part..count).step_by(8) {
                jobs.enqueue(&NewJob::new("bench.noop", serde_json::json!({ "i": i }))).await.expect("enqueue");
            }
        }));
    }
    for e in enqueuers {
        e.await.unwrap();
    }
    let enqueue_rate = count as f64 / started.elapsed().as_secs_f64();

    let (stop_tx, stop_rx) = watch::channel(false);
    let all_done = Arc::new(Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(Mutex::new(HashSet::new()));
    let done_before = done_in_db(&jobs).await;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let settings = WorkerSettings {
            queues: vec!["default".into()],
            concurrency: slots,
            poll: Duration::from_millis(20),
            ..WorkerSettings::default()
        };
        let handler = Noop { calls: calls.clone(), ran: ran.clone(), target: count, all_done: all_done.clone() };
        let worker = Worker::new(jobs.clone(), Registry::default().with(handler), settings);
        workers.push(tokio::spawn(worker.run(stop_rx.clone())));
    }
    if tokio::time::timeout(Duration::from_secs(600), all_done.notified()).await.is_err() {
        abort(&format!("only {} of {count} jobs ran within 10 minutes ({slots} slot(s))", ran.lock().unwrap().len()));
    }
    let complete_rate = count as f64 / started.elapsed().as_secs_f64();
    stop_tx.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    // What counts is what the queue recorded: each job done once, none lost.
    let done = done_in_db(&jobs).await - done_before;
    let (calls, distinct) = (calls.load(Ordering::SeqCst), ran.lock().unwrap().len());
    if done != count as i64 || distinct != count {
        abort(&format!("{count} jobs enqueued, {distinct} distinct ran ({calls} handler calls), {done} marked done"));
    }
    (enqueue_rate, complete_rate, calls - distinct)
}

/// Commits events one at a time and measures commit → subscriber delivery through the relay.
async fn outbox_latency(store: &Store, count: usize) -> (f64, f64) {
    let outbox = Arc::new(Outbox::new(store.clone()));
    let bus = Arc::new(LocalBus::new());
    let mut received = bus.subscribe();
    let (stop_tx, stop_rx) = watch::channel(false);
    let wake = store.commits();
    store.forward_notifications("keel_events", wake.clone(), stop_rx.clone()).await.unwrap();
    let relay = tokio::spawn(keel::events::relay::run(outbox, bus.clone() as Arc<dyn Bus>, wake, Duration::from_millis(50), stop_rx));
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let committed = Instant::now();
        let data = serde_json::json!({ "i": i });
        let effects = Effects {
            jobs: Vec::new(),
            events: vec![NewEvent { kind: "bench.event", user_id: None, data: data.clone() }],
            ..Effects::default()
        };
        let mut tx = store.begin().await.unwrap();
        effects.write(&mut tx, keel::store::now()).await.unwrap();
        tx.commit().await.unwrap();
        loop {
            let event: Arc<Event> = received.recv().await.unwrap();
            if event.data == data {
                break;
            }
        }
        latencies.push(committed.elapsed());
    }
    stop_tx.send(true).unwrap();
    relay.await.unwrap();
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

fn main() {
    let count: usize = std::env::var("BENCH_JOBS").ok().and_then(|s| s.parse().ok()).unwrap_or(5000);
    let events: usize = std::env::var("BENCH_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let dir = std::env::temp_dir().join(format!("keel-bench-jobs-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut backends = vec![("SQLite", format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()), None)];
        if let Some(admin_url) = postgres::admin_url() {
            match Scratch::create(&admin_url).await {
                Ok(scratch) => backends.push(("PostgreSQL", scratch.url.clone(), Some(scratch))),
                Err(e) => println!("PostgreSQL skipped: {e}"),
            }
        }
        println!("\nkeel jobs benchmark — {count} no-op jobs per run (8 concurrent enqueuers; 4 workers), {events} events");
        for (name, url, scratch) in backends {
            let store = open(&url).await;
            for slots in [1, 8] {
                let (enqueue, complete, repeats) = jobs_per_second(&store, count, slots).await;
                println!(
                    "{name:<11} enqueue {enqueue:>7.0} jobs/s   complete {complete:>7.0} distinct jobs/s  (4 workers × {slots} slot(s); {repeats} repeated runs)"
                );
            }
            let (p50, p99) = outbox_latency(&store, events).await;
            println!("{name:<11} outbox→subscriber p50 {p50:>6.2} ms  p99 {p99:>6.2} ms");
            store.close().await;
            if let Some(scratch) = scratch {
                scratch.remove().await;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
