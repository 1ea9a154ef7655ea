//! The queue's guarantees: a job's effects and its completion commit together, or not at all;
//! batched completions, claims and heartbeats keep them per attempt; workers wake on new jobs
//! and give back what they hold when they stop.

use std::time::Duration;

use tokio::sync::watch;

use super::worker::{Worker, WorkerSettings};
use super::*;
use crate::events::{Effects, NewEvent};
use crate::store::testing::{open, scratch_store, scratch_url};

fn default() -> Vec<String> {
    vec!["default".to_owned()]
}

/// Finishes `job`'s attempt with one outbox event as its effect.
async fn finish_with_an_event(jobs: &Jobs, job: &Job, worker: &str) -> anyhow::Result<Done> {
    let effects = Effects {
        jobs: Vec::new(),
        events: vec![NewEvent { kind: "test.effect", user_id: None, data: serde_json::json!({}) }],
        ..Effects::default()
    };
    let effects = &effects;
    let (done, ()) = jobs
        .completion(job, worker)
        .finish(|mut tx| async move {
            effects.write(&mut tx, now()).await?;
            Ok((tx, ()))
        })
        .await?;
    Ok(done)
}

#[tokio::test]
async fn an_attempt_that_lost_its_lease_commits_none_of_its_effects() {
    let store = scratch_store().await;
    let jobs = Jobs::new(store.clone());
    let events = crate::events::repo::for_store(&store);
    let id = jobs.enqueue(&NewJob::new("test.job", serde_json::Value::Null)).await.unwrap().unwrap();

    // The first attempt's lease runs out while it works (its worker stalled), and the reaper
    // hands the job out again, here to the same worker process.
    let first = jobs.claim(&default(), "w1", 1, now() - Duration::from_secs(1)).await.unwrap().remove(0);
    assert_eq!(jobs.requeue_expired().await.unwrap(), 1);
    let second = jobs.claim(&default(), "w1", 1, now() + Duration::from_secs(30)).await.unwrap().remove(0);
    assert_eq!((first.attempts, second.attempts), (1, 2));

    let late = finish_with_an_event(&jobs, &first, "w1").await.unwrap_err();
    assert!(late.is::<LostLease>(), "{late:#}");
    assert_eq!(events.lag().await.unwrap(), 0, "the stale attempt's effects rolled back with its completion");

    finish_with_an_event(&jobs, &second, "w1").await.unwrap();
    assert_eq!(events.lag().await.unwrap(), 1, "the current attempt's effects committed");
    assert_eq!(jobs.repo().get(&id).await.unwrap().unwrap().state, JobState::Done);
    store.close().await;
}

#[tokio::test]
async fn an_expired_lease_refuses_completion_even_before_the_reaper_runs() {
    let store = scratch_store().await;
    let jobs = Jobs::new(store.clone());
    let id = jobs.enqueue(&NewJob::new("test.job", serde_json::Value::Null)).await.unwrap().unwrap();
    let job = jobs.claim(&default(), "w1", 1, now() - Duration::from_secs(1)).await.unwrap().remove(0);
    assert!(finish_with_an_event(&jobs, &job, "w1").await.unwrap_err().is::<LostLease>());
    assert_eq!(crate::events::repo::for_store(&store).lag().await.unwrap(), 0);
    assert_eq!(jobs.repo().get(&id).await.unwrap().unwrap().state, JobState::Running, "left for the reaper to run again");
    store.close().await;
}

