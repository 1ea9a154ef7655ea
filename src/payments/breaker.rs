//! The circuit breaker as a pure state machine: time comes in as `Instant`s, nothing sleeps.
//!
//! ```text
//! closed ──N consecutive failures──▶ open ──cool-down passed──▶ half-open (one probe)
//!   ▲                                 ▲                              │
//!   └──────────── probe succeeds ─────┼──────────────────────────────┤
//!                                     └──────── probe fails ─────────┘
//! ```
//! While open, calls are refused at once without reaching the provider. A probe whose result
//! never comes (its caller was cancelled) does not wedge the breaker: after another cool-down
//! a new probe is let through.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed attempts that open the breaker (default 5).
    pub failure_threshold: u32,
    /// How long it stays open before one probe is let through (default 30 s).
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: 5, cooldown: Duration::from_secs(30) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; if it never reports, another may go at `probe_until`.
    HalfOpen {
        probe_until: Instant,
    },
}

/// The breaker refused a call; nothing may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open;

#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, state: State::Closed { consecutive_failures: 0 } }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Asks to send one attempt at `now`.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Open> {
        match self.state {
            State::Closed { .. } => Ok(()),
            State::Open { until } | State::HalfOpen { probe_until: until } if now < until => Err(Open),
            // Cool-down over (or the last probe is long lost): this caller is the one probe.
            State::Open { .. } | State::HalfOpen { .. } => {
                self.state = State::HalfOpen { probe_until: now + self.config.cooldown };
                Ok(())
            }
        }
    }

    /// An attempt got an answer from a working provider.
    pub fn on_success(&mut self) {
        // A late success of an attempt sent before the breaker opened proves little: stay open.
        if !matches!(self.state, State::Open { .. }) {
            self.state = State::Closed { consecutive_failures: 0 };
        }
    }

    /// An attempt failed at `now`; returns true when this failure opened the breaker.
    pub fn on_failure(&mut self, now: Instant) -> bool {
        let open = State::Open { until: now + self.config.cooldown };
        match self.state {
            State::Closed { consecutive_failures } if consecutive_failures + 1 >= self.config.failure_threshold => {
                self.state = open;
                true
            }
            State::Closed { consecutive_failures } => {
                self.state = State::Closed { consecutive_failures: consecutive_failures + 1 };
                false
            }
            State::HalfOpen { .. } => {
                self.state = open;
                true
            }
            State::Open { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    fn breaker() -> (Breaker, Instant) {
        (Breaker::new(BreakerConfig { failure_threshold: 3, cooldown: COOLDOWN }), Instant::now())
    }

    #[test]
    fn it_opens_after_n_consecutive_failures_and_refuses_at_once() {
        let (mut b, t0) = breaker();
        assert!(!b.on_failure(t0));
        assert!(!b.on_failure(t0));
        assert_eq!(b.try_acquire(t0), Ok(()));
        assert!(b.on_failure(t0), "the third failure opens it");
        assert_eq!(b.state(), State::Open { until: t0 + COOLDOWN });
        assert_eq!(b.try_acquire(t0 + COOLDOWN - Duration::from_millis(1)), Err(Open));
    }

    #[test]
    fn a_success_resets_the_count() {
        let (mut b, t0) = breaker();
        b.on_failure(t0);
        b.on_failure(t0);
        b.on_success();
        b.on_failure(t0);
        b.on_failure(t0);
        assert_eq!(b.state(), State::Closed { consecutive_failures: 2 });
    }

    #[test]
    fn after_the_cooldown_one_probe_goes_through_and_its_success_closes() {
        let (mut b, t0) = breaker();
        (0..3).for_each(|_| _ = b.on_failure(t0));
        let later = t0 + COOLDOWN;
        assert_eq!(b.try_acquire(later), Ok(()), "the probe");
        assert_eq!(b.try_acquire(later), Err(Open), "only one probe at a time");
        b.on_success();
        assert_eq!(b.state(), State::Closed { consecutive_failures: 0 });
        assert_eq!(b.try_acquire(later), Ok(()));
    }

    #[test]
    fn a_failed_probe_opens_it_for_another_cooldown() {
        let (mut b, t0) = breaker();
        (0..3).for_each(|_| _ = b.on_failure(t0));
        let probe_at = t0 + COOLDOWN + Duration::from_secs(5);
        assert_eq!(b.try_acquire(probe_at), Ok(()));
        assert!(b.on_failure(probe_at));
        assert_eq!(b.try_acquire(probe_at + COOLDOWN - Duration::from_millis(1)), Err(Open));
        assert_eq!(b.try_acquire(probe_at + COOLDOWN), Ok(()));
    }

    #[test]
    fn a_lost_probe_is_replaced_after_another_cooldown() {
        let (mut b, t0) = breaker();
        (0..3).for_each(|_| _ = b.on_failure(t0));
        assert_eq!(b.try_acquire(t0 + COOLDOWN), Ok(()));
        // Its result never comes.
        assert_eq!(b.try_acquire(t0 + COOLDOWN * 2 - Duration::from_millis(1)), Err(Open));
        assert_eq!(b.try_acquire(t0 + COOLDOWN * 2), Ok(()));
    }

    #[test]
    fn late_answers_while_open_change_nothing() {
        let (mut b, t0) = breaker();
        (0..3).for_each(|_| _ = b.on_failure(t0));
        b.on_success();
        assert!(!b.on_failure(t0 + Duration::from_secs(10)), "already open");
        assert_eq!(b.state(), State::Open { until: t0 + COOLDOWN });
    }

    #[derive(Debug, Clone)]
    enum Step {
        Wait(u64),
        Acquire,
        Success,
        Failure,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![(0u64..40).prop_map(Step::Wait), Just(Step::Acquire), Just(Step::Success), Just(Step::Failure)]
    }

    proptest! {
        #[test]
        fn closed_never_refuses_open_never_admits_and_probes_are_one_per_cooldown(steps in proptest::collection::vec(step(), 0..200)) {
            let (mut b, t0) = breaker();
            let mut now = t0;
            // When the breaker last let a call through while not closed (a probe).
            let mut last_probe: Option<Instant> = None;
            for step in steps {
                let before = b.state();
                match step {
                    Step::Wait(secs) => now += Duration::from_secs(secs),
                    Step::Acquire => {
                        let admitted = b.try_acquire(now).is_ok();
                        match before {
                            State::Closed { .. } => prop_assert!(admitted),
                            State::Open { until } => prop_assert_eq!(admitted, now >= until),
                            State::HalfOpen { probe_until } => prop_assert_eq!(admitted, now >= probe_until),
                        }
                        if admitted && !matches!(before, State::Closed { .. }) {
                            if let Some(last) = last_probe {
                                prop_assert!(now >= last + COOLDOWN, "two probes within one cool-down");
                            }
                            last_probe = Some(now);
                        }
                    }
                    Step::Success => b.on_success(),
                    Step::Failure => _ = b.on_failure(now),
                }
                if let State::Closed { consecutive_failures } = b.state() {
                    prop_assert!(consecutive_failures < 3);
                }
            }
        }
    }
}
