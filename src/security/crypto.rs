//! Field encryption at rest (AES-256-GCM). Each value carries the id of the key that sealed
//! it, and the column it belongs to is bound as associated data, so a ciphertext copied
//! into another column does not decrypt. Keys rotate through the key ring (`keys`).

use std::sync::{Arc, PoisonError, RwLock};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{hkdf, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::keys::timeline::Timeline;
use super::{random_bytes, sha256_hex};

/// Seals and opens fields with the key ring's encryption keys: the key in use seals, any key of
/// the ring opens what it sealed (the key id beside each ciphertext says which).
pub struct FieldCipher {
    base: Arc<SealingKey>,
    keys: RwLock<Arc<Timeline<Arc<SealingKey>>>>,
    /// Derived from the base key (never the AES key itself): see `keyed_hash`.
    hashing: hmac::Key,
}

struct SealingKey {
    kid: String,
    key: LessSafeKey,
}

impl SealingKey {
    fn new(key: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(key.len() == 32, "the encryption key must be 32 bytes");
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| anyhow::anyhow!("invalid encryption key"))?;
        Ok(Self { kid: key_id(key), key: LessSafeKey::new(unbound) })
    }
}

/// The id a 32-byte encryption key is known by (a prefix of its hash: says which, reveals nothing).
pub fn key_id(key: &[u8]) -> String {
    sha256_hex(key)[..8].to_owned()
}

#[derive(Debug, thiserror::Error)]
#[error("encrypted field cannot be decrypted")]
pub struct DecryptError;

impl FieldCipher {
    /// A cipher with `key` alone, until `install` adds the ring's keys.
    pub fn new(key: &[u8]) -> anyhow::Result<Self> {
        let base = Arc::new(SealingKey::new(key)?);
        let hashing = hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
            .extract(key)
            .expand(&[b"keel keyed hashes v1"], hmac::HMAC_SHA256)
            .map_err(|_| anyhow::anyhow!("deriving the hashing key failed"))?
            .into();
        Ok(Self { keys: RwLock::new(Arc::new(Timeline::new(base.clone()))), base, hashing })
    }

    /// Replaces the ring's keys (each with the instant it seals from) beside the base key.
    pub fn install(&self, ring: &[(DateTime<Utc>, Vec<u8>)]) -> anyhow::Result<()> {
        let ring = ring.iter().map(|(from, key)| Ok((*from, Arc::new(SealingKey::new(key)?)))).collect::<anyhow::Result<Vec<_>>>()?;
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Timeline::new(self.base.clone()).with(ring));
        Ok(())
    }

    fn keys(&self) -> Arc<Timeline<Arc<SealingKey>>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The start every value sealed by the key in use has: values without it are due for
    /// re-encryption.
    pub fn current_prefix(&self) -> String {
        format!("v1.{}.", self.keys().current(Utc::now()).kid)
    }

    /// Seals `plain` for `column`: `v1.<key id>.<base64(nonce ‖ ciphertext ‖ tag)>`. The column
    /// is bound as associated data, so a ciphertext copied into another column does not open.
    pub fn encrypt(&self, column: &str, plain: &str) -> String {
        let keys = self.keys();
        let sealing = keys.current(Utc::now());
        let nonce = random_bytes::<NONCE_LEN>();
        let mut buf = plain.as_bytes().to_vec();
        sealing
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(column.as_bytes()), &mut buf)
            .expect("AES-GCM sealing cannot fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("v1.{}.{}", sealing.kid, URL_SAFE_NO_PAD.encode(out))
    }

    /// HMAC-SHA-256 in hex, under a key derived from the base encryption key: how secrets that
    /// are only ever compared (API keys) are stored, so that a copy of the database alone
    /// cannot be used to test guesses. The base key never rotates, so neither do these hashes.
    pub fn keyed_hash(&self, data: &[u8]) -> String {
        hex::encode(hmac::sign(&self.hashing, data))
    }

    pub fn decrypt(&self, column: &str, sealed: &str) -> Result<String, DecryptError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some("v1"), Some(kid), Some(body)) = (parts.next(), parts.next(), parts.next()) else { return Err(DecryptError) };
        let keys = self.keys();
        let opening = keys.all().find(|k| k.kid == kid).ok_or(DecryptError)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| DecryptError)?;
        if raw.len() < NONCE_LEN {
            return Err(DecryptError);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| DecryptError)?;
        let mut buf = ct.to_vec();
        let plain = opening.key.open_in_place(nonce, Aad::from(column.as_bytes()), &mut buf).map_err(|_| DecryptError)?;
        String::from_utf8(plain.to_vec()).map_err(|_| DecryptError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_binds_the_column() {
        let c = FieldCipher::new(&[7u8; 32]).unwrap();
        let sealed = c.encrypt("phone", "+14155550100");
        assert!(!sealed.contains("4155550100"));
        assert_eq!(c.decrypt("phone", &sealed).unwrap(), "+14155550100");
        assert!(c.decrypt("address", &sealed).is_err());
        assert!(c.decrypt("phone", "v1.x.garbage").is_err());
    }

    #[test]
    fn after_a_new_key_is_installed_old_values_still_open_and_new_ones_use_it() {
        let c = FieldCipher::new(&[7u8; 32]).unwrap();
        let old = c.encrypt("phone", "+14155550100");
        let past = Utc::now() - chrono::TimeDelta::seconds(1);
        c.install(&[(past, vec![9u8; 32])]).unwrap();
        let new = c.encrypt("phone", "+14155550100");
        assert!(new.starts_with(&c.current_prefix()) && !old.starts_with(&c.current_prefix()));
        assert_eq!(c.decrypt("phone", &old).unwrap(), "+14155550100");
        assert_eq!(c.decrypt("phone", &new).unwrap(), "+14155550100");
        let other = FieldCipher::new(&[7u8; 32]).unwrap();
        assert!(other.decrypt("phone", &new).is_err(), "a cipher without the new key cannot open it");
    }

    #[test]
    fn keyed_hashes_depend_on_the_base_key_and_not_on_the_ring() {
        let c = FieldCipher::new(&[7u8; 32]).unwrap();
        let hash = c.keyed_hash(b"keel_sk_live_x");
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, crate::security::sha256_hex(b"keel_sk_live_x"));
        assert_ne!(FieldCipher::new(&[8u8; 32]).unwrap().keyed_hash(b"keel_sk_live_x"), hash);
        c.install(&[(Utc::now() - chrono::TimeDelta::seconds(1), vec![9u8; 32])]).unwrap();
        assert_eq!(c.keyed_hash(b"keel_sk_live_x"), hash);
    }

    #[test]
    fn a_key_installed_for_later_does_not_seal_yet() {
        let c = FieldCipher::new(&[7u8; 32]).unwrap();
        let before = c.current_prefix();
        c.install(&[(Utc::now() + chrono::TimeDelta::hours(1), vec![9u8; 32])]).unwrap();
        assert!(c.encrypt("phone", "x").starts_with(&before));
    }
}
