//! Logs (tracing, JSON by default) and Prometheus metrics.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::{Config, LogFormat};

/// Installs the global log subscriber once (later calls, e.g. from tests, are no-ops).
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// The process-wide Prometheus recorder (metrics are global by design of the `metrics` crate).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("keel_http_request_duration_seconds".into()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                )
                .expect("static bucket list is valid")
                .set_buckets_for_metric(
                    Matcher::Prefix("keel_job_".into()),
                    &[0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0],
                )
                .expect("static bucket list is valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding); then ours only renders.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub fn record_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let labels = [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())];
    metrics::counter!("keel_http_requests_total", &labels).increment(1);
    metrics::histogram!("keel_http_request_duration_seconds", &labels[..2]).record(elapsed.as_secs_f64());
}

pub fn record_pool(backend: &'static str, open: u32, idle: u32) {
    metrics::gauge!("keel_db_pool_connections", "backend" => backend, "state" => "open").set(f64::from(open));
    metrics::gauge!("keel_db_pool_connections", "backend" => backend, "state" => "idle").set(f64::from(idle));
}

/// Jobs per state; states with no jobs read 0 rather than disappearing.
pub fn record_job_depth(depth: &[(crate::jobs::JobState, i64)]) {
    for state in crate::jobs::JobState::ALL {
        let n = depth.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
        metrics::gauge!("keel_jobs", "state" => state.as_str()).set(n as f64);
    }
}
