//! Job states and retry rules. No I/O.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its `run_at`.
    Scheduled,
    /// Ready to run.
    Queued,
    Running,
    /// Failed; will run again at `run_at`.
    Retrying,
    /// Failed `max_attempts` times (or discarded); will not run again unless retried by hand.
    Dead,
    Done,
}

impl JobState {
    pub const ALL: [JobState; 6] =
        [JobState::Scheduled, JobState::Queued, JobState::Running, JobState::Retrying, JobState::Dead, JobState::Done];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Dead => "dead",
            JobState::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub queue: String,
    pub payload: serde_json::Value,
    /// Higher runs first.
    pub priority: i64,
    /// `None`: as soon as possible.
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: u32,
    /// While a job with this key is not finished, enqueueing another with it does nothing.
    pub unique_key: Option<String>,
}

impl NewJob {
    pub fn new(kind: &str, payload: serde_json::Value) -> Self {
        Self { kind: kind.to_owned(), queue: "default".to_owned(), payload, priority: 0, run_at: None, max_attempts: 10, unique_key: None }
    }

    pub fn unique(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    pub fn on_queue(mut self, queue: &str) -> Self {
        self.queue = queue.to_owned();
        self
    }

    pub fn at(mut self, run_at: DateTime<Utc>) -> Self {
        self.run_at = Some(run_at);
        self
    }

    pub fn attempts(mut self, max: u32) -> Self {
        self.max_attempts = max.max(1);
        self
    }
}

/// A job as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub queue: String,
    pub payload: serde_json::Value,
    pub priority: i64,
    pub state: JobState,
    pub run_at: DateTime<Utc>,
    pub attempts: u32,
    pub max_attempts: u32,
    #[schema(required = true)]
    pub unique_key: Option<String>,
    #[schema(required = true)]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[schema(required = true)]
    pub finished_at: Option<DateTime<Utc>>,
    /// The trace context it was enqueued in; its runs continue that trace. Internal.
    #[serde(skip)]
    #[schema(ignore)]
    pub traceparent: Option<String>,
}

/// Exponential backoff: `base · 2^(attempt-1)`, capped, then scaled by 0.75–1.25 (`jitter` in [0, 1])
/// so that jobs failing together do not retry together.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1).min(30)).unwrap_or(u32::MAX));
    // ±25 % around the exponential delay: failures spread out, and the mean schedule is the
    // nominal one (so a policy's attempts span the time it promises).
    exp.min(cap).mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A jitter factor in [0, 1] fixed by the job and attempt, so every part of the system
/// that computes an attempt's delay agrees on it, while jobs failing together spread out.
pub fn jitter_of(job: &Job) -> f64 {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("{}:{}", job.id, job.attempts).as_bytes());
    f64::from(digest.as_ref()[0]) / 255.0
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(DateTime<Utc>),
    Dead,
}

pub fn after_failure(attempts: u32, max_attempts: u32, now: DateTime<Utc>, delay: Duration) -> AfterFailure {
    if attempts >= max_attempts { AfterFailure::Dead } else { AfterFailure::RetryAt(now + delay) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(1, base, cap, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(4, base, cap, 0.5), Duration::from_secs(8));
        assert_eq!(backoff(30, base, cap, 0.5), cap);
        assert_eq!(backoff(u32::MAX, base, cap, 0.5), cap);
        assert_eq!(backoff(4, base, cap, 0.0), Duration::from_secs(6));
        assert_eq!(backoff(4, base, cap, 1.0), Duration::from_secs(10));
    }

    #[test]
    fn a_job_dies_after_its_last_attempt() {
        let now = Utc::now();
        assert_eq!(after_failure(3, 3, now, Duration::from_secs(5)), AfterFailure::Dead);
        assert!(matches!(after_failure(2, 3, now, Duration::from_secs(5)), AfterFailure::RetryAt(t) if t > now));
    }

    #[test]
    fn states_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobState::parse("nope"), None);
    }
}
