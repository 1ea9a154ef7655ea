//! NATS JetStream as the bus when `nats_url` is set: events go to a durable stream
//! (kept 24 h, deduplicated by event id), and each instance reads it through its own
//! durable consumer, acknowledging after local delivery, so an instance that was down
//! gets what it missed when it comes back. (Subscribers whose effects must survive a crash
//! after that acknowledgement are durable: they resume from their offsets in the outbox.)
//! An event's trace context travels as the message's `traceparent` header.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::DeliverPolicy, stream::StorageType};
use futures_util::StreamExt as _;
use tokio::sync::{broadcast, watch};

use super::{Bus, Event, LocalBus};
use crate::telemetry::trace::TRACEPARENT;

pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    subject_prefix: String,
    local: LocalBus,
}

/// How long JetStream keeps events (the contract's replay window).
const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Publishes of the same event id within this window are stored once.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// "cannot connect to NATS at <servers>: <cause>", without the URL's credentials.
fn connect_error(url: &str, e: &async_nats::ConnectError) -> anyhow::Error {
    let servers: Vec<&str> = url
        .split(',')
        .map(|server| {
            let authority = server.trim().split_once("://").map_or(server, |(_, rest)| rest);
            let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            authority.split(['/', '?']).next().unwrap_or_default()
        })
        .collect();
    let io = std::iter::successors(std::error::Error::source(e), |s| s.source()).find_map(|s| s.downcast_ref::<std::io::Error>());
    let cause = match (e.kind(), io) {
        (_, Some(io)) if io.kind() == std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        (_, Some(io)) => io.to_string(),
        (kind, None) => kind.to_string(),
    };
    anyhow::anyhow!("cannot connect to NATS at {}: {cause}", servers.join(","))
}

impl NatsBus {
    /// Connects and makes sure the stream exists. `prefix` names the subjects
    /// (`<prefix>.events.<type>`) and the stream (`<PREFIX>_EVENTS`).
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Arc<NatsBus>> {
        let client = async_nats::connect(url).await.map_err(|e| connect_error(url, &e))?;
        let js = jetstream::new(client.clone());
        js.get_or_create_stream(jetstream::stream::Config {
            name: format!("{}_EVENTS", prefix.to_uppercase().replace(['.', '-'], "_")),
            subjects: vec![format!("{prefix}.events.>")],
            max_age: RETENTION,
            duplicate_window: DUPLICATE_WINDOW,
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating the JetStream stream: {e}"))?;
        Ok(Arc::new(NatsBus { client, js, subject_prefix: prefix.to_owned(), local: LocalBus::new() }))
    }

    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Feeds this instance's subscribers from its durable consumer until `stop`.
    pub async fn consume(self: Arc<Self>, consumer_name: String, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let stream_name = format!("{}_EVENTS", self.subject_prefix.to_uppercase().replace(['.', '-'], "_"));
        let stream = self.js.get_stream(&stream_name).await.map_err(|e| anyhow::anyhow!("opening the stream: {e}"))?;
        let consumer = stream
            .get_or_create_consumer(
                &consumer_name,
                jetstream::consumer::pull::Config {
                    durable_name: Some(consumer_name.clone()),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::New,
                    ack_wait: Duration::from_secs(30),
                    inactive_threshold: RETENTION,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating the consumer: {e}"))?;
        let mut messages = consumer.messages().await.map_err(|e| anyhow::anyhow!("reading the consumer: {e}"))?;
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = messages.next() => next,
                    _ = stop.changed() => return,
                };
                match next {
                    Some(Ok(message)) => {
                        match serde_json::from_slice::<Event>(&message.payload) {
                            Ok(mut event) => {
                                event.traceparent =
                                    message.headers.as_ref().and_then(|h| h.get(TRACEPARENT)).map(|v| v.as_str().to_owned());
                                self.local.deliver(Arc::new(event));
                            }
                            Err(e) => tracing::error!(error = %e, "a bus message is not an event; dropping it"),
                        }
                        if let Err(e) = message.ack().await {
                            tracing::warn!(error = %e, "acknowledging a bus message failed; it will be redelivered");
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "reading from the bus failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    None => return,
                }
            }
        });
        Ok(())
    }
}

#[async_trait::async_trait]
impl Bus for NatsBus {
    async fn publish(&self, event: &Event) -> anyhow::Result<()> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.as_str());
        if let Some(traceparent) = &event.traceparent {
            headers.insert(TRACEPARENT, traceparent.as_str());
        }
        let subject = format!("{}.events.{}", self.subject_prefix, event.kind);
        let ack = self
            .js
            .publish_with_headers(subject, headers, serde_json::to_vec(event)?.into())
            .await
            .map_err(|e| anyhow::anyhow!("publishing to JetStream: {e}"))?;
        ack.await.map_err(|e| anyhow::anyhow!("JetStream did not acknowledge: {e}"))?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.local.subscribe()
    }
}
