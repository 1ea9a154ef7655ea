//! A job's effects and its completion commit together, or not at all.

use std::time::Duration;

use super::*;
use crate::events::{Effects, NewEvent};
use crate::store::testing::scratch_store;

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
    let first = jobs.claim("default", "w1", 1, now() - Duration::from_secs(1)).await.unwrap().remove(0);
    assert_eq!(jobs.requeue_expired().await.unwrap(), 1);
    let second = jobs.claim("default", "w1", 1, now() + Duration::from_secs(30)).await.unwrap().remove(0);
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
    let job = jobs.claim("default", "w1", 1, now() - Duration::from_secs(1)).await.unwrap().remove(0);
    assert!(finish_with_an_event(&jobs, &job, "w1").await.unwrap_err().is::<LostLease>());
    assert_eq!(crate::events::repo::for_store(&store).lag().await.unwrap(), 0);
    assert_eq!(jobs.repo().get(&id).await.unwrap().unwrap().state, JobState::Running, "left for the reaper to run again");
    store.close().await;
}
