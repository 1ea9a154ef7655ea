//! Passkey use cases: register while signed in, list, remove, and log in with one.
//!
//! A ceremony's state is kept in the database between its start and its finish; the finish
//! takes it (deletes it) in a unit of work of its own before anything is checked, so a
//! challenge is spent whatever the outcome and of two concurrent finishes one loses.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use webauthn_rs::prelude::{Passkey, PublicKeyCredential, RegisterPublicKeyCredential, Webauthn, WebauthnBuilder, WebauthnError};

use super::model::{CHALLENGE_TTL, Ceremony, CeremonyKind, DEFAULT_NAME, Expected, PasskeyView, Refusal, RelyingParty, user_handle};
use super::repo::{NewChallenge, NewPasskey, PasskeyRepo, TakenChallenge};
use crate::auth::error::AuthError;
use crate::auth::model::Email;
use crate::auth::service::{Accounts, Client, Issued, Principal, SignInMethod};
use crate::http::pagination::{Page, PageRequest};
use crate::security::audit::{self, Action, Actor, NewEntry};
use crate::security::random_token;
use crate::store::{Store, StoreError, Tx, now, unique};
use crate::validation::Invalid;

/// A started ceremony: the id to finish it with and the options for the browser
/// (`PublicKeyCredentialCreationOptions` or `…RequestOptions`, WebAuthn Level 3 JSON).
pub struct Started {
    pub challenge_id: String,
    pub options: Value,
}

pub struct Passkeys {
    store: Store,
    repo: Arc<dyn PasskeyRepo>,
    accounts: Arc<Accounts>,
    webauthn: Webauthn,
}

impl Passkeys {
    pub fn new(store: Store, accounts: Arc<Accounts>, rp: &RelyingParty) -> anyhow::Result<Passkeys> {
        let (first, others) = rp.origins.split_first().ok_or_else(|| anyhow::anyhow!("passkeys need at least one origin"))?;
        let builder = WebauthnBuilder::new(&rp.id, first).map_err(|e| anyhow::anyhow!("passkeys' relying party {}: {e}", rp.id))?;
        let webauthn = others
            .iter()
            .fold(builder, |b, origin| b.append_allowed_origin(origin))
            .timeout(CHALLENGE_TTL)
            .build()
            .map_err(|e| anyhow::anyhow!("passkeys' relying party {}: {e}", rp.id))?;
        Ok(Passkeys { repo: super::repo::for_store(&store), store, accounts, webauthn })
    }

    /// Starts registering a passkey for the caller: a discoverable credential with user
    /// verification, none of the caller's existing passkeys again.
    pub async fn start_registration(&self, who: &Principal) -> Result<Started, AuthError> {
        let handle = user_handle(&who.user_id).ok_or_else(|| anyhow::anyhow!("an account id without a UUID"))?;
        let registered = self.repo.credential_ids(&who.user_id).await?;
        let exclude = registered.iter().filter_map(|id| URL_SAFE_NO_PAD.decode(id).ok()).collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(handle, &who.account.email, &who.account.name, Some(exclude))
            .map_err(webauthn_fault)?;
        let mut options = serde_json::to_value(options.public_key).map_err(anyhow::Error::from)?;
        // webauthn-rs asks for a server-side credential; a passkey that signs in without an email
        // must live on the authenticator (discoverable).
        options["authenticatorSelection"]["residentKey"] = json!("required");
        options["authenticatorSelection"]["requireResidentKey"] = json!(true);
        let challenge_id = self.store_ceremony(&Ceremony::Register(state), Some(&who.user_id)).await?;
        Ok(Started { challenge_id, options })
    }

