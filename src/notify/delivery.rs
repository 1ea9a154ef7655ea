//! The job that delivers one event to one webhook endpoint, and logs the attempt.
//!
//! Only allowed destinations are called (`security::egress`): an address written in the URL
//! is checked before anything is sent, and names are resolved by a resolver that answers only
//! with allowed addresses, so what was checked is what is connected to, whatever DNS said when
//! the endpoint was created. A refused delivery sends nothing and logs why. Each POST carries
//! the `traceparent` of its own span, within the trace of the event it delivers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use tracing::Instrument as _;

use super::webhooks::{DELIVER_KIND, DeliverPayload, NewDelivery, RetryPolicy, SECRET_COLUMN, WebhookRepo, repo_for};
use crate::jobs::{Completion, Done, Job, JobHandler};
use crate::security::crypto::FieldCipher;
use crate::security::egress::{Egress, EgressError};
use crate::security::signature;
use crate::store::{Store, StoreError, now};
use crate::telemetry::trace;

pub struct Deliver {
    store: Store,
    repo: Arc<dyn WebhookRepo>,
    cipher: Arc<FieldCipher>,
    client: reqwest::Client,
    egress: Arc<Egress>,
    policy: RetryPolicy,
}

impl Deliver {
    pub fn new(store: Store, cipher: Arc<FieldCipher>, egress: Arc<Egress>, policy: RetryPolicy) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            // Straight to the receiver: a proxy would resolve names where Keel cannot check them.
            .no_proxy()
            .dns_resolver(egress.resolver())
            .user_agent("Keel-Webhooks/1")
            .build()?;
        Ok(Self { repo: repo_for(&store), store, cipher, client, egress, policy })
    }

    /// Posts the event; the receiver's status, or why no answer came (or why nothing was sent).
    async fn post(&self, url: &str, secret: &str, payload: &DeliverPayload) -> anyhow::Result<Result<u16, String>> {
        let target = reqwest::Url::parse(url).context("a stored webhook URL")?;
        // A literal address is never looked up, so the resolver cannot judge it: check it here.
        if let Some(host) = target.host_str()
            && let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse()
            && let Err(refused) = self.egress.check_ip(host, ip)
        {
            return Ok(Err(refused.to_string()));
        }
        let body = serde_json::to_vec(&payload.event)?;
        let span = tracing::info_span!(
            "webhook.post",
            otel.name = "POST webhook",
            otel.kind = "client",
            webhook.endpoint_id = %payload.endpoint_id,
            event.id = %payload.event.id
        );
        let mut request = self
            .client
            .post(target)
            .header("content-type", "application/json")
            .header("keel-signature", signature::sign(secret.as_bytes(), Utc::now().timestamp(), &body))
            .header("keel-event-id", payload.event.id.as_str());
        if let Some(traceparent) = trace::traceparent_of(&span) {
            request = request.header(trace::TRACEPARENT, traceparent);
        }
        let response = request.body(body).send().instrument(span).await;
        Ok(response.map(|r| r.status().as_u16()).map_err(|e| transport_error(&e)))
    }
}

#[async_trait::async_trait]
impl JobHandler for Deliver {
    fn kind(&self) -> &'static str {
        DELIVER_KIND
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(30)
    }

    fn retry_delay(&self, job: &Job) -> Duration {
        crate::jobs::model::backoff(job.attempts, self.policy.first_delay, Duration::from_secs(3600), crate::jobs::model::jitter_of(job))
    }

    async fn run(&self, job: &Job, completion: Completion) -> anyhow::Result<Done> {
        let payload: DeliverPayload = serde_json::from_value(job.payload.clone()).context("webhook job payload")?;
        // A deleted endpoint gets nothing more.
        let Some((endpoint, sealed)) = self.repo.get(&payload.endpoint_id).await? else { return completion.done().await };
        let secret = self.cipher.decrypt(SECRET_COLUMN, &sealed)?;
        let started = Instant::now();
        let outcome = self.post(&endpoint.url, &secret, &payload).await?;
        let duration = started.elapsed();
        let (status_code, error) = match outcome {
            Ok(status) if (200..300).contains(&status) => (Some(status), None),
            Ok(status) => (Some(status), Some(format!("the receiver answered {status}"))),
            Err(e) => (None, Some(e)),
        };
        let last = job.attempts >= job.max_attempts;
        let next_retry_at = (error.is_some() && !last).then(|| now() + self.retry_delay(job));
        let delivery = NewDelivery {
            endpoint_id: &endpoint.id,
            event: &payload.event,
            attempt: job.attempts,
            status_code,
            duration,
            error: error.clone(),
            next_retry_at,
        };
        // The request went out before any transaction opened; its log line then commits with
        // the job's completion, or on its own before the failure is recorded.
        let (repo, delivery) = (&self.repo, &delivery);
        match error {
            None => {
                let (done, ()) = completion
                    .finish(|mut tx| async move {
                        repo.record(&mut tx, delivery).await?;
                        Ok((tx, ()))
                    })
                    .await?;
                Ok(done)
            }
            Some(e) => {
                self.store
                    .transact(|mut tx| async move {
                        repo.record(&mut tx, delivery).await?;
                        Ok::<_, StoreError>((tx, ()))
                    })
                    .await?;
                Err(anyhow::anyhow!(e))
            }
        }
    }
}

/// A transport error's text without the URL (it may carry credentials); a destination the
/// resolver refused says so.
fn transport_error(e: &reqwest::Error) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<EgressError>() {
            return refused.to_string();
        }
        source = cause.source();
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", std::error::Error::source(e).map(ToString::to_string).unwrap_or_default())
}
