//! Recurring jobs: each schedule enqueues its job once per period. A row per period
//! (`enqueued_once`) commits with the enqueue, so any number of instances may run the
//! scheduler, as often as they like, and the job still runs once per period.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::{Jobs, NewJob};

#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: &'static str,
    pub every: Duration,
    pub job: fn() -> NewJob,
}

/// The unique key of `schedule`'s run for the period containing `now`.
pub fn period_key(schedule: &Schedule, now: DateTime<Utc>) -> String {
    let period = schedule.every.as_secs().max(1) as i64;
    format!("cron:{}:{}", schedule.name, now.timestamp().div_euclid(period))
}

/// Enqueues every schedule's job for the current period, checking every `tick`, until `stop`.
pub async fn run(jobs: Jobs, schedules: Vec<Schedule>, tick: Duration, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let now = crate::store::now();
        for schedule in &schedules {
            if let Err(e) = jobs.enqueue_once(&(schedule.job)().unique(period_key(schedule, now))).await {
                tracing::warn!(schedule = schedule.name, error = %e, "enqueueing a recurring job failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_per_period() {
        let s = Schedule { name: "purge", every: Duration::from_secs(3600), job: || NewJob::new("x", serde_json::Value::Null) };
        let t = DateTime::parse_from_rfc3339("2026-01-01T10:05:00Z").unwrap().to_utc();
        assert_eq!(period_key(&s, t), period_key(&s, t + chrono::TimeDelta::minutes(50)));
        assert_ne!(period_key(&s, t), period_key(&s, t + chrono::TimeDelta::minutes(60)));
    }
}
