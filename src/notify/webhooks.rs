//! Outgoing webhooks: endpoints, signed deliveries by job (`delivery`), and the log of every
//! attempt.
//!
//! Deliveries are signed with `Keel-Signature` (`security::signature`, shared with the payment
//! provider's incoming webhooks): a receiver recomputes the HMAC over the raw body with its
//! endpoint's secret, compares in constant time, and refuses timestamps older than 5 minutes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::events::Event;
use crate::events::subscriber::Subscriber;
use crate::jobs::{Jobs, NewJob};
use crate::security::crypto::FieldCipher;
use crate::security::egress::Egress;
use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx, now};

pub const DELIVER_KIND: &str = "webhook.deliver";
pub const QUEUE: &str = "webhooks";
pub(crate) const SECRET_COLUMN: &str = "webhook_endpoints.secret";
/// How deliveries are retried. With the defaults (30 s doubling to 1 h, each delay scaled
/// by a jitter of ±25 %), 31 attempts span about 24 h on average (30 waits: 3 810 s while
/// doubling, then 23 × 1 h), then the delivery is dead.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { first_delay: Duration::from_secs(30), max_attempts: 31 }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    /// Event types delivered here; `*` means all.
    #[schema(value_type = Vec<crate::events::catalogue::EventSubscription>)]
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    #[schema(value_type = crate::events::EventType)]
    pub event_type: String,
    pub attempt: u32,
    /// The receiver's status code; `null` when no response came.
    #[schema(required = true)]
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    /// Why the attempt failed; `null` on success.
    #[schema(required = true)]
    pub error: Option<String>,
    /// When the next attempt runs; `null` after success or the last attempt.
    #[schema(required = true)]
    pub next_retry_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub struct NewDelivery<'a> {
    pub endpoint_id: &'a str,
    pub event: &'a Event,
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub duration: Duration,
    pub error: Option<String>,
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// The SQL of webhook endpoints and their delivery log. Reads use the reader pool; every
/// write is one step of the caller's unit of work.
#[async_trait::async_trait]
pub trait WebhookRepo: Send + Sync {
    async fn insert(&self, tx: &mut Tx, endpoint: &Endpoint, sealed_secret: &str) -> Result<(), StoreError>;
    /// False when there is no such endpoint.
    async fn delete(&self, tx: &mut Tx, id: &str) -> Result<bool, StoreError>;
    /// Deletes an endpoint's delivery log.
    async fn delete_deliveries(&self, tx: &mut Tx, endpoint_id: &str) -> Result<(), StoreError>;
    /// Every endpoint (for fan-out).
    async fn list(&self) -> Result<Vec<Endpoint>, StoreError>;
    /// Up to `limit + 1` endpoints after the id `after`, in id (creation) order.
    async fn page(&self, after: Option<&str>, limit: u32) -> Result<Vec<Endpoint>, StoreError>;
    /// The endpoint and its sealed secret.
    async fn get(&self, id: &str) -> Result<Option<(Endpoint, String)>, StoreError>;
    /// Logs one delivery attempt (nothing, if the endpoint was deleted meanwhile).
    async fn record(&self, tx: &mut Tx, delivery: &NewDelivery<'_>) -> Result<(), StoreError>;
    async fn deliveries(&self, endpoint_id: &str, before: Option<&str>, limit: u32) -> Result<Vec<Delivery>, StoreError>;
}

/// The webhook repository of `store`'s backend.
pub(super) fn repo_for(store: &Store) -> Arc<dyn WebhookRepo> {
    struct Repo;
    impl Build for Repo {
        type Output = Arc<dyn WebhookRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlWebhooks { db })
        }
    }
    store.build(Repo)
}

struct SqlWebhooks<DB: Backend> {
    db: Db<DB>,
}

/// The webhook endpoint use cases, each its own unit of work.
pub struct Webhooks {
    store: Store,
    repo: Arc<dyn WebhookRepo>,
    egress: Arc<Egress>,
}

/// Why an endpoint was not created.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Its URL reaches an address webhooks may not call.
    #[error("{0}")]
    Refused(crate::security::egress::EgressError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Webhooks {
    pub fn new(store: Store, egress: Arc<Egress>) -> Self {
        Self { repo: repo_for(&store), store, egress }
    }

    /// Endpoints and deliveries as stored (reads, from the reader pool).
    pub fn repo(&self) -> &Arc<dyn WebhookRepo> {
        &self.repo
    }

    /// Stores an endpoint whose URL (parsed) reaches an allowed address, as resolved now.
    pub async fn create(&self, endpoint: &Endpoint, url: &reqwest::Url, sealed_secret: &str) -> Result<(), EndpointError> {
        self.egress.check_url(url).await.map_err(EndpointError::Refused)?;
        self.store
            .transact(|mut tx| async move {
                self.repo.insert(&mut tx, endpoint, sealed_secret).await?;
                Ok::<_, StoreError>((tx, ()))
            })
            .await?;
        Ok(())
    }

    /// Removes an endpoint and its delivery log; false when there is no such endpoint.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.store
            .transact(|mut tx| async move {
                self.repo.delete_deliveries(&mut tx, id).await?;
                let deleted = self.repo.delete(&mut tx, id).await?;
                Ok((tx, deleted))
            })
            .await
    }
}

fn endpoint_from<R: Columns>(r: &R) -> Result<Endpoint, StoreError> {
    Ok(Endpoint {
        id: r.text("id")?,
        url: r.text("url")?,
        events: serde_json::from_str(&r.text("events")?).map_err(|e| StoreError::Corrupt(format!("webhook events: {e}")))?,
        created_at: r.time("created_at")?,
    })
}

