//! SQL for accounts and sessions, written once for both backends.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx};

/// A `users` row as stored (phone and address still sealed).
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub password_hash: String,
    pub roles: i64,
    pub country: Option<String>,
    pub phone_enc: Option<String>,
    pub address_enc: Option<String>,
    pub mfa_enabled: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    /// The active TOTP secret, sealed.
    pub totp_secret_enc: Option<String>,
    /// A TOTP secret set up but not yet confirmed with a code, sealed.
    pub totp_pending_enc: Option<String>,
}

/// What a mailed single-use token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::ResetPassword => "reset_password",
        }
    }
}

/// A mailed single-use token, stored as its hash.
#[derive(Debug, Clone)]
pub struct NewAccountToken {
    pub hash: String,
    pub user_id: String,
    pub purpose: TokenPurpose,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub user_id: String,
    pub token: Renewal,
}

/// A refresh token to store, with the client details and times of its session.
#[derive(Debug, Clone)]
pub struct Renewal {
    pub refresh_hash: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Whether an access token's session may still be used, and the account's current roles.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub usable: bool,
    pub expires_at: DateTime<Utc>,
    /// The account as it is now (one query serves the check and the caller's profile).
    pub user: UserRow,
}

#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// A LIKE pattern, already escaped.
    pub email_like: Option<String>,
    pub role_bits: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    pub name: Option<String>,
    pub country: Option<Option<String>>,
    pub phone_enc: Option<Option<String>>,
    pub address_enc: Option<Option<String>>,
}

