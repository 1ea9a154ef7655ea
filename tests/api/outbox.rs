//! The transactional outbox: events survive a crash between commit and publish, and between
//! publish and the subscribers' work.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, spawn_app_with};
use crate::support::eventually;

const NEW_PASSWORD: &str = "a brand new passphrase";

/// Starts an app without a relay and makes a change that commits an event for Ada
/// (`account.password_changed`), which this process therefore never publishes.
async fn unpublished_event() -> TestApp {
    let app = spawn_app_with(&[("run_relay", "false")]).await;
    let ada = app.customer("ada@example.com").await;
    app.post_json_authed("/v1/auth/password/change", &ada.access, &json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }))
        .await
        .expect(204);
    app
}

/// Ada's notifications, once there are some.
async fn notifications_of_ada(app: &TestApp) -> Vec<Value> {
    let ada = app.login("ada@example.com", NEW_PASSWORD).await;
    eventually(20, "Ada's notification", || async {
        let list = app.get_authed("/v1/notifications", &ada.access).await.expect(200).json();
        let data = list["data"].as_array().unwrap().clone();
        (!data.is_empty()).then_some(data)
    })
    .await
}

#[tokio::test]
async fn an_event_committed_but_not_yet_published_is_delivered_after_a_restart() {
    // The state a crash right after commit leaves behind.
    let app = unpublished_event().await;
    // Read from the database, not waited for: this process has no relay, so the event stays
    // unpublished and nothing was made of it.
    let unpublished = app.execute_sql("UPDATE events SET published_at = NULL WHERE published_at IS NULL").await;
    assert!(unpublished >= 1, "the change committed its event, unpublished");
    let ada = app.login("ada@example.com", NEW_PASSWORD).await;
    let none = app.get_authed("/v1/notifications", &ada.access).await.expect(200).json();
    assert_eq!(none["data"].as_array().unwrap().len(), 0, "nothing was published yet");

    let app = app.restart_with(&[("run_relay", "true")]).await;
    let list = notifications_of_ada(&app).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["kind"], "account.password_changed");
}

#[tokio::test]
async fn an_event_published_but_not_yet_handled_takes_effect_after_a_restart() {
    // The state a crash right after publishing leaves: the event is marked published, but
    // no subscriber handled it. The durable subscribers catch up from their offsets.
    let app = unpublished_event().await;
    let marked = app.execute_sql("UPDATE events SET published_at = created_at WHERE published_at IS NULL").await;
    assert!(marked >= 1, "the change committed its event");

    let app = app.restart_with(&[("run_relay", "true")]).await;
    let list = notifications_of_ada(&app).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["kind"], "account.password_changed");
}
