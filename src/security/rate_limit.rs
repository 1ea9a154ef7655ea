//! Rate limits: one policy table, the GCRA rule (pure), and the limiter behind a small trait
//! so a shared (Redis) store can replace the in-process one without touching callers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `burst` requests, refilled evenly over `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub period: Duration,
}

impl Rate {
    pub fn per_minute(burst: u32) -> Self {
        Self { burst, period: Duration::from_secs(60) }
    }

    pub fn per_hour(burst: u32) -> Self {
        Self { burst, period: Duration::from_secs(3600) }
    }

    /// Parses `N/s`, `N/min`, `N/h`, or `off` (`Some(None)`).
    pub fn parse_setting(v: &str) -> Option<Option<Rate>> {
        if v == "off" {
            return Some(None);
        }
        let (n, unit) = v.split_once('/')?;
        let burst: u32 = n.trim().parse().ok().filter(|n| (1..=1_000_000).contains(n))?;
        let secs = match unit.trim() {
            "s" => 1,
            "min" => 60,
            "h" => 3600,
            _ => return None,
        };
        Some(Some(Rate { burst, period: Duration::from_secs(secs) }))
    }
}

/// The outcome of one check, with what the `RateLimit-*` headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Allowed: time until the bucket is full again. Refused: time until one more request
    /// would be allowed, which is also what `Retry-After` says (the two must agree).
    pub reset_after: Duration,
}

/// The generic cell rate algorithm. `tat` is the stored theoretical arrival time (ns on
/// any monotonic clock), `now` the current time on the same clock. Returns the decision
/// and the new `tat` to store (unchanged when refused).
pub fn gcra(rate: Rate, tat: Option<u64>, now: u64) -> (Decision, u64) {
    let period = rate.period.as_nanos() as u64;
    let interval = interval(rate);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    // The request fits if, after adding it, the bucket holds at most `period` of work.
    let allow_at = new_tat.saturating_sub(period);
    if now < allow_at {
        let decision = Decision { allowed: false, limit: rate.burst, remaining: 0, reset_after: Duration::from_nanos(allow_at - now) };
        return (decision, tat);
    }
    let used = new_tat - now;
    let remaining = ((period - used.min(period)) / interval) as u32;
    let decision = Decision { allowed: true, limit: rate.burst, remaining, reset_after: Duration::from_nanos(used) };
    (decision, new_tat)
}

/// The time one request adds to a cell.
fn interval(rate: Rate) -> u64 {
    (rate.period.as_nanos() as u64 / u64::from(rate.burst)).max(1)
}

/// The TAT after giving one request back: a refunded request leaves no trace (a TAT at or
/// before now is the same as no cell).
pub fn refund(rate: Rate, tat: u64) -> u64 {
    tat.saturating_sub(interval(rate))
}

/// The limited actions: one table, each with its setting and default rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Sign-in attempts of every kind from one client address (login, register, password
    /// reset, email verification).
    AuthIp,
    /// Failed logins against one account from one client address: tight, so one address
    /// guessing is stopped long before the account's own budget runs out.
    AuthAccountIp,
    /// Failed logins against one account from anywhere: loose, a ceiling for guessing spread
    /// over many addresses, high enough that one address cannot lock the owner out.
    AuthAccount,
    /// Mail a client makes Keel send (verification resends, password resets) from one address.
    MailIp,
    /// Mail sent to one account at a client's request.
    MailAccount,
    /// Every request without a valid access token, per client address.
    Anonymous,
    /// Every request with a valid access token, per user.
    User,
    /// Requests that move money (top-ups, transfers, checkout, refunds), per user.
    Money,
    /// Back-office requests (`/v1/admin/…`), per user.
    Admin,
    /// Every request with an API key, per key.
    ApiKey,
}

impl Policy {
    pub const ALL: [Policy; 10] = [
        Policy::AuthIp,
        Policy::AuthAccountIp,
        Policy::AuthAccount,
        Policy::MailIp,
        Policy::MailAccount,
        Policy::Anonymous,
        Policy::User,
        Policy::Money,
        Policy::Admin,
        Policy::ApiKey,
    ];

