//! SQL of the job queue, for both backends.

use chrono::{DateTime, Utc};

use super::model::{AfterFailure, Job, JobState, NewJob};
use std::sync::Arc;

use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx, placeholders};

macro_rules! job_columns {
    () => {
        "id, kind, queue, payload, priority, state, run_at, attempts, max_attempts, unique_key, last_error, created_at, updated_at, finished_at, traceparent"
    };
}

fn job_from<R: Columns>(r: &R) -> Result<Job, StoreError> {
    let state = r.text("state")?;
    Ok(Job {
        id: r.text("id")?,
        kind: r.text("kind")?,
        queue: r.text("queue")?,
        payload: serde_json::from_str(&r.text("payload")?).unwrap_or(serde_json::Value::Null),
        priority: r.int("priority")?,
        state: JobState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("job state {state:?}")))?,
        run_at: r.time("run_at")?,
        attempts: u32::try_from(r.int("attempts")?).unwrap_or(u32::MAX),
        max_attempts: u32::try_from(r.int("max_attempts")?).unwrap_or(u32::MAX),
        unique_key: r.opt_text("unique_key")?,
        last_error: r.opt_text("last_error")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        finished_at: r.opt_time("finished_at")?,
        traceparent: r.opt_text("traceparent")?,
    })
}

/// A job's id and attempt number, as `RETURNING id, attempts` reads them.
fn attempt_from<R: Columns>(r: &R) -> Result<(String, u32), StoreError> {
    Ok((r.text("id")?, u32::try_from(r.int("attempts")?).unwrap_or(u32::MAX)))
}

/// Enqueues `job` on the caller's connection, so it commits (or not) with the caller's
/// transaction, with the trace context it is enqueued in. Returns the new id, or `None` when a
/// live job holds the same unique key.
pub(crate) async fn enqueue_in<DB: Backend>(
    conn: &mut DB::Connection,
    job: &NewJob,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    let id = crate::ids::new("job");
    let run_at = job.run_at.unwrap_or(now);
    let state = if run_at > now { JobState::Scheduled } else { JobState::Queued };
    let inserted = Sql::<DB>::new(
        "INSERT INTO jobs (id, kind, queue, payload, priority, state, run_at, attempts, max_attempts, unique_key, created_at, updated_at, traceparent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $10, $11) ON CONFLICT DO NOTHING",
    )
    .bind(id.as_str())
    .bind(job.kind.as_str())
    .bind(job.queue.as_str())
    .bind(job.payload.to_string())
    .bind(job.priority)
    .bind(state.as_str())
    .bind(run_at)
    .bind(i64::from(job.max_attempts))
    .bind(job.unique_key.clone())
    .bind(now)
    .bind(crate::telemetry::trace::current())
    .execute(conn)
    .await?;
    if inserted == 0 {
        return Ok(None);
    }
    if let Some(notify) = DB::NOTIFY_JOBS {
        Sql::<DB>::new(notify).bind(job.queue.as_str()).execute(conn).await?;
    }
    Ok(Some(id))
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<String>,
}

