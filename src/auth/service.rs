//! Account and session use cases. Each is one repository call (one transaction).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::error::AuthError;
use super::model::{AdminPatch, AdminUser, Email, Me, Password, ProfilePatch, Role, Roles, SessionView, User};
use super::password::Hasher;
use super::repo::{AccountRepo, NewSession, ProfileUpdate, Renewal, TokenPurpose, UserFilter, UserRow};
use super::sessions::SessionCache;
use super::social::repo::SocialRepo;
use super::tokens::TokenSigner;
use crate::events::{Effects, EventType};
use crate::http::pagination::{Page, PageRequest};
use crate::jobs::Jobs;
use crate::notify::mail::{MAIL_KIND, addressed_to_pattern};
use crate::security::audit::{self, Action, Actor, NewEntry, Origin};
use crate::security::crypto::FieldCipher;
use crate::security::{random_token, sha256_hex};
use crate::store::{Store, StoreError, Transient, Tx, now, unique};

pub(crate) const PHONE_COLUMN: &str = "users.phone";
pub(crate) const ADDRESS_COLUMN: &str = "users.address";

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub session_id: String,
    pub roles: Roles,
    /// The account as read when the request was authenticated.
    pub account: Arc<UserRow>,
    /// Where the request came from (set by the `AuthUser` extractor; empty elsewhere).
    pub origin: Origin,
    /// The API key the request came with: it acts for `user_id`, who made it, within its scopes.
    pub api_key: Option<String>,
}

impl Principal {
    /// The caller, as audit entries name them: the person, or the key that acted for them.
    pub fn actor(&self) -> Actor {
        Actor::user(self.api_key.as_deref().unwrap_or(&self.user_id), self.origin.clone())
    }
}

/// Where a session was opened from (its address is shown in the session list), and the request.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub origin: Origin,
    pub user_agent: Option<String>,
}

/// How an account proved who it is when signing in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    Password,
    /// An identity at a social login provider.
    Provider,
    /// A passkey with user verification: something the user has and is (or knows) at once.
    Passkey,
}

impl SignInMethod {
    pub fn name(self) -> &'static str {
        match self {
            SignInMethod::Password => "password",
            SignInMethod::Provider => "provider",
            SignInMethod::Passkey => "passkey",
        }
    }

    /// True when the method is multi-factor on its own, so MFA asks for nothing more.
    pub fn is_second_factor(self) -> bool {
        self == SignInMethod::Passkey
    }
}

/// A freshly issued token pair.
pub struct Issued {
    pub user: Me,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

pub struct NewAccount {
    pub email: Email,
    pub password: Password,
    pub name: String,
}

pub struct Accounts {
    pub(super) store: Store,
    pub(super) repo: Arc<dyn AccountRepo>,
    /// Linked identities, which a proof of the mailbox can remove (`recovery`).
    pub(super) identities: Arc<dyn SocialRepo>,
    pub(super) hasher: Hasher,
    signer: Arc<TokenSigner>,
    pub(super) cipher: Arc<FieldCipher>,
    pub(super) jobs: Jobs,
    refresh_ttl: Duration,
    /// Only where this process is the one that changes accounts (see `super::sessions`).
    sessions: Option<SessionCache>,
}

impl Accounts {
    pub fn new(
        store: Store,
        hasher: Hasher,
        signer: Arc<TokenSigner>,
        cipher: Arc<FieldCipher>,
        jobs: Jobs,
        refresh_ttl: Duration,
    ) -> Self {
        Self {
            repo: super::repo::for_store(&store),
            identities: super::social::repo::for_store(&store),
            store,
            hasher,
            signer,
            cipher,
            jobs,
            refresh_ttl,
            sessions: None,
        }
    }

    /// Remembers live sessions between requests: for a deployment of one instance only, where
    /// every change to accounts and sessions goes through this `Accounts`.
    pub fn remembering_sessions(self) -> Self {
        Self { sessions: Some(SessionCache::default()), ..self }
    }