#[async_trait::async_trait]
impl<DB: Backend> WebhookRepo for SqlWebhooks<DB> {
    async fn insert(&self, tx: &mut Tx, e: &Endpoint, sealed_secret: &str) -> Result<(), StoreError> {
        Sql::<DB>::new("INSERT INTO webhook_endpoints (id, url, events, secret_enc, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(e.id.as_str())
            .bind(e.url.as_str())
            .bind(serde_json::to_string(&e.events).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            .bind(sealed_secret)
            .bind(e.created_at)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Endpoint>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new("SELECT id, url, events, created_at FROM webhook_endpoints ORDER BY id").fetch_all(&mut conn).await?;
        rows.iter().map(endpoint_from).collect()
    }

    async fn page(&self, after: Option<&str>, limit: u32) -> Result<Vec<Endpoint>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows =
            Sql::<DB>::new("SELECT id, url, events, created_at FROM webhook_endpoints WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2")
                .bind(after.map(str::to_owned))
                .bind(i64::from(limit) + 1)
                .fetch_all(&mut conn)
                .await?;
        rows.iter().map(endpoint_from).collect()
    }

    async fn get(&self, id: &str) -> Result<Option<(Endpoint, String)>, StoreError> {
        let mut conn = self.db.reader().await?;
        let row = Sql::<DB>::new("SELECT id, url, events, secret_enc, created_at FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut conn)
            .await?;
        row.map(|r| Ok((endpoint_from(&r)?, r.text("secret_enc")?))).transpose()
    }

    async fn delete(&self, tx: &mut Tx, id: &str) -> Result<bool, StoreError> {
        Ok(Sql::<DB>::new("DELETE FROM webhook_endpoints WHERE id = $1").bind(id).execute(tx.conn::<DB>()?).await? == 1)
    }

    async fn delete_deliveries(&self, tx: &mut Tx, endpoint_id: &str) -> Result<(), StoreError> {
        Sql::<DB>::new("DELETE FROM webhook_deliveries WHERE endpoint_id = $1").bind(endpoint_id).execute(tx.conn::<DB>()?).await?;
        Ok(())
    }

    async fn record(&self, tx: &mut Tx, d: &NewDelivery<'_>) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, attempt, status_code, duration_ms, error, next_retry_at, created_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $2)",
        )
        .bind(crate::ids::new("whd"))
        .bind(d.endpoint_id)
        .bind(d.event.id.as_str())
        .bind(d.event.kind.as_str())
        .bind(i64::from(d.attempt))
        .bind(d.status_code.map(i64::from))
        .bind(i64::try_from(d.duration.as_millis()).unwrap_or(i64::MAX))
        .bind(d.error.clone())
        .bind(d.next_retry_at)
        .bind(now())
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }

    async fn deliveries(&self, endpoint_id: &str, before: Option<&str>, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new(
            "SELECT id, event_id, event_type, attempt, status_code, duration_ms, error, next_retry_at, created_at FROM webhook_deliveries \
             WHERE endpoint_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(endpoint_id)
        .bind(before.map(str::to_owned))
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    id: r.text("id")?,
                    event_id: r.text("event_id")?,
                    event_type: r.text("event_type")?,
                    attempt: u32::try_from(r.int("attempt")?).unwrap_or(0),
                    status_code: r.opt_int("status_code")?.and_then(|c| u16::try_from(c).ok()),
                    duration_ms: u64::try_from(r.int("duration_ms")?).unwrap_or(0),
                    error: r.opt_text("error")?,
                    next_retry_at: r.opt_time("next_retry_at")?,
                    created_at: r.time("created_at")?,
                })
            })
            .collect()
    }
}

/// What a delivery job carries: the endpoint and the event as it will be sent.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct DeliverPayload {
    pub(super) endpoint_id: String,
    pub(super) event: Event,
}

/// The job that delivers `event` to `endpoint_id`, keyed once per (endpoint, event).
pub fn delivery_job(endpoint_id: &str, event: &Event, policy: RetryPolicy) -> NewJob {
    // Receivers get the event without the internal user id and publish position.
    let event = Event { user_id: None, publish_seq: None, ..event.clone() };
    let unique = format!("webhook:{endpoint_id}:{}", event.id);
    let payload = DeliverPayload { endpoint_id: endpoint_id.to_owned(), event };
    NewJob::new(DELIVER_KIND, serde_json::to_value(payload).expect("webhook payload serialises"))
        .on_queue(QUEUE)
        .attempts(policy.max_attempts)
        .unique(unique)
}

/// Fans events out to the endpoints that want them.
pub struct FanOut {
    pub webhooks: Arc<Webhooks>,
    pub jobs: Jobs,
    pub policy: RetryPolicy,
}

#[async_trait::async_trait]
impl Subscriber for FanOut {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    fn durable(&self) -> bool {
        true
    }

    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        for endpoint in self.webhooks.repo().list().await? {
            if endpoint.events.iter().any(|e| e == "*" || *e == event.kind) {
                // Once, however often the event is heard (redelivery, several instances).
                self.jobs.enqueue_once(&delivery_job(&endpoint.id, event, self.policy)).await?;
            }
        }
        Ok(())
    }
}

pub fn seal_secret(cipher: &FieldCipher, secret: &str) -> String {
    cipher.encrypt(SECRET_COLUMN, secret)
}