    /// Finishes a registration the caller started; the challenge is spent either way.
    pub async fn finish_registration(
        &self,
        who: &Principal,
        challenge_id: &str,
        credential: &RegisterPublicKeyCredential,
        name: Option<&str>,
    ) -> Result<PasskeyView, AuthError> {
        let name = name.map(|n| crate::auth::model::parse_name("name", n)).transpose()?.unwrap_or_else(|| DEFAULT_NAME.to_owned());
        let stale = || Invalid::one("challenge_id", "invalid", "unknown, used or expired challenge: start again");
        let taken = self.take(challenge_id, CeremonyKind::Register, Some(&who.user_id)).await?.ok_or_else(stale)?;
        let Some(Ceremony::Register(state)) = live(&taken)? else { return Err(stale().into()) };
        let passkey = self.webauthn.finish_passkey_registration(credential, &state).map_err(|e| {
            tracing::info!(error = %e, "a passkey registration was refused");
            Invalid::one("credential", "invalid", "the credential does not answer the challenge")
        })?;
        let view = PasskeyView { id: crate::ids::new("pky"), name, created_at: now(), last_used_at: None };
        let (credential_id, stored) =
            (URL_SAFE_NO_PAD.encode(passkey.cred_id()), serde_json::to_string(&passkey).map_err(anyhow::Error::from)?);
        let row = NewPasskey {
            id: &view.id,
            user_id: &who.user_id,
            credential_id: &credential_id,
            credential: &stored,
            sign_count: 0,
            name: &view.name,
            created_at: view.created_at,
        };
        let entry = NewEntry::new(Action::PasskeyRegistered, &who.actor()).target(&who.user_id).details(json!({ "passkey_id": view.id }));
        let (row, entry) = (&row, &entry);
        self.store
            .transact(|mut tx| async move {
                match self.repo.insert(&mut tx, row).await {
                    Err(StoreError::Conflict { constraint: unique::PASSKEY_CREDENTIAL }) => {
                        return Err(AuthError::Conflict("this passkey is registered already"));
                    }
                    other => other?,
                }
                audit::append(&mut tx, entry, now()).await?;
                Ok((tx, ()))
            })
            .await?;
        Ok(view)
    }

    pub async fn list(&self, who: &Principal, page: PageRequest<String>) -> Result<Page<PasskeyView>, AuthError> {
        let rows = self.repo.list(&who.user_id, page.after.as_deref(), page.limit).await?;
        Ok(Page::from_rows(rows, page.limit, |p| p.id.clone()))
    }

    /// Removes one of the caller's passkeys, unless it is their last way to sign in.
    pub async fn remove(&self, who: &Principal, id: &str) -> Result<(), AuthError> {
        let entry = NewEntry::new(Action::PasskeyRemoved, &who.actor()).target(&who.user_id).details(json!({ "passkey_id": id }));
        let (user_id, entry) = (who.user_id.as_str(), &entry);
        self.store
            .transact(|mut tx| async move {
                // Concurrent removals of an account's methods take turns, so two cannot each leave the other.
                self.accounts.repo.lock_user(&mut tx, user_id).await?;
                let methods = self.accounts.repo.sign_in_methods(&mut tx, user_id).await?;
                if !self.repo.delete(&mut tx, user_id, id).await? {
                    return Err(AuthError::NotFound("passkey"));
                }
                if !super::model::may_remove_sign_in_method(methods) {
                    return Err(AuthError::Conflict("this is the account's last way to sign in"));
                }
                audit::append(&mut tx, entry, now()).await?;
                Ok((tx, ()))
            })
            .await
    }

    /// Starts a login. Without `email`, any registered passkey may answer (discoverable); with
    /// one, only that account's. The options are the same either way, so they never tell
    /// whether an email has an account or a passkey.
    pub async fn start_login(&self, email: Option<&Email>) -> Result<Started, AuthError> {
        let expected = match email {
            None => Expected::Anyone,
            Some(email) => match self.accounts.repo.user_by_email(email.as_str()).await? {
                Some(account) => Expected::Account(account.id),
                None => Expected::Nobody,
            },
        };
        let (options, state) = self.webauthn.start_discoverable_authentication().map_err(webauthn_fault)?;
        // Only the options: webauthn-rs also asks for conditional mediation (autofill), which is
        // the page's choice, not the server's.
        let options = serde_json::to_value(options.public_key).map_err(anyhow::Error::from)?;
        let challenge_id = self.store_ceremony(&Ceremony::Login { expected, state }, None).await?;
        Ok(Started { challenge_id, options })
    }

    /// Finishes a login: the token pair of the passkey's account. A refusal is audited.
    pub async fn finish_login(&self, challenge_id: &str, credential: &PublicKeyCredential, client: &Client) -> Result<Issued, AuthError> {
        let (owner, refused) = match self.prove(challenge_id, credential).await? {
            Ok(owner) => match self.accounts.sign_in_proven(&owner, SignInMethod::Passkey, None, client).await {
                Err(AuthError::Disabled) => (Some(owner), "disabled"),
                other => return other,
            },
            Err((owner, refusal)) => (owner, refusal.reason()),
        };
        let entry = NewEntry::new(Action::LoginFailed, &Actor::anonymous(client.origin.clone()));
        let entry = match &owner {
            Some(id) => entry.target(id),
            None => entry,
        };
        audit::record(&self.store, &entry.details(json!({ "reason": refused, "method": SignInMethod::Passkey.name() }))).await?;
        Err(if refused == "disabled" { AuthError::Disabled } else { AuthError::InvalidCredentials })
    }