    /// Runs a unit of work on accounts or sessions (see `Store::transact`); once it is over,
    /// whatever its outcome (a commit that failed to answer may still have committed), no
    /// remembered session is trusted any more.
    pub(super) async fn transact<T, E, Fut>(&self, work: impl FnMut(Tx) -> Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<(Tx, T), E>>,
        E: From<StoreError> + Transient,
    {
        let done = self.store.transact(work).await;
        if let Some(sessions) = &self.sessions {
            sessions.changed();
        }
        done
    }

    pub fn signer(&self) -> &TokenSigner {
        &self.signer
    }

    pub async fn register(&self, account: NewAccount, client: Client) -> Result<Issued, AuthError> {
        let hash = self.hasher.hash(account.password.expose()).await?;
        let row = new_user_row(&account.email, &account.name, hash, Roles::customer(), now());
        let (session, refresh) = self.new_session(&row.id, &client, row.created_at);
        let (token, mail) = self.mailed_token(&row.id, &row.email, &row.name, TokenPurpose::VerifyEmail, row.created_at);
        let (row_ref, session_ref, token, mail) = (&row, &session, &token, &mail);
        // The password was hashed above: the unit of work opens only for the writes.
        self.transact(|mut tx| async move {
            self.insert_user(&mut tx, row_ref).await?;
            self.repo.insert_session(&mut tx, session_ref).await?;
            self.issue_mailed_token(&mut tx, token, mail.clone()).await?;
            Ok::<_, AuthError>((tx, ()))
        })
        .await?;
        self.issue(self.user(row)?, &session.id, refresh)
    }

    /// Signs in; success is audited with the new session, a refusal in a unit of work of its own.
    pub async fn login(&self, email: &Email, password: &str, totp_code: Option<&str>, client: Client) -> Result<Issued, AuthError> {
        let row = self.repo.user_by_email(email.as_str()).await?;
        let account = row.as_ref().map(|r| r.id.clone());
        let refused = match self.sign_in(row, password, totp_code, &client).await {
            Err(e @ (AuthError::InvalidCredentials | AuthError::Disabled | AuthError::MfaRequired)) => e,
            other => return other,
        };
        let reason = match (&refused, &account) {
            (AuthError::InvalidCredentials, None) => "unknown_account",
            (AuthError::InvalidCredentials, Some(_)) => "wrong_password",
            (AuthError::Disabled, _) => "disabled",
            _ => "second_factor",
        };
        let entry = NewEntry::new(Action::LoginFailed, &Actor::anonymous(client.origin));
        let entry = match &account {
            Some(id) => entry.target(id).details(json!({ "reason": reason })),
            // No account to name: a hash of the address tells repeated attempts apart without keeping it.
            None => entry.details(json!({ "reason": reason, "email_sha256": sha256_hex(email.as_str().as_bytes()) })),
        };
        audit::record(&self.store, &entry).await?;
        Err(refused)
    }

    async fn sign_in(&self, row: Option<UserRow>, password: &str, totp_code: Option<&str>, client: &Client) -> Result<Issued, AuthError> {
        // Unknown, deleted and existing accounts all pay for one hash verification.
        let hash = row.as_ref().map(|r| r.password_hash.as_str()).filter(|h| !h.is_empty());
        if !self.hasher.verify(password, hash).await? {
            return Err(AuthError::InvalidCredentials);
        }
        let row = row.ok_or(AuthError::InvalidCredentials)?;
        self.open_session(row, SignInMethod::Password, totp_code, client).await
    }

    /// Signs in an account that proved who it is without its password: through a provider's
    /// identity or a passkey. Whatever proved it was checked, and spent, by the caller.
    pub(crate) async fn sign_in_proven(
        &self,
        user_id: &str,
        method: SignInMethod,
        totp_code: Option<&str>,
        client: &Client,
    ) -> Result<Issued, AuthError> {
        let row = self.repo.user_by_id(user_id).await?.ok_or(AuthError::InvalidCredentials)?;
        self.open_session(row, method, totp_code, client).await
    }

    /// The session of a proven sign-in, with the second factor an account with MFA needs unless
    /// the method is one in itself, and its audit entry, in one unit of work.
    async fn open_session(
        &self,
        row: UserRow,
        method: SignInMethod,
        totp_code: Option<&str>,
        client: &Client,
    ) -> Result<Issued, AuthError> {
        if row.disabled {
            return Err(AuthError::Disabled);
        }
        let (session, refresh) = self.new_session(&row.id, client, now());
        let entry = NewEntry::new(Action::LoginSucceeded, &Actor::user(&row.id, client.origin.clone()))
            .target(&row.id)
            .details(json!({ "session_id": session.id, "mfa": row.mfa_enabled, "method": method.name() }));
        let (row_ref, session_ref, entry) = (&row, &session, &entry);
        self.transact(|mut tx| async move {
            if row_ref.mfa_enabled && !method.is_second_factor() {
                self.second_factor(&mut tx, row_ref, totp_code).await?;
            }
            self.repo.insert_session(&mut tx, session_ref).await?;
            audit::append(&mut tx, entry, now()).await?;
            Ok::<_, AuthError>((tx, ()))
        })
        .await?;
        self.issue(self.user(row)?, &session.id, refresh)
    }

    pub async fn refresh(&self, token: &str, client: Client) -> Result<Issued, AuthError> {
        let (next, refresh) = self.renewal(&client, now());
        let (presented, next) = (sha256_hex(token.as_bytes()), &next);
        let (presented, presenter) = (presented.as_str(), &Actor::anonymous(client.origin));
        let rotated = self
            .transact(|mut tx| async move {
                // Spending the token is the arbiter: of concurrent presenters exactly one wins.
                if !self.repo.spend_refresh(&mut tx, presented, next.now).await? {
                    // A spent token presented again was stolen or replayed: its session ends.
                    let Some(session_id) = self.repo.refresh_owner(&mut tx, presented).await? else { return Ok((tx, Rotated::Invalid)) };
                    self.repo.revoke_session(&mut tx, &session_id, None, next.now).await?;
                    let entry = NewEntry::new(Action::RefreshTokenReused, presenter).details(json!({ "session_id": session_id }));
                    audit::append(&mut tx, &entry, next.now).await?;
                    return Ok((tx, Rotated::Reused));
                }
                let Some((session_id, user_id)) = self.repo.live_refresh_session(&mut tx, presented, next.now).await? else {
                    return Ok((tx, Rotated::Invalid));
                };
                self.repo.renew_session(&mut tx, &session_id, next).await?;
                let user = self.repo.user_in(&mut tx, &user_id).await?.ok_or(AuthError::InvalidToken)?;
                Ok::<_, AuthError>((tx, Rotated::Live(Box::new(user), session_id)))
            })
            .await?;
        match rotated {
            Rotated::Live(row, session_id) => self.issue(self.user(*row)?, &session_id, refresh),
            Rotated::Reused => {
                tracing::warn!("a spent refresh token was presented; its session is revoked");
                Err(AuthError::TokenReused)
            }
            Rotated::Invalid => Err(AuthError::InvalidToken),
        }
    }

    pub async fn logout(&self, token: &str) -> Result<(), AuthError> {
        let presented = sha256_hex(token.as_bytes());
        let presented = presented.as_str();
        self.transact(|mut tx| async move {
            let Some(session_id) = self.repo.refresh_owner(&mut tx, presented).await? else { return Err(AuthError::InvalidToken) };
            self.repo.revoke_session(&mut tx, &session_id, None, now()).await?;
            Ok((tx, ()))
        })
        .await
    }

    /// Verifies an access token and that its session is still live. Roles come from the
    /// account as it is now, not from the token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let claims = self.signer.verify(token).map_err(|_| AuthError::InvalidToken)?;
        self.session_principal(&claims.sub, &claims.sid).await
    }

