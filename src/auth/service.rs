//! Account and session use cases. Each is one repository call (one transaction).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::error::AuthError;
use super::model::{AdminPatch, AdminUser, Email, Me, Password, ProfilePatch, Role, Roles, SessionView, User};
use super::password::Hasher;
use super::repo::{AccountRepo, NewSession, ProfileUpdate, Renewal, Rotation, TokenPurpose, UserFilter, UserRow};
use super::tokens::TokenSigner;
use crate::events::{Effects, EventType};
use crate::http::pagination::{Page, PageRequest};
use crate::jobs::Jobs;
use crate::security::crypto::FieldCipher;
use crate::security::{random_token, sha256_hex};
use crate::store::{StoreError, now};

const PHONE_COLUMN: &str = "users.phone";
const ADDRESS_COLUMN: &str = "users.address";

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub session_id: String,
    pub roles: Roles,
    /// The account as read when the request was authenticated.
    pub account: Arc<UserRow>,
}

/// Where a session was opened from (shown in the session list).
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
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
    pub(super) repo: Arc<dyn AccountRepo>,
    pub(super) hasher: Hasher,
    signer: TokenSigner,
    pub(super) cipher: Arc<FieldCipher>,
    pub(super) jobs: Jobs,
    refresh_ttl: Duration,
}

impl Accounts {
    pub fn new(
        repo: Arc<dyn AccountRepo>,
        hasher: Hasher,
        signer: TokenSigner,
        cipher: Arc<FieldCipher>,
        jobs: Jobs,
        refresh_ttl: Duration,
    ) -> Self {
        Self { repo, hasher, signer, cipher, jobs, refresh_ttl }
    }

    pub fn signer(&self) -> &TokenSigner {
        &self.signer
    }

    pub async fn register(&self, account: NewAccount, client: Client) -> Result<Issued, AuthError> {
        let hash = self.hasher.hash(account.password.expose()).await?;
        let row = new_user_row(&account, hash, Roles::customer(), now());
        let (session, refresh) = self.new_session(&row.id, &client, row.created_at);
        let (token, mail) = self.mailed_token(&row.id, &row.email, &row.name, TokenPurpose::VerifyEmail, row.created_at);
        match self.repo.create_user(&row, Some(&session), Some(&token), &Effects::default().job(mail)).await {
            Err(StoreError::Conflict) => return Err(AuthError::EmailTaken),
            other => other?,
        }
        self.issue(self.user(row)?, &session.id, refresh)
    }

    pub async fn login(&self, email: &Email, password: &str, totp_code: Option<&str>, client: Client) -> Result<Issued, AuthError> {
        let row = self.repo.user_by_email(email.as_str()).await?;
        // Unknown, deleted and existing accounts all pay for one hash verification.
        let hash = row.as_ref().map(|r| r.password_hash.as_str()).filter(|h| !h.is_empty());
        if !self.hasher.verify(password, hash).await? {
            return Err(AuthError::InvalidCredentials);
        }
        let row = row.ok_or(AuthError::InvalidCredentials)?;
        if row.disabled {
            return Err(AuthError::Disabled);
        }
        if row.mfa_enabled {
            self.second_factor(&row, totp_code).await?;
        }
        let (session, refresh) = self.new_session(&row.id, &client, now());
        self.repo.create_session(&session).await?;
        self.issue(self.user(row)?, &session.id, refresh)
    }

    pub async fn refresh(&self, token: &str, client: Client) -> Result<Issued, AuthError> {
        let (next, refresh) = self.renewal(&client, now());
        match self.repo.rotate_refresh(&sha256_hex(token.as_bytes()), &next).await? {
            Rotation::Rotated { user_id, session_id, .. } => {
                let row = self.repo.user_by_id(&user_id).await?.ok_or(AuthError::InvalidToken)?;
                self.issue(self.user(row)?, &session_id, refresh)
            }
            Rotation::Reused => {
                tracing::warn!("a spent refresh token was presented; its session is revoked");
                Err(AuthError::TokenReused)
            }
            Rotation::Invalid => Err(AuthError::InvalidToken),
        }
    }

    pub async fn logout(&self, token: &str) -> Result<(), AuthError> {
        if self.repo.revoke_by_refresh(&sha256_hex(token.as_bytes()), now()).await? { Ok(()) } else { Err(AuthError::InvalidToken) }
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
        match self.repo.session_state(session_id, user_id, now()).await? {
            Some(s) if s.usable => Ok(Principal {
                user_id: user_id.to_owned(),
                session_id: session_id.to_owned(),
                roles: Roles::from_bits(s.user.roles),
                account: Arc::new(s.user),
            }),
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
        if self.repo.revoke_session(&who.user_id, session_id, now()).await? { Ok(()) } else { Err(AuthError::NotFound("session")) }
    }

    pub async fn revoke_all_sessions(&self, who: &Principal) -> Result<(), AuthError> {
        self.repo.revoke_all_sessions(&who.user_id, None, now()).await?;
        Ok(())
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
        let row = self.repo.update_profile(&who.user_id, &update, now()).await?.ok_or(AuthError::InvalidToken)?;
        Ok(self.user(row)?.into())
    }

    pub async fn change_password(&self, who: &Principal, current: &str, new_password: &str) -> Result<(), AuthError> {
        let row = self.verified_owner(who, current).await?;
        let email = Email::parse("email", &row.email)?;
        let password = Password::parse("new_password", new_password, Some(&email))?;
        let hash = self.hasher.hash(password.expose()).await?;
        let effects = Effects::default().event(EventType::AccountPasswordChanged, &who.user_id, serde_json::json!({}));
        self.repo.set_password(&who.user_id, &hash, Some(&who.session_id), &effects, now()).await?;
        Ok(())
    }

    /// Erases personal data; the account row stays so ledger history keeps its owner.
    pub async fn delete_me(&self, who: &Principal, password: &str) -> Result<(), AuthError> {
        self.verified_owner(who, password).await?;
        let placeholder = format!("deleted-{}@deleted.invalid", who.user_id);
        self.repo.anonymise(&who.user_id, &placeholder, now()).await?;
        Ok(())
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
        let row = self
            .repo
            .admin_update(user_id, patch.roles.map(Roles::bits), patch.disabled, now())
            .await?
            .ok_or(AuthError::NotFound("user"))?;
        tracing::info!(target_user = user_id, roles = ?patch.roles.map(Roles::list), disabled = ?patch.disabled, "account changed by an administrator");
        Ok(self.user(row)?.into())
    }

    /// Creates an account with extra roles (the command line's `admin create`).
    pub async fn create_with_roles(&self, account: NewAccount, roles: Roles) -> Result<String, AuthError> {
        let hash = self.hasher.hash(account.password.expose()).await?;
        let row = new_user_row(&account, hash, roles, now());
        match self.repo.create_user(&row, None, None, &Effects::default()).await {
            Err(StoreError::Conflict) => Err(AuthError::EmailTaken),
            other => other.map(|()| row.id).map_err(AuthError::from),
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
            ip: client.ip.clone(),
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

fn new_user_row(account: &NewAccount, password_hash: String, roles: Roles, at: DateTime<Utc>) -> UserRow {
    UserRow {
        id: crate::ids::new("usr"),
        email: account.email.as_str().to_owned(),
        email_verified: false,
        name: account.name.clone(),
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
