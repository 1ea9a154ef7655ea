//! SQL of social login (identities, sign-in states, login codes), written once for both backends.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::model::Holder;
use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx};

/// An identity at a provider, linked to an account.
#[derive(Debug, Clone)]
pub struct IdentityRow {
    pub id: String,
    pub user_id: String,
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    /// Whether the provider verified `email` when the identity was linked.
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

/// A sign-in on its way to the provider, stored under the hash of its `state`.
#[derive(Debug, Clone)]
pub struct StateRow {
    pub state_hash: String,
    pub provider: String,
    /// The PKCE verifier, sealed.
    pub verifier_enc: String,
    pub nonce_hash: String,
    pub redirect_to: String,
    /// The hash of the browser binding (the `keel_oauth_state` cookie) of the browser that started it.
    pub browser_hash: String,
    /// Set when a signed-in account links an identity (rather than someone signing in).
    pub link_user_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A signed-in account's linking on its way to Keel's authorize route, stored as its token's hash.
#[derive(Debug, Clone)]
pub struct LinkTokenRow {
    pub token_hash: String,
    pub user_id: String,
    pub provider: String,
    pub redirect_to: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What `SocialRepo::remove_other_sign_in_methods` removed, for the take-over's audit entry.
#[derive(Debug, Clone, Copy)]
pub struct RemovedMethods {
    pub identities: u64,
    pub passkeys: u64,
}

/// A one-time login code, stored as its hash.
#[derive(Debug, Clone)]
pub struct NewLoginCode {
    pub code_hash: String,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[async_trait::async_trait]
pub trait SocialRepo: Send + Sync {
    /// The caller's identities, oldest first.
    async fn list_identities(&self, user_id: &str, after: Option<&str>, limit: u32) -> Result<Vec<IdentityRow>, StoreError>;

    /// Stores a started sign-in (and forgets expired ones).
    async fn insert_state(&self, tx: &mut Tx, state: &StateRow) -> Result<(), StoreError>;
    /// Spends a live state of `provider` started by the browser with `browser_hash`; `None`:
    /// unknown, spent, expired, another provider's or another browser's (then left unspent).
    async fn take_state(
        &self,
        tx: &mut Tx,
        state_hash: &str,
        provider: &str,
        browser_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StateRow>, StoreError>;

    /// Stores a link token (and forgets expired ones).
    async fn insert_link_token(&self, tx: &mut Tx, token: &LinkTokenRow) -> Result<(), StoreError>;
    /// Spends a live link token of `provider`: the account and app URL of its linking.
    async fn take_link_token(
        &self,
        tx: &mut Tx,
        token_hash: &str,
        provider: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, String)>, StoreError>;

    /// The account holding the identity (issuer, subject), if any.
    async fn identity_owner(&self, tx: &mut Tx, issuer: &str, subject: &str) -> Result<Option<Holder>, StoreError>;
    /// The live account with this (normalised) email.
    async fn email_holder(&self, tx: &mut Tx, email: &str) -> Result<Option<Holder>, StoreError>;
    /// `Conflict { constraint: unique::IDENTITY }` when the identity is linked already.
    async fn insert_identity(&self, tx: &mut Tx, identity: &IdentityRow) -> Result<(), StoreError>;
    /// Every identity of the account, in the unit of work.
    async fn identities_in(&self, tx: &mut Tx, user_id: &str) -> Result<Vec<IdentityRow>, StoreError>;
    /// The take-over's removal of every way into the account besides its password (which the
    /// take-over clears itself): its identities and its passkeys. Every new sign-in method
    /// belongs here too.
    async fn remove_other_sign_in_methods(&self, tx: &mut Tx, user_id: &str) -> Result<RemovedMethods, StoreError>;
    /// Removes one of the account's identities; the removed row, or `None` when it has no such.
    async fn delete_identity(&self, tx: &mut Tx, id: &str, user_id: &str) -> Result<Option<IdentityRow>, StoreError>;

    /// Stores a login code (and forgets expired ones).
    async fn insert_login_code(&self, tx: &mut Tx, code: &NewLoginCode) -> Result<(), StoreError>;
    /// Spends a live code; its account, or `None` when it is unknown, spent or expired.
    async fn claim_login_code(&self, tx: &mut Tx, code_hash: &str, now: DateTime<Utc>) -> Result<Option<String>, StoreError>;
    /// Gives a claimed code back after a refused second factor, unless it has had `max_attempts`.
    async fn release_login_code(&self, tx: &mut Tx, code_hash: &str, max_attempts: i64) -> Result<(), StoreError>;
}

pub fn for_store(store: &Store) -> Arc<dyn SocialRepo> {
    struct Social;
    impl Build for Social {
        type Output = Arc<dyn SocialRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlSocial { db })
        }
    }
    store.build(Social)
}

struct SqlSocial<DB: Backend> {
    db: Db<DB>,
}

fn identity_from<R: Columns>(r: &R) -> Result<IdentityRow, StoreError> {
    Ok(IdentityRow {
        id: r.text("id")?,
        user_id: r.text("user_id")?,
        provider: r.text("provider")?,
        issuer: r.text("issuer")?,
        subject: r.text("subject")?,
        email: r.opt_text("email")?,
        email_verified: r.flag("email_verified")?,
        created_at: r.time("created_at")?,
    })
}

fn holder_from<R: Columns>(r: &R) -> Result<Holder, StoreError> {
    Ok(Holder { id: r.text("id")?, email_verified: r.flag("email_verified")?, disabled: r.flag("disabled")? })
}

#[async_trait::async_trait]
impl<DB: Backend> SocialRepo for SqlSocial<DB> {
    async fn list_identities(&self, user_id: &str, after: Option<&str>, limit: u32) -> Result<Vec<IdentityRow>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new(
            "SELECT id, user_id, provider, issuer, subject, email, email_verified, created_at FROM identities \
             WHERE user_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
        )
        .bind(user_id)
        .bind(after.map(str::to_owned))
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut conn)
        .await?;
        rows.iter().map(identity_from).collect()
    }