    /// The principal of a session that is still live, its roles as they are now. Open
    /// real-time connections are checked with it, their token having been verified once.
    pub async fn session_principal(&self, user_id: &str, session_id: &str) -> Result<Principal, AuthError> {
        let at = now();
        let account = match &self.sessions {
            Some(sessions) => match sessions.usable(session_id, user_id, at) {
                Some(account) => account,
                None => {
                    let read_at = sessions.generation();
                    let (account, expires_at) = self.usable_session(user_id, session_id, at).await?;
                    sessions.remember(session_id, expires_at, account.clone(), read_at);
                    account
                }
            },
            None => self.usable_session(user_id, session_id, at).await?.0,
        };
        Ok(Principal {
            user_id: user_id.to_owned(),
            session_id: session_id.to_owned(),
            roles: Roles::from_bits(account.roles),
            account,
            origin: Origin::default(),
            api_key: None,
        })
    }

    /// The principal an API key acts as: the account that made it, with its roles as they are
    /// now, so a key never outlives its maker's access.
    pub async fn key_principal(&self, owner_id: &str, key_id: &str) -> Result<Principal, AuthError> {
        let account = match self.repo.user_by_id(owner_id).await? {
            Some(row) if !row.disabled => Arc::new(row),
            _ => return Err(AuthError::InvalidToken),
        };
        Ok(Principal {
            user_id: owner_id.to_owned(),
            session_id: key_id.to_owned(),
            roles: Roles::from_bits(account.roles),
            account,
            origin: Origin::default(),
            api_key: Some(key_id.to_owned()),
        })
    }

