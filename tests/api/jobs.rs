//! The job queue: back-office routes, transactional enqueueing, and a worker killed mid-job.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app_with};
use crate::support::{eventually, spawn_keel, webhook_receiver};

async fn jobs(app: &TestApp, who: &Tokens, query: &str) -> Vec<Value> {
    app.get_authed(&format!("/v1/admin/jobs{query}"), &who.access).await.expect(200).json()["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_job_exists_only_when_its_change_committed() {
    let app = spawn_app_with(&[("run_workers", "false")]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    app.customer("ada@example.com").await;
    // The same email again: the registration rolls back, and its mail job with it.
    app.try_register("ada@example.com", PASSWORD, "Ada").await.problem(409, "email_taken");
    let mail = jobs(&app, &admin, "?kind=mail.send").await;
    assert_eq!(mail.len(), 1, "{mail:#?}");
    assert_eq!(mail[0]["state"], "queued");
    assert!(!mail[0]["payload"].to_string().contains("token"), "secret values are sealed in the payload");
}

#[tokio::test]
async fn the_job_routes_filter_check_roles_and_refuse_bad_input() {
    let app = spawn_app_with(&[("run_workers", "false")]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let support = app.create_staff("help@example.com", PASSWORD, "support").await;
    let ada = app.customer("ada@example.com").await;
    assert_eq!(jobs(&app, &support, "?state=queued&kind=mail.send").await.len(), 1);
    assert!(jobs(&app, &admin, "?state=dead").await.is_empty());
    app.get_authed("/v1/admin/jobs", &ada.access).await.problem(403, "forbidden");
    app.get_authed("/v1/admin/jobs?state=sleeping", &admin.access).await.problem(422, "validation_failed");

    let id = jobs(&app, &admin, "?kind=mail.send").await[0]["id"].as_str().unwrap().to_owned();
    app.post_json_authed(&format!("/v1/admin/jobs/{id}/retry"), &support.access, &json!({})).await.problem(403, "forbidden");
    app.post_json_authed(&format!("/v1/admin/jobs/{id}/retry"), &admin.access, &json!({})).await.problem(409, "invalid_state");
    app.post_json_authed("/v1/admin/jobs/job_nope/retry", &admin.access, &json!({})).await.problem(404, "not_found");
    app.delete_authed(&format!("/v1/admin/jobs/{id}"), &admin.access).await.expect(204);
    app.delete_authed(&format!("/v1/admin/jobs/{id}"), &admin.access).await.problem(404, "not_found");
}

#[tokio::test]
async fn a_dead_job_can_be_retried_by_an_admin() {
    let app = spawn_app_with(&[("webhook_retry_base_ms", "20"), ("webhook_max_attempts", "3")]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    // Nothing listens on this port: every attempt fails until the job is dead.
    let endpoint = app
        .post_json_authed("/v1/admin/webhook-endpoints", &admin.access, &json!({ "url": "http://127.0.0.1:9/hook", "events": ["*"] }))
        .await
        .expect(201)
        .json();
    let ep = endpoint["id"].as_str().unwrap();
    app.post_json_authed(&format!("/v1/admin/webhook-endpoints/{ep}/ping"), &admin.access, &json!({})).await.expect(202);
    let dead =
        eventually(30, "a dead webhook job", || async { jobs(&app, &admin, "?state=dead&kind=webhook.deliver").await.first().cloned() })
            .await;
    assert_eq!(dead["attempts"], dead["max_attempts"]);
    let id = dead["id"].as_str().unwrap();
    app.post_json_authed(&format!("/v1/admin/jobs/{id}/retry"), &admin.access, &json!({})).await.expect(204);
    let again = app.get_authed("/v1/admin/jobs?kind=webhook.deliver", &admin.access).await.expect(200).json();
    assert_ne!(again["data"][0]["state"], "dead");
}

#[tokio::test]
async fn a_job_whose_worker_process_is_killed_runs_again_and_takes_effect_once() {
    // The API runs no workers; a separate `keel worker` process does.
    let app = spawn_app_with(&[("run_workers", "false")]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    // The first delivery hangs (the worker will die holding it); later ones succeed.
    let receiver = webhook_receiver(vec![0]).await;
    let endpoint = app
        .post_json_authed("/v1/admin/webhook-endpoints", &admin.access, &json!({ "url": receiver.url, "events": ["*"] }))
        .await
        .expect(201)
        .json();
    let ep = endpoint["id"].as_str().unwrap().to_owned();
    app.post_json_authed(&format!("/v1/admin/webhook-endpoints/{ep}/ping"), &admin.access, &json!({})).await.expect(202);

    let mut first = spawn_keel(&app, &["worker"], &[("KEEL_WORKER_LEASE_SECS", "2")]);
    eventually(30, "the first worker to start delivering", || async { (!receiver.received.lock().unwrap().is_empty()).then_some(()) })
        .await;
    first.kill().await.expect("killing the worker");
    let _ = first.wait().await;

    let mut second = spawn_keel(&app, &["worker"], &[("KEEL_WORKER_LEASE_SECS", "2")]);
    let log = eventually(60, "a successful delivery", || async {
        let log = app.get_authed(&format!("/v1/admin/webhook-endpoints/{ep}/deliveries"), &admin.access).await.expect(200).json();
        let data = log["data"].as_array().unwrap().clone();
        data.iter().any(|d| d["status_code"] == 200).then_some(data)
    })
    .await;
    let _ = second.kill().await;

    assert_eq!(log.iter().filter(|d| d["status_code"] == 200).count(), 1, "{log:#?}");
    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(received.iter().filter(|r| r.status == 200).count(), 1, "the receiver saw one successful delivery");
    let job = app.get_authed("/v1/admin/jobs?kind=webhook.deliver", &admin.access).await.expect(200).json()["data"][0].clone();
    assert_eq!(job["state"], "done");
    assert_eq!(job["attempts"], 2);
}

#[tokio::test]
async fn a_recurring_job_is_enqueued_once_per_period_however_often_schedulers_start() {
    let app = spawn_app_with(&[("run_workers", "false")]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let purge = jobs(&app, &admin, "?kind=maintenance.purge_events").await;
    assert_eq!(purge.len(), 1, "the scheduler enqueues the hourly purge at start: {purge:#?}");
    assert_eq!(jobs(&app, &admin, "?kind=maintenance.release_reservations").await.len(), 1);
    // Finished or discarded, the period's job is not enqueued again by a later tick or instance.
    let id = purge[0]["id"].as_str().unwrap();
    app.delete_authed(&format!("/v1/admin/jobs/{id}"), &admin.access).await.expect(204);
    let app = app.restart().await;
    let admin = app.login("root@example.com", PASSWORD).await;
    assert!(jobs(&app, &admin, "?kind=maintenance.purge_events").await.is_empty());
}
