//! Field encryption at rest (AES-256-GCM). Each value carries the id of the key that sealed
//! it, and the column it belongs to is bound as associated data, so a ciphertext copied
//! into another column does not decrypt.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{random_bytes, sha256_hex};

pub struct FieldCipher {
    key_id: String,
    key: LessSafeKey,
}

#[derive(Debug, thiserror::Error)]
#[error("encrypted field cannot be decrypted")]
pub struct DecryptError;

impl FieldCipher {
    pub fn new(key: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(key.len() == 32, "the encryption key must be 32 bytes");
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| anyhow::anyhow!("invalid encryption key"))?;
        Ok(Self { key_id: sha256_hex(key)[..8].to_owned(), key: LessSafeKey::new(unbound) })
    }

    /// Seals `plain` for `column`: `v1.<key id>.<base64(nonce ‖ ciphertext ‖ tag)>`.
    pub fn encrypt(&self, column: &str, plain: &str) -> String {
        let nonce = random_bytes::<NONCE_LEN>();
        let mut buf = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(column.as_bytes()), &mut buf)
            .expect("AES-GCM sealing cannot fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("v1.{}.{}", self.key_id, URL_SAFE_NO_PAD.encode(out))
    }

    pub fn decrypt(&self, column: &str, sealed: &str) -> Result<String, DecryptError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some("v1"), Some(kid), Some(body)) = (parts.next(), parts.next(), parts.next()) else { return Err(DecryptError) };
        if kid != self.key_id {
            return Err(DecryptError);
        }
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| DecryptError)?;
        if raw.len() < NONCE_LEN {
            return Err(DecryptError);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| DecryptError)?;
        let mut buf = ct.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(column.as_bytes()), &mut buf).map_err(|_| DecryptError)?;
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
}
