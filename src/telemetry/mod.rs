//! Logs (tracing, JSON by default), trace context and OTLP export, and Prometheus metrics.

mod export;
mod logs;
mod process;
pub mod trace;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use export::{OtlpExport, Tracing, traces_url};

use crate::config::Config;

/// Installs the global subscriber once (later calls, e.g. from tests, are no-ops): the `log`
/// filter in the `log_format`, on standard error, and spans exported to `otlp_endpoint` when it
/// is set. The caller shuts the returned [`Tracing`] down on exit, to send the last spans.
pub fn init_logging(config: &Config) -> anyhow::Result<Tracing> {
    let tracing = match &config.otlp {
        Some(export) => Tracing::exporting_to(export)?,
        None => Tracing::without_export(),
    };
    logs::install(&config.log, config.log_format, &tracing);
    Ok(tracing)
}

/// Logging for one-shot commands, whose standard output is their result: warnings and errors
/// only unless `verbose`, on standard error. Nothing is exported.
pub fn init_command_logging(config: &Config, verbose: bool) {
    logs::install(if verbose { &config.log } else { "warn" }, config.log_format, &Tracing::without_export());
}

// Every metric Keel records, named once here and described in `describe`.
const HTTP_REQUESTS: &str = "keel_http_requests_total";
const HTTP_DURATION: &str = "keel_http_request_duration_seconds";
const DB_POOL: &str = "keel_db_pool_connections";
const JOBS: &str = "keel_jobs";
const JOB_WAIT: &str = "keel_job_wait_seconds";
const JOB_DURATION: &str = "keel_job_duration_seconds";
const OUTBOX_LAG: &str = "keel_outbox_lag_events";
const CACHE_REQUESTS: &str = "keel_cache_requests_total";
const BUILD_INFO: &str = "keel_build_info";
const PAYMENT_ALERTS: &str = "keel_payment_alerts_total";
const RT_CONNECTIONS: &str = "keel_realtime_connections";
const RT_SENT: &str = "keel_realtime_messages_sent_total";
const RT_SLOW: &str = "keel_realtime_slow_consumers_total";
const RT_REPLAYED: &str = "keel_realtime_replayed_events_total";
const RT_FANOUT: &str = "keel_realtime_fanout_seconds";
const RATE_LIMIT_KEYS: &str = "keel_rate_limit_keys";
const RATE_LIMIT_FALLBACK: &str = "keel_rate_limit_fallback_total";
const REDIS_UP: &str = "keel_redis_up";
const HTTP_CONNECTIONS: &str = "keel_http_connections";
const HTTP_TIMED_OUT: &str = "keel_http_connections_timed_out_total";

fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by method, route template and status.");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "Time to answer an HTTP request, by method and route template.");
    describe_gauge!(DB_POOL, "Database connections by pool backend and state (open, idle).");
    describe_gauge!(JOBS, "Jobs in the queue by state, read at each scrape.");
    describe_histogram!(JOB_WAIT, Unit::Seconds, "Time from when a job was due until a worker claimed it, by kind.");
    describe_histogram!(JOB_DURATION, Unit::Seconds, "Time a job attempt took, by kind and outcome (done, failed).");
    describe_gauge!(OUTBOX_LAG, "Committed events not yet published to the bus.");
    describe_counter!(CACHE_REQUESTS, "Cache lookups by cache (product, list, quote) and result (hit, miss).");
    describe_gauge!(BUILD_INFO, "Always 1; the version label names the running build.");
    describe_counter!(PAYMENT_ALERTS, "Payment provider events staff must look at, by reason (mismatch, unknown_order, refund_elsewhere).");
    describe_gauge!(RT_CONNECTIONS, "Open real-time connections, by transport (websocket, sse).");
    describe_counter!(RT_SENT, "Events written to real-time connections, by transport.");
    describe_counter!(RT_SLOW, "Real-time connections closed because they read too slowly (1013).");
    describe_counter!(RT_REPLAYED, "Missed events replayed from the outbox to resuming real-time clients.");
    describe_histogram!(
        RT_FANOUT,
        Unit::Seconds,
        "Time from an event's commit until it was written to a real-time connection (live events)."
    );
    describe_gauge!(RATE_LIMIT_KEYS, "Cells (policy and key) the in-process rate limiter holds; bounded by rate_limit_max_keys.");
    describe_counter!(RATE_LIMIT_FALLBACK, "Rate-limit decisions made by this instance's own limiter because Redis did not answer.");
    describe_gauge!(
        REDIS_UP,
        "1 while Redis answers (or was not tried yet), 0 from a failed call until one succeeds; absent without redis_url."
    );
    describe_gauge!(HTTP_CONNECTIONS, "Open client connections (upgraded ones included); bounded by http_max_connections.");
    describe_counter!(
        HTTP_TIMED_OUT,
        "Client connections closed for taking too long, by phase: headers (http_header_timeout_secs) or idle (http_idle_timeout_secs)."
    );
    process::describe();
}