    /// The policy's short name (`auth_ip`): its setting is `rate_limit_<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::AuthIp => "auth_ip",
            Policy::AuthAccountIp => "auth_account_ip",
            Policy::AuthAccount => "auth_account",
            Policy::MailIp => "mail_ip",
            Policy::MailAccount => "mail_account",
            Policy::Anonymous => "anonymous",
            Policy::User => "user",
            Policy::Money => "money",
            Policy::Admin => "admin",
            Policy::ApiKey => "api_key",
        }
    }

    /// The configuration key of this policy's rate.
    pub fn setting(self) -> String {
        format!("rate_limit_{}", self.name())
    }

    pub fn default_rate(self) -> Rate {
        match self {
            Policy::AuthIp => Rate::per_minute(20),
            Policy::AuthAccountIp => Rate::per_hour(10),
            Policy::AuthAccount => Rate::per_hour(100),
            Policy::MailIp => Rate::per_hour(20),
            Policy::MailAccount => Rate::per_hour(5),
            // Browsing: a page of a shop's front end makes a handful of calls; many people
            // share one address behind a NAT.
            Policy::Anonymous => Rate::per_minute(600),
            Policy::User => Rate::per_minute(1200),
            // Nobody pays, tops up or refunds by hand more than a few times a minute.
            Policy::Money => Rate::per_minute(30),
            Policy::Admin => Rate::per_minute(600),
            // A server syncing stock or orders: steady, machine-paced traffic.
            Policy::ApiKey => Rate::per_minute(1200),
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|p| *p == self).expect("every policy is in ALL")
    }
}

/// The rate of each policy; `None` turns a policy off.
#[derive(Debug, Clone, Default)]
pub struct Policies([Option<Rate>; Policy::ALL.len()]);

impl Policies {
    pub fn with(mut self, policy: Policy, rate: Option<Rate>) -> Self {
        self.0[policy.index()] = rate;
        self
    }

    pub fn rate(&self, policy: Policy) -> Option<Rate> {
        self.0[policy.index()]
    }
}

/// Checks and counts one request against a policy for a key (an IP, an account's hash).
/// `None` means the policy is off.
#[async_trait::async_trait]
pub trait Limiter: Send + Sync {
    async fn check(&self, policy: Policy, key: &str) -> Option<Decision>;
    /// Gives back one request counted by `check` (a login that succeeded is no failed attempt).
    async fn refund(&self, policy: Policy, key: &str);
    /// Forgets cells that no longer limit anything; the server calls it on a timer.
    async fn sweep(&self);
}

/// Per-process limiter: correct for one instance. Its memory is bounded: at most `max_keys`
/// cells, expired cells swept on a timer, and when every cell is live the ones closest to
/// expiring make room (they hold the least of what they record).
pub struct LocalLimiter {
    policies: Policies,
    max_keys: usize,
    epoch: Instant,
    cells: Mutex<HashMap<(Policy, String), u64>>,
}

