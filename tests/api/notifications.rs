//! In-app notifications, created from domain events.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app};
use crate::support::eventually;

async fn change_password(app: &TestApp, who: &Tokens, new: &str) {
    app.post_json_authed("/v1/auth/password/change", &who.access, &json!({ "current_password": PASSWORD, "new_password": new }))
        .await
        .expect(204);
}

async fn notifications(app: &TestApp, who: &Tokens, query: &str) -> Vec<Value> {
    app.get_authed(&format!("/v1/notifications{query}"), &who.access).await.expect(200).json()["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_password_change_notifies_its_owner_and_nobody_else() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    change_password(&app, &ada, "a brand new passphrase").await;
    let list = eventually(20, "a notification", || async {
        let list = notifications(&app, &ada, "").await;
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["kind"], "account.password_changed");
    assert!(list[0]["id"].as_str().unwrap().starts_with("ntf_"));
    assert!(list[0]["read_at"].is_null());
    assert!(notifications(&app, &bob, "").await.is_empty());
}

/// Waits until `who` has `n` notifications and returns them.
async fn wait_for(app: &TestApp, who: &Tokens, n: usize) -> Vec<Value> {
    eventually(20, &format!("{n} notifications"), || async {
        let list = notifications(app, who, "").await;
        (list.len() >= n).then_some(list)
    })
    .await
}

#[tokio::test]
async fn notifications_can_be_read_one_by_one_or_all_at_once() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    // Two notifications for Ada (two password changes), one for Bob.
    change_password(&app, &ada, "a brand new passphrase").await;
    app.post_json_authed(
        "/v1/auth/password/change",
        &ada.access,
        &json!({ "current_password": "a brand new passphrase", "new_password": "yet another passphrase" }),
    )
    .await
    .expect(204);
    change_password(&app, &bob, "bob's own new passphrase").await;
    let ada_all = wait_for(&app, &ada, 2).await;
    wait_for(&app, &bob, 1).await;
    assert_eq!(ada_all.len(), 2, "{ada_all:#?}");
    let id = ada_all[0]["id"].as_str().unwrap();

    app.post_json_authed(&format!("/v1/notifications/{id}/read"), &bob.access, &json!({})).await.problem(404, "not_found");
    app.post_json_authed(&format!("/v1/notifications/{id}/read"), &ada.access, &json!({})).await.expect(204);
    let unread = notifications(&app, &ada, "?unread=true").await;
    assert_eq!(unread.len(), 1, "only the other one is still unread: {unread:#?}");
    assert!(unread.iter().all(|n| n["id"] != id));
    let read_at = notifications(&app, &ada, "").await.iter().find(|n| n["id"] == id).unwrap()["read_at"].clone();
    assert!(read_at.is_string(), "read_at is set: {read_at}");

    app.post_json_authed("/v1/notifications/read-all", &ada.access, &json!({})).await.expect(204);
    assert!(notifications(&app, &ada, "?unread=true").await.is_empty(), "read-all read the last unread one");
    let after = notifications(&app, &ada, "").await;
    assert_eq!(after.len(), 2, "read-all deletes nothing");
    assert!(after.iter().all(|n| n["read_at"].is_string()), "{after:#?}");
    assert_eq!(after.iter().find(|n| n["id"] == id).unwrap()["read_at"], read_at, "an earlier read keeps its time");
    // Bob's notification is untouched by Ada's read-all.
    let bobs = notifications(&app, &bob, "?unread=true").await;
    assert_eq!(bobs.len(), 1, "{bobs:#?}");
    assert!(bobs[0]["read_at"].is_null());
    // Read-all with nothing unread is still 204.
    app.post_json_authed("/v1/notifications/read-all", &ada.access, &json!({})).await.expect(204);
}

#[tokio::test]
async fn the_notification_list_checks_its_query() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    app.get_authed("/v1/notifications?unread=maybe", &ada.access).await.problem(422, "validation_failed");
    app.get_authed("/v1/notifications?limit=0", &ada.access).await.problem(422, "validation_failed");
    app.get("/v1/notifications").await.problem(401, "unauthenticated");
}