#[tokio::test]
async fn completions_committed_together_mark_only_the_attempts_that_still_hold_their_jobs() {
    let store = scratch_store().await;
    let jobs = Jobs::new(store.clone());
    for _ in 0..4 {
        jobs.enqueue(&NewJob::new("test.job", serde_json::Value::Null)).await.unwrap();
    }
    let stale = jobs.claim(&default(), "w1", 2, now() - Duration::from_secs(1)).await.unwrap();
    let current = jobs.claim(&default(), "w2", 2, now() + Duration::from_secs(30)).await.unwrap();

    // One statement for a stale and a current attempt.
    let attempts = [&stale[0], &current[0]].map(|job| (job.id.clone(), job.attempts));
    let workers = ["w1", "w2"];
    let batch: Vec<Attempt> =
        attempts.iter().zip(workers).map(|((id, number), worker)| Attempt { job_id: id, worker, number: *number }).collect();
    let repo = jobs.repo();
    let batch = &batch;
    let done = store
        .transact(|mut tx| async move {
            let done = repo.complete(&mut tx, batch, now()).await?;
            Ok::<_, StoreError>((tx, done))
        })
        .await
        .unwrap();
    assert_eq!(done, vec![attempts[1].clone()], "only the attempt that holds its job is marked done");

    // Effect-less completions finishing together.
    let (late, on_time) = tokio::join!(jobs.completion(&stale[1], "w1").done(), jobs.completion(&current[1], "w2").done());
    assert!(late.unwrap_err().is::<LostLease>());
    on_time.unwrap();
    for (job, state) in
        [(&stale[0], JobState::Running), (&stale[1], JobState::Running), (&current[0], JobState::Done), (&current[1], JobState::Done)]
    {
        assert_eq!(jobs.repo().get(&job.id).await.unwrap().unwrap().state, state);
    }
    store.close().await;
}

#[tokio::test]
async fn one_claim_takes_due_jobs_of_every_listed_queue_highest_priority_first() {
    let store = scratch_store().await;
    let jobs = Jobs::new(store.clone());
    let mut urgent = NewJob::new("test.urgent", serde_json::Value::Null).on_queue("mail");
    urgent.priority = 5;
    for job in [
        NewJob::new("test.plain", serde_json::Value::Null),
        urgent,
        NewJob::new("test.other", serde_json::Value::Null).on_queue("webhooks"),
    ] {
        jobs.enqueue(&job).await.unwrap();
    }
    let queues = ["default".to_owned(), "mail".to_owned()];
    let claimed = jobs.claim(&queues, "w1", 10, now() + Duration::from_secs(30)).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>(), ["test.urgent", "test.plain"]);
    let other = jobs.repo().list(&repo::JobFilter { kind: Some("test.other".into()), ..Default::default() }, None, 1).await.unwrap();
    assert_eq!(other[0].state, JobState::Queued, "a queue not listed is not claimed");
    store.close().await;
}

#[tokio::test]
async fn a_heartbeat_extends_the_workers_jobs_and_leaves_out_those_it_lost() {
    let store = scratch_store().await;
    let jobs = Jobs::new(store.clone());
    jobs.enqueue(&NewJob::new("test.job", serde_json::Value::Null).on_queue("mail")).await.unwrap();
    jobs.enqueue(&NewJob::new("test.job", serde_json::Value::Null)).await.unwrap();
    let lost = jobs.claim(&["mail".to_owned()], "w1", 1, now() - Duration::from_secs(1)).await.unwrap().remove(0);
    assert_eq!(jobs.requeue_expired().await.unwrap(), 1);
    // Its lease has run out too, but no reaper has taken it back yet.
    let kept = jobs.claim(&default(), "w1", 1, now() - Duration::from_secs(1)).await.unwrap().remove(0);
    assert_eq!(jobs.heartbeat("w1", now() + Duration::from_secs(60)).await.unwrap(), vec![(kept.id.clone(), 1)]);
    assert_eq!(jobs.requeue_expired().await.unwrap(), 0, "the extended lease has not run out");
    assert_eq!(jobs.repo().get(&lost.id).await.unwrap().unwrap().state, JobState::Retrying);
    store.close().await;
}

/// Reports each run of a job by its payload's number, and holds job 1 until `release`.
struct Gate {
    started: tokio::sync::mpsc::UnboundedSender<i64>,
    release: Arc<Notify>,
}

