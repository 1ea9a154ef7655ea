//! Periodic housekeeping: drop events past the replay window and finished jobs past their
//! retention, and give back stock whose reservation expired.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;

use super::schedule::Schedule;
use super::{Completion, Done, Job, JobHandler, JobRepo, NewJob};
use crate::events::EventRepo;
use crate::store::now;

const PURGE_EVENTS: &str = "maintenance.purge_events";
const PURGE_JOBS: &str = "maintenance.purge_jobs";
const RELEASE_RESERVATIONS: &str = "maintenance.release_reservations";
/// Events are replayable for 24 h.
const EVENT_RETENTION: TimeDelta = TimeDelta::hours(24);
/// Done and dead jobs stay visible to the back office for a week.
const JOB_RETENTION: TimeDelta = TimeDelta::days(7);

pub fn schedules() -> Vec<Schedule> {
    vec![
        Schedule {
            name: "purge_events",
            every: Duration::from_secs(3600),
            job: || NewJob::new(PURGE_EVENTS, serde_json::Value::Null).attempts(3),
        },
        Schedule {
            name: "purge_jobs",
            every: Duration::from_secs(3600),
            job: || NewJob::new(PURGE_JOBS, serde_json::Value::Null).attempts(3),
        },
        Schedule {
            name: "release_reservations",
            every: Duration::from_secs(60),
            job: || NewJob::new(RELEASE_RESERVATIONS, serde_json::Value::Null).attempts(3),
        },
    ]
}

pub struct PurgeEvents(pub Arc<dyn EventRepo>);

#[async_trait::async_trait]
impl JobHandler for PurgeEvents {
    fn kind(&self) -> &'static str {
        PURGE_EVENTS
    }

    async fn run(&self, _job: &Job, completion: Completion) -> anyhow::Result<Done> {
        let repo = &self.0;
        let (done, n) = completion
            .finish(|mut tx| async move {
                let n = repo.purge(&mut tx, now() - EVENT_RETENTION).await?;
                Ok((tx, n))
            })
            .await?;
        tracing::info!(events = n, "purged events past the replay window");
        Ok(done)
    }
}

pub struct PurgeJobs(pub Arc<dyn JobRepo>);

#[async_trait::async_trait]
impl JobHandler for PurgeJobs {
    fn kind(&self) -> &'static str {
        PURGE_JOBS
    }

    async fn run(&self, _job: &Job, completion: Completion) -> anyhow::Result<Done> {
        let repo = &self.0;
        let (done, n) = completion
            .finish(|mut tx| async move {
                let n = repo.purge_finished(&mut tx, now() - JOB_RETENTION).await?;
                Ok((tx, n))
            })
            .await?;
        tracing::info!(jobs = n, "purged finished jobs past their retention");
        Ok(done)
    }
}

/// Gives back stock held by reservations that checkout neither committed nor released.
pub struct ReleaseExpiredReservations(pub Arc<crate::catalog::Catalog>);

#[async_trait::async_trait]
impl JobHandler for ReleaseExpiredReservations {
    fn kind(&self) -> &'static str {
        RELEASE_RESERVATIONS
    }

    async fn run(&self, _job: &Job, completion: Completion) -> anyhow::Result<Done> {
        let n = self.0.release_expired().await?;
        if n > 0 {
            tracing::info!(reservations = n, "released expired stock reservations");
        }
        completion.done().await
    }
}
