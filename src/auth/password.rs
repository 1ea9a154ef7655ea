//! Password hashing: Argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane), run on the
//! blocking pool and bounded by a semaphore so a login flood cannot starve the runtime. The
//! 19 MiB of working memory a hash needs is kept for the next one (at most one per permit):
//! mapping it afresh cost every login thousands of page faults, and unmapping it a TLB flush
//! on every core, while the other logins hashed beside it.

use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::security::random_bytes;

#[derive(Clone)]
pub struct Hasher {
    argon: Arc<Argon2<'static>>,
    permits: Arc<Semaphore>,
    memory: Arc<Memory>,
    /// A real hash of a random password, verified against when an account does not exist,
    /// so "no such user" costs the same time as "wrong password".
    dummy: Arc<String>,
}

/// Idle working memory for hashes of the current parameters. Argon2 writes every block before
/// it reads it, so memory is reused as it is left.
struct Memory {
    blocks: usize,
    idle: Mutex<Vec<Vec<Block>>>,
}

impl Memory {
    /// Runs `hash` with working memory of `blocks` blocks: a kept one when the parameters are
    /// the current ones, else (a hash made with older parameters) a fresh one.
    fn lend<T>(&self, blocks: usize, hash: impl FnOnce(&mut [Block]) -> T) -> T {
        if blocks != self.blocks {
            return hash(&mut vec![Block::default(); blocks]);
        }
        let kept = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut memory = kept.unwrap_or_else(|| vec![Block::default(); blocks]);
        let out = hash(&mut memory);
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(memory);
        out
    }
}

impl Hasher {
    pub fn new() -> anyhow::Result<Self> {
        let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let memory = Memory { blocks: params.block_count(), idle: Mutex::default() };
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let dummy = memory.lend(memory.blocks, |m| hash_with(&argon, m, &crate::security::random_token()))?;
        Ok(Self { argon: Arc::new(argon), permits: Arc::new(Semaphore::new(cores)), memory: Arc::new(memory), dummy: Arc::new(dummy) })
    }

    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        let (argon, memory, password) = (self.argon.clone(), self.memory.clone(), password.to_owned());
        tokio::task::spawn_blocking(move || memory.lend(memory.blocks, |m| hash_with(&argon, m, &password))).await?
    }

    /// Verifies `password` against `hash`, or against the dummy hash when there is no account.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let known = hash.is_some();
        let hash = hash.map(str::to_owned).unwrap_or_else(|| self.dummy.as_ref().clone());
        let (memory, password) = (self.memory.clone(), password.to_owned());
        let ok = tokio::task::spawn_blocking(move || matches(&memory, &password, &hash)).await?;
        Ok(ok && known)
    }
}

fn failed(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("hashing a password: {e}")
}

/// A PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) of `password` under a fresh salt.
fn hash_with(argon: &Argon2<'_>, memory: &mut [Block], password: &str) -> anyhow::Result<String> {
    let salt = random_bytes::<16>();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory).map_err(failed)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(failed)?,
        salt: Some(Salt::new(&salt).map_err(failed)?),
        hash: Some(Output::new(&out).map_err(failed)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` hashes to the PHC string `stored`, under the algorithm, version and
/// parameters written in it (compared in constant time). A malformed string matches nothing.
fn matches(memory: &Memory, password: &str, stored: &str) -> bool {
    let recomputed = || -> Option<bool> {
        let stored = PasswordHash::new(stored).ok()?;
        let (salt, expected) = (stored.salt.as_ref()?, stored.hash.as_ref()?);
        let algorithm = Algorithm::try_from(stored.algorithm.as_str()).ok()?;
        let version = stored.version.map_or(Ok(Version::default()), Version::try_from).ok()?;
        let params = Params::try_from(&stored).ok()?;
        let blocks = params.block_count();
        let argon = Argon2::new(algorithm, version, params);
        let mut out = vec![0u8; expected.len()];
        memory.lend(blocks, |m| argon.hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), &mut out, m)).ok()?;
        Some(Output::new(&out).ok()? == *expected)
    };
    recomputed().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    #[tokio::test]
    async fn verifies_only_the_right_password() {
        let h = Hasher::new().unwrap();
        let hash = h.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!h.verify("wrong horse", Some(&hash)).await.unwrap());
        assert!(!h.verify("anything", None).await.unwrap());
    }

    /// A hash made by the argon2 crate's own hasher (as older versions of Keel stored them).
    fn crate_hash(m_cost_kib: u32, t_cost: u32) -> String {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(m_cost_kib, t_cost, 1, None).unwrap())
            .hash_password_with_salt(b"correct horse", &random_bytes::<16>())
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn hashes_are_standard_phc_strings_both_ways() {
        let h = Hasher::new().unwrap();
        let theirs = crate_hash(19 * 1024, 2);
        assert!(h.verify("correct horse", Some(&theirs)).await.unwrap());
        let ours = h.hash("correct horse").await.unwrap();
        assert!(PasswordHash::new(&ours).is_ok_and(|phc| {
            Argon2::default().verify_password(b"correct horse", &phc).is_ok() && Argon2::default().verify_password(b"wrong", &phc).is_err()
        }));
    }

    #[tokio::test]
    async fn a_hash_of_other_parameters_is_verified_with_its_own() {
        let h = Hasher::new().unwrap();
        let lighter = crate_hash(8 * 1024, 1);
        assert!(h.verify("correct horse", Some(&lighter)).await.unwrap());
        assert!(!h.verify("wrong horse", Some(&lighter)).await.unwrap());
        assert!(!h.verify("correct horse", Some("$argon2id$v=19$m=19456,t=2,p=1$bm90IGEgaGFzaA")).await.unwrap(), "no hash part");
    }
}
