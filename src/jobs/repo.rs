//! SQL of the job queue, for both backends.

use chrono::{DateTime, Utc};

use super::model::{AfterFailure, Job, JobState, NewJob};
use crate::store::{Backend, Columns, Db, Sql, StoreError};

macro_rules! job_columns {
    () => {
        "id, kind, queue, payload, priority, state, run_at, attempts, max_attempts, unique_key, last_error, created_at, updated_at, finished_at"
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
    })
}

/// Enqueues `job` on the caller's connection, so it commits (or not) with the caller's
/// transaction. Returns the new id, or `None` when a live job holds the same unique key.
pub async fn enqueue_in<DB: Backend>(conn: &mut DB::Connection, job: &NewJob, now: DateTime<Utc>) -> Result<Option<String>, StoreError> {
    let id = crate::ids::new("job");
    let run_at = job.run_at.unwrap_or(now);
    let state = if run_at > now { JobState::Scheduled } else { JobState::Queued };
    let inserted = Sql::<DB>::new(
        "INSERT INTO jobs (id, kind, queue, payload, priority, state, run_at, attempts, max_attempts, unique_key, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $10) ON CONFLICT DO NOTHING",
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

#[async_trait::async_trait]
pub trait JobRepo: Send + Sync {
    async fn enqueue(&self, job: &NewJob, now: DateTime<Utc>) -> Result<Option<String>, StoreError>;
    /// Marks up to `limit` due jobs of `queue` running for `worker` until `lease_until`.
    async fn claim(
        &self,
        queue: &str,
        worker: &str,
        limit: u32,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError>;
    /// Extends a running job's lease; false when the job is no longer this worker's.
    async fn heartbeat(&self, id: &str, worker: &str, lease_until: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn complete(&self, id: &str, worker: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn fail(&self, id: &str, worker: &str, error: &str, after: AfterFailure, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Gives a running job back to the queue without counting the attempt (graceful shutdown).
    async fn release(&self, id: &str, worker: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Jobs whose worker stopped heart-beating (it died) become due again.
    async fn requeue_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError>;
    async fn list(&self, filter: &JobFilter, after: Option<&str>, limit: u32) -> Result<Vec<Job>, StoreError>;
    /// A dead job runs again with a fresh attempt count.
    async fn retry(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Removes a job that is not running.
    async fn discard(&self, id: &str) -> Result<bool, StoreError>;
    async fn depth(&self) -> Result<Vec<(JobState, i64)>, StoreError>;
    /// Deletes done and dead jobs that finished before `before` (and once-keys as old).
    async fn purge_finished(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Enqueues `job` unless a job was ever enqueued under its unique key, however that job
    /// ended (the key is kept as long as finished jobs; a unique key alone holds only while
    /// its job is live). A job without a unique key is simply enqueued. True when this call
    /// enqueued it.
    async fn enqueue_once(&self, job: &NewJob, now: DateTime<Utc>) -> Result<bool, StoreError>;
}

pub struct SqlJobs<DB: Backend> {
    db: Db<DB>,
}

impl<DB: Backend> SqlJobs<DB> {
    pub fn new(db: Db<DB>) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl<DB: Backend> JobRepo for SqlJobs<DB> {
    async fn enqueue(&self, job: &NewJob, now: DateTime<Utc>) -> Result<Option<String>, StoreError> {
        let mut tx = self.db.begin().await?;
        let id = enqueue_in::<DB>(&mut tx, job, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn claim(
        &self,
        queue: &str,
        worker: &str,
        limit: u32,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $3, worker_id = $2, updated_at = $4 \
             WHERE id IN (SELECT id FROM jobs WHERE queue = $1 AND state IN ('scheduled', 'queued', 'retrying') AND run_at <= $4 \
             ORDER BY priority DESC, run_at, id LIMIT $5 {}) RETURNING {}",
            DB::SKIP_LOCKED,
            job_columns!()
        );
        let mut tx = self.db.begin().await?;
        let rows = Sql::<DB>::assembled(sql)
            .bind(queue)
            .bind(worker)
            .bind(lease_until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut tx)
            .await?;
        tx.commit().await?;
        let mut jobs = rows.iter().map(job_from).collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.run_at.cmp(&b.run_at)));
        Ok(jobs)
    }

    async fn heartbeat(&self, id: &str, worker: &str, lease_until: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = Sql::new("UPDATE jobs SET lease_until = $3 WHERE id = $1 AND worker_id = $2 AND state = 'running'")
            .bind(id)
            .bind(worker)
            .bind(lease_until);
        Ok(self.db.execute(sql).await? == 1)
    }

    async fn complete(&self, id: &str, worker: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = Sql::new(
            "UPDATE jobs SET state = 'done', finished_at = $3, updated_at = $3, lease_until = NULL, last_error = NULL \
             WHERE id = $1 AND worker_id = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(now);
        Ok(self.db.execute(sql).await? == 1)
    }

    async fn fail(&self, id: &str, worker: &str, error: &str, after: AfterFailure, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let (state, run_at, finished) = match after {
            AfterFailure::RetryAt(at) => (JobState::Retrying, Some(at), None),
            AfterFailure::Dead => (JobState::Dead, None, Some(now)),
        };
        let sql = Sql::new(
            "UPDATE jobs SET state = $3, run_at = COALESCE($4, run_at), finished_at = $5, last_error = $6, lease_until = NULL, updated_at = $7 \
             WHERE id = $1 AND worker_id = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(state.as_str())
        .bind(run_at)
        .bind(finished)
        .bind(error.chars().take(2000).collect::<String>())
        .bind(now);
        Ok(self.db.execute(sql).await? == 1)
    }

    async fn release(&self, id: &str, worker: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = Sql::new(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_until = NULL, worker_id = NULL, updated_at = $3 \
             WHERE id = $1 AND worker_id = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(now);
        Ok(self.db.execute(sql).await? == 1)
    }

    async fn requeue_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let sql = Sql::new(
            "UPDATE jobs SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'retrying' END, \
             finished_at = CASE WHEN attempts >= max_attempts THEN $1 ELSE NULL END, \
             last_error = 'the worker running this job stopped (lease expired)', lease_until = NULL, worker_id = NULL, updated_at = $1 \
             WHERE state = 'running' AND lease_until < $1",
        )
        .bind(now);
        self.db.execute(sql).await
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

    async fn retry(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = Sql::new(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $2, finished_at = NULL, updated_at = $2 WHERE id = $1 AND state = 'dead'",
        )
        .bind(id)
        .bind(now);
        Ok(self.db.execute(sql).await? == 1)
    }

    async fn discard(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.db.execute(Sql::new("DELETE FROM jobs WHERE id = $1 AND state <> 'running'").bind(id)).await? == 1)
    }

    async fn purge_finished(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.db.execute(Sql::new("DELETE FROM enqueued_once WHERE created_at < $1").bind(before)).await?;
        self.db.execute(Sql::new("DELETE FROM jobs WHERE state IN ('done', 'dead') AND finished_at < $1").bind(before)).await
    }

    async fn enqueue_once(&self, job: &NewJob, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        if let Some(key) = &job.unique_key {
            let first = Sql::<DB>::new("INSERT INTO enqueued_once (key, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(key.as_str())
                .bind(now)
                .execute(&mut tx)
                .await?;
            if first == 0 {
                return Ok(false);
            }
        }
        let enqueued = enqueue_in::<DB>(&mut tx, job, now).await?.is_some();
        tx.commit().await?;
        Ok(enqueued)
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
