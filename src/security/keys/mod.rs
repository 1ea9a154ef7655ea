//! The key ring: the signing and field-encryption keys `keel keys rotate` adds beside the
//! configured ones, kept in the database so every instance sees the same keys, each sealed with
//! the key-encryption key from configuration (which must be the same on every instance).
//!
//! Rotation without downtime: a new key is added to be in use from a little later (two refresh
//! periods), so every running instance has loaded it (and accepts what it signs or seals) before
//! any instance uses it. A replaced signing key stays accepted, and published in the JWKS, until
//! the last token it signed has expired (`timeline`); a replaced encryption key stays in the ring
//! for good, so everything it sealed stays readable, while `reencrypt` moves stored values to the
//! key in use.

pub mod repo;
pub mod timeline;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

use repo::{KeyRingRepo, Purpose, StoredKey};

use super::audit::{self, Action, Actor, NewEntry};
use super::crypto::{self, FieldCipher};
use crate::auth::tokens::{self, TokenSigner};
use crate::store::{Store, StoreError, now};

/// A stored column of sealed values, and the name its values are bound to (associated data).
pub struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    pub bound_to: &'static str,
}

/// The columns `reencrypt` moves to the key in use. Values sealed inside job payloads (mail,
/// reset requests, card tokens) are not among them: jobs live minutes, and the keys that sealed
/// them stay in the ring.
pub const SEALED_COLUMNS: [SealedColumn; 5] = [
    SealedColumn { table: "users", column: "phone_enc", bound_to: crate::auth::service::PHONE_COLUMN },
    SealedColumn { table: "users", column: "address_enc", bound_to: crate::auth::service::ADDRESS_COLUMN },
    SealedColumn { table: "users", column: "totp_secret_enc", bound_to: crate::auth::mfa::SECRET_COLUMN },
    SealedColumn { table: "users", column: "totp_pending_enc", bound_to: crate::auth::mfa::SECRET_COLUMN },
    SealedColumn { table: "webhook_endpoints", column: "secret_enc", bound_to: crate::notify::webhooks::SECRET_COLUMN },
];

/// Keys added by one rotation.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub signing_kid: String,
    pub encryption_kid: String,
    pub active_from: DateTime<Utc>,
}

pub struct KeyRing {
    store: Store,
    repo: Arc<dyn KeyRingRepo>,
    /// Seals the ring's keys at rest.
    kek: FieldCipher,
    signer: Arc<TokenSigner>,
    cipher: Arc<FieldCipher>,
    refresh: Duration,
}

impl KeyRing {
    /// A ring over `store` that installs its keys into `signer` and `cipher`; `kek` is the
    /// 32-byte key-encryption key.
    pub fn new(store: &Store, kek: &[u8], signer: Arc<TokenSigner>, cipher: Arc<FieldCipher>, refresh: Duration) -> anyhow::Result<Self> {
        let kek = FieldCipher::new(kek).context("the key-encryption key")?;
        Ok(Self { repo: repo::for_store(store), store: store.clone(), kek, signer, cipher, refresh })
    }

    /// Reads the ring and installs its keys. Fails when a key cannot be opened with this
    /// instance's key-encryption key: instances configured differently must not serve.
    pub async fn load(&self) -> anyhow::Result<()> {
        let (mut signing, mut encryption) = (Vec::new(), Vec::new());
        for key in self.repo.keys().await? {
            let material = self.open(&key)?;
            match key.purpose {
                Purpose::Signing => signing.push((key.active_from, material)),
                Purpose::Encryption => encryption.push((key.active_from, material)),
            }
        }
        self.signer.install(&signing)?;
        self.cipher.install(&encryption)?;
        Ok(())
    }

    /// Loads the ring every refresh period until stopping begins, so keys rotated by another
    /// process are in use here without a restart. A failed load keeps the keys loaded before.
    pub async fn keep_loaded(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        while !*stopping.borrow() {
            tokio::select! {
                () = tokio::time::sleep(self.refresh) => {
                    if let Err(e) = self.load().await {
                        tracing::warn!(error = format!("{e:#}"), "could not reload the key ring; keeping the keys loaded before");
                    }
                }
                _ = stopping.changed() => {}
            }
        }
    }

    /// How long after being added a key is put in use: every instance loads it before, and a
    /// client that caches the JWKS no longer than `publish_for` has fetched it too.
    pub fn activation_delay(&self) -> Duration {
        self.refresh * 2
    }

    /// How long clients may cache the published signing keys.
    pub fn publish_for(&self) -> Duration {
        self.refresh
    }