    async fn insert_state(&self, tx: &mut Tx, s: &StateRow) -> Result<(), StoreError> {
        let conn = tx.conn::<DB>()?;
        Sql::<DB>::new("DELETE FROM oauth_states WHERE expires_at < $1").bind(s.created_at).execute(conn).await?;
        Sql::<DB>::new(
            "INSERT INTO oauth_states \
             (state_hash, provider, verifier_enc, nonce_hash, redirect_to, browser_hash, link_user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(s.state_hash.as_str())
        .bind(s.provider.as_str())
        .bind(s.verifier_enc.as_str())
        .bind(s.nonce_hash.as_str())
        .bind(s.redirect_to.as_str())
        .bind(s.browser_hash.as_str())
        .bind(s.link_user_id.clone())
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn take_state(
        &self,
        tx: &mut Tx,
        state_hash: &str,
        provider: &str,
        browser_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StateRow>, StoreError> {
        let row = Sql::<DB>::new(
            "UPDATE oauth_states SET used_at = $3 \
             WHERE state_hash = $1 AND provider = $2 AND browser_hash = $4 AND used_at IS NULL AND expires_at > $3 \
             RETURNING state_hash, provider, verifier_enc, nonce_hash, redirect_to, browser_hash, link_user_id, created_at, expires_at",
        )
        .bind(state_hash)
        .bind(provider)
        .bind(now)
        .bind(browser_hash)
        .fetch_optional(tx.conn::<DB>()?)
        .await?;
        row.map(|r| {
            Ok(StateRow {
                state_hash: r.text("state_hash")?,
                provider: r.text("provider")?,
                verifier_enc: r.text("verifier_enc")?,
                nonce_hash: r.text("nonce_hash")?,
                redirect_to: r.text("redirect_to")?,
                browser_hash: r.text("browser_hash")?,
                link_user_id: r.opt_text("link_user_id")?,
                created_at: r.time("created_at")?,
                expires_at: r.time("expires_at")?,
            })
        })
        .transpose()
    }

    async fn insert_link_token(&self, tx: &mut Tx, t: &LinkTokenRow) -> Result<(), StoreError> {
        let conn = tx.conn::<DB>()?;
        Sql::<DB>::new("DELETE FROM oauth_link_tokens WHERE expires_at < $1").bind(t.created_at).execute(conn).await?;
        Sql::<DB>::new(
            "INSERT INTO oauth_link_tokens (token_hash, user_id, provider, redirect_to, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(t.token_hash.as_str())
        .bind(t.user_id.as_str())
        .bind(t.provider.as_str())
        .bind(t.redirect_to.as_str())
        .bind(t.created_at)
        .bind(t.expires_at)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn take_link_token(
        &self,
        tx: &mut Tx,
        token_hash: &str,
        provider: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = Sql::<DB>::new(
            "UPDATE oauth_link_tokens SET used_at = $3 \
             WHERE token_hash = $1 AND provider = $2 AND used_at IS NULL AND expires_at > $3 RETURNING user_id, redirect_to",
        )
        .bind(token_hash)
        .bind(provider)
        .bind(now)
        .fetch_optional(tx.conn::<DB>()?)
        .await?;
        row.map(|r| Ok((r.text("user_id")?, r.text("redirect_to")?))).transpose()
    }

    async fn identity_owner(&self, tx: &mut Tx, issuer: &str, subject: &str) -> Result<Option<Holder>, StoreError> {
        let row = Sql::<DB>::new(
            "SELECT u.id, u.email_verified, u.disabled FROM identities i JOIN users u ON u.id = i.user_id \
             WHERE i.issuer = $1 AND i.subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(tx.conn::<DB>()?)
        .await?;
        row.as_ref().map(holder_from).transpose()
    }

    async fn email_holder(&self, tx: &mut Tx, email: &str) -> Result<Option<Holder>, StoreError> {
        let row = Sql::<DB>::new("SELECT id, email_verified, disabled FROM users WHERE email = $1 AND deleted_at IS NULL")
            .bind(email)
            .fetch_optional(tx.conn::<DB>()?)
            .await?;
        row.as_ref().map(holder_from).transpose()
    }

    async fn insert_identity(&self, tx: &mut Tx, i: &IdentityRow) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "INSERT INTO identities (id, user_id, provider, issuer, subject, email, email_verified, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(i.id.as_str())
        .bind(i.user_id.as_str())
        .bind(i.provider.as_str())
        .bind(i.issuer.as_str())
        .bind(i.subject.as_str())
        .bind(i.email.clone())
        .bind(i.email_verified)
        .bind(i.created_at)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }

    async fn identities_in(&self, tx: &mut Tx, user_id: &str) -> Result<Vec<IdentityRow>, StoreError> {
        let rows = Sql::<DB>::new(
            "SELECT id, user_id, provider, issuer, subject, email, email_verified, created_at FROM identities WHERE user_id = $1 ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(tx.conn::<DB>()?)
        .await?;
        rows.iter().map(identity_from).collect()
    }

    async fn remove_other_sign_in_methods(&self, tx: &mut Tx, user_id: &str) -> Result<RemovedMethods, StoreError> {
        let identities = Sql::<DB>::new("DELETE FROM identities WHERE user_id = $1").bind(user_id).execute(tx.conn::<DB>()?).await?;
        let passkeys = Sql::<DB>::new("DELETE FROM passkeys WHERE user_id = $1").bind(user_id).execute(tx.conn::<DB>()?).await?;
        Ok(RemovedMethods { identities, passkeys })
    }

    async fn delete_identity(&self, tx: &mut Tx, id: &str, user_id: &str) -> Result<Option<IdentityRow>, StoreError> {
        const SQL: &str = "DELETE FROM identities WHERE id = $1 AND user_id = $2 \
                           RETURNING id, user_id, provider, issuer, subject, email, email_verified, created_at";
        let row = Sql::<DB>::new(SQL).bind(id).bind(user_id).fetch_optional(tx.conn::<DB>()?).await?;
        row.as_ref().map(identity_from).transpose()
    }

    async fn insert_login_code(&self, tx: &mut Tx, c: &NewLoginCode) -> Result<(), StoreError> {
        let conn = tx.conn::<DB>()?;
        Sql::<DB>::new("DELETE FROM login_codes WHERE expires_at < $1").bind(c.created_at).execute(conn).await?;
        Sql::<DB>::new("INSERT INTO login_codes (code_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(c.code_hash.as_str())
            .bind(c.user_id.as_str())
            .bind(c.created_at)
            .bind(c.expires_at)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn claim_login_code(&self, tx: &mut Tx, code_hash: &str, now: DateTime<Utc>) -> Result<Option<String>, StoreError> {
        let row = Sql::<DB>::new(
            "UPDATE login_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING user_id",
        )
        .bind(code_hash)
        .bind(now)
        .fetch_optional(tx.conn::<DB>()?)
        .await?;
        row.map(|r| r.text("user_id")).transpose()
    }

    async fn release_login_code(&self, tx: &mut Tx, code_hash: &str, max_attempts: i64) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "UPDATE login_codes SET attempts = attempts + 1, used_at = CASE WHEN attempts + 1 < $2 THEN NULL ELSE used_at END \
             WHERE code_hash = $1",
        )
        .bind(code_hash)
        .bind(max_attempts)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }
}
