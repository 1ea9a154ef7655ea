//! Social login over OAuth 2.0 / OpenID Connect: providers from configuration, a sign-in's
//! server-side single-use state (PKCE S256, nonce, the app URL to return to), the linking
//! rules (`model::decide`), one-time login codes exchanged for a token pair, and the caller's
//! linked identities.

pub mod error;
mod http;
pub mod model;
mod oidc;
mod provider;
pub mod repo;
pub mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::error::AuthError;
use super::model::{Email, Roles};
use super::repo::UserRow;
use super::service::{Accounts, Client, Issued, Principal, SignInMethod, new_user_row};
use crate::config::Config;
use crate::http::pagination::{Page, PageRequest};
use crate::security::audit::{self, Action, Actor, NewEntry};
use crate::security::{random_token, sha256_hex};
use crate::store::{StoreError, Tx, now};
use crate::validation::Invalid;
use error::SocialError;
use model::{
    Decision, Failure, Holder, LINK_TTL, LOGIN_CODE_TTL, LinkDecision, Profile, ProviderAnswer, ProviderView, SECOND_FACTOR_ATTEMPTS,
    STATE_TTL, account_name, browser_cookie, decide, decide_link, redirect_allowed, survives_mailbox_proof, with_fragment,
};
use provider::{Provider, ProviderError};
use repo::{IdentityRow, LinkTokenRow, NewLoginCode, SocialRepo, StateRow};

/// The sealed column of a sign-in's PKCE verifier.
const VERIFIER_COLUMN: &str = "oauth_states.verifier";
/// Time allowed for each call to a provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Units of work a callback tries when a concurrent one linked the same identity or email first.
const CONFLICT_ATTEMPTS: u32 = 3;

/// A linked identity as its owner sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IdentityView {
    /// `idn_…`
    pub id: String,
    /// The provider's id (`github`, `google`, …).
    pub provider: String,
    /// The email the provider gave when it was linked.
    #[schema(required = true)]
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<IdentityRow> for IdentityView {
    fn from(row: IdentityRow) -> Self {
        IdentityView { id: row.id, provider: row.provider, email: row.email, created_at: row.created_at }
    }
}