    /// Adds a new signing key and a new encryption key, in use after `activation_delay`, and
    /// records the rotation in the audit trail, in one unit of work.
    pub async fn rotate(&self) -> anyhow::Result<Rotation> {
        let created_at = now();
        let active_from = created_at + TimeDelta::from_std(self.activation_delay())?;
        let signing = tokens::generate_key();
        let encryption = super::random_bytes::<32>().to_vec();
        let keys = [
            self.sealed(Purpose::Signing, tokens::key_id(&signing)?, &signing, active_from, created_at),
            self.sealed(Purpose::Encryption, crypto::key_id(&encryption), &encryption, active_from, created_at),
        ];
        let rotation = Rotation { signing_kid: keys[0].kid.clone(), encryption_kid: keys[1].kid.clone(), active_from };
        let entry = NewEntry::new(Action::KeysRotated, &Actor::keel()).details(serde_json::json!({
            "signing_kid": rotation.signing_kid,
            "encryption_kid": rotation.encryption_kid,
            "active_from": active_from,
        }));
        let (keys, entry) = (&keys, &entry);
        self.store
            .transact(|mut tx| async move {
                for key in keys {
                    repo::insert(&mut tx, key).await?;
                }
                audit::append(&mut tx, entry, created_at).await?;
                Ok::<_, StoreError>((tx, ()))
            })
            .await?;
        self.load().await?;
        Ok(rotation)
    }

    /// Re-seals every value of `SEALED_COLUMNS` not sealed by the encryption key in use, `batch`
    /// rows per unit of work; `progress` hears each column's running count after each batch.
    /// Returns how many values were re-sealed. Readers are never blocked: each value is
    /// readable before, during and after (the old key stays in the ring).
    pub async fn reencrypt(&self, batch: u32, mut progress: impl FnMut(&SealedColumn, u64)) -> anyhow::Result<u64> {
        let fresh = self.cipher.current_prefix();
        let mut total = 0;
        for column in &SEALED_COLUMNS {
            let (mut after, mut done) = (String::new(), 0);
            loop {
                let stale = self.repo.stale(column, &fresh, &after, batch).await?;
                let Some(last) = stale.last() else { break };
                after = last.id.clone();
                let mut resealed = Vec::with_capacity(stale.len());
                for value in &stale {
                    let plain = self.cipher.decrypt(column.bound_to, &value.sealed).with_context(|| {
                        format!("{}.{} of row {} cannot be opened with any key of the ring", column.table, column.column, value.id)
                    })?;
                    resealed.push((value, self.cipher.encrypt(column.bound_to, &plain)));
                }
                let resealed = &resealed;
                done += self
                    .store
                    .transact(|mut tx| async move {
                        let mut n = 0;
                        for (value, sealed) in resealed {
                            n += u64::from(repo::reseal(&mut tx, column, value, sealed.clone()).await?);
                        }
                        Ok::<_, StoreError>((tx, n))
                    })
                    .await?;
                progress(column, done);
            }
            total += done;
        }
        Ok(total)
    }

    fn sealed(&self, purpose: Purpose, kid: String, material: &[u8], active_from: DateTime<Utc>, created_at: DateTime<Utc>) -> StoredKey {
        let sealed = self.kek.encrypt(&bound_name(purpose, &kid), &STANDARD.encode(material));
        StoredKey { kid, purpose, sealed, active_from, created_at }
    }

    fn open(&self, key: &StoredKey) -> anyhow::Result<Vec<u8>> {
        let encoded = self.kek.decrypt(&bound_name(key.purpose, &key.kid), &key.sealed).map_err(|_| {
            anyhow::anyhow!(
                "the key ring's {} key {} cannot be opened with this key_encryption_key: every instance needs the same one",
                key.purpose.name(),
                key.kid
            )
        })?;
        Ok(STANDARD.decode(encoded)?)
    }
}

/// A fresh signing key, encryption key and key-encryption key as `KEEL_*=…` lines: the keys
/// every instance of a deployment is configured with.
pub fn generated_settings() -> String {
    let signing = STANDARD.encode(tokens::generate_key());
    let encryption = STANDARD.encode(super::random_bytes::<32>());
    let kek = STANDARD.encode(super::random_bytes::<32>());
    format!("KEEL_SIGNING_KEY={signing}\nKEEL_ENCRYPTION_KEY={encryption}\nKEEL_KEY_ENCRYPTION_KEY={kek}\n")
}

/// What a sealed key is bound to: its purpose and id, so a sealed key cannot pass for another.
fn bound_name(purpose: Purpose, kid: &str) -> String {
    format!("key_ring.{}.{kid}", purpose.name())
}
