//! Live sessions remembered between requests, so a signed-in request need not read its session
//! from the database every time. Only where one process changes accounts and sessions (one
//! instance on SQLite): revocation stays instant because every unit of work of `Accounts` bumps
//! a generation once it is over, and an entry is trusted only while the generation it was read
//! at is still current. With several instances a logout on another one would go unseen here,
//! so they read the session on every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::repo::UserRow;

/// Sessions remembered at most (the busiest ones stay).
const CAPACITY: u64 = 50_000;
/// An entry is read again after this long even when nothing changed (a bound on memory, and on
/// what a change made outside `Accounts`, such as a key rotation's re-encryption, could leave).
const FOR: Duration = Duration::from_secs(60);

struct Live {
    generation: u64,
    user_id: String,
    expires_at: DateTime<Utc>,
    account: Arc<UserRow>,
}

pub struct SessionCache {
    generation: AtomicU64,
    entries: moka::sync::Cache<String, Arc<Live>>,
}

impl Default for SessionCache {
    fn default() -> Self {
        SessionCache {
            generation: AtomicU64::new(0),
            entries: moka::sync::Cache::builder().max_capacity(CAPACITY).time_to_live(FOR).build(),
        }
    }
}

impl SessionCache {
    /// Taken before reading a session, and handed to [`Self::remember`] with what was read.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The account of a remembered session of `user_id` still usable at `now`.
    pub fn usable(&self, session_id: &str, user_id: &str, now: DateTime<Utc>) -> Option<Arc<UserRow>> {
        let live = self.entries.get(session_id)?;
        (live.generation == self.generation() && live.user_id == user_id && live.expires_at > now).then(|| live.account.clone())
    }

    /// Remembers a session read at `generation`; a change committed since then (which may not
    /// be in what was read) keeps it out, or makes it stale at once.
    pub fn remember(&self, session_id: &str, expires_at: DateTime<Utc>, account: Arc<UserRow>, generation: u64) {
        if generation == self.generation() {
            let live = Live { generation, user_id: account.id.clone(), expires_at, account };
            self.entries.insert(session_id.to_owned(), Arc::new(live));
        }
    }

    /// Accounts or sessions changed: nothing remembered holds any more.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Arc<UserRow> {
        Arc::new(UserRow {
            id: "usr_1".into(),
            email: "ada@example.com".into(),
            email_verified: true,
            name: "Ada".into(),
            password_hash: String::new(),
            roles: 1,
            country: None,
            phone_enc: None,
            address_enc: None,
            mfa_enabled: false,
            disabled: false,
            created_at: Utc::now(),
            totp_secret_enc: None,
            totp_pending_enc: None,
        })
    }

    #[test]
    fn a_change_forgets_sessions_and_keeps_out_one_read_before_it() {
        let cache = SessionCache::default();
        let now = Utc::now();
        let expires_at = now + chrono::TimeDelta::minutes(5);
        let read_at = cache.generation();
        cache.remember("ses_1", expires_at, account(), read_at);
        assert!(cache.usable("ses_1", "usr_1", now).is_some());
        assert!(cache.usable("ses_1", "usr_2", now).is_none(), "another user's session");
        assert!(cache.usable("ses_1", "usr_1", now + chrono::TimeDelta::minutes(6)).is_none(), "expired since");

        cache.changed();
        assert!(cache.usable("ses_1", "usr_1", now).is_none(), "forgotten at the change");
        // Read before the change, remembered after it: it may not show the change.
        cache.remember("ses_1", expires_at, account(), read_at);
        assert!(cache.usable("ses_1", "usr_1", now).is_none());
    }
}