/// The process-wide Prometheus recorder (metrics are global by design of the `metrics` crate).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_DURATION.into()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                )
                .expect("static bucket list is valid")
                .set_buckets_for_metric(
                    Matcher::Prefix("keel_job_".into()),
                    &[0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0],
                )
                .expect("static bucket list is valid")
                .set_buckets_for_metric(
                    Matcher::Full(RT_FANOUT.into()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0],
                )
                .expect("static bucket list is valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding); then ours only renders.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

/// The Prometheus text of every metric, process metrics read now.
pub fn render() -> String {
    let handle = metrics_handle();
    process::collect();
    handle.run_upkeep();
    handle.render()
}

pub fn record_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let labels = [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels[..2]).record(elapsed.as_secs_f64());
}

pub fn record_pool(backend: &'static str, open: u32, idle: u32) {
    metrics::gauge!(DB_POOL, "backend" => backend, "state" => "open").set(f64::from(open));
    metrics::gauge!(DB_POOL, "backend" => backend, "state" => "idle").set(f64::from(idle));
}

pub fn record_outbox_lag(events: i64) {
    metrics::gauge!(OUTBOX_LAG).set(events as f64);
}

pub fn record_cache_lookup(cache: &'static str, hit: bool) {
    metrics::counter!(CACHE_REQUESTS, "cache" => cache, "result" => if hit { "hit" } else { "miss" }).increment(1);
}

/// Queue latency: from when the job was due to when a worker took it.
/// A payment provider event that did not add up (see `orders::card`).
pub fn record_payment_alert(reason: &'static str) {
    metrics::counter!(PAYMENT_ALERTS, "reason" => reason).increment(1);
}

pub fn record_job_wait(kind: &str, waited: Duration) {
    metrics::histogram!(JOB_WAIT, "kind" => kind.to_owned()).record(waited.as_secs_f64());
}

pub fn record_job_duration(kind: &str, outcome: &'static str, took: Duration) {
    metrics::histogram!(JOB_DURATION, "kind" => kind.to_owned(), "outcome" => outcome).record(took.as_secs_f64());
}

/// Jobs per state; states with no jobs read 0 rather than disappearing.
pub fn record_job_depth(depth: &[(crate::jobs::JobState, i64)]) {
    for state in crate::jobs::JobState::ALL {
        let n = depth.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
        metrics::gauge!(JOBS, "state" => state.as_str()).set(n as f64);
    }
}

pub fn record_realtime_connections(transport: &'static str, open: usize) {
    metrics::gauge!(RT_CONNECTIONS, "transport" => transport).set(open as f64);
}

/// The frame metrics of one connection: handles looked up once, not for every frame.
pub struct RealtimeSent {
    frames: metrics::Counter,
    fanout: metrics::Histogram,
}

impl RealtimeSent {
    pub fn new(transport: &'static str) -> RealtimeSent {
        RealtimeSent { frames: metrics::counter!(RT_SENT, "transport" => transport), fanout: metrics::histogram!(RT_FANOUT) }
    }

    /// One frame written: counted, and for live events the time since commit.
    pub fn record(&self, frame: &crate::realtime::hub::Frame) {
        self.frames.increment(1);
        if !frame.replayed {
            let since_commit = (chrono::Utc::now() - frame.created_at).to_std().unwrap_or_default();
            self.fanout.record(since_commit.as_secs_f64());
        }
    }
}

pub fn record_realtime_slow_consumer() {
    metrics::counter!(RT_SLOW).increment(1);
}

pub fn record_realtime_replayed(events: usize) {
    metrics::counter!(RT_REPLAYED).increment(events as u64);
}

pub fn record_rate_limit_keys(cells: usize) {
    metrics::gauge!(RATE_LIMIT_KEYS).set(cells as f64);
}

pub fn record_rate_limit_fallback() {
    metrics::counter!(RATE_LIMIT_FALLBACK).increment(1);
}

pub fn record_redis_up(up: bool) {
    metrics::gauge!(REDIS_UP).set(if up { 1.0 } else { 0.0 });
}

pub fn record_http_connections(open: usize) {
    metrics::gauge!(HTTP_CONNECTIONS).set(open as f64);
}

/// A connection closed because a deadline passed: `headers` or `idle`.
pub fn record_http_timed_out(phase: &'static str) {
    metrics::counter!(HTTP_TIMED_OUT, "phase" => phase).increment(1);
}
