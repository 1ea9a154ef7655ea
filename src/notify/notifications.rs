//! In-app notifications, created by a subscriber from domain events.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::events::subscriber::Subscriber;
use crate::events::{Effects, Event, EventType};
use crate::store::{Backend, Columns, Db, Sql, StoreError, now};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Notification {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    /// `null` while unread.
    #[schema(required = true)]
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The notification an event becomes, if any: (title, body).
pub fn describe(event_type: &str) -> Option<(&'static str, &'static str)> {
    Some(match EventType::from_name(event_type)? {
        EventType::AccountEmailVerified => ("Email confirmed", "Your email address is confirmed."),
        EventType::AccountPasswordChanged => ("Password changed", "Your password was changed. If it was not you, reset it now."),
        EventType::AccountPasswordReset => ("Password reset", "Your password was reset and every session was signed out."),
        EventType::AccountMfaEnabled => ("Two-factor authentication on", "Sign-ins now need a code from your authenticator app."),
        EventType::AccountMfaDisabled => ("Two-factor authentication off", "Sign-ins no longer need an authenticator code."),
        _ => return None,
    })
}

#[async_trait::async_trait]
pub trait NotificationRepo: Send + Sync {
    /// Creates the notification of `event` for its user once (again: no effect).
    async fn create_from(&self, event: &Event, title: &str, body: &str) -> Result<bool, StoreError>;
    async fn list(&self, user_id: &str, unread_only: bool, before: Option<&str>, limit: u32) -> Result<Vec<Notification>, StoreError>;
    async fn mark_read(&self, user_id: &str, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn mark_all_read(&self, user_id: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

pub struct SqlNotifications<DB: Backend> {
    db: Db<DB>,
}

impl<DB: Backend> SqlNotifications<DB> {
    pub fn new(db: Db<DB>) -> Self {
        Self { db }
    }
}

fn notification_from<R: Columns>(r: &R) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: r.text("id")?,
        kind: r.text("kind")?,
        title: r.text("title")?,
        body: r.text("body")?,
        data: serde_json::from_str(&r.text("data")?).map_err(|e| StoreError::Corrupt(format!("notification data: {e}")))?,
        read_at: r.opt_time("read_at")?,
        created_at: r.time("created_at")?,
    })
}

#[async_trait::async_trait]
impl<DB: Backend> NotificationRepo for SqlNotifications<DB> {
    async fn create_from(&self, event: &Event, title: &str, body: &str) -> Result<bool, StoreError> {
        let Some(user_id) = event.user_id.as_deref() else { return Ok(false) };
        let id = crate::ids::new("ntf");
        let at = now();
        let mut tx = self.db.begin().await?;
        let n = Sql::<DB>::new(
            "INSERT INTO notifications (id, user_id, event_id, kind, title, body, data, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(id.as_str())
        .bind(user_id)
        .bind(event.id.as_str())
        .bind(event.kind.as_str())
        .bind(title)
        .bind(body)
        .bind(event.data.to_string())
        .bind(at)
        .execute(&mut tx)
        .await?;
        if n == 1 {
            let created = json!({"id": id, "kind": event.kind, "title": title, "body": body});
            Effects::default().event(EventType::NotificationCreated, user_id, created).apply_in::<DB>(&mut tx, at).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn list(&self, user_id: &str, unread_only: bool, before: Option<&str>, limit: u32) -> Result<Vec<Notification>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new(
            "SELECT id, kind, title, body, data, read_at, created_at FROM notifications \
             WHERE user_id = $1 AND ($2 = FALSE OR read_at IS NULL) AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        )
        .bind(user_id)
        .bind(unread_only)
        .bind(before.map(str::to_owned))
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut conn)
        .await?;
        rows.iter().map(notification_from).collect()
    }

    async fn mark_read(&self, user_id: &str, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        // Reading twice is fine; only someone else's (or no) notification is "not found".
        let n = self
            .db
            .execute(
                Sql::<DB>::new("UPDATE notifications SET read_at = COALESCE(read_at, $3) WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user_id)
                    .bind(now),
            )
            .await?;
        Ok(n == 1)
    }

    async fn mark_all_read(&self, user_id: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let n = self
            .db
            .execute(Sql::<DB>::new("UPDATE notifications SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL").bind(user_id).bind(now))
            .await?;
        Ok(n)
    }
}

/// Turns account events into notifications for their user.
pub struct NotifyUsers(pub std::sync::Arc<dyn NotificationRepo>);

#[async_trait::async_trait]
impl Subscriber for NotifyUsers {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn durable(&self) -> bool {
        true
    }

    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        if let Some((title, body)) = describe(&event.kind) {
            self.0.create_from(event, title, body).await?;
        }
        Ok(())
    }
}
