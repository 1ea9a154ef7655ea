//! In-app notifications, created by a subscriber from domain events.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::events::subscriber::Subscriber;
use crate::events::{Effects, Event, EventType};
use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx, now};

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

/// The notification an event becomes, if any: (title, body). An order tells its customer when
/// it is paid, shipped and refunded; its other moves answer a request the customer just made.
pub fn describe(event_type: &str, data: &serde_json::Value) -> Option<(&'static str, &'static str)> {
    Some(match EventType::from_name(event_type)? {
        EventType::OrderUpdated => match data["status"].as_str()? {
            "paid" => ("Order paid", "Your order is paid and being prepared."),
            "shipped" => ("Order shipped", "Your order is on its way."),
            "partially_refunded" | "refunded" => ("Refund issued", "Money from your order is on its way back to you."),
            _ => return None,
        },
        EventType::AccountEmailVerified => ("Email confirmed", "Your email address is confirmed."),
        EventType::AccountPasswordChanged => ("Password changed", "Your password was changed. If it was not you, reset it now."),
        EventType::AccountPasswordReset => ("Password reset", "Your password was reset and every session was signed out."),
        EventType::AccountMfaEnabled => ("Two-factor authentication on", "Sign-ins now need a code from your authenticator app."),
        EventType::AccountMfaDisabled => ("Two-factor authentication off", "Sign-ins no longer need an authenticator code."),
        _ => return None,
    })
}

/// The SQL of notifications. Reads use the reader pool; every write is one step of the
/// caller's unit of work.
#[async_trait::async_trait]
pub trait NotificationRepo: Send + Sync {
    async fn list(&self, user_id: &str, unread_only: bool, before: Option<&str>, limit: u32) -> Result<Vec<Notification>, StoreError>;
    /// Stores `n` for `user_id` as the notification of `event_id`, once; false when that event
    /// already has its notification.
    async fn insert_once(&self, tx: &mut Tx, user_id: &str, event_id: &str, n: &Notification) -> Result<bool, StoreError>;
    /// Reading twice is fine; false only for someone else's (or no) notification.
    async fn mark_read(&self, tx: &mut Tx, user_id: &str, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn mark_all_read(&self, tx: &mut Tx, user_id: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

struct SqlNotifications<DB: Backend> {
    db: Db<DB>,
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

    async fn insert_once(&self, tx: &mut Tx, user_id: &str, event_id: &str, n: &Notification) -> Result<bool, StoreError> {
        let inserted = Sql::<DB>::new(
            "INSERT INTO notifications (id, user_id, event_id, kind, title, body, data, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(n.id.as_str())
        .bind(user_id)
        .bind(event_id)
        .bind(n.kind.as_str())
        .bind(n.title.as_str())
        .bind(n.body.as_str())
        .bind(n.data.to_string())
        .bind(n.created_at)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(inserted == 1)
    }

    async fn mark_read(&self, tx: &mut Tx, user_id: &str, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new("UPDATE notifications SET read_at = COALESCE(read_at, $3) WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .bind(now)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(n == 1)
    }

    async fn mark_all_read(&self, tx: &mut Tx, user_id: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Sql::<DB>::new("UPDATE notifications SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL")
            .bind(user_id)
            .bind(now)
            .execute(tx.conn::<DB>()?)
            .await
    }
}

/// The in-app notification use cases, each its own unit of work.
pub struct Notifications {
    store: Store,
    repo: Arc<dyn NotificationRepo>,
}

impl Notifications {
    pub fn new(store: Store) -> Self {
        struct Repo;
        impl Build for Repo {
            type Output = Arc<dyn NotificationRepo>;
            fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
                Arc::new(SqlNotifications { db })
            }
        }
        Self { repo: store.build(Repo), store }
    }

    /// A page of `user_id`'s notifications, newest first (`limit + 1` rows, for paging).
    pub async fn list(&self, user_id: &str, unread_only: bool, before: Option<&str>, limit: u32) -> Result<Vec<Notification>, StoreError> {
        self.repo.list(user_id, unread_only, before, limit).await
    }

    /// False when `user_id` has no such notification.
    pub async fn mark_read(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        self.store
            .transact(|mut tx| async move {
                let read = self.repo.mark_read(&mut tx, user_id, id, now()).await?;
                Ok((tx, read))
            })
            .await
    }

    pub async fn mark_all_read(&self, user_id: &str) -> Result<u64, StoreError> {
        self.store
            .transact(|mut tx| async move {
                let n = self.repo.mark_all_read(&mut tx, user_id, now()).await?;
                Ok((tx, n))
            })
            .await
    }

    /// Creates the notification of a user's `event` once (hearing it again changes nothing),
    /// announced to the user's live clients in the same unit of work.
    pub async fn create_from(&self, event: &Event, title: &str, body: &str) -> Result<bool, StoreError> {
        let Some(user_id) = event.user_id.as_deref() else { return Ok(false) };
        let notification = Notification {
            id: crate::ids::new("ntf"),
            kind: event.kind.clone(),
            title: title.to_owned(),
            body: body.to_owned(),
            data: event.data.clone(),
            read_at: None,
            created_at: now(),
        };
        let n = &notification;
        self.store
            .transact(|mut tx| async move {
                let created = self.repo.insert_once(&mut tx, user_id, &event.id, n).await?;
                if created {
                    let announced = json!({"id": n.id, "kind": n.kind, "title": n.title, "body": n.body});
                    Effects::default().event(EventType::NotificationCreated, user_id, announced).write(&mut tx, n.created_at).await?;
                }
                Ok((tx, created))
            })
            .await
    }
}

/// Turns account and order events into notifications for their user.
pub struct NotifyUsers(pub Arc<Notifications>);

#[async_trait::async_trait]
impl Subscriber for NotifyUsers {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn durable(&self) -> bool {
        true
    }

    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        if let Some((title, body)) = describe(&event.kind, &event.data) {
            self.0.create_from(event, title, body).await?;
        }
        Ok(())
    }
}
