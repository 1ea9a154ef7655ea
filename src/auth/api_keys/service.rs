//! API key use cases: create, list, rotate, revoke (each one unit of work with its audit
//! entry), and authenticating a request that carries a key.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::access;
use super::model::{KeySpec, KeyText, end_of_grace};
use super::repo::{ApiKeyRepo, KeyRow};
use crate::auth::error::AuthError;
use crate::auth::service::{Accounts, Principal};
use crate::http::pagination::{Page, PageRequest};
use crate::security::audit::{self, Action, NewEntry};
use crate::security::crypto::FieldCipher;
use crate::store::{Store, StoreError, Transient, now};
use crate::validation::Invalid;

/// How often a key's `last_used_at` is written at most: a busy key costs one write a minute.
const USE_RECORDED_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("invalid input")]
    Invalid(Invalid),
    #[error("no such API key")]
    NotFound,
    #[error("the key was rotated already")]
    Rotated,
    /// Malformed, unknown, revoked or expired; or its maker is disabled or gone.
    #[error("invalid API key")]
    InvalidKey,
    #[error("the key's scopes do not include this route")]
    OutOfScope,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Transient for ApiKeyError {
    fn is_transient(&self) -> bool {
        matches!(self, ApiKeyError::Store(e) if e.is_transient())
    }
}

impl From<Invalid> for ApiKeyError {
    fn from(invalid: Invalid) -> Self {
        ApiKeyError::Invalid(invalid)
    }
}

/// A key just made: its row and its text, which is shown this once.
pub struct Minted {
    pub key: KeyRow,
    pub text: KeyText,
}

pub struct ApiKeys {
    store: Store,
    repo: Arc<dyn ApiKeyRepo>,
    cipher: Arc<FieldCipher>,
    accounts: Arc<Accounts>,
}

impl ApiKeys {
    pub fn new(store: Store, cipher: Arc<FieldCipher>, accounts: Arc<Accounts>) -> Self {
        Self { repo: super::repo::for_store(&store), store, cipher, accounts }
    }

    /// The key's keyed hash: what is stored, and (its first half) what rate limits count by.
    pub fn fingerprint(&self, key: &KeyText) -> String {
        self.cipher.keyed_hash(key.expose().as_bytes())
    }

    pub async fn create(&self, by: &Principal, spec: KeySpec) -> Result<Minted, ApiKeyError> {
        let minted = self.mint(by, spec.name, spec.scopes, spec.expires_at, now());
        let entry = NewEntry::new(Action::ApiKeyCreated, &by.actor()).target(&minted.key.id).details(json!({
            "name": minted.key.name,
            "scopes": minted.key.scopes,
            "prefix": minted.key.prefix,
            "expires_at": minted.key.expires_at,
        }));
        let (minted_ref, hash, entry) = (&minted, self.fingerprint(&minted.text), &entry);
        let hash = hash.as_str();
        self.store
            .transact(|mut tx| async move {
                self.repo.insert(&mut tx, &minted_ref.key, hash).await?;
                audit::append(&mut tx, entry, minted_ref.key.created_at).await?;
                Ok::<_, ApiKeyError>((tx, ()))
            })
            .await?;
        Ok(minted)
    }

    pub async fn list(&self, page: PageRequest<String>) -> Result<Page<KeyRow>, ApiKeyError> {
        let rows = self.repo.list(page.after.as_deref(), page.limit).await?;
        Ok(Page::from_rows(rows, page.limit, |k| k.id.clone()))
    }

    /// A new key with the same name, scopes and expiry; the old one keeps working for `grace`
    /// (never past its own expiry). A key is rotated once: rotate its successor next time.
    pub async fn rotate(&self, by: &Principal, id: &str, grace: Duration) -> Result<Minted, ApiKeyError> {
        let at = now();
        let (by_ref, grace_ref) = (by, &grace);
        let minted = self
            .store
            .transact(|mut tx| async move {
                let old = match self.repo.get(&mut tx, id).await? {
                    Some(old) if old.live_at(at) => old,
                    _ => return Err(ApiKeyError::NotFound),
                };
                let minted = self.mint(by_ref, old.name.clone(), old.scopes.clone(), old.expires_at, at);
                let until = end_of_grace(old.expires_at, *grace_ref, at);
                // The conditional update is the arbiter between concurrent rotations of one key.
                if !self.repo.retire(&mut tx, id, &minted.key.id, until).await? {
                    return Err(ApiKeyError::Rotated);
                }
                self.repo.insert(&mut tx, &minted.key, &self.fingerprint(&minted.text)).await?;
                let entry = NewEntry::new(Action::ApiKeyRotated, &by_ref.actor()).target(id).details(json!({
                    "successor": minted.key.id,
                    "prefix": minted.key.prefix,
                    "old_key_expires_at": until,
                }));
                audit::append(&mut tx, &entry, at).await?;
                Ok((tx, minted))
            })
            .await?;
        Ok(minted)
    }

    pub async fn revoke(&self, by: &Principal, id: &str) -> Result<(), ApiKeyError> {
        let at = now();
        let entry = NewEntry::new(Action::ApiKeyRevoked, &by.actor()).target(id);
        let entry = &entry;
        self.store
            .transact(|mut tx| async move {
                if !self.repo.revoke(&mut tx, id, at).await? {
                    return Err(ApiKeyError::NotFound);
                }
                audit::append(&mut tx, entry, at).await?;
                Ok((tx, ()))
            })
            .await
    }

    /// The principal of a request that came with `key` to a route: the key must be live and
    /// hold a scope of the route, and its maker must still be enabled. Looked up on every
    /// request, so a revocation counts from the next one, on every instance.
    pub async fn authenticate(&self, key: &KeyText, method: &Method, route: &str) -> Result<Principal, ApiKeyError> {
        let at = now();
        let row = match self.repo.by_hash(&self.fingerprint(key)).await? {
            Some(row) if row.live_at(at) => row,
            _ => return Err(ApiKeyError::InvalidKey),
        };
        if !access::allows(&row.scopes, method, route) {
            return Err(ApiKeyError::OutOfScope);
        }
        let principal = match self.accounts.key_principal(&row.created_by, &row.id).await {
            Ok(principal) => principal,
            Err(AuthError::Store(e)) => return Err(e.into()),
            Err(_) => return Err(ApiKeyError::InvalidKey),
        };
        let since = at - chrono::Duration::from_std(USE_RECORDED_EVERY).unwrap_or_default();
        if row.last_used_at.is_none_or(|last| last < since) {
            let id = row.id.as_str();
            self.store
                .transact(|mut tx| async move {
                    self.repo.touch(&mut tx, id, at, since).await?;
                    Ok::<_, ApiKeyError>((tx, ()))
                })
                .await?;
        }
        Ok(principal)
    }

    fn mint(
        &self,
        by: &Principal,
        name: String,
        scopes: Vec<super::model::Scope>,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Minted {
        let text = KeyText::generate();
        let key = KeyRow {
            id: crate::ids::new("key"),
            name,
            scopes,
            prefix: text.shown().to_owned(),
            created_by: by.user_id.clone(),
            created_at: at,
            expires_at,
            last_used_at: None,
            rotated_to: None,
        };
        Minted { key, text }
    }
}
