//! Durable background jobs: a queue in the database (enqueued inside the caller's
//! transaction), workers that claim with leases, retries with backoff, and the admin routes.

pub mod maintenance;
pub mod model;
pub mod repo;
pub mod routes;
pub mod schedule;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

pub use model::{Job, JobState, NewJob};
pub use repo::{JobRepo, SqlJobs, enqueue_in};

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

    async fn run(&self, job: &Job) -> anyhow::Result<()>;
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

/// Enqueueing from outside a transaction, with an in-process wake-up for local workers.
#[derive(Clone)]
pub struct Jobs {
    repo: Arc<dyn JobRepo>,
    wake: Arc<Notify>,
}

impl Jobs {
    pub fn new(repo: Arc<dyn JobRepo>) -> Self {
        Self { repo, wake: Arc::new(Notify::new()) }
    }

    pub fn repo(&self) -> &Arc<dyn JobRepo> {
        &self.repo
    }

    pub fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    pub async fn enqueue(&self, job: &NewJob) -> Result<Option<String>, crate::store::StoreError> {
        let id = self.repo.enqueue(job, crate::store::now()).await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Enqueues `job` unless one was ever enqueued under its unique key; true when this call did.
    pub async fn enqueue_once(&self, job: &NewJob) -> Result<bool, crate::store::StoreError> {
        let enqueued = self.repo.enqueue_once(job, crate::store::now()).await?;
        if enqueued {
            self.wake.notify_one();
        }
        Ok(enqueued)
    }
}
