//! The bus that carries published events to every subscriber of this instance.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::Event;

/// Carries events from the relay to subscribers. `subscribe` always hands out a local
/// receiver; a distributed bus feeds it from its own consumer.
#[async_trait::async_trait]
pub trait Bus: Send + Sync {
    /// Returns once the bus has accepted the event (durably, for a distributed bus).
    async fn publish(&self, event: &Event) -> anyhow::Result<()>;
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;
}

/// In-process broadcast: the embedded default for a single instance.
pub struct LocalBus {
    sender: broadcast::Sender<Arc<Event>>,
}

/// Events a slow subscriber may fall behind by before it must catch up from the outbox.
const CAPACITY: usize = 4096;

impl LocalBus {
    pub fn new() -> Self {
        Self { sender: broadcast::channel(CAPACITY).0 }
    }

    /// Hands an event to this instance's subscribers.
    pub fn deliver(&self, event: Arc<Event>) {
        // No receivers is fine: nobody listens yet.
        let _ = self.sender.send(event);
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Bus for LocalBus {
    async fn publish(&self, event: &Event) -> anyhow::Result<()> {
        self.deliver(Arc::new(event.clone()));
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }
}
