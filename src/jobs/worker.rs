//! The worker loop: claim due jobs up to the concurrency limit, run each under a lease that
//! a heartbeat extends, record the outcome; on shutdown, let running jobs finish within the
//! grace period and give the rest back to the queue.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::model::{Job, after_failure, backoff, jitter_of};
use super::{Attempt, Jobs, Registry};
use crate::store::now;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub queues: Vec<String>,
    pub concurrency: usize,
    /// A job not heart-beaten for this long is considered abandoned and runs again.
    pub lease: Duration,
    /// Longest wait between polls when nothing wakes the worker.
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
    id: String,
}

impl Worker {
    pub fn new(jobs: Jobs, registry: Registry, settings: WorkerSettings) -> Self {
        let id = format!("{}-{}", std::process::id(), crate::ids::new("wrk"));
        Self { jobs, registry, settings, id }
    }

    pub fn wake(&self) -> &Arc<Notify> {
        self.jobs.wake()
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency));
        let running: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut tasks = JoinSet::new();
        let mut last_reap: Option<Instant> = None;
        tracing::info!(worker.id = %self.id, queues = ?self.settings.queues, concurrency = self.settings.concurrency, "worker started");
        while !*stop.borrow() {
            if last_reap.is_none_or(|t| t.elapsed() >= self.settings.lease / 2) {
                match self.jobs.requeue_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(jobs = n, "requeued jobs whose worker stopped"),
                    Err(e) => tracing::warn!(error = %e, "requeueing abandoned jobs failed"),
                }
                last_reap = Some(Instant::now());
            }
            let mut claimed = 0;
            for queue in &self.settings.queues {
                let free = permits.available_permits();
                if free == 0 {
                    break;
                }
                let lease_until = now() + self.settings.lease;
                match self.jobs.claim(queue, &self.id, free as u32, lease_until).await {
                    Ok(jobs) => {
                        for job in jobs {
                            claimed += 1;
                            let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
                            running.lock().expect("running set").insert(job.id.clone());
                            let run = Execution {
                                jobs: self.jobs.clone(),
                                registry: self.registry.clone(),
                                worker: self.id.clone(),
                                lease: self.settings.lease,
                            };
                            let running = running.clone();
                            tasks.spawn(async move {
                                let id = job.id.clone();
                                run.execute(job).await;
                                running.lock().expect("running set").remove(&id);
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, queue, "claiming jobs failed"),
                }
            }
            while tasks.try_join_next().is_some() {}
            if permits.available_permits() == 0 {
                // Every slot is busy: claim again as soon as one frees up.
                tokio::select! {
                    _ = tasks.join_next() => {}
                    _ = stop.changed() => {}
                }
            } else if claimed == 0 {
                tokio::select! {
                    () = self.jobs.wake().notified() => {}
                    () = tokio::time::sleep(self.settings.poll) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        self.drain(tasks, running).await;
    }

    async fn drain(&self, mut tasks: JoinSet<()>, running: Arc<Mutex<HashSet<String>>>) {
        let finished = tokio::time::timeout(self.settings.grace, async { while tasks.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let left: Vec<String> = running.lock().expect("running set").drain().collect();
            for id in left {
                if let Err(e) = self.jobs.release(&id, &self.id).await {
                    tracing::warn!(job.id = %id, error = %e, "could not return a job to the queue; its lease will expire");
                }
            }
        }
        tracing::info!(worker.id = %self.id, "worker stopped");
    }
}

struct Execution {
    jobs: Jobs,
    registry: Registry,
    worker: String,
    lease: Duration,
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
        let started = Instant::now();
        crate::telemetry::record_job_wait(&job.kind, (Utc::now() - job.run_at).to_std().unwrap_or_default());
        let handler = self.registry.get(&job.kind);
        let result = match &handler {
            None => Err(anyhow::anyhow!("no handler for job kind {:?}", job.kind)),
            Some(handler) => {
                let heartbeat = self.heartbeat(&job.id);
                let completion = self.jobs.completion(&job, &self.worker);
                let attempt = tokio::time::timeout(handler.timeout(), handler.run(&job, completion));
                tokio::select! {
                    result = attempt => result.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {:?}", handler.timeout()))).map(drop),
                    () = heartbeat => Err(anyhow::anyhow!("lost the job's lease")),
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
                let attempt = Attempt { job_id: &job.id, worker: &self.worker, number: job.attempts };
                self.jobs.fail(&attempt, &format!("{e:#}"), after).await.map(|_| "failed")
            }
        };
        match outcome {
            Ok(label) => crate::telemetry::record_job_duration(&job.kind, label, started.elapsed()),
            Err(e) => tracing::error!(error = %e, "recording a job's outcome failed; its lease will expire and it runs again"),
        }
    }

    /// Extends the lease every third of it; resolves only if the lease was lost.
    async fn heartbeat(&self, id: &str) {
        let mut tick = tokio::time::interval(self.lease / 3);
        tick.tick().await;
        loop {
            tick.tick().await;
            match self.jobs.heartbeat(id, &self.worker, now() + self.lease).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    }
}
