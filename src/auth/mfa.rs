//! TOTP multi-factor authentication (RFC 6238: SHA-1, 6 digits, 30 s) and recovery codes.

use serde::Serialize;
use totp_rs::{Algorithm, Builder, Secret, Totp};
use utoipa::ToSchema;

use super::error::AuthError;
use super::repo::UserRow;
use super::service::{Accounts, Principal};
use crate::events::{Effects, EventType};
use crate::security::audit::{Action, NewEntry};
use crate::security::{random_bytes, sha256_hex};
use crate::store::{Tx, now};
use crate::validation::Invalid;

pub(crate) const SECRET_COLUMN: &str = "users.totp";
const ISSUER: &str = "Keel";
pub const RECOVERY_CODES: usize = 10;

#[derive(Debug, Serialize, ToSchema)]
pub struct TotpSetup {
    /// Base32 secret, for manual entry in an authenticator app.
    pub secret: String,
    /// `otpauth://totp/…` URL (render it as a QR code).
    pub otpauth_url: String,
}

fn totp(secret_base32: &str, account: &str) -> anyhow::Result<Totp> {
    let secret = Secret::try_from_base32(secret_base32).map_err(|e| anyhow::anyhow!("TOTP secret: {e:?}"))?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| anyhow::anyhow!("TOTP parameters: {e:?}"))
}

/// The matched time step of `code`, if it is valid now (one step of clock skew either way).
fn check(totp: &Totp, code: &str) -> Option<i64> {
    let now = u64::try_from(chrono::Utc::now().timestamp()).ok()?;
    totp.check(code.trim(), now).and_then(|step| i64::try_from(step).ok())
}

/// Recovery codes as shown to the user: `xxxxx-xxxxx`, 50 bits each.
fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw = random_bytes::<10>();
            let chars: String = raw.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect()
}

fn recovery_hash(code: &str) -> String {
    let normal: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase();
    sha256_hex(normal.as_bytes())
}

fn looks_like_totp(code: &str) -> bool {
    let code = code.trim();
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

impl Accounts {
    /// Starts MFA set-up: a new secret, pending until confirmed with a code.
    pub async fn totp_setup(&self, who: &Principal) -> Result<TotpSetup, AuthError> {
        let row = self.user_row(&who.user_id).await?;
        if row.mfa_enabled {
            return Err(AuthError::Conflict("MFA is already enabled; disable it first"));
        }
        let secret = Secret::from(random_bytes::<20>().to_vec()).to_base32();
        let otpauth_url = totp(&secret, &row.email)?.to_url().map_err(|e| anyhow::anyhow!("otpauth URL: {e:?}"))?;
        let (user_id, sealed) = (who.user_id.as_str(), self.cipher.encrypt(SECRET_COLUMN, &secret));
        let sealed = sealed.as_str();
        self.transact(|mut tx| async move {
            self.repo.set_totp_pending(&mut tx, user_id, sealed, now()).await?;
            Ok::<_, AuthError>((tx, ()))
        })
        .await?;
        Ok(TotpSetup { secret, otpauth_url })
    }

    /// Confirms set-up with a current code; returns the recovery codes (shown once).
    pub async fn totp_enable(&self, who: &Principal, code: &str) -> Result<Vec<String>, AuthError> {
        let row = self.user_row(&who.user_id).await?;
        if row.mfa_enabled {
            return Err(AuthError::Conflict("MFA is already enabled"));
        }
        let sealed = row.totp_pending_enc.ok_or(AuthError::Conflict("start with POST /v1/auth/mfa/totp/setup"))?;
        let secret = self.cipher.decrypt(SECRET_COLUMN, &sealed).map_err(anyhow::Error::from)?;
        let step = check(&totp(&secret, &row.email)?, code).ok_or_else(|| Invalid::one("code", "invalid", "the code is not valid"))?;
        let codes = new_recovery_codes();
        let hashes: Vec<String> = codes.iter().map(|c| recovery_hash(c)).collect();
        let effects = Effects::default()
            .event(EventType::AccountMfaEnabled, &who.user_id, serde_json::json!({}))
            .audit(NewEntry::new(Action::MfaEnabled, &who.actor()).target(&who.user_id));
        let (user_id, sealed, hashes, effects) = (who.user_id.as_str(), sealed.as_str(), hashes.as_slice(), &effects);
        self.transact(|mut tx| async move {
            self.repo.enable_totp(&mut tx, user_id, sealed, step, now()).await?;
            self.repo.replace_recovery_codes(&mut tx, user_id, hashes).await?;
            effects.write(&mut tx, now()).await?;
            Ok::<_, AuthError>((tx, ()))
        })
        .await?;
        Ok(codes)
    }

    pub async fn totp_disable(&self, who: &Principal, password: &str) -> Result<(), AuthError> {
        let row = self.verified_owner(who, password).await?;
        if !row.mfa_enabled {
            return Ok(());
        }
        let effects = Effects::default()
            .event(EventType::AccountMfaDisabled, &who.user_id, serde_json::json!({}))
            .audit(NewEntry::new(Action::MfaDisabled, &who.actor()).target(&who.user_id));
        let (user_id, effects) = (who.user_id.as_str(), &effects);
        self.transact(|mut tx| async move {
            self.repo.disable_totp(&mut tx, user_id, now()).await?;
            // Recovery codes belong to the factor: they go with it.
            self.repo.replace_recovery_codes(&mut tx, user_id, &[]).await?;
            effects.write(&mut tx, now()).await?;
            Ok((tx, ()))
        })
        .await
    }

    /// The second factor at login, a step of its unit of work: a current TOTP code (each time
    /// step once) or an unused recovery code.
    pub(super) async fn second_factor(&self, tx: &mut Tx, row: &UserRow, code: Option<&str>) -> Result<(), AuthError> {
        let (Some(code), Some(sealed)) = (code.filter(|c| !c.trim().is_empty()), row.totp_secret_enc.as_deref()) else {
            return Err(AuthError::MfaRequired);
        };
        let accepted = if looks_like_totp(code) {
            let secret = self.cipher.decrypt(SECRET_COLUMN, sealed).map_err(anyhow::Error::from)?;
            match check(&totp(&secret, &row.email)?, code) {
                Some(step) => self.repo.use_totp_step(tx, &row.id, step).await?,
                None => false,
            }
        } else {
            self.repo.use_recovery_code(tx, &row.id, &recovery_hash(code), now()).await?
        };
        if accepted { Ok(()) } else { Err(AuthError::MfaRequired) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_code_checks_and_a_wrong_one_does_not() {
        let secret = Secret::from(random_bytes::<20>().to_vec()).to_base32();
        let t = totp(&secret, "ada@example.com").unwrap();
        let code = t.generate(chrono::Utc::now().timestamp() as u64).to_string();
        assert!(check(&t, &code).is_some());
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
        assert!(check(&t, &wrong).is_none());
        assert!(t.to_url().unwrap().starts_with("otpauth://totp/Keel:ada%40example.com?"));
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalised() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert_eq!(codes.iter().collect::<std::collections::HashSet<_>>().len(), RECOVERY_CODES);
        assert_eq!(recovery_hash("ABCDE-fghjk"), recovery_hash("abcde fghjk"));
        assert!(looks_like_totp(" 123456 ") && !looks_like_totp("abcde-fghjk"));
    }
}
