//! The worker loop: claim due jobs of all its queues in one statement, a batch ahead of the free
//! slots, and run them up to the concurrency limit under leases that one heartbeat per worker
//! extends; record failures; on shutdown, let running jobs finish within the grace period and
//! give the rest back to the queue.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::{self, JoinSet};
use tracing::Instrument as _;

use super::model::{Job, after_failure, backoff, jitter_of};
use super::{Attempt, JobHandler, Jobs, Registry};
use crate::store::now;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub queues: Vec<String>,
    pub concurrency: usize,
    /// A job not heart-beaten for this long is considered abandoned and runs again.
    pub lease: Duration,
    /// Longest wait between claims when nothing wakes the worker: how late a scheduled job or a
    /// retry that came due is noticed (new jobs wake workers at once, across processes on
    /// PostgreSQL).
    pub poll: Duration,
    /// How long shutdown waits for running jobs.
    pub grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            queues: super::QUEUES.iter().map(|q| (*q).to_owned()).collect(),
            concurrency: 4,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(500),
            grace: Duration::from_secs(20),
        }
    }
}

pub struct Worker {
    jobs: Jobs,
    registry: Registry,
    settings: WorkerSettings,
    id: Arc<str>,
}

/// A claimed attempt this worker holds, waiting for a slot or running.
struct Hold {
    attempt: u32,
    /// Tells the running attempt that its lease was lost (`None` while it waits).
    lost: Option<oneshot::Sender<()>>,
}

/// What a worker holds: claimed jobs waiting for a slot, running tasks and their jobs.
#[derive(Default)]
struct Held {
    jobs: HashMap<String, Hold>,
    waiting: VecDeque<Job>,
    tasks: JoinSet<()>,
    running: HashMap<task::Id, (String, u32)>,
}

impl Held {
    fn count(&self) -> usize {
        self.waiting.len() + self.tasks.len()
    }

    /// Forgets the job of a task that ended (finished, failed, panicked or aborted).
    fn ended(&mut self, ended: Result<(task::Id, ()), task::JoinError>) {
        let task = ended.map_or_else(|e| e.id(), |(id, ())| id);
        if let Some((id, attempt)) = self.running.remove(&task)
            && self.jobs.get(&id).is_some_and(|hold| hold.attempt == attempt)
        {
            self.jobs.remove(&id);
        }
    }

    fn reap_finished(&mut self) {
        while let Some(ended) = self.tasks.try_join_next_with_id() {
            self.ended(ended);
        }
    }
}

impl Worker {
    pub fn new(jobs: Jobs, registry: Registry, settings: WorkerSettings) -> Self {
        let id = format!("{}-{}", std::process::id(), crate::ids::new("wrk")).into();
        Self { jobs, registry, settings, id }
    }