    /// The account of a session usable at `at`, and when the session expires.
    async fn usable_session(&self, user_id: &str, session_id: &str, at: DateTime<Utc>) -> Result<(Arc<UserRow>, DateTime<Utc>), AuthError> {
        match self.repo.session_state(session_id, user_id, at).await? {
            Some(s) if s.usable => Ok((Arc::new(s.user), s.expires_at)),
            _ => Err(AuthError::InvalidToken),
        }
    }

    pub async fn sessions(&self, who: &Principal, page: PageRequest<String>) -> Result<Page<SessionView>, AuthError> {
        let rows = self.repo.list_sessions(&who.user_id, now(), page.after.as_deref(), page.limit).await?;
        Ok(Page::from_rows(rows, page.limit, |s| s.id.clone()).map(|s| SessionView {
            current: s.id == who.session_id,
            id: s.id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            ip: s.ip,
            user_agent: s.user_agent,
        }))
    }

    pub async fn revoke_session(&self, who: &Principal, session_id: &str) -> Result<(), AuthError> {
        let owner = who.user_id.as_str();
        self.transact(|mut tx| async move {
            if !self.repo.revoke_session(&mut tx, session_id, Some(owner), now()).await? {
                return Err(AuthError::NotFound("session"));
            }
            Ok((tx, ()))
        })
        .await
    }

    pub async fn revoke_all_sessions(&self, who: &Principal) -> Result<(), AuthError> {
        let user_id = who.user_id.as_str();
        self.transact(|mut tx| async move {
            self.repo.revoke_sessions(&mut tx, user_id, None, now()).await?;
            Ok((tx, ()))
        })
        .await
    }

    pub fn me(&self, who: &Principal) -> Result<Me, AuthError> {
        Ok(self.user(who.account.as_ref().clone())?.into())
    }