    /// Checks an assertion and records the passkey's use: its account, or why it was refused
    /// (with the account when one is known).
    async fn prove(
        &self,
        challenge_id: &str,
        credential: &PublicKeyCredential,
    ) -> Result<Result<String, (Option<String>, Refusal)>, AuthError> {
        let Some(taken) = self.take(challenge_id, CeremonyKind::Login, None).await? else {
            return Ok(Err((None, Refusal::UnknownChallenge)));
        };
        let Some(Ceremony::Login { expected, state }) = live(&taken)? else { return Ok(Err((None, Refusal::ExpiredChallenge))) };
        let Some(row) = self.repo.by_credential_id(&URL_SAFE_NO_PAD.encode(&credential.raw_id)).await? else {
            return Ok(Err((None, Refusal::UnknownCredential)));
        };
        let owner = Some(row.user_id.clone());
        // The user handle, when sent, must name the owner; a username-less login must send it.
        let handle = user_handle(&row.user_id).map(|h| h.as_bytes().to_vec());
        let handle_ok = match credential.get_user_unique_id() {
            Some(sent) => handle.as_deref() == Some(sent),
            None => expected != Expected::Anyone,
        };
        if !expected.admits(&row.user_id) || !handle_ok {
            return Ok(Err((owner, Refusal::WrongAccount)));
        }
        let mut passkey: Passkey =
            serde_json::from_str(&row.credential).map_err(|e| StoreError::Corrupt(format!("passkey {}: {e}", row.id)))?;
        let result = match self.webauthn.finish_discoverable_authentication_v2(credential, state, &passkey) {
            Ok(result) => result,
            Err(WebauthnError::CredentialPossibleCompromise) => return Ok(Err((owner, Refusal::SignCountRegressed))),
            Err(e) => {
                tracing::info!(error = %e, "a passkey assertion was refused");
                return Ok(Err((owner, Refusal::AssertionFailed)));
            }
        };
        passkey.update_credential(&result);
        let stored = serde_json::to_string(&passkey).map_err(anyhow::Error::from)?;
        let (id, stored, count) = (row.id.as_str(), stored.as_str(), i64::from(result.counter()));
        // The counter moves forward in the database too: of two uses with one count, one loses.
        let recorded = self
            .store
            .transact(|mut tx| async move {
                let recorded = self.repo.record_use(&mut tx, id, stored, count, now()).await?;
                Ok::<_, AuthError>((tx, recorded))
            })
            .await?;
        Ok(if recorded { Ok(row.user_id) } else { Err((owner, Refusal::SignCountRegressed)) })
    }

    async fn store_ceremony(&self, ceremony: &Ceremony, user_id: Option<&str>) -> Result<String, AuthError> {
        let state = serde_json::to_string(ceremony).map_err(anyhow::Error::from)?;
        let (id, at) = (random_token(), now());
        let challenge =
            NewChallenge { id: &id, kind: ceremony.kind(), user_id, state: &state, created_at: at, expires_at: at + CHALLENGE_TTL };
        let challenge = &challenge;
        self.store
            .transact(|mut tx: Tx| async move {
                self.repo.insert_challenge(&mut tx, challenge).await?;
                Ok::<_, AuthError>((tx, ()))
            })
            .await?;
        Ok(id)
    }

    /// Takes (spends) a ceremony in a unit of work of its own.
    async fn take(&self, id: &str, kind: CeremonyKind, user_id: Option<&str>) -> Result<Option<TakenChallenge>, AuthError> {
        self.store
            .transact(|mut tx| async move {
                let taken = self.repo.take_challenge(&mut tx, id, kind, user_id).await?;
                Ok::<_, AuthError>((tx, taken))
            })
            .await
    }
}

/// The state of a taken ceremony that has not expired.
fn live(taken: &TakenChallenge) -> Result<Option<Ceremony>, AuthError> {
    if taken.expires_at <= now() {
        return Ok(None);
    }
    Ok(Some(serde_json::from_str(&taken.state).map_err(|e| StoreError::Corrupt(format!("passkey ceremony: {e}")))?))
}

/// webauthn-rs failing to start a ceremony is a fault of ours (configuration, randomness).
fn webauthn_fault(e: WebauthnError) -> AuthError {
    AuthError::Internal(anyhow::anyhow!("starting a passkey ceremony: {e}"))
}