/// The SQL of accounts and sessions. Reads use the reader pool; every write is one step of the
/// caller's unit of work (the rules that tie steps together live in the service).
#[async_trait::async_trait]
pub trait AccountRepo: Send + Sync {
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>, StoreError>;
    async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, StoreError>;
    /// Whether a token is unspent and unexpired (a cheap look before costly work).
    async fn token_live(&self, hash: &str, purpose: TokenPurpose, now: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn session_state(&self, session_id: &str, user_id: &str, now: DateTime<Utc>) -> Result<Option<SessionState>, StoreError>;
    async fn list_sessions(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SessionRow>, StoreError>;
    async fn list_users(&self, filter: &UserFilter, after: Option<&str>, limit: u32) -> Result<Vec<UserRow>, StoreError>;

    /// `Conflict { constraint: unique::USER_EMAIL }` when the email is taken.
    async fn insert_user(&self, tx: &mut Tx, user: &UserRow) -> Result<(), StoreError>;
    /// The account as this transaction sees it (after its own writes).
    async fn user_in(&self, tx: &mut Tx, id: &str) -> Result<Option<UserRow>, StoreError>;
    /// Like `user_in`, with the row locked until the unit of work ends (a no-op update locks it on
    /// PostgreSQL; SQLite's one writer holds the database already): what a change is compared
    /// with stays what it replaces.
    async fn lock_user(&self, tx: &mut Tx, id: &str) -> Result<Option<UserRow>, StoreError>;
    /// False when the account is deleted.
    async fn update_profile(&self, tx: &mut Tx, user_id: &str, update: &ProfileUpdate, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Changes roles and/or the disabled flag; false when the account is deleted or unknown.
    async fn set_roles_and_disabled(
        &self,
        tx: &mut Tx,
        user_id: &str,
        roles: Option<i64>,
        disabled: Option<bool>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Sets the password hash of an account that can sign in; false when it is deleted or disabled.
    async fn set_password_hash(&self, tx: &mut Tx, user_id: &str, hash: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn mark_email_verified(&self, tx: &mut Tx, user_id: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Replaces personal data with placeholders, turns MFA off, removes its passkeys and marks the
    /// account deleted and disabled.
    async fn erase_user(&self, tx: &mut Tx, user_id: &str, placeholder_email: &str, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Stores a single-use token; an older live token of the same purpose stops working.
    async fn issue_token(&self, tx: &mut Tx, token: &NewAccountToken) -> Result<(), StoreError>;
    /// Spends a live token; returns its user (`None`: unknown, spent or expired).
    async fn consume_token(&self, tx: &mut Tx, hash: &str, purpose: TokenPurpose, now: DateTime<Utc>)
    -> Result<Option<String>, StoreError>;
    /// Spends every live token of the user.
    async fn void_tokens(&self, tx: &mut Tx, user_id: &str, now: DateTime<Utc>) -> Result<(), StoreError>;

    async fn set_totp_pending(&self, tx: &mut Tx, user_id: &str, sealed: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Makes `sealed` the active secret, with `step` as its last used time step.
    async fn enable_totp(&self, tx: &mut Tx, user_id: &str, sealed: &str, step: i64, now: DateTime<Utc>) -> Result<(), StoreError>;
    async fn disable_totp(&self, tx: &mut Tx, user_id: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Replaces the user's recovery codes with `hashes` (none: the user has no codes).
    async fn replace_recovery_codes(&self, tx: &mut Tx, user_id: &str, hashes: &[String]) -> Result<(), StoreError>;
    /// Records `step` as used; false when it (or a later one) was used already (replay).
    async fn use_totp_step(&self, tx: &mut Tx, user_id: &str, step: i64) -> Result<bool, StoreError>;
    async fn use_recovery_code(&self, tx: &mut Tx, user_id: &str, hash: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// How many ways the account has to sign in: a password, each passkey, each provider identity. Removing one is refused
    /// when it is the last (counted inside the unit of work that removes it).
    async fn sign_in_methods(&self, tx: &mut Tx, user_id: &str) -> Result<i64, StoreError>;

    async fn insert_session(&self, tx: &mut Tx, session: &NewSession) -> Result<(), StoreError>;
    /// Marks a refresh token spent. Of concurrent presenters exactly one gets true; false when
    /// it was spent already or is unknown.
    async fn spend_refresh(&self, tx: &mut Tx, hash: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// The session a refresh token belongs to, whatever state either is in.
    async fn refresh_owner(&self, tx: &mut Tx, hash: &str) -> Result<Option<String>, StoreError>;
    /// (session id, user id) when the token's session is unrevoked, unexpired and its account enabled.
    async fn live_refresh_session(&self, tx: &mut Tx, hash: &str, now: DateTime<Utc>) -> Result<Option<(String, String)>, StoreError>;
    /// Gives a session its next refresh token, client details and expiry.
    async fn renew_session(&self, tx: &mut Tx, session_id: &str, next: &Renewal) -> Result<(), StoreError>;
    /// Revokes a live session (only if `owner`'s, when given); false when there was none.
    async fn revoke_session(&self, tx: &mut Tx, session_id: &str, owner: Option<&str>, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Revokes every live session of the user but `except`.
    async fn revoke_sessions(&self, tx: &mut Tx, user_id: &str, except: Option<&str>, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// The account repository of `store`'s backend.
pub fn for_store(store: &Store) -> Arc<dyn AccountRepo> {
    struct Accounts;
    impl Build for Accounts {
        type Output = Arc<dyn AccountRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlAccounts { db })
        }
    }
    store.build(Accounts)
}

struct SqlAccounts<DB: Backend> {
    db: Db<DB>,
}

/// `SELECT <every user column> FROM users <tail>` as one static string.
macro_rules! select_users {
    ($tail:literal) => {
        concat!(
            "SELECT id, email, email_verified, name, password_hash, roles, country, phone_enc, address_enc, mfa_enabled, disabled, created_at, totp_secret_enc, totp_pending_enc FROM users ",
            $tail
        )
    };
}

fn user_from<R: Columns>(r: &R) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        id: r.text("id")?,
        email: r.text("email")?,
        email_verified: r.flag("email_verified")?,
        name: r.text("name")?,
        password_hash: r.text("password_hash")?,
        roles: r.int("roles")?,
        country: r.opt_text("country")?,
        phone_enc: r.opt_text("phone_enc")?,
        address_enc: r.opt_text("address_enc")?,
        mfa_enabled: r.flag("mfa_enabled")?,
        disabled: r.flag("disabled")?,
        created_at: r.time("created_at")?,
        totp_secret_enc: r.opt_text("totp_secret_enc")?,
        totp_pending_enc: r.opt_text("totp_pending_enc")?,
    })
}

fn insert_token<DB: Backend>(t: &NewAccountToken) -> [Sql<DB>; 2] {
    [
        // A new token of a purpose replaces the user's earlier ones.
        Sql::new("UPDATE account_tokens SET used_at = $3 WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL")
            .bind(t.user_id.as_str())
            .bind(t.purpose.as_str())
            .bind(t.now),
        Sql::new("INSERT INTO account_tokens (token_hash, user_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(t.hash.as_str())
            .bind(t.user_id.as_str())
            .bind(t.purpose.as_str())
            .bind(t.now)
            .bind(t.expires_at),
    ]
}

fn insert_session<DB: Backend>(s: &NewSession) -> [Sql<DB>; 2] {
    let t = &s.token;
    [
        Sql::new(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, ip, user_agent) VALUES ($1, $2, $3, $3, $4, $5, $6)",
        )
        .bind(s.id.as_str())
        .bind(s.user_id.as_str())
        .bind(t.now)
        .bind(t.expires_at)
        .bind(t.ip.clone())
        .bind(t.user_agent.clone()),
        Sql::new("INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)")
            .bind(t.refresh_hash.as_str())
            .bind(s.id.as_str())
            .bind(t.now),
    ]
}

const SELECT_USER_SQL: &str = select_users!("WHERE id = $1");

#[async_trait::async_trait]
impl<DB: Backend> AccountRepo for SqlAccounts<DB> {
    async fn token_live(&self, hash: &str, purpose: TokenPurpose, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut conn = self.db.reader().await?;
        let row = Sql::<DB>::new(
            "SELECT 1 AS live FROM account_tokens WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(hash)
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&mut conn)
        .await?;
        Ok(row.is_some())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>, StoreError> {
        const SQL: &str = select_users!("WHERE email = $1");
        let mut conn = self.db.reader().await?;
        let row = Sql::<DB>::new(SQL).bind(email).fetch_optional(&mut conn).await?;
        row.as_ref().map(user_from).transpose()
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        let mut conn = self.db.reader().await?;
        let row = Sql::<DB>::new(SELECT_USER_SQL).bind(id).fetch_optional(&mut conn).await?;
        row.as_ref().map(user_from).transpose()
    }

    async fn session_state(&self, session_id: &str, user_id: &str, now: DateTime<Utc>) -> Result<Option<SessionState>, StoreError> {
        let mut conn = self.db.reader().await?;
        let row = Sql::<DB>::new(
            "SELECT s.revoked_at AS session_revoked_at, s.expires_at AS session_expires_at, u.* FROM sessions s \
             JOIN users u ON u.id = s.user_id WHERE s.id = $1 AND s.user_id = $2",
        )
        .bind(session_id)
        .bind(user_id)
        .fetch_optional(&mut conn)
        .await?;
        row.map(|r| {
            let user = user_from(&r)?;
            let expires_at = r.time("session_expires_at")?;
            let usable = r.opt_time("session_revoked_at")?.is_none() && expires_at > now && !user.disabled;
            Ok(SessionState { usable, expires_at, user })
        })
        .transpose()
    }

    async fn list_sessions(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new(
            "SELECT id, created_at, last_used_at, ip, user_agent FROM sessions \
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND ($3 IS NULL OR id > $3) ORDER BY id LIMIT $4",
        )
        .bind(user_id)
        .bind(now)
        .bind(after.map(str::to_owned))
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SessionRow {
                    id: r.text("id")?,
                    created_at: r.time("created_at")?,
                    last_used_at: r.time("last_used_at")?,
                    ip: r.opt_text("ip")?,
                    user_agent: r.opt_text("user_agent")?,
                })
            })
            .collect()
    }

    async fn list_users(&self, filter: &UserFilter, after: Option<&str>, limit: u32) -> Result<Vec<UserRow>, StoreError> {
        const SQL: &str = select_users!(
            "WHERE ($1 IS NULL OR email LIKE $1 ESCAPE '\\') AND ($2 IS NULL OR (roles & $2) <> 0) AND ($3 IS NULL OR id > $3) ORDER BY id LIMIT $4"
        );
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new(SQL)
            .bind(filter.email_like.clone())
            .bind(filter.role_bits)
            .bind(after.map(str::to_owned))
            .bind(i64::from(limit) + 1)
            .fetch_all(&mut conn)
            .await?;
        rows.iter().map(user_from).collect()
    }

    async fn insert_user(&self, tx: &mut Tx, u: &UserRow) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "INSERT INTO users (id, email, email_verified, name, password_hash, roles, country, mfa_enabled, disabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(u.id.as_str())
        .bind(u.email.as_str())
        .bind(u.email_verified)
        .bind(u.name.as_str())
        .bind(u.password_hash.as_str())
        .bind(u.roles)
        .bind(u.country.clone())
        .bind(u.mfa_enabled)
        .bind(u.disabled)
        .bind(u.created_at)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }

    async fn user_in(&self, tx: &mut Tx, id: &str) -> Result<Option<UserRow>, StoreError> {
        let row = Sql::<DB>::new(SELECT_USER_SQL).bind(id).fetch_optional(tx.conn::<DB>()?).await?;
        row.as_ref().map(user_from).transpose()
    }

    async fn lock_user(&self, tx: &mut Tx, id: &str) -> Result<Option<UserRow>, StoreError> {
        Sql::<DB>::new("UPDATE users SET roles = roles WHERE id = $1").bind(id).execute(tx.conn::<DB>()?).await?;
        self.user_in(tx, id).await
    }

    async fn update_profile(&self, tx: &mut Tx, user_id: &str, u: &ProfileUpdate, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new(
            "UPDATE users SET name = COALESCE($2, name), \
             country = CASE WHEN $3 THEN $4 ELSE country END, \
             phone_enc = CASE WHEN $5 THEN $6 ELSE phone_enc END, \
             address_enc = CASE WHEN $7 THEN $8 ELSE address_enc END, \
             updated_at = $9 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(user_id)
        .bind(u.name.clone())
        .bind(u.country.is_some())
        .bind(u.country.clone().flatten())
        .bind(u.phone_enc.is_some())
        .bind(u.phone_enc.clone().flatten())
        .bind(u.address_enc.is_some())
        .bind(u.address_enc.clone().flatten())
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(n == 1)
    }

    async fn set_roles_and_disabled(
        &self,
        tx: &mut Tx,
        user_id: &str,
        roles: Option<i64>,
        disabled: Option<bool>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new(
            "UPDATE users SET roles = COALESCE($2, roles), disabled = COALESCE($3, disabled), updated_at = $4 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(user_id)
        .bind(roles)
        .bind(disabled)
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(n == 1)
    }

    async fn set_password_hash(&self, tx: &mut Tx, user_id: &str, hash: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new(
            "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1 AND deleted_at IS NULL AND disabled = FALSE",
        )
        .bind(user_id)
        .bind(hash)
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(n == 1)
    }

    async fn mark_email_verified(&self, tx: &mut Tx, user_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        Sql::<DB>::new("UPDATE users SET email_verified = TRUE, updated_at = $2 WHERE id = $1")
            .bind(user_id)
            .bind(now)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(())
    }

    async fn erase_user(&self, tx: &mut Tx, user_id: &str, placeholder_email: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let conn = tx.conn::<DB>()?;
        // A passkey's name ("Ada's phone") is personal data, and the account signs in no more.
        Sql::<DB>::new("DELETE FROM passkeys WHERE user_id = $1").bind(user_id).execute(conn).await?;
        Sql::<DB>::new(
            "UPDATE users SET email = $2, name = 'Deleted user', password_hash = '', country = NULL, phone_enc = NULL, \
             address_enc = NULL, mfa_enabled = FALSE, totp_secret_enc = NULL, totp_pending_enc = NULL, totp_last_step = NULL, \
             disabled = TRUE, deleted_at = $3, updated_at = $3 WHERE id = $1",
        )
        .bind(user_id)
        .bind(placeholder_email)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn issue_token(&self, tx: &mut Tx, token: &NewAccountToken) -> Result<(), StoreError> {
        let conn = tx.conn::<DB>()?;
        for stmt in insert_token::<DB>(token) {
            stmt.execute(conn).await?;
        }
        Ok(())
    }

    async fn consume_token(
        &self,
        tx: &mut Tx,
        hash: &str,
        purpose: TokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let row = Sql::<DB>::new(
            "UPDATE account_tokens SET used_at = $3 WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3 RETURNING user_id",
        )
        .bind(hash)
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(tx.conn::<DB>()?)
        .await?;
        row.map(|r| r.text("user_id")).transpose()
    }

    async fn void_tokens(&self, tx: &mut Tx, user_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        Sql::<DB>::new("UPDATE account_tokens SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL")
            .bind(user_id)
            .bind(now)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(())
    }

    async fn set_totp_pending(&self, tx: &mut Tx, user_id: &str, sealed: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        Sql::<DB>::new("UPDATE users SET totp_pending_enc = $2, updated_at = $3 WHERE id = $1")
            .bind(user_id)
            .bind(sealed)
            .bind(now)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(())
    }

    async fn enable_totp(&self, tx: &mut Tx, user_id: &str, sealed: &str, step: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "UPDATE users SET totp_secret_enc = $2, totp_pending_enc = NULL, totp_last_step = $3, mfa_enabled = TRUE, updated_at = $4 WHERE id = $1",
        )
        .bind(user_id)
        .bind(sealed)
        .bind(step)
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }

    async fn disable_totp(&self, tx: &mut Tx, user_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "UPDATE users SET totp_secret_enc = NULL, totp_pending_enc = NULL, totp_last_step = NULL, mfa_enabled = FALSE, updated_at = $2 WHERE id = $1",
        )
        .bind(user_id)
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }

    async fn replace_recovery_codes(&self, tx: &mut Tx, user_id: &str, hashes: &[String]) -> Result<(), StoreError> {
        let conn = tx.conn::<DB>()?;
        Sql::<DB>::new("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id).execute(conn).await?;
        for hash in hashes {
            Sql::<DB>::new("INSERT INTO recovery_codes (code_hash, user_id) VALUES ($1, $2)")
                .bind(hash.as_str())
                .bind(user_id)
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    async fn use_totp_step(&self, tx: &mut Tx, user_id: &str, step: i64) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new(
            "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND mfa_enabled = TRUE AND (totp_last_step IS NULL OR totp_last_step < $2)",
        )
        .bind(user_id)
        .bind(step)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(n == 1)
    }

    async fn use_recovery_code(&self, tx: &mut Tx, user_id: &str, hash: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new("UPDATE recovery_codes SET used_at = $3 WHERE code_hash = $1 AND user_id = $2 AND used_at IS NULL")
            .bind(hash)
            .bind(user_id)
            .bind(now)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(n == 1)
    }

    async fn sign_in_methods(&self, tx: &mut Tx, user_id: &str) -> Result<i64, StoreError> {
        let row = Sql::<DB>::new(
            "SELECT (SELECT COUNT(*) FROM users WHERE id = $1 AND password_hash <> '') \
             + (SELECT COUNT(*) FROM passkeys WHERE user_id = $1) \
             + (SELECT COUNT(*) FROM identities WHERE user_id = $1) AS methods",
        )
        .bind(user_id)
        .fetch_one(tx.conn::<DB>()?)
        .await?;
        row.int("methods")
    }

    async fn insert_session(&self, tx: &mut Tx, session: &NewSession) -> Result<(), StoreError> {
        let conn = tx.conn::<DB>()?;
        for stmt in insert_session::<DB>(session) {
            stmt.execute(conn).await?;
        }
        Ok(())
    }

    async fn spend_refresh(&self, tx: &mut Tx, hash: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new("UPDATE refresh_tokens SET spent_at = $2 WHERE token_hash = $1 AND spent_at IS NULL")
            .bind(hash)
            .bind(now)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(n == 1)
    }

    async fn refresh_owner(&self, tx: &mut Tx, hash: &str) -> Result<Option<String>, StoreError> {
        let row = Sql::<DB>::new("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(tx.conn::<DB>()?)
            .await?;
        row.map(|r| r.text("session_id")).transpose()
    }

    async fn live_refresh_session(&self, tx: &mut Tx, hash: &str, now: DateTime<Utc>) -> Result<Option<(String, String)>, StoreError> {
        let row = Sql::<DB>::new(
            "SELECT s.id, s.user_id FROM refresh_tokens r \
             JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id \
             WHERE r.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND u.disabled = FALSE",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(tx.conn::<DB>()?)
        .await?;
        row.map(|r| Ok((r.text("id")?, r.text("user_id")?))).transpose()
    }

    async fn renew_session(&self, tx: &mut Tx, session_id: &str, next: &Renewal) -> Result<(), StoreError> {
        let conn = tx.conn::<DB>()?;
        Sql::<DB>::new("INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)")
            .bind(next.refresh_hash.as_str())
            .bind(session_id)
            .bind(next.now)
            .execute(conn)
            .await?;
        Sql::<DB>::new("UPDATE sessions SET last_used_at = $2, expires_at = $3, ip = $4, user_agent = $5 WHERE id = $1")
            .bind(session_id)
            .bind(next.now)
            .bind(next.expires_at)
            .bind(next.ip.clone())
            .bind(next.user_agent.clone())
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn revoke_session(&self, tx: &mut Tx, session_id: &str, owner: Option<&str>, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new("UPDATE sessions SET revoked_at = $3 WHERE id = $1 AND ($2 IS NULL OR user_id = $2) AND revoked_at IS NULL")
            .bind(session_id)
            .bind(owner.map(str::to_owned))
            .bind(now)
            .execute(tx.conn::<DB>()?)
            .await?;
        Ok(n == 1)
    }

    async fn revoke_sessions(&self, tx: &mut Tx, user_id: &str, except: Option<&str>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Sql::<DB>::new("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL AND ($3 IS NULL OR id <> $3)")
            .bind(user_id)
            .bind(now)
            .bind(except.map(str::to_owned))
            .execute(tx.conn::<DB>()?)
            .await
    }
}
