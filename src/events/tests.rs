//! The relay's publish order with two relays racing, and its lease.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, broadcast};

use super::*;
use crate::store::testing::scratch_store;
use crate::store::{Store, now};

/// A bus that records what is published to it; with a gate, each publish waits for a permit.
struct Recording {
    log: Arc<Mutex<Vec<Event>>>,
    gate: Option<Arc<Semaphore>>,
    sender: broadcast::Sender<Arc<Event>>,
}

impl Recording {
    fn new(log: &Arc<Mutex<Vec<Event>>>, gate: Option<&Arc<Semaphore>>) -> Recording {
        Recording { log: log.clone(), gate: gate.cloned(), sender: broadcast::channel(16).0 }
    }
}

#[async_trait::async_trait]
impl Bus for Recording {
    async fn publish(&self, event: &Event) -> anyhow::Result<()> {
        self.log.lock().unwrap().push(event.clone());
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }
}

fn one_event(n: i64) -> Effects {
    Effects {
        jobs: Vec::new(),
        events: vec![NewEvent { kind: "test.order", user_id: None, data: serde_json::json!({ "n": n }) }],
        ..Effects::default()
    }
}

#[tokio::test]
async fn two_racing_relays_put_events_on_the_bus_in_publish_order() {
    let store = scratch_store().await;
    // Only PostgreSQL commits transactions out of `seq` order (SQLite has one writer).
    if !matches!(store, Store::Postgres(_)) {
        return store.close().await;
    }
    // A slow transaction takes the lower `seq`; a quick one commits first.
    let mut slow = store.begin().await.unwrap();
    one_event(1).write(&mut slow, now()).await.unwrap();
    let mut quick = store.begin().await.unwrap();
    one_event(2).write(&mut quick, now()).await.unwrap();
    quick.commit().await.unwrap();

    // Relay A publishes the quick one and stalls before it marks it.
    let log = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(Semaphore::new(0));
    let a = tokio::spawn({
        let (outbox, bus) = (Outbox::new(store.clone()), Recording::new(&log, Some(&gate)));
        async move { outbox.relay_batch(256, &bus).await.unwrap() }
    });
    for _ in 0..500 {
        if !log.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(log.lock().unwrap().len(), 1, "relay A published the quick event");
    // The slow one commits; relay B relays everything and marks it, then A goes on.
    slow.commit().await.unwrap();
    Outbox::new(store.clone()).relay_batch(256, &Recording::new(&log, None)).await.unwrap();
    gate.add_permits(1);
    a.await.unwrap();

    // The bus keeps the first copy of each event: their order is the publish order, and each
    // carried its final place.
    let mut first_copies: Vec<Event> = Vec::new();
    for event in log.lock().unwrap().iter() {
        if !first_copies.iter().any(|e| e.id == event.id) {
            first_copies.push(event.clone());
        }
    }
    let positions = crate::realtime::repo::for_store(&store);
    let mut places = Vec::new();
    for event in &first_copies {
        let stored = positions.position(&event.id).await.unwrap().unwrap().publish_seq;
        assert_eq!(event.publish_seq, stored, "{} was published with its place", event.id);
        places.push(stored.unwrap());
    }
    assert_eq!(first_copies.iter().map(|e| e.data["n"].as_i64().unwrap()).collect::<Vec<_>>(), [2, 1], "bus order");
    assert!(places.is_sorted() && places.len() == 2, "publish order follows the bus: {places:?}");
    assert_eq!(repo::for_store(&store).lag().await.unwrap(), 0);
    store.close().await;
}

#[tokio::test]
async fn one_relay_leads_at_a_time_and_another_takes_over_when_it_stops() {
    let store = scratch_store().await;
    let outbox = Outbox::new(store.clone());
    let mut leader = outbox.try_lead().await.unwrap().expect("nobody leads yet");
    assert!(leader.held().await);
    assert!(outbox.try_lead().await.unwrap().is_none(), "the lease is taken");
    drop(leader);
    // PostgreSQL frees the lock once it notices the session ended.
    let mut next = None;
    for _ in 0..500 {
        next = outbox.try_lead().await.unwrap();
        if next.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(next.expect("the lease was freed").held().await);
    store.close().await;
}
