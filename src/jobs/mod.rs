//! Durable background jobs: a queue in the database (enqueued inside the caller's
//! transaction), workers that claim with leases, retries with backoff, and the admin routes.

mod completion;
pub mod maintenance;
pub mod model;
pub mod repo;
pub mod routes;
pub mod schedule;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use tokio::sync::{Notify, mpsc};

pub use completion::{Completion, Done, LostLease};
pub use model::{Job, JobState, NewJob};
pub use repo::{Attempt, JobRepo};

use crate::store::{Store, StoreError, now};

/// The queues Keel's own jobs use; a worker serves all of them unless configured otherwise.
pub const QUEUES: &[&str] = &["default", "mail", "webhooks"];

/// One kind of job. `run` must be idempotent: a job whose worker died runs again.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    fn kind(&self) -> &'static str;

    /// An attempt running longer than this fails (and is retried).
    fn timeout(&self) -> Duration {
        Duration::from_secs(60)
    }

    /// How long to wait before the next attempt after `job`'s latest attempt failed.
    fn retry_delay(&self, job: &Job) -> Duration {
        model::backoff(job.attempts, Duration::from_secs(1), Duration::from_secs(3600), model::jitter_of(job))
    }

    /// Runs one attempt. Success is only reachable through `completion`, which commits the
    /// job's stored effects and its completion in one transaction: once they commit, the job
    /// cannot run again; if they do not, neither happened.
    async fn run(&self, job: &Job, completion: Completion) -> anyhow::Result<Done>;
}

/// The handlers a worker knows, by kind.
#[derive(Clone, Default)]
pub struct Registry(HashMap<&'static str, Arc<dyn JobHandler>>);

impl Registry {
    pub fn with(mut self, handler: impl JobHandler) -> Self {
        self.0.insert(handler.kind(), Arc::new(handler));
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn JobHandler>> {
        self.0.get(kind).cloned()
    }
}

/// The queue's use cases, each its own unit of work, with an in-process wake-up for local workers.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    repo: Arc<dyn JobRepo>,
    wake: Arc<Notify>,
    /// Where effect-less completions queue for their batch; the task draining it starts with
    /// the first one (on the runtime that runs the workers).
    completions: Arc<OnceLock<mpsc::Sender<completion::Pending>>>,
}

impl Jobs {
    pub fn new(store: Store) -> Self {
        Self { repo: repo::for_store(&store), store, wake: Arc::new(Notify::new()), completions: Arc::default() }
    }

    /// The queue's reads, and its steps for other use cases' units of work (erasure, the purge job).
    pub fn repo(&self) -> &Arc<dyn JobRepo> {
        &self.repo
    }

    pub fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    /// Enqueues `job` on its own; returns its id, or `None` when a live job holds its unique key.
    pub async fn enqueue(&self, job: &NewJob) -> Result<Option<String>, StoreError> {
        let repo = &self.repo;
        let id = self
            .store
            .transact(|mut tx| async move {
                let id = repo.enqueue(&mut tx, job, now()).await?;
                Ok::<_, StoreError>((tx, id))
            })
            .await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Enqueues `job` unless one was ever enqueued under its unique key; true when this call did.
    pub async fn enqueue_once(&self, job: &NewJob) -> Result<bool, StoreError> {
        let repo = &self.repo;
        let enqueued = self
            .store
            .transact(|mut tx| async move {
                let once = repo.enqueue_once(&mut tx, job, now()).await?;
                Ok::<_, StoreError>((tx, once))
            })
            .await?;
        if enqueued {
            self.wake.notify_one();
        }
        Ok(enqueued)
    }

    pub async fn claim(&self, queues: &[String], worker: &str, limit: u32, lease_until: DateTime<Utc>) -> Result<Vec<Job>, StoreError> {
        let repo = &self.repo;
        self.store
            .transact(|mut tx| async move {
                let jobs = repo.claim(&mut tx, queues, worker, limit, lease_until, now()).await?;
                Ok((tx, jobs))
            })
            .await
    }

    /// Extends the leases of all of `worker`'s jobs; returns the attempts it still holds.
    pub async fn heartbeat(&self, worker: &str, lease_until: DateTime<Utc>) -> Result<Vec<(String, u32)>, StoreError> {
        let repo = &self.repo;
        self.store
            .transact(|mut tx| async move {
                let held = repo.heartbeat(&mut tx, worker, lease_until).await?;
                Ok((tx, held))
            })
            .await
    }

    pub async fn fail(&self, attempt: &Attempt<'_>, error: &str, after: model::AfterFailure) -> Result<bool, StoreError> {
        let repo = &self.repo;
        self.store
            .transact(|mut tx| async move {
                let held = repo.fail(&mut tx, attempt, error, after, now()).await?;
                Ok((tx, held))
            })
            .await
    }

    pub async fn release(&self, id: &str, worker: &str) -> Result<bool, StoreError> {
        let repo = &self.repo;
        self.store
            .transact(|mut tx| async move {
                let held = repo.release(&mut tx, id, worker, now()).await?;
                Ok((tx, held))
            })
            .await
    }

    pub async fn requeue_expired(&self) -> Result<u64, StoreError> {
        let repo = &self.repo;
        self.store
            .transact(|mut tx| async move {
                let n = repo.requeue_expired(&mut tx, now()).await?;
                Ok((tx, n))
            })
            .await
    }

    /// Runs a dead job again (false: no dead job has this id).
    pub async fn retry(&self, id: &str) -> Result<bool, StoreError> {
        let repo = &self.repo;
        let retried = self
            .store
            .transact(|mut tx| async move {
                let retried = repo.retry(&mut tx, id, now()).await?;
                Ok::<_, StoreError>((tx, retried))
            })
            .await?;
        if retried {
            self.wake.notify_one();
        }
        Ok(retried)
    }

    /// Removes a job that is not running (false: no such job, or it is running).
    pub async fn discard(&self, id: &str) -> Result<bool, StoreError> {
        let repo = &self.repo;
        self.store
            .transact(|mut tx| async move {
                let gone = repo.discard(&mut tx, id).await?;
                Ok((tx, gone))
            })
            .await
    }
}

#[cfg(test)]
mod tests;