    pub async fn update_me(&self, who: &Principal, patch: ProfilePatch) -> Result<Me, AuthError> {
        let update = ProfileUpdate {
            name: patch.name,
            country: patch.country,
            phone_enc: patch.phone.map(|p| p.map(|p| self.cipher.encrypt(PHONE_COLUMN, &p))),
            address_enc: patch
                .address
                .map(|a| a.map(|a| serde_json::to_string(&a).map(|json| self.cipher.encrypt(ADDRESS_COLUMN, &json))).transpose())
                .transpose()
                .map_err(anyhow::Error::from)?,
        };
        let (user_id, update) = (who.user_id.as_str(), &update);
        let row = self
            .transact(|mut tx| async move {
                if !self.repo.update_profile(&mut tx, user_id, update, now()).await? {
                    return Err(AuthError::InvalidToken);
                }
                let row = self.repo.user_in(&mut tx, user_id).await?.ok_or(AuthError::InvalidToken)?;
                Ok((tx, row))
            })
            .await?;
        Ok(self.user(row)?.into())
    }

    pub async fn change_password(&self, who: &Principal, current: &str, new_password: &str) -> Result<(), AuthError> {
        let row = self.verified_owner(who, current).await?;
        let email = Email::parse("email", &row.email)?;
        let password = Password::parse("new_password", new_password, Some(&email))?;
        let hash = self.hasher.hash(password.expose()).await?;
        let effects = Effects::default()
            .event(EventType::AccountPasswordChanged, &who.user_id, json!({}))
            .audit(NewEntry::new(Action::PasswordChanged, &who.actor()).target(&who.user_id));
        let (who, hash, effects) = (who, hash.as_str(), &effects);
        self.transact(|mut tx| async move {
            if !self.repo.set_password_hash(&mut tx, &who.user_id, hash, now()).await? {
                return Err(AuthError::InvalidToken);
            }
            // A new password signs out every other device.
            self.repo.revoke_sessions(&mut tx, &who.user_id, Some(&who.session_id), now()).await?;
            effects.write(&mut tx, now()).await?;
            Ok((tx, ()))
        })
        .await
    }

    /// Erases personal data; the account row stays so ledger history keeps its owner.
    pub async fn delete_me(&self, who: &Principal, password: &str) -> Result<(), AuthError> {
        let row = self.verified_owner(who, password).await?;
        let placeholder = format!("deleted-{}@deleted.invalid", who.user_id);
        let (user_id, placeholder, unsent_mail) = (who.user_id.as_str(), placeholder.as_str(), addressed_to_pattern(&row.email));
        let unsent_mail = unsent_mail.as_str();
        self.transact(|mut tx| async move {
            // Mail to the address is personal data too: what has not started is not sent,
            // what was sent leaves no address behind. (A mail being sent right now finishes.)
            self.jobs.repo().discard_matching(&mut tx, MAIL_KIND, unsent_mail).await?;
            self.repo.erase_user(&mut tx, user_id, placeholder, now()).await?;
            self.repo.revoke_sessions(&mut tx, user_id, None, now()).await?;
            self.repo.replace_recovery_codes(&mut tx, user_id, &[]).await?;
            self.repo.void_tokens(&mut tx, user_id, now()).await?;
            Ok::<_, AuthError>((tx, ()))
        })
        .await
    }

    pub async fn list_users(
        &self,
        email_prefix: Option<&str>,
        role: Option<Role>,
        page: PageRequest<String>,
    ) -> Result<Page<AdminUser>, AuthError> {
        let filter = UserFilter {
            email_like: email_prefix.map(|p| format!("{}%", escape_like(&p.trim().to_lowercase()))),
            role_bits: role.map(|r| Roles::from_list(&[r]).bits() & !Roles::customer().bits()).filter(|b| *b != 0),
        };
        let rows = self.repo.list_users(&filter, page.after.as_deref(), page.limit).await?;
        let page = Page::from_rows(rows, page.limit, |u| u.id.clone());
        let users = page.data.into_iter().map(|r| self.user(r).map(AdminUser::from)).collect::<Result<_, _>>()?;
        Ok(Page { data: users, next_cursor: page.next_cursor })
    }