impl LocalLimiter {
    pub fn new(policies: Policies, max_keys: usize) -> Self {
        crate::telemetry::record_rate_limit_keys(0);
        Self { policies, max_keys: max_keys.max(1), epoch: Instant::now(), cells: Mutex::new(HashMap::new()) }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn cells(&self) -> std::sync::MutexGuard<'_, HashMap<(Policy, String), u64>> {
        self.cells.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Makes room for one more cell in a full table: expired cells go first (a cell whose TAT
/// has passed is the same as no cell); if all are live, the tenth closest to expiring goes,
/// so a flood of new keys costs one scan per tenth of the table, not one per request.
fn make_room(cells: &mut HashMap<(Policy, String), u64>, max_keys: usize, now: u64) {
    cells.retain(|_, tat| *tat > now);
    if cells.len() < max_keys {
        return;
    }
    let mut tats: Vec<u64> = cells.values().copied().collect();
    let evict = (max_keys / 10).max(1).min(tats.len());
    let (_, threshold, _) = tats.select_nth_unstable(evict - 1);
    let threshold = *threshold;
    cells.retain(|_, tat| *tat > threshold);
}

#[async_trait::async_trait]
impl Limiter for LocalLimiter {
    async fn check(&self, policy: Policy, key: &str) -> Option<Decision> {
        let rate = self.policies.rate(policy)?;
        let now = self.now();
        let mut cells = self.cells();
        let cell = (policy, key.to_owned());
        let tat = cells.get(&cell).copied();
        let (decision, new_tat) = gcra(rate, tat, now);
        if tat.is_none() && cells.len() >= self.max_keys {
            make_room(&mut cells, self.max_keys, now);
        }
        cells.insert(cell, new_tat);
        crate::telemetry::record_rate_limit_keys(cells.len());
        Some(decision)
    }

    async fn refund(&self, policy: Policy, key: &str) {
        let Some(rate) = self.policies.rate(policy) else { return };
        if let Some(tat) = self.cells().get_mut(&(policy, key.to_owned())) {
            *tat = refund(rate, *tat);
        }
    }

    async fn sweep(&self) {
        let now = self.now();
        let mut cells = self.cells();
        cells.retain(|_, tat| *tat > now);
        crate::telemetry::record_rate_limit_keys(cells.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn allows_a_burst_then_refuses() {
        let rate = Rate { burst: 3, period: Duration::from_secs(3) };
        let mut tat = None;
        for expected_remaining in [2, 1, 0] {
            let (d, t) = gcra(rate, tat, 0);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
            tat = Some(t);
        }
        let (d, t) = gcra(rate, tat, 0);
        assert!(!d.allowed);
        assert_eq!(d.reset_after, Duration::from_secs(1), "a refusal resets when one more request fits, not when the bucket is full");
        assert_eq!(t, tat.unwrap(), "a refused request does not consume capacity");
    }

    #[test]
    fn refills_one_cell_per_interval() {
        let rate = Rate { burst: 2, period: Duration::from_secs(2) };
        let (_, t) = gcra(rate, None, 0);
        let (_, t) = gcra(rate, Some(t), 0);
        assert!(!gcra(rate, Some(t), SEC / 2).0.allowed);
        let (d, _) = gcra(rate, Some(t), SEC);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn an_idle_key_starts_full() {
        let rate = Rate { burst: 5, period: Duration::from_secs(10) };
        let (_, t) = gcra(rate, None, 0);
        let (d, _) = gcra(rate, Some(t), 100 * SEC);
        assert_eq!(d.remaining, 4);
        assert_eq!(d.reset_after, Duration::from_secs(2));
    }

    #[test]
    fn a_refund_gives_back_exactly_one_request() {
        let rate = Rate { burst: 2, period: Duration::from_secs(2) };
        let (_, t) = gcra(rate, None, 0);
        let (_, t) = gcra(rate, Some(t), 0);
        assert!(!gcra(rate, Some(t), 0).0.allowed);
        let t = refund(rate, t);
        let (d, t) = gcra(rate, Some(t), 0);
        assert!(d.allowed);
        assert!(!gcra(rate, Some(t), 0).0.allowed);
        assert_eq!(refund(rate, refund(rate, 0)), 0, "never below zero");
    }

    #[test]
    fn parses_settings() {
        assert_eq!(Rate::parse_setting("off"), Some(None));
        assert_eq!(Rate::parse_setting("5/min"), Some(Some(Rate::per_minute(5))));
        assert_eq!(Rate::parse_setting("0/s"), None);
        assert_eq!(Rate::parse_setting("5/day"), None);
    }

    #[tokio::test]
    async fn the_table_never_holds_more_than_max_keys_and_busy_keys_survive_a_flood() {
        let limiter = LocalLimiter::new(Policies::default().with(Policy::AuthIp, Some(Rate::per_minute(3))), 10);
        for _ in 0..3 {
            assert!(limiter.check(Policy::AuthIp, "busy").await.unwrap().allowed);
        }
        for i in 0..1000 {
            limiter.check(Policy::AuthIp, &format!("flood-{i}")).await;
            assert!(limiter.cells().len() <= 10);
        }
        assert!(!limiter.check(Policy::AuthIp, "busy").await.unwrap().allowed, "new keys evict the cells closest to expiring first");
    }

    #[tokio::test]
    async fn a_sweep_forgets_expired_cells() {
        let rate = Rate { burst: 1, period: Duration::from_millis(1) };
        let limiter = LocalLimiter::new(
            Policies::default().with(Policy::AuthIp, Some(rate)).with(Policy::AuthAccount, Some(Rate::per_minute(1))),
            100,
        );
        limiter.check(Policy::AuthIp, "a").await;
        limiter.check(Policy::AuthAccount, "b").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        limiter.sweep().await;
        let cells = limiter.cells();
        assert_eq!(cells.keys().map(|(p, k)| (*p, k.as_str())).collect::<Vec<_>>(), [(Policy::AuthAccount, "b")]);
    }

    #[tokio::test]
    async fn keys_are_independent() {
        let limiter = LocalLimiter::new(Policies::default().with(Policy::AuthIp, Some(Rate::per_minute(1))), 100);
        assert!(limiter.check(Policy::AuthIp, "a").await.unwrap().allowed);
        assert!(!limiter.check(Policy::AuthIp, "a").await.unwrap().allowed);
        assert!(limiter.check(Policy::AuthIp, "b").await.unwrap().allowed);
        assert!(limiter.check(Policy::AuthAccount, "a").await.is_none());
    }
}