/// The queue's SQL. Reads use the reader pool; every write is one step of the caller's unit of
/// work (a job handler's effects and its completion commit together).
#[async_trait::async_trait]
pub trait JobRepo: Send + Sync {
    /// Returns the new id, or `None` when a live job holds the same unique key.
    async fn enqueue(&self, tx: &mut Tx, job: &NewJob, now: DateTime<Utc>) -> Result<Option<String>, StoreError>;
    /// Enqueues `job` unless a job was ever enqueued under its unique key, however that job
    /// ended (the key is kept as long as finished jobs; a unique key alone holds only while
    /// its job is live). A job without a unique key is simply enqueued. True when this call
    /// enqueued it.
    async fn enqueue_once(&self, tx: &mut Tx, job: &NewJob, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Marks up to `limit` due jobs of any of `queues` running for `worker` until `lease_until`,
    /// highest priority and oldest first, in one statement.
    async fn claim(
        &self,
        tx: &mut Tx,
        queues: &[String],
        worker: &str,
        limit: u32,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError>;
    /// Extends the lease of every job `worker` holds; returns the attempts it still holds (one
    /// missing from them was taken back when its lease expired).
    async fn heartbeat(&self, tx: &mut Tx, worker: &str, lease_until: DateTime<Utc>) -> Result<Vec<(String, u32)>, StoreError>;
    /// Marks each of `attempts` done, in one statement, and returns those it marked. One missing
    /// from them no longer held its job, and nothing changed for it: its lease expired (the job
    /// may have been handed to another worker).
    async fn complete(&self, tx: &mut Tx, attempts: &[Attempt<'_>], now: DateTime<Utc>) -> Result<Vec<(String, u32)>, StoreError>;
    /// Records attempt `attempt`'s failure; false when that attempt no longer holds the job.
    async fn fail(
        &self,
        tx: &mut Tx,
        attempt: &Attempt<'_>,
        error: &str,
        after: AfterFailure,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Gives a running job back to the queue without counting the attempt (graceful shutdown).
    async fn release(&self, tx: &mut Tx, id: &str, worker: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Jobs whose worker stopped heart-beating (it died) become due again.
    async fn requeue_expired(&self, tx: &mut Tx, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// A dead job runs again with a fresh attempt count.
    async fn retry(&self, tx: &mut Tx, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Removes a job that is not running.
    async fn discard(&self, tx: &mut Tx, id: &str) -> Result<bool, StoreError>;
    /// Deletes done and dead jobs that finished before `before` (and once-keys as old).
    async fn purge_finished(&self, tx: &mut Tx, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Deletes the jobs of `kind` not running whose payload matches `payload_like` (a `LIKE`
    /// pattern escaped with `\`); a running one finishes.
    async fn discard_matching(&self, tx: &mut Tx, kind: &str, payload_like: &str) -> Result<u64, StoreError>;
    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError>;
    async fn list(&self, filter: &JobFilter, after: Option<&str>, limit: u32) -> Result<Vec<Job>, StoreError>;
    async fn depth(&self) -> Result<Vec<(JobState, i64)>, StoreError>;
}

/// One claimed attempt of a job: the job, the worker that claimed it and the attempt number
/// the claim gave it. A worker process may claim the same job again after its lease expired,
/// so the worker alone does not say which attempt is current.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub job_id: &'a str,
    pub worker: &'a str,
    pub number: u32,
}

/// The job repository of `store`'s backend.
pub fn for_store(store: &Store) -> Arc<dyn JobRepo> {
    struct Jobs;
    impl Build for Jobs {
        type Output = Arc<dyn JobRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlJobs { db })
        }
    }
    store.build(Jobs)
}

struct SqlJobs<DB: Backend> {
    db: Db<DB>,
}

#[async_trait::async_trait]
impl<DB: Backend> JobRepo for SqlJobs<DB> {
    async fn enqueue(&self, tx: &mut Tx, job: &NewJob, now: DateTime<Utc>) -> Result<Option<String>, StoreError> {
        enqueue_in::<DB>(tx.conn::<DB>()?, job, now).await
    }

    async fn enqueue_once(&self, tx: &mut Tx, job: &NewJob, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let conn = tx.conn::<DB>()?;
        if let Some(key) = &job.unique_key {
            let first = Sql::<DB>::new("INSERT INTO enqueued_once (key, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(key.as_str())
                .bind(now)
                .execute(conn)
                .await?;
            if first == 0 {
                return Ok(false);
            }
        }
        Ok(enqueue_in::<DB>(conn, job, now).await?.is_some())
    }

    async fn claim(
        &self,
        tx: &mut Tx,
        queues: &[String],
        worker: &str,
        limit: u32,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $2, worker_id = $1, updated_at = $3 \
             WHERE id IN (SELECT id FROM jobs WHERE queue IN ({}) AND state IN ('scheduled', 'queued', 'retrying') AND run_at <= $3 \
             ORDER BY priority DESC, run_at, id LIMIT $4 {}) RETURNING {}",
            placeholders(5, queues.len()),
            DB::SKIP_LOCKED,
            job_columns!()
        );
        let mut sql = Sql::<DB>::assembled(sql).bind(worker).bind(lease_until).bind(now).bind(i64::from(limit));
        for queue in queues {
            sql = sql.bind(queue.as_str());
        }
        let rows = sql.fetch_all(tx.conn::<DB>()?).await?;
        let mut jobs = rows.iter().map(job_from).collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.run_at.cmp(&b.run_at)));
        Ok(jobs)
    }

    async fn heartbeat(&self, tx: &mut Tx, worker: &str, lease_until: DateTime<Utc>) -> Result<Vec<(String, u32)>, StoreError> {
        let rows = Sql::<DB>::new("UPDATE jobs SET lease_until = $2 WHERE worker_id = $1 AND state = 'running' RETURNING id, attempts")
            .bind(worker)
            .bind(lease_until)
            .fetch_all(tx.conn::<DB>()?)
            .await?;
        rows.iter().map(attempt_from).collect()
    }

    async fn complete(&self, tx: &mut Tx, attempts: &[Attempt<'_>], now: DateTime<Utc>) -> Result<Vec<(String, u32)>, StoreError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        // A lease that ran out means another worker may be running the job: this attempt's
        // effects must not commit, whether or not the reaper has requeued it yet.
        let held = (0..attempts.len())
            .map(|i| format!("(id = ${} AND worker_id = ${} AND attempts = ${})", 2 + 3 * i, 3 + 3 * i, 4 + 3 * i))
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!(
            "UPDATE jobs SET state = 'done', finished_at = $1, updated_at = $1, lease_until = NULL, last_error = NULL \
             WHERE state = 'running' AND lease_until >= $1 AND ({held}) RETURNING id, attempts"
        );
        let mut sql = Sql::<DB>::assembled(sql).bind(now);
        for attempt in attempts {
            sql = sql.bind(attempt.job_id).bind(attempt.worker).bind(i64::from(attempt.number));
        }
        let rows = sql.fetch_all(tx.conn::<DB>()?).await?;
        rows.iter().map(attempt_from).collect()
    }

    async fn fail(
        &self,
        tx: &mut Tx,
        attempt: &Attempt<'_>,
        error: &str,
        after: AfterFailure,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (state, run_at, finished) = match after {
            AfterFailure::RetryAt(at) => (JobState::Retrying, Some(at), None),
            AfterFailure::Dead => (JobState::Dead, None, Some(now)),
        };
        let sql = Sql::<DB>::new(
            "UPDATE jobs SET state = $4, run_at = COALESCE($5, run_at), finished_at = $6, last_error = $7, lease_until = NULL, updated_at = $8 \
             WHERE id = $1 AND worker_id = $2 AND attempts = $3 AND state = 'running'",
        )
        .bind(attempt.job_id)
        .bind(attempt.worker)
        .bind(i64::from(attempt.number))
        .bind(state.as_str())
        .bind(run_at)
        .bind(finished)
        .bind(error.chars().take(2000).collect::<String>())
        .bind(now);
        Ok(sql.execute(tx.conn::<DB>()?).await? == 1)
    }

    async fn release(&self, tx: &mut Tx, id: &str, worker: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = Sql::<DB>::new(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_until = NULL, worker_id = NULL, updated_at = $3 \
             WHERE id = $1 AND worker_id = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(now);
        Ok(sql.execute(tx.conn::<DB>()?).await? == 1)
    }

    async fn requeue_expired(&self, tx: &mut Tx, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let sql = Sql::<DB>::new(
            "UPDATE jobs SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'retrying' END, \
             finished_at = CASE WHEN attempts >= max_attempts THEN $1 ELSE NULL END, \
             last_error = 'the worker running this job stopped (lease expired)', lease_until = NULL, worker_id = NULL, updated_at = $1 \
             WHERE state = 'running' AND lease_until < $1",
        )
        .bind(now);
        sql.execute(tx.conn::<DB>()?).await
    }

    async fn retry(&self, tx: &mut Tx, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = Sql::<DB>::new(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $2, finished_at = NULL, updated_at = $2 WHERE id = $1 AND state = 'dead'",
        )
        .bind(id)
        .bind(now);
        Ok(sql.execute(tx.conn::<DB>()?).await? == 1)
    }

    async fn discard(&self, tx: &mut Tx, id: &str) -> Result<bool, StoreError> {
        Ok(Sql::<DB>::new("DELETE FROM jobs WHERE id = $1 AND state <> 'running'").bind(id).execute(tx.conn::<DB>()?).await? == 1)
    }

    async fn discard_matching(&self, tx: &mut Tx, kind: &str, payload_like: &str) -> Result<u64, StoreError> {
        Sql::<DB>::new("DELETE FROM jobs WHERE kind = $1 AND state <> 'running' AND payload LIKE $2 ESCAPE '\\'")
            .bind(kind)
            .bind(payload_like)
            .execute(tx.conn::<DB>()?)
            .await
    }

    async fn purge_finished(&self, tx: &mut Tx, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let conn = tx.conn::<DB>()?;
        Sql::<DB>::new("DELETE FROM enqueued_once WHERE created_at < $1").bind(before).execute(conn).await?;
        Sql::<DB>::new("DELETE FROM jobs WHERE state IN ('done', 'dead') AND finished_at < $1").bind(before).execute(conn).await
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        const SQL: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");
        let mut conn = self.db.reader().await?;
        let row = Sql::<DB>::new(SQL).bind(id).fetch_optional(&mut conn).await?;
        row.as_ref().map(job_from).transpose()
    }

    async fn list(&self, filter: &JobFilter, after: Option<&str>, limit: u32) -> Result<Vec<Job>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR kind = $2) AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new(SQL)
            .bind(filter.state.map(|s| s.as_str().to_owned()))
            .bind(filter.kind.clone())
            .bind(after.map(str::to_owned))
            .bind(i64::from(limit) + 1)
            .fetch_all(&mut conn)
            .await?;
        rows.iter().map(job_from).collect()
    }

    async fn depth(&self) -> Result<Vec<(JobState, i64)>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetch_all(&mut conn).await?;
        let mut depth = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(state) = JobState::parse(&r.text("state")?) {
                depth.push((state, r.int("n")?));
            }
        }
        Ok(depth)
    }
}