    pub async fn admin_update(&self, actor: &Principal, user_id: &str, patch: AdminPatch) -> Result<AdminUser, AuthError> {
        if user_id == actor.user_id {
            if patch.disabled == Some(true) {
                return Err(AuthError::Conflict("you cannot disable your own account"));
            }
            if patch.roles.is_some_and(|r| !r.has(Role::Admin)) {
                return Err(AuthError::Conflict("you cannot remove your own admin role"));
            }
        }
        let (roles, disabled, by) = (patch.roles.map(Roles::bits), patch.disabled, &actor.actor());
        let row = self
            .transact(|mut tx| async move {
                let before = self.repo.lock_user(&mut tx, user_id).await?.ok_or(AuthError::NotFound("user"))?;
                if !self.repo.set_roles_and_disabled(&mut tx, user_id, roles, disabled, now()).await? {
                    return Err(AuthError::NotFound("user"));
                }
                // A disabled account is signed out everywhere at once, not at its tokens' expiry.
                if disabled == Some(true) {
                    self.repo.revoke_sessions(&mut tx, user_id, None, now()).await?;
                }
                let row = self.repo.user_in(&mut tx, user_id).await?.ok_or(AuthError::NotFound("user"))?;
                admin_changes(by, &before, &row).write(&mut tx, now()).await?;
                Ok((tx, row))
            })
            .await?;
        tracing::info!(target_user = user_id, roles = ?patch.roles.map(Roles::list), disabled = ?patch.disabled, "account changed by an administrator");
        Ok(self.user(row)?.into())
    }

    /// The id of the live (not disabled) account with this email, e.g. a transfer's recipient.
    pub async fn user_id_by_email(&self, email: &Email) -> Result<Option<String>, StoreError> {
        Ok(self.repo.user_by_email(email.as_str()).await?.filter(|row| !row.disabled).map(|row| row.id))
    }

    /// Where to mail a user: `(email, name)`; `None` for an unknown or disabled account (erasing disables).
    pub async fn mail_address(&self, user_id: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self.repo.user_by_id(user_id).await?.filter(|row| !row.disabled).map(|row| (row.email, row.name)))
    }

    /// Creates an account with extra roles (the command line's `admin create`).
    pub async fn create_with_roles(&self, account: NewAccount, roles: Roles) -> Result<String, AuthError> {
        let hash = self.hasher.hash(account.password.expose()).await?;
        let row = new_user_row(&account.email, &account.name, hash, roles, now());
        let row_ref = &row;
        self.transact(|mut tx| async move {
            self.insert_user(&mut tx, row_ref).await?;
            Ok::<_, AuthError>((tx, ()))
        })
        .await?;
        Ok(row.id)
    }

    /// Inserts a new account; a taken email is the caller's error, not a fault.
    async fn insert_user(&self, tx: &mut Tx, row: &UserRow) -> Result<(), AuthError> {
        match self.repo.insert_user(tx, row).await {
            Err(StoreError::Conflict { constraint: unique::USER_EMAIL }) => Err(AuthError::EmailTaken),
            other => Ok(other?),
        }
    }

    pub(super) async fn user_row(&self, user_id: &str) -> Result<UserRow, AuthError> {
        self.repo.user_by_id(user_id).await?.ok_or(AuthError::InvalidToken)
    }

    pub(super) async fn verified_owner(&self, who: &Principal, password: &str) -> Result<UserRow, AuthError> {
        let row = self.user_row(&who.user_id).await?;
        let hash = Some(row.password_hash.as_str()).filter(|h| !h.is_empty());
        if self.hasher.verify(password, hash).await? { Ok(row) } else { Err(AuthError::InvalidCredentials) }
    }