    pub fn wake(&self) -> &Arc<Notify> {
        self.jobs.wake()
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let slots = self.settings.concurrency;
        let beat_every = self.settings.lease / 3;
        let mut held = Held::default();
        let mut last_beat = Instant::now();
        let mut last_reap: Option<Instant> = None;
        tracing::info!(worker.id = %self.id, queues = ?self.settings.queues, concurrency = slots, "worker started");
        while !*stop.borrow() {
            if last_reap.is_none_or(|t| t.elapsed() >= self.settings.lease / 2) {
                match self.jobs.requeue_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(jobs = n, "requeued jobs whose worker stopped"),
                    Err(e) => tracing::warn!(error = %e, "requeueing abandoned jobs failed"),
                }
                last_reap = Some(Instant::now());
            }
            if last_beat.elapsed() >= beat_every {
                self.heartbeat(&mut held).await;
                last_beat = Instant::now();
            }
            held.reap_finished();
            // Claim once what is held no longer fills the slots twice over, up to that: a batch
            // per claim rather than a job per completion, and the next jobs are at hand when
            // slots free up.
            let mut claimed = 0;
            if held.count() <= slots {
                let want = 2 * slots - held.count();
                let lease_until = now() + self.settings.lease;
                match self.jobs.claim(&self.settings.queues, &self.id, want as u32, lease_until).await {
                    Ok(jobs) => {
                        claimed = jobs.len();
                        for job in jobs {
                            held.jobs.insert(job.id.clone(), Hold { attempt: job.attempts, lost: None });
                            held.waiting.push_back(job);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
                }
            }
            while held.tasks.len() < slots
                && let Some(job) = held.waiting.pop_front()
            {
                self.start(job, &mut held);
            }
            let room = held.count() <= slots;
            if claimed > 0 && room {
                // The queue may hold more than this claim found room for a moment ago.
                continue;
            }
            tokio::select! {
                Some(ended) = held.tasks.join_next_with_id() => held.ended(ended),
                () = self.jobs.wake().notified(), if room => {}
                () = tokio::time::sleep(self.settings.poll), if room => {}
                () = tokio::time::sleep_until((last_beat + beat_every).into()) => {}
                _ = stop.changed() => {}
            }
        }
        self.drain(held).await;
    }

    fn start(&self, job: Job, held: &mut Held) {
        let (lost_tx, lost) = oneshot::channel();
        if let Some(hold) = held.jobs.get_mut(&job.id) {
            hold.lost = Some(lost_tx);
        }
        let key = (job.id.clone(), job.attempts);
        let run = Execution { jobs: self.jobs.clone(), handler: self.registry.get(&job.kind), worker: self.id.clone(), lost };
        let task = held.tasks.spawn(run.execute(job));
        held.running.insert(task.id(), key);
    }

    /// Extends the leases of everything this worker holds in one statement; an attempt whose
    /// lease was lost meanwhile (the reaper gave its job to another worker) stops, or does not
    /// start.
    async fn heartbeat(&self, held: &mut Held) {
        if held.jobs.is_empty() {
            return;
        }
        let still: HashSet<(String, u32)> = match self.jobs.heartbeat(&self.id, now() + self.settings.lease).await {
            Ok(still) => still.into_iter().collect(),
            Err(e) => return tracing::warn!(error = %e, "heartbeat failed"),
        };
        held.jobs.retain(|id, hold| {
            let kept = still.contains(&(id.clone(), hold.attempt));
            if !kept && let Some(lost) = hold.lost.take() {
                let _ = lost.send(());
            }
            kept
        });
        let jobs = &held.jobs;
        held.waiting.retain(|job| jobs.contains_key(&job.id));
    }

    async fn drain(&self, mut held: Held) {
        // Jobs that have not started go back at once; running ones get the grace period.
        for job in std::mem::take(&mut held.waiting) {
            self.release(&job.id).await;
            held.jobs.remove(&job.id);
        }
        let finished = tokio::time::timeout(self.settings.grace, async {
            while let Some(ended) = held.tasks.join_next_with_id().await {
                held.ended(ended);
            }
        })
        .await;
        if finished.is_err() {
            held.tasks.abort_all();
            while held.tasks.join_next().await.is_some() {}
            for id in held.jobs.keys() {
                self.release(id).await;
            }
        }
        tracing::info!(worker.id = %self.id, "worker stopped");
    }

    async fn release(&self, id: &str) {
        if let Err(e) = self.jobs.release(id, &self.id).await {
            tracing::warn!(job.id = %id, error = %e, "could not return a job to the queue; its lease will expire");
        }
    }
}

struct Execution {
    jobs: Jobs,
    handler: Option<Arc<dyn JobHandler>>,
    worker: Arc<str>,
    /// Resolves when the worker's heartbeat found the lease lost.
    lost: oneshot::Receiver<()>,
}

impl Execution {
    /// Runs one attempt in a span of its own that continues the trace the job was enqueued in.
    async fn execute(self, job: Job) {
        let span = tracing::info_span!(
            parent: None,
            "job",
            otel.name = %format!("job {}", job.kind),
            job.id = %job.id,
            job.kind = %job.kind,
            job.attempt = job.attempts
        );
        crate::telemetry::trace::continue_trace(&span, job.traceparent.as_deref());
        self.attempt(job).instrument(span).await;
    }

    async fn attempt(self, job: Job) {
        let Execution { jobs, handler, worker, lost } = self;
        let started = Instant::now();
        crate::telemetry::record_job_wait(&job.kind, (Utc::now() - job.run_at).to_std().unwrap_or_default());
        let result = match &handler {
            None => Err(anyhow::anyhow!("no handler for job kind {:?}", job.kind)),
            Some(handler) => {
                let completion = jobs.completion(&job, &worker);
                let attempt = tokio::time::timeout(handler.timeout(), handler.run(&job, completion));
                // The worker drops the sender without a word when it forgets the hold; only a
                // sent signal means the lease was lost.
                let lost = async {
                    if lost.await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    result = attempt => result.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {:?}", handler.timeout()))).map(drop),
                    () = lost => Err(anyhow::anyhow!("lost the job's lease")),
                }
            }
        };
        // Success already committed the job's completion (with its effects).
        let outcome = match &result {
            Ok(()) => Ok("done"),
            Err(e) => {
                let delay = match &handler {
                    Some(h) => h.retry_delay(&job),
                    None => backoff(job.attempts, Duration::from_secs(1), Duration::from_secs(3600), jitter_of(&job)),
                };
                let after = after_failure(job.attempts, job.max_attempts, Utc::now(), delay);
                tracing::warn!(error = format!("{e:#}"), ?after, "job attempt failed");
                let attempt = Attempt { job_id: &job.id, worker: &worker, number: job.attempts };
                jobs.fail(&attempt, &format!("{e:#}"), after).await.map(|_| "failed")
            }
        };
        match outcome {
            Ok(label) => crate::telemetry::record_job_duration(&job.kind, label, started.elapsed()),
            Err(e) => tracing::error!(error = %e, "recording a job's outcome failed; its lease will expire and it runs again"),
        }
    }
}