#[async_trait::async_trait]
impl JobHandler for Gate {
    fn kind(&self) -> &'static str {
        "test.gate"
    }

    async fn run(&self, job: &Job, completion: Completion) -> anyhow::Result<Done> {
        let n = job.payload["n"].as_i64().unwrap_or_default();
        let _ = self.started.send(n);
        if n == 1 {
            self.release.notified().await;
        }
        completion.done().await
    }
}

fn gate(n: i64) -> NewJob {
    NewJob::new("test.gate", serde_json::json!({ "n": n }))
}

/// A worker that polls and heart-beats only hourly: nothing but a wake-up makes it claim again
/// while it holds a job.
fn hourly_worker(jobs: Jobs, gate: Gate, concurrency: usize) -> Worker {
    let hour = Duration::from_secs(3600);
    let settings = WorkerSettings { queues: default(), concurrency, lease: 3 * hour, poll: hour, grace: Duration::from_secs(30) };
    Worker::new(jobs, Registry::default().with(gate), settings)
}

#[tokio::test]
async fn on_postgresql_a_job_enqueued_by_another_process_wakes_an_idle_worker() {
    // SQLite has no signal between processes: its workers find such jobs when they poll.
    if std::env::var_os("KEEL_TEST_DATABASE_URL").is_none() {
        return;
    }
    let url = scratch_url().await;
    let here = open(&url).await;
    here.migrate().await.unwrap();
    let there = open(&url).await;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let (stop_tx, stop) = watch::channel(false);
    let worker = hourly_worker(Jobs::new(here.clone()), Gate { started: started_tx, release: release.clone() }, 2);
    here.forward_notifications("keel_jobs", worker.wake().clone(), stop.clone()).await.unwrap();
    let running = tokio::spawn(worker.run(stop));

    // The other process has queues of its own in memory: it can only reach the worker through
    // the database.
    let other = Jobs::new(there.clone());
    // Bounded so that a worker nothing wakes fails the test instead of hanging it.
    let mut next_start = async || tokio::time::timeout(Duration::from_secs(60), started.recv()).await.ok().flatten();
    let first = other.enqueue(&gate(1)).await.unwrap().unwrap();
    assert_eq!(next_start().await, Some(1));
    // Job 1 holds one slot; the worker waits for a wake-up with the other free.
    let second = other.enqueue(&gate(2)).await.unwrap().unwrap();
    assert_eq!(next_start().await, Some(2), "the enqueue's notification woke the worker to run job 2");

    release.notify_one();
    stop_tx.send(true).unwrap();
    running.await.unwrap();
    for id in [first, second] {
        assert_eq!(other.repo().get(&id).await.unwrap().unwrap().state, JobState::Done);
    }
    there.close().await;
    here.close().await;
}

#[tokio::test]
async fn a_stopping_worker_gives_back_the_jobs_it_claimed_but_had_not_started() {
    let store = scratch_store().await;
    let jobs = Jobs::new(store.clone());
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(jobs.enqueue(&gate(n)).await.unwrap().unwrap());
    }
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let (stop_tx, stop) = watch::channel(false);
    // One slot: the worker claims job 2 ahead, to start when job 1 is done.
    let worker = hourly_worker(jobs.clone(), Gate { started: started_tx, release: release.clone() }, 1);
    let running = tokio::spawn(worker.run(stop));
    assert_eq!(started.recv().await, Some(1));

    stop_tx.send(true).unwrap();
    release.notify_one();
    running.await.unwrap();
    assert!(started.try_recv().is_err(), "no job started after job 1");
    let states = [JobState::Done, JobState::Queued, JobState::Queued];
    for (id, state) in ids.iter().zip(states) {
        let job = jobs.repo().get(id).await.unwrap().unwrap();
        assert_eq!(job.state, state, "{id}");
        if state == JobState::Queued {
            assert_eq!(job.attempts, 0, "a job given back has not used an attempt");
        }
    }
    store.close().await;
}