    /// A new refresh token (returned in clear once) and what is stored of it.
    fn renewal(&self, client: &Client, at: DateTime<Utc>) -> (Renewal, String) {
        let refresh = random_token();
        let renewal = Renewal {
            refresh_hash: sha256_hex(refresh.as_bytes()),
            ip: client.origin.ip.clone(),
            user_agent: client.user_agent.clone(),
            now: at,
            expires_at: at + self.refresh_ttl,
        };
        (renewal, refresh)
    }

    fn new_session(&self, user_id: &str, client: &Client, at: DateTime<Utc>) -> (NewSession, String) {
        let (token, refresh) = self.renewal(client, at);
        (NewSession { id: crate::ids::new("ses"), user_id: user_id.to_owned(), token }, refresh)
    }

    fn issue(&self, user: User, session_id: &str, refresh_token: String) -> Result<Issued, AuthError> {
        let access_token = self.signer.issue(&user.id, session_id, user.roles.list())?;
        Ok(Issued { user: user.into(), access_token, refresh_token, expires_in: self.signer.ttl().as_secs() })
    }

    /// Opens the sealed columns of a row.
    fn user(&self, row: UserRow) -> Result<User, AuthError> {
        let phone = row.phone_enc.as_deref().map(|p| self.cipher.decrypt(PHONE_COLUMN, p)).transpose().map_err(anyhow::Error::from)?;
        let address = row
            .address_enc
            .as_deref()
            .map(|a| self.cipher.decrypt(ADDRESS_COLUMN, a).map_err(anyhow::Error::from).and_then(|json| Ok(serde_json::from_str(&json)?)))
            .transpose()?;
        Ok(User {
            id: row.id,
            email: row.email,
            email_verified: row.email_verified,
            name: row.name,
            password_hash: row.password_hash,
            roles: Roles::from_bits(row.roles),
            country: row.country,
            phone,
            address,
            mfa_enabled: row.mfa_enabled,
            disabled: row.disabled,
            created_at: row.created_at,
        })
    }
}

/// The audit entries of an administrator's change to an account: its roles and whether it is
/// disabled, each only when it changed.
fn admin_changes(by: &Actor, before: &UserRow, after: &UserRow) -> Effects {
    let mut effects = Effects::default();
    let (from, to) = (Roles::from_bits(before.roles), Roles::from_bits(after.roles));
    if from != to {
        let details = json!({ "from": from.list(), "to": to.list() });
        effects = effects.audit(NewEntry::new(Action::RolesChanged, by).target(&after.id).details(details));
    }
    if before.disabled != after.disabled {
        let action = if after.disabled { Action::UserDisabled } else { Action::UserEnabled };
        effects = effects.audit(NewEntry::new(action, by).target(&after.id));
    }
    effects
}

/// What presenting a refresh token came to.
enum Rotated {
    /// The token was live: its session now has the next one (and this is its account).
    Live(Box<UserRow>, String),
    /// The token was spent already: its session is revoked.
    Reused,
    /// Unknown token, or its session is revoked or expired or its account disabled.
    Invalid,
}

/// A new account's row (email not verified yet, no MFA); `password_hash` is `''` for none.
pub(super) fn new_user_row(email: &Email, name: &str, password_hash: String, roles: Roles, at: DateTime<Utc>) -> UserRow {
    UserRow {
        id: crate::ids::new("usr"),
        email: email.as_str().to_owned(),
        email_verified: false,
        name: name.to_owned(),
        password_hash,
        roles: roles.bits(),
        country: None,
        phone_enc: None,
        address_enc: None,
        mfa_enabled: false,
        disabled: false,
        created_at: at,
        totp_secret_enc: None,
        totp_pending_enc: None,
    }
}

/// Escapes LIKE wildcards so a prefix matches literally (escape character `\`).
fn escape_like(s: &str) -> String {
    s.chars().fold(String::with_capacity(s.len()), |mut out, c| {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(super::escape_like("a_b%c\\"), "a\\_b\\%c\\\\");
    }
}
