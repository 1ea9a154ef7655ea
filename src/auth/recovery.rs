//! Flows that go through the mailbox: email verification and password reset.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::error::AuthError;
use super::model::{Email, Password};
use super::repo::{NewAccountToken, TokenPurpose};
use super::service::{Accounts, Principal};
use super::social::drop_unproven_identities;
use crate::events::{Effects, EventType};
use crate::jobs::{Completion, Done, Job, JobHandler, NewJob};
use crate::notify::mail::mail_job;
use crate::notify::templates::Template;
use crate::security::audit::{Action, Actor, NewEntry, Origin};
use crate::security::{random_token, sha256_hex};
use crate::store::{StoreError, Tx, now};
use crate::validation::Invalid;

const VERIFY_TTL: TimeDelta = TimeDelta::hours(24);
const RESET_TTL: TimeDelta = TimeDelta::minutes(30);
pub const RESET_REQUEST_KIND: &str = "auth.password_reset_request";
const RESET_REQUEST_COLUMN: &str = "jobs.password_reset_request";

fn bad_token() -> AuthError {
    Invalid::one("token", "invalid", "the token is invalid, expired or already used").into()
}

impl Accounts {
    /// A fresh single-use token for `user_id` and the job that mails it.
    pub(super) fn mailed_token(
        &self,
        user_id: &str,
        email: &str,
        name: &str,
        purpose: TokenPurpose,
        at: DateTime<Utc>,
    ) -> (NewAccountToken, NewJob) {
        let raw = random_token();
        let (ttl, template) = match purpose {
            TokenPurpose::VerifyEmail => (VERIFY_TTL, Template::VerifyEmail),
            TokenPurpose::ResetPassword => (RESET_TTL, Template::ResetPassword),
        };
        let token =
            NewAccountToken { hash: sha256_hex(raw.as_bytes()), user_id: user_id.to_owned(), purpose, now: at, expires_at: at + ttl };
        let mail = mail_job(&self.cipher, email, template, &json!({"name": name, "token": raw}));
        let mail = match purpose {
            // One verification mail waits at a time (the key holds while its job is unsent).
            TokenPurpose::VerifyEmail => mail.unique(format!("verify-email:{user_id}")),
            TokenPurpose::ResetPassword => mail,
        };
        (token, mail)
    }

    /// Mails a new verification link (the previous one stops working), unless one is still
    /// waiting to be sent: its link is the one to use, and a second mail would only void it.
    pub async fn resend_verification(&self, who: &Principal) -> Result<(), AuthError> {
        let row = self.user_row(&who.user_id).await?;
        if row.email_verified {
            return Ok(());
        }
        let (token, mail) = self.mailed_token(&row.id, &row.email, &row.name, TokenPurpose::VerifyEmail, now());
        let (token, mail) = (&token, &mail);
        self.transact(|mut tx| async move {
            // The job goes first: when a live one holds its unique key, no token is issued.
            if self.jobs.repo().enqueue(&mut tx, mail, token.now).await?.is_some() {
                self.repo.issue_token(&mut tx, token).await?;
            }
            Ok::<_, StoreError>((tx, ()))
        })
        .await?;
        self.jobs.wake().notify_one();
        Ok(())
    }

    /// Stores `token` and enqueues the job that mails it, as steps of the caller's unit of work.
    pub(super) async fn issue_mailed_token(&self, tx: &mut Tx, token: &NewAccountToken, mail: NewJob) -> Result<(), StoreError> {
        self.repo.issue_token(tx, token).await?;
        Effects::default().job(mail).write(tx, token.now).await
    }

    /// Marks the email verified with the mailed token. Identities its owner did not prove go
    /// (`social::drop_unproven_identities`), and with them every session.
    pub async fn verify_email(&self, token: &str, origin: Origin) -> Result<(), AuthError> {
        let hash = sha256_hex(token.as_bytes());
        let (hash, origin) = (hash.as_str(), &origin);
        self.transact(|mut tx| async move {
            let Some(user_id) = self.repo.consume_token(&mut tx, hash, TokenPurpose::VerifyEmail, now()).await? else {
                return Err(bad_token());
            };
            if self.mailbox_proven(&mut tx, &user_id, origin).await? > 0 {
                self.repo.revoke_sessions(&mut tx, &user_id, None, now()).await?;
            }
            self.repo.mark_email_verified(&mut tx, &user_id, now()).await?;
            Effects::default().event(EventType::AccountEmailVerified, &user_id, json!({})).write(&mut tx, now()).await?;
            Ok((tx, ()))
        })
        .await
    }

