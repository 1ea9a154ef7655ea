//! Which key of a ring is in use at a given instant, and which are still accepted: the rules of
//! rotation, free of I/O and of the keys' kind.
//!
//! A ring is the base key (from configuration or the data directory, in use since always) and
//! the keys `keel keys rotate` added, each in use from its `active_from`. At instant `t` the key
//! in use is the latest one active at `t`. A key stays accepted (its tokens verified) until the
//! key after it has been in use for `overlap`: whatever it signed just before has expired by
//! then. A key not yet active is accepted already, so every instance knows it before any signs
//! with it.

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Debug, Clone)]
pub struct Timeline<K> {
    /// The base key first, then ring keys by `active_from`, oldest first.
    keys: Vec<(Option<DateTime<Utc>>, K)>,
}

impl<K> Timeline<K> {
    pub fn new(base: K) -> Self {
        Self { keys: vec![(None, base)] }
    }

    /// Adds the ring's keys (in any order) after the base key.
    pub fn with(mut self, ring: impl IntoIterator<Item = (DateTime<Utc>, K)>) -> Self {
        self.keys.extend(ring.into_iter().map(|(from, key)| (Some(from), key)));
        // A stable sort: the base key (`None`) stays first; equal instants keep the given order.
        self.keys.sort_by_key(|(from, _)| *from);
        self
    }

    /// The key in use at `t`.
    pub fn current(&self, t: DateTime<Utc>) -> &K {
        &self.keys[self.in_use(t)].1
    }

    /// The keys accepted at `t`: the one in use first, then the rest newest first.
    pub fn accepted(&self, t: DateTime<Utc>, overlap: TimeDelta) -> impl Iterator<Item = &K> {
        let current = self.in_use(t);
        let still = move |i: usize| self.keys.get(i + 1).and_then(|(from, _)| *from).is_none_or(|next| t < next + overlap);
        let rest = (0..self.keys.len()).rev().filter(move |&i| i != current && still(i));
        std::iter::once(current).chain(rest).map(|i| &self.keys[i].1)
    }

    /// The place of the key in use at `t`; the base key's (0) when no ring key is active yet.
    fn in_use(&self, t: DateTime<Utc>) -> usize {
        self.keys.iter().rposition(|(from, _)| from.is_none_or(|from| from <= t)).unwrap_or(0)
    }

    /// Every key, whatever its time: what may have sealed a value still stored.
    pub fn all(&self) -> impl Iterator<Item = &K> {
        self.keys.iter().map(|(_, key)| key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn ring() -> Timeline<&'static str> {
        Timeline::new("base").with([(at(200), "second"), (at(100), "first")])
    }

    #[test]
    fn the_latest_active_key_is_in_use() {
        let r = ring();
        assert_eq!(*r.current(at(50)), "base");
        assert_eq!(*r.current(at(100)), "first");
        assert_eq!(*r.current(at(199)), "first");
        assert_eq!(*r.current(at(1_000)), "second");
    }

    #[test]
    fn a_key_is_accepted_until_its_successor_has_been_in_use_for_the_overlap() {
        let r = ring();
        let accepted = |t| r.accepted(at(t), TimeDelta::seconds(30)).copied().collect::<Vec<_>>();
        assert_eq!(accepted(50), ["base", "second", "first"], "keys not yet active are known in advance");
        assert_eq!(accepted(120), ["first", "second", "base"]);
        assert_eq!(accepted(130), ["first", "second"], "the base key's tokens have expired");
        assert_eq!(accepted(229), ["second", "first"]);
        assert_eq!(accepted(230), ["second"]);
    }

    #[test]
    fn without_ring_keys_the_base_key_is_all_there_is() {
        let r = Timeline::new("base");
        assert_eq!(*r.current(at(0)), "base");
        assert_eq!(r.accepted(at(0), TimeDelta::zero()).count(), 1);
        assert_eq!(ring().all().count(), 3);
    }
}
