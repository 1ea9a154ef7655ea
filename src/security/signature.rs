//! `Keel-Signature`: the one signing scheme for webhooks, outgoing (our deliveries) and incoming
//! (the payment provider's events).
//!
//! Header: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. Several `v1` values are
//! allowed so a sender can sign with an old and a new secret while the secret rotates.

use std::time::Duration;

use aws_lc_rs::hmac;

/// How far a signature's timestamp may be from the receiver's clock (either way).
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// Why a signature was refused; for logs only (a client is told `400` whatever the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    Expired,
    #[error("no signature matches")]
    Mismatch,
}

/// The header value for `body` signed with `secret` at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("t={timestamp},v1={}", hex::encode(hmac::sign(&key, &signed_message(timestamp, body)).as_ref()))
}

/// Checks a `Keel-Signature` header against the raw `body`: a timestamp within `tolerance` of
/// `now` and at least one `v1` that matches (compared in constant time by aws-lc-rs).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance: Duration) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) if timestamp.is_none() => timestamp = Some(t.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", sig)) => candidates.push(hex::decode(sig).map_err(|_| SignatureError::Malformed)?),
            // Other schemes (a future v2) are skipped, as Stripe's receivers do.
            Some((_, _)) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let (Some(t), false) = (timestamp, candidates.is_empty()) else { return Err(SignatureError::Malformed) };
    // abs_diff: a hostile timestamp such as i64::MIN cannot overflow the subtraction.
    if now.abs_diff(t) > tolerance.as_secs() {
        return Err(SignatureError::Expired);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let message = signed_message(t, body);
    if candidates.iter().any(|sig| hmac::verify(&key, &message, sig).is_ok()) { Ok(()) } else { Err(SignatureError::Mismatch) }
}

fn signed_message(timestamp: i64, body: &[u8]) -> Vec<u8> {
    [timestamp.to_string().as_bytes(), b".", body].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000;
    const BODY: &[u8] = b"{\"a\":1}";

    #[test]
    fn a_signature_verifies_and_tampering_does_not() {
        let sig = sign(b"whsec", T, BODY);
        assert_eq!(verify(b"whsec", &sig, BODY, T + 10, TOLERANCE), Ok(()));
        assert_eq!(verify(b"whsec", &sig, b"{\"a\":2}", T + 10, TOLERANCE), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        let sig = sign(b"whsec", T, BODY);
        assert_eq!(verify(b"other", &sig, BODY, T, TOLERANCE), Err(SignatureError::Mismatch));
    }

    #[test]
    fn timestamps_beyond_five_minutes_either_way_are_refused() {
        let sig = sign(b"whsec", T, BODY);
        assert_eq!(verify(b"whsec", &sig, BODY, T + 300, TOLERANCE), Ok(()));
        assert_eq!(verify(b"whsec", &sig, BODY, T + 301, TOLERANCE), Err(SignatureError::Expired));
        assert_eq!(verify(b"whsec", &sig, BODY, T - 301, TOLERANCE), Err(SignatureError::Expired));
        let hostile = format!("t={},v1=00", i64::MIN);
        assert_eq!(verify(b"whsec", &hostile, BODY, T, TOLERANCE), Err(SignatureError::Expired));
    }

    #[test]
    fn a_rotated_secret_is_accepted_among_several_v1_values() {
        let old = sign(b"old", T, BODY);
        let new = sign(b"new", T, BODY);
        let v1 = |s: &str| s.split_once(",v1=").unwrap().1.to_owned();
        let header = format!("t={T},v1={},v1={}", v1(&old), v1(&new));
        assert_eq!(verify(b"new", &header, BODY, T, TOLERANCE), Ok(()));
        assert_eq!(verify(b"old", &header, BODY, T, TOLERANCE), Ok(()));
        assert_eq!(verify(b"third", &header, BODY, T, TOLERANCE), Err(SignatureError::Mismatch));
    }

    #[test]
    fn garbled_headers_are_malformed() {
        let sig = sign(b"whsec", T, BODY);
        let v1 = sig.split_once(",v1=").unwrap().1;
        for header in
            ["", "garbage", "t=abc,v1=00", &format!("t={T}"), &format!("v1={v1}"), &format!("t={T},v1=zz"), &format!("t={T},,v1={v1}")]
        {
            assert_eq!(verify(b"whsec", header, BODY, T, TOLERANCE), Err(SignatureError::Malformed), "{header:?}");
        }
    }

    #[test]
    fn unknown_schemes_are_skipped() {
        let sig = sign(b"whsec", T, BODY);
        assert_eq!(verify(b"whsec", &format!("{sig},v0=abc"), BODY, T, TOLERANCE), Ok(()));
    }
}