    /// Accepts a reset request without revealing whether the account exists: the lookup
    /// and the mail happen in a job, so every answer takes the same path.
    pub async fn request_password_reset(&self, email: &Email) -> Result<(), AuthError> {
        let sealed = self.cipher.encrypt(RESET_REQUEST_COLUMN, email.as_str());
        let job = NewJob::new(RESET_REQUEST_KIND, json!({ "email": sealed })).on_queue("mail").attempts(5);
        self.jobs.enqueue(&job).await?;
        Ok(())
    }

    /// The job's half of a reset request: mail a token if the account can sign in. The token,
    /// its mail job and the request job's completion commit together, so a request that ran
    /// once cannot run again and mail a second token (which would void the first link).
    async fn send_password_reset(&self, sealed_email: &str, completion: Completion) -> anyhow::Result<Done> {
        let email = self.cipher.decrypt(RESET_REQUEST_COLUMN, sealed_email)?;
        let row = self.repo.user_by_email(&email).await?.filter(|row| !row.disabled);
        let Some(row) = row else { return completion.done().await };
        let (token, mail) = self.mailed_token(&row.id, &row.email, &row.name, TokenPurpose::ResetPassword, now());
        let (token, mail) = (&token, &mail);
        let (done, ()) = completion
            .finish(|mut tx| async move {
                self.issue_mailed_token(&mut tx, token, mail.clone()).await?;
                Ok((tx, ()))
            })
            .await?;
        Ok(done)
    }

    /// Sets a new password with a mailed token; every session of the account is revoked.
    pub async fn reset_password(&self, token: &str, new_password: &str, origin: Origin) -> Result<(), AuthError> {
        let password = Password::parse("new_password", new_password, None)?;
        let token_hash = sha256_hex(token.as_bytes());
        // Hash the password (the costly part) only for a token that can succeed; spending it
        // below is still the one atomic check.
        if !self.repo.token_live(&token_hash, TokenPurpose::ResetPassword, now()).await? {
            return Err(bad_token());
        }
        let hash = self.hasher.hash(password.expose()).await?;
        let (token_hash, hash, origin) = (token_hash.as_str(), hash.as_str(), &origin);
        self.transact(|mut tx| async move {
            let Some(user_id) = self.repo.consume_token(&mut tx, token_hash, TokenPurpose::ResetPassword, now()).await? else {
                return Err(bad_token());
            };
            self.mailbox_proven(&mut tx, &user_id, origin).await?;
            if !self.repo.set_password_hash(&mut tx, &user_id, hash, now()).await? {
                return Err(bad_token());
            }
            // Whoever knew the old password, or came in through a removed identity, is signed
            // out everywhere.
            self.repo.revoke_sessions(&mut tx, &user_id, None, now()).await?;
            // The token's holder acts as its account.
            Effects::default()
                .event(EventType::AccountPasswordReset, &user_id, json!({}))
                .audit(NewEntry::new(Action::PasswordReset, &Actor::user(&user_id, origin.clone())).target(&user_id))
                .write(&mut tx, now())
                .await?;
            Ok((tx, ()))
        })
        .await
    }

    /// The holder of a mailed token proved the account's mailbox: the identities they did not
    /// prove are removed (reverse hijack); how many.
    async fn mailbox_proven(&self, tx: &mut Tx, user_id: &str, origin: &Origin) -> Result<usize, StoreError> {
        let Some(account) = self.repo.lock_user(tx, user_id).await? else { return Ok(0) };
        drop_unproven_identities(self.identities.as_ref(), tx, &account, &Actor::user(user_id, origin.clone()), now()).await
    }
}

/// Runs reset requests enqueued by `request_password_reset`.
pub struct PasswordResetRequests(pub std::sync::Arc<Accounts>);

#[async_trait::async_trait]
impl JobHandler for PasswordResetRequests {
    fn kind(&self) -> &'static str {
        RESET_REQUEST_KIND
    }

    async fn run(&self, job: &Job, completion: Completion) -> anyhow::Result<Done> {
        let sealed = job.payload.get("email").and_then(|v| v.as_str()).ok_or_else(|| anyhow::anyhow!("payload has no email"))?;
        self.0.send_password_reset(sealed, completion).await
    }
}
