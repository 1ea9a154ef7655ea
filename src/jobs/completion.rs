//! How a job's attempt ends in success: its completion commits with its effects, and
//! completions without effects commit in batches shared by all of a process's workers.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Attempt, Job, JobRepo, Jobs};
use crate::store::{Store, StoreError, Tx, now};

/// Proof that a job's completion committed (only [`Completion`] makes one).
#[derive(Debug)]
pub struct Done(());

/// How a handler finishes its job.
pub struct Completion {
    jobs: Jobs,
    job_id: String,
    worker: String,
    attempt: u32,
}

/// The job's attempt no longer holds it (its lease expired): its effects were rolled back.
#[derive(Debug, thiserror::Error)]
#[error("the job's lease expired before it completed; its effects were rolled back")]
pub struct LostLease;

impl Completion {
    /// Runs `effects` in one unit of work that also marks the job done, and commits it (retried
    /// as one on deadlocks). Handlers call the network before this, never inside it.
    pub async fn finish<T, Fut>(self, mut effects: impl FnMut(Tx) -> Fut) -> anyhow::Result<(Done, T)>
    where
        Fut: Future<Output = anyhow::Result<(Tx, T)>>,
    {
        let attempt = Attempt { job_id: &self.job_id, worker: &self.worker, number: self.attempt };
        let repo = &self.jobs.repo;
        let value = self
            .jobs
            .store
            .transact(|tx| {
                let effects = effects(tx);
                async move {
                    let (mut tx, value) = effects.await?;
                    if repo.complete(&mut tx, &[attempt], now()).await?.is_empty() {
                        return Err(anyhow::Error::from(LostLease));
                    }
                    Ok((tx, value))
                }
            })
            .await?;
        Ok((Done(()), value))
    }

    /// Completes a job that stores nothing else. Such completions from all of this process's
    /// workers commit together, a batch per transaction, so a commit (an fsync on SQLite) is
    /// shared by the jobs that finished while the previous batch was committing.
    pub async fn done(self) -> anyhow::Result<Done> {
        let (reply, done) = oneshot::channel();
        let pending = Pending { job_id: self.job_id.clone(), worker: self.worker.clone(), attempt: self.attempt, reply };
        if self.jobs.completions().send(pending).await.is_ok()
            && let Ok(held) = done.await
        {
            return if held? { Ok(Done(())) } else { Err(LostLease.into()) };
        }
        // The batching task is gone (its runtime is shutting down): commit this one alone.
        Ok(self.finish(|tx| async { Ok((tx, ())) }).await?.0)
    }
}

/// An effect-less completion waiting for its batch.
pub(super) struct Pending {
    job_id: String,
    worker: String,
    attempt: u32,
    /// Whether the attempt still held its job (and is now done), once the batch committed.
    reply: oneshot::Sender<anyhow::Result<bool>>,
}

/// The most completions one statement carries (3 parameters each).
const COMPLETION_BATCH: usize = 64;

/// Commits the completions waiting in `queue`, each batch in one transaction of one statement,
/// until every sender is gone.
async fn commit_completions(store: Store, repo: Arc<dyn JobRepo>, mut queue: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(COMPLETION_BATCH);
    while queue.recv_many(&mut batch, COMPLETION_BATCH).await > 0 {
        let attempts: Vec<Attempt> = batch.iter().map(|p| Attempt { job_id: &p.job_id, worker: &p.worker, number: p.attempt }).collect();
        let (repo, attempts) = (&repo, &attempts);
        let result = store
            .transact(|mut tx| async move {
                let done = repo.complete(&mut tx, attempts, now()).await?;
                Ok::<_, StoreError>((tx, done))
            })
            .await;
        for pending in batch.drain(..) {
            let held = match &result {
                Ok(done) => Ok(done.iter().any(|(id, attempt)| *id == pending.job_id && *attempt == pending.attempt)),
                Err(e) => Err(anyhow::anyhow!("committing a batch of job completions failed: {e}")),
            };
            // A handler that gave up waiting (its attempt timed out) no longer listens.
            let _ = pending.reply.send(held);
        }
    }
}

impl Jobs {
    /// How `worker`'s attempt at `job` finishes.
    pub fn completion(&self, job: &Job, worker: &str) -> Completion {
        Completion { jobs: self.clone(), job_id: job.id.clone(), worker: worker.to_owned(), attempt: job.attempts }
    }

    /// The queue of effect-less completions; its first use starts the task committing them.
    pub(super) fn completions(&self) -> &mpsc::Sender<Pending> {
        self.completions.get_or_init(|| {
            let (queue, batches) = mpsc::channel(4 * COMPLETION_BATCH);
            tokio::spawn(commit_completions(self.store.clone(), self.repo.clone(), batches));
            queue
        })
    }
}
