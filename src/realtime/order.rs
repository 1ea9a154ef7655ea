//! The hub's delivery order: each instance hands events to its connections in publish order
//! (`publish_seq`), each once, with no gap, which is the order a resume replays from the
//! outbox. The bus normally delivers exactly that (the relay numbers events before it
//! publishes them, then publishes in that order: see `events::relay`), but it delivers at
//! least once, so repeats come; and after the hub fell behind, or in a relay failover, places
//! may be missing. Repeats are dropped here; a gap is filled from the outbox, where every
//! place before one heard on the bus is already committed.

/// What to do with an event heard on the bus.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it.
    Next,
    /// Delivered already (a repeat, or filled in from the outbox): drop it.
    Seen,
    /// Places `from..to` were not heard: deliver them from the outbox first, then this one.
    Gap { from: i64, to: i64 },
}

/// The next place the hub expects; unknown until it hears its first numbered event.
#[derive(Debug, Default)]
pub struct Order {
    next: Option<i64>,
}

impl Order {
    /// Events without a place (from a relay older than publish numbering) are delivered as heard.
    pub fn check(&self, place: Option<i64>) -> Verdict {
        match (self.next, place) {
            (Some(next), Some(place)) if place < next => Verdict::Seen,
            (Some(next), Some(place)) if place > next => Verdict::Gap { from: next, to: place },
            _ => Verdict::Next,
        }
    }

    /// Every place up to `place` has been delivered.
    pub fn delivered(&mut self, place: Option<i64>) {
        if let Some(place) = place {
            self.next = Some(self.next.map_or(place + 1, |next| next.max(place + 1)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_in_order_pass_repeats_drop_and_gaps_are_named() {
        let mut order = Order::default();
        assert_eq!(order.check(Some(7)), Verdict::Next, "the first place heard starts the order");
        order.delivered(Some(7));
        assert_eq!(order.check(Some(8)), Verdict::Next);
        order.delivered(Some(8));
        assert_eq!(order.check(Some(8)), Verdict::Seen);
        assert_eq!(order.check(Some(3)), Verdict::Seen);
        assert_eq!(order.check(Some(12)), Verdict::Gap { from: 9, to: 12 });
        order.delivered(Some(12));
        assert_eq!(order.check(Some(10)), Verdict::Seen, "filled in before 12");
        assert_eq!(order.check(None), Verdict::Next);
        order.delivered(None);
        assert_eq!(order.check(Some(13)), Verdict::Next);
    }
}