/// How a sign-in starts at Keel's authorize route.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// Someone signing in, to return to `redirect_to` (checked against the allowed app URLs).
    SignIn { redirect_to: &'a str },
    /// A signed-in account's linking, named by the single-use token `link_url` handed out.
    Link { token: &'a str },
}

/// Where Keel's authorize route sends the browser, and the `Set-Cookie` binding it to the sign-in.
pub struct Departure {
    pub url: String,
    pub cookie: String,
}

/// How a callback that got a person from the provider ends.
enum Outcome {
    /// Signed in: the one-time login code for the app.
    Code(String),
    /// The identity is now the signed-in caller's.
    Linked,
}

pub struct Social {
    accounts: Arc<Accounts>,
    repo: Arc<dyn SocialRepo>,
    providers: Vec<Provider>,
    /// The app URLs a sign-in may return to, compared exactly (with the console's, `<public_url>/admin/`).
    redirect_urls: Vec<String>,
    /// Keel's own public base URL, where providers send the browser back.
    public_url: String,
}

impl Social {
    pub fn new(accounts: Arc<Accounts>, config: &Config) -> anyhow::Result<Self> {
        let http = http::BackChannel::new(PROVIDER_TIMEOUT)?;
        let providers = config.oauth_providers.iter().map(|p| Provider::new(p.clone(), http.clone())).collect();
        let public_url = config.public_base_url();
        // The admin console signs staff in at its own URL.
        let console = format!("{public_url}/admin/");
        let redirect_urls = config.app_base_url.iter().chain(&config.oauth_redirect_urls).cloned().chain([console]).collect();
        Ok(Self { repo: repo::for_store(&accounts.store), accounts, providers, redirect_urls, public_url })
    }

    pub fn providers(&self) -> Vec<ProviderView> {
        self.providers.iter().map(|p| ProviderView { id: p.settings.id.clone(), name: p.settings.display_name() }).collect()
    }

    /// `UnknownProvider` unless `id` is configured (checked before anything else is looked at).
    pub fn check_provider(&self, id: &str) -> Result<(), SocialError> {
        self.provider(id).map(|_| ())
    }

    fn provider(&self, id: &str) -> Result<&Provider, SocialError> {
        self.providers.iter().find(|p| p.settings.id == id).ok_or(SocialError::UnknownProvider)
    }

    fn callback_url(&self, provider: &Provider) -> String {
        format!("{}/v1/auth/oauth/{}/callback", self.public_url, provider.settings.id)
    }

    fn check_redirect(&self, redirect_to: &str) -> Result<(), SocialError> {
        if redirect_allowed(redirect_to, &self.redirect_urls) {
            return Ok(());
        }
        Err(Invalid::one(
            "redirect_to",
            "not_allowed",
            "must be exactly one of the app URLs allowed by configuration (app_base_url, oauth_redirect_urls)",
        )
        .into())
    }

    /// Starts a sign-in, or a signed-in account's linking: stores its state, bound to the
    /// browser at Keel's authorize route (`browser`: the binding it has already, if any), and
    /// returns the provider's authorization URL with the cookie of that binding.
    pub async fn authorize(&self, provider_id: &str, start: Start<'_>, browser: Option<&str>) -> Result<Departure, SocialError> {
        let provider = self.provider(provider_id)?;
        if let Start::SignIn { redirect_to } = start {
            self.check_redirect(redirect_to)?;
        }
        let state = random_token();
        let started = provider.start(&self.callback_url(provider), &state).await.map_err(|e| {
            tracing::warn!(provider = provider_id, error = %e, "cannot start a sign-in through the provider");
            SocialError::ProviderUnavailable
        })?;
        // A browser keeps its binding, so that sign-ins started in two tabs both finish.
        let binding = browser.map_or_else(random_token, str::to_owned);
        let at = now();
        let state_hash = sha256_hex(state.as_bytes());
        let browser_hash = sha256_hex(binding.as_bytes());
        let verifier_enc = self.accounts.cipher.encrypt(VERIFIER_COLUMN, &started.pkce_verifier);
        let nonce_hash = sha256_hex(started.nonce.as_bytes());
        let (state_hash, browser_hash, verifier_enc, nonce_hash) = (&state_hash, &browser_hash, &verifier_enc, &nonce_hash);
        self.accounts
            .store
            .transact(|mut tx| async move {
                let (redirect_to, link_user_id) = match start {
                    Start::SignIn { redirect_to } => (redirect_to.to_owned(), None),
                    Start::Link { token } => {
                        let token_hash = sha256_hex(token.as_bytes());
                        let (user_id, redirect_to) =
                            self.repo.take_link_token(&mut tx, &token_hash, provider_id, at).await?.ok_or(SocialError::InvalidState)?;
                        (redirect_to, Some(user_id))
                    }
                };
                let row = StateRow {
                    state_hash: state_hash.clone(),
                    provider: provider_id.to_owned(),
                    verifier_enc: verifier_enc.clone(),
                    nonce_hash: nonce_hash.clone(),
                    redirect_to,
                    browser_hash: browser_hash.clone(),
                    link_user_id,
                    created_at: at,
                    expires_at: at + STATE_TTL,
                };
                self.repo.insert_state(&mut tx, &row).await?;
                Ok::<_, SocialError>((tx, ()))
            })
            .await?;
        let secure = self.public_url.starts_with("https://");
        Ok(Departure { url: started.url, cookie: browser_cookie(&binding, secure, provider.settings.posts_callback()) })
    }

    /// The linking of an identity to the signed-in caller: a single-use URL of Keel's authorize
    /// route, so that the browser is bound to the linking there before it goes to the provider
    /// (the caller's app asked with a bearer token, which its browser does not carry).
    pub async fn link_url(&self, who: &Principal, provider_id: &str, redirect_to: &str) -> Result<String, SocialError> {
        self.provider(provider_id)?;
        self.check_redirect(redirect_to)?;
        let token = random_token();
        let at = now();
        let row = LinkTokenRow {
            token_hash: sha256_hex(token.as_bytes()),
            user_id: who.user_id.clone(),
            provider: provider_id.to_owned(),
            redirect_to: redirect_to.to_owned(),
            created_at: at,
            expires_at: at + LINK_TTL,
        };
        let row = &row;
        self.accounts
            .store
            .transact(|mut tx| async move {
                self.repo.insert_link_token(&mut tx, row).await?;
                Ok::<_, SocialError>((tx, ()))
            })
            .await?;
        Ok(format!("{}/v1/auth/oauth/{provider_id}/authorize?link={token}", self.public_url))
    }

    /// Where the browser goes after the provider sent it back: the app's URL with `#code=…`,
    /// `#linked=<provider>` or `#error=…`. The state is spent whatever follows; without a live
    /// one started by this browser (`browser`: its binding) there is no app URL to trust, and
    /// the answer is `InvalidState`.
    pub async fn callback(
        &self,
        provider_id: &str,
        answer: &ProviderAnswer,
        browser: Option<&str>,
        client: &Client,
    ) -> Result<String, SocialError> {
        let provider = self.provider(provider_id)?;
        let state = answer.state.as_deref().filter(|s| !s.is_empty()).ok_or(SocialError::InvalidState)?;
        let browser = browser.ok_or(SocialError::InvalidState)?;
        let (state_hash, browser_hash) = (sha256_hex(state.as_bytes()), sha256_hex(browser.as_bytes()));
        let (state_hash, browser_hash) = (state_hash.as_str(), browser_hash.as_str());
        let row = self
            .accounts
            .store
            .transact(|mut tx| async move {
                let row = self.repo.take_state(&mut tx, state_hash, provider_id, browser_hash, now()).await?;
                Ok::<_, SocialError>((tx, row))
            })
            .await?
            .ok_or(SocialError::InvalidState)?;
        Ok(match self.complete(provider, &row, answer, client).await {
            Ok(Outcome::Code(code)) => with_fragment(&row.redirect_to, "code", &code),
            Ok(Outcome::Linked) => with_fragment(&row.redirect_to, "linked", provider_id),
            Err(failure) => with_fragment(&row.redirect_to, "error", failure.code()),
        })
    }

    async fn complete(&self, provider: &Provider, row: &StateRow, answer: &ProviderAnswer, client: &Client) -> Result<Outcome, Failure> {
        if let Some(error) = &answer.error {
            return Err(if error == "access_denied" { Failure::AccessDenied } else { Failure::ProviderError });
        }
        let code = answer.code.as_deref().filter(|c| !c.is_empty()).ok_or(Failure::ProviderError)?;
        let verifier = self.accounts.cipher.decrypt(VERIFIER_COLUMN, &row.verifier_enc).map_err(|e| server_error(e.into()))?;
        let profile = provider.finish(&self.callback_url(provider), code, &verifier, &row.nonce_hash).await.map_err(|e| {
            tracing::warn!(provider = %provider.settings.id, error = %e, "a sign-in through the provider failed");
            match e {
                ProviderError::IdToken(_) => Failure::InvalidIdToken,
                ProviderError::Unavailable(_) | ProviderError::Refused(_) => Failure::ProviderError,
            }
        })?;
        // An address that is not one (or none at all) cannot match or make an account.
        let email = profile.email.as_deref().and_then(|e| Email::parse("email", e).ok());
        let profile = Profile { email: email.as_ref().map(|e| e.as_str().to_owned()), ..profile };
        let provider_id = provider.settings.id.as_str();
        let done = match &row.link_user_id {
            Some(user_id) => retry_on_conflict(|| self.link_once(provider_id, &profile, user_id, client)).await,
            None => {
                let code = random_token();
                let code_hash = sha256_hex(code.as_bytes());
                retry_on_conflict(|| self.sign_in_once(provider_id, &profile, email.as_ref(), &code_hash, client))
                    .await
                    .map(|signed_in| signed_in.map(|()| Outcome::Code(code)))
            }
        };
        done.map_err(|e| server_error(e.into()))?
    }

    /// One unit of work of a sign-in: the linking decision on what is stored now, what it
    /// implies, and a login code for the account.
    async fn sign_in_once(
        &self,
        provider_id: &str,
        profile: &Profile,
        email: Option<&Email>,
        code_hash: &str,
        client: &Client,
    ) -> Result<Result<(), Failure>, SocialError> {
        self.accounts
            .transact(|mut tx| async move {
                let owner = self.repo.identity_owner(&mut tx, &profile.issuer, &profile.subject).await?;
                let holder = match email {
                    Some(email) => self.repo.email_holder(&mut tx, email.as_str()).await?,
                    None => None,
                };
                let at = now();
                let user_id = match decide(profile, owner.as_ref(), holder.as_ref()) {
                    Decision::Refuse(failure) => return Ok((tx, Err(failure))),
                    Decision::SignIn(user_id) => user_id,
                    Decision::Link(user_id) => {
                        self.link_identity(&mut tx, provider_id, profile, &user_id, client, at).await?;
                        user_id
                    }
                    Decision::TakeOver(user_id) => {
                        self.take_over(&mut tx, provider_id, &user_id, client, at).await?;
                        self.link_identity(&mut tx, provider_id, profile, &user_id, client, at).await?;
                        user_id
                    }
                    Decision::Create => {
                        let email = email.ok_or(SocialError::Internal(anyhow::anyhow!("an account is made only with an email")))?;
                        let name = account_name(profile.name.as_deref(), email.as_str());
                        let row = UserRow {
                            email_verified: profile.email_verified,
                            ..new_user_row(email, &name, String::new(), Roles::customer(), at)
                        };
                        self.accounts.repo.insert_user(&mut tx, &row).await?;
                        self.link_identity(&mut tx, provider_id, profile, &row.id, client, at).await?;
                        row.id
                    }
                };
                let code = NewLoginCode { code_hash: code_hash.to_owned(), user_id, created_at: at, expires_at: at + LOGIN_CODE_TTL };
                self.repo.insert_login_code(&mut tx, &code).await?;
                Ok::<_, SocialError>((tx, Ok(())))
            })
            .await
    }

    /// One unit of work of linking an identity to the signed-in account that started it.
    async fn link_once(
        &self,
        provider_id: &str,
        profile: &Profile,
        user_id: &str,
        client: &Client,
    ) -> Result<Result<Outcome, Failure>, SocialError> {
        self.accounts
            .transact(|mut tx| async move {
                let Some(caller) = self.accounts.repo.user_in(&mut tx, user_id).await? else {
                    return Ok((tx, Err(Failure::AccountDisabled)));
                };
                let caller = Holder { id: caller.id, email_verified: caller.email_verified, disabled: caller.disabled };
                let owner = self.repo.identity_owner(&mut tx, &profile.issuer, &profile.subject).await?;
                match decide_link(&caller, owner.as_ref()) {
                    LinkDecision::Refuse(failure) => return Ok((tx, Err(failure))),
                    LinkDecision::AlreadyLinked => {}
                    LinkDecision::Link => self.link_identity(&mut tx, provider_id, profile, user_id, client, now()).await?,
                }
                Ok::<_, SocialError>((tx, Ok(Outcome::Linked)))
            })
            .await
    }

    async fn link_identity(
        &self,
        tx: &mut Tx,
        provider_id: &str,
        profile: &Profile,
        user_id: &str,
        client: &Client,
        at: DateTime<Utc>,
    ) -> Result<(), SocialError> {
        let identity = IdentityRow {
            id: crate::ids::new("idn"),
            user_id: user_id.to_owned(),
            provider: provider_id.to_owned(),
            issuer: profile.issuer.clone(),
            subject: profile.subject.clone(),
            email: profile.email.clone(),
            email_verified: profile.email_verified,
            created_at: at,
        };
        self.repo.insert_identity(tx, &identity).await?;
        let entry = NewEntry::new(Action::IdentityLinked, &Actor::user(user_id, client.origin.clone()))
            .target(user_id)
            .details(json!({ "identity_id": identity.id, "provider": provider_id, "email_verified": profile.email_verified }));
        audit::append(tx, &entry, at).await?;
        Ok(())
    }

    /// Hands an account whose email was never verified to the person the provider verified it
    /// for (pre-hijack defence): whoever registered it first loses every way in they may have
    /// set up (password, identities, sessions, mailed links, second factor).
    async fn take_over(
        &self,
        tx: &mut Tx,
        provider_id: &str,
        user_id: &str,
        client: &Client,
        at: DateTime<Utc>,
    ) -> Result<(), SocialError> {
        let accounts = &self.accounts.repo;
        accounts.set_password_hash(tx, user_id, "", at).await?;
        let removed = self.repo.remove_other_sign_in_methods(tx, user_id).await?;
        let sessions = accounts.revoke_sessions(tx, user_id, None, at).await?;
        accounts.void_tokens(tx, user_id, at).await?;
        accounts.disable_totp(tx, user_id, at).await?;
        accounts.replace_recovery_codes(tx, user_id, &[]).await?;
        accounts.mark_email_verified(tx, user_id, at).await?;
        let entry = NewEntry::new(Action::AccountTakenOver, &Actor::user(user_id, client.origin.clone()))
            .target(user_id)
            .details(json!({ "provider": provider_id, "identities_removed": removed.identities, "passkeys_removed": removed.passkeys, "sessions_revoked": sessions }));
        audit::append(tx, &entry, at).await?;
        Ok(())
    }

    /// Exchanges a login code for a token pair. An account with MFA still needs its code; a
    /// refused one gives the login code back (a few times), so the person can try again.
    pub async fn exchange(&self, code: &str, totp_code: Option<&str>, client: &Client) -> Result<Issued, SocialError> {
        let code_hash = sha256_hex(code.as_bytes());
        let code_hash = code_hash.as_str();
        let store = &self.accounts.store;
        let user_id = store
            .transact(|mut tx| async move {
                let user_id = self.repo.claim_login_code(&mut tx, code_hash, now()).await?;
                Ok::<_, SocialError>((tx, user_id))
            })
            .await?
            .ok_or(AuthError::InvalidToken)?;
        match self.accounts.sign_in_proven(&user_id, SignInMethod::Provider, totp_code, client).await {
            Err(AuthError::MfaRequired) => {
                let entry = NewEntry::new(Action::LoginFailed, &Actor::anonymous(client.origin.clone()))
                    .target(&user_id)
                    .details(json!({ "reason": "second_factor", "method": SignInMethod::Provider.name() }));
                let entry = &entry;
                store
                    .transact(|mut tx| async move {
                        self.repo.release_login_code(&mut tx, code_hash, SECOND_FACTOR_ATTEMPTS).await?;
                        audit::append(&mut tx, entry, now()).await?;
                        Ok::<_, SocialError>((tx, ()))
                    })
                    .await?;
                Err(AuthError::MfaRequired.into())
            }
            other => Ok(other?),
        }
    }

    pub async fn identities(&self, who: &Principal, page: PageRequest<String>) -> Result<Page<IdentityView>, SocialError> {
        let rows = self.repo.list_identities(&who.user_id, page.after.as_deref(), page.limit).await?;
        Ok(Page::from_rows(rows, page.limit, |r| r.id.clone()).map(IdentityView::from))
    }

    /// Unlinks one of the caller's identities, unless the account would be left with no way
    /// to sign in.
    pub async fn unlink(&self, who: &Principal, identity_id: &str) -> Result<(), SocialError> {
        let (user_id, actor) = (who.user_id.as_str(), &who.actor());
        self.accounts
            .transact(|mut tx| async move {
                // Two removals at once must not both see the other's identity still there.
                self.accounts.repo.lock_user(&mut tx, user_id).await?;
                let removed = self.repo.delete_identity(&mut tx, identity_id, user_id).await?.ok_or(AuthError::NotFound("identity"))?;
                if self.accounts.repo.sign_in_methods(&mut tx, user_id).await? < 1 {
                    return Err(SocialError::LastSignInMethod);
                }
                let entry = NewEntry::new(Action::IdentityUnlinked, actor)
                    .target(user_id)
                    .details(json!({ "identity_id": removed.id, "provider": removed.provider }));
                audit::append(&mut tx, &entry, now()).await?;
                Ok((tx, ()))
            })
            .await
    }
}

/// The mailbox of `account` (as it was before the proof) was just proven by a mailed token:
/// removes the identities that do not survive it (`model::survives_mailbox_proof`), each
/// audited; how many went. The caller revokes the sessions they may have opened.
pub async fn drop_unproven_identities(
    repo: &dyn SocialRepo,
    tx: &mut Tx,
    account: &UserRow,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    for identity in repo.identities_in(tx, &account.id).await? {
        if survives_mailbox_proof(identity.email.as_deref(), identity.email_verified, &account.email, account.email_verified) {
            continue;
        }
        repo.delete_identity(tx, &identity.id, &account.id).await?;
        let entry = NewEntry::new(Action::IdentityUnlinked, actor).target(&account.id).details(json!({
            "identity_id": identity.id,
            "provider": identity.provider,
            "reason": "mailbox_proven",
        }));
        audit::append(tx, &entry, at).await?;
        removed += 1;
    }
    Ok(removed)
}

/// Runs a unit of work again when a unique constraint refused it: a concurrent callback for
/// the same identity or email committed first, and deciding again on what it stored settles it
/// (two callbacks for one new identity make one account).
async fn retry_on_conflict<T, Fut>(mut work: impl FnMut() -> Fut) -> Result<T, SocialError>
where
    Fut: Future<Output = Result<T, SocialError>>,
{
    let mut attempt = 1;
    loop {
        match work().await {
            Err(SocialError::Store(StoreError::Conflict { .. })) if attempt < CONFLICT_ATTEMPTS => attempt += 1,
            done => return done,
        }
    }
}

/// A fault of Keel's own during a callback: logged once here; the app gets `#error=server_error`.
fn server_error(e: anyhow::Error) -> Failure {
    tracing::error!(error = format!("{e:#}"), "a sign-in through a provider failed inside Keel");
    Failure::ServerError
}
