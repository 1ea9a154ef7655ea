//! Security building blocks: rate limits (in-process, or shared through Redis), persisted secrets, field encryption,
//! random tokens, webhook signatures, where outgoing requests may go, and the audit trail.

pub mod audit;
pub mod crypto;
pub mod egress;
pub mod keys;
pub mod rate_limit;
pub mod redis_limiter;
pub mod secrets;
pub mod signature;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    aws_lc_rs::rand::fill(&mut buf).expect("the system random generator failed");
    buf
}

/// An unguessable token (256 bits) in URL-safe base64.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// SHA-256 in lower-case hex; how tokens are stored (never the token itself).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}
