//! Idempotency keys, the pure part: the key's rules, the request fingerprint, and what to do
//! with a request given the record its key already has. `repo` stores the records; `guard` is
//! the middleware of [idem] routes (the first response commits in the transaction of the effect).
//!
//! Stripe's semantics, as the contract states them: the same key, user, route and body replay the
//! first response; another body under the key is `422 idempotency_key_reuse`; a key whose first
//! request is still running is `409 idempotency_key_in_use`, unless its lease ran out (the
//! process holding it died), in which case the new request takes the key over.

pub mod guard;
pub mod repo;

use std::fmt;
use std::time::Duration;

use aws_lc_rs::digest;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Longest key accepted (Stripe's limit).
pub const MAX_KEY_LEN: usize = 255;
/// How long a request holds its key before another may take it over.
pub const LEASE: Duration = Duration::from_secs(60);
/// Keys are kept at least this long (the contract says ≥ 24 h).
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// A valid `Idempotency-Key`: 1–255 printable ASCII characters (space allowed inside).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No header, or an empty one: `400 idempotency_key_required`.
    #[error("this request needs an Idempotency-Key header")]
    Missing,
    /// `422 validation_failed` on the header.
    #[error("an Idempotency-Key is 1 to 255 printable ASCII characters")]
    Invalid,
}

impl IdempotencyKey {
    /// Parses the header's raw bytes (`None`: no header).
    pub fn from_header(value: Option<&[u8]>) -> Result<IdempotencyKey, KeyError> {
        match value {
            None | Some(b"") => Err(KeyError::Missing),
            Some(bytes) => std::str::from_utf8(bytes).map_err(|_| KeyError::Invalid).and_then(Self::parse),
        }
    }

    pub fn parse(key: &str) -> Result<IdempotencyKey, KeyError> {
        let printable = key.bytes().all(|b| (b' '..=b'~').contains(&b));
        // Headers lose outer spaces in transit, so a key with them could never match itself.
        let trimmed = key.trim() == key;
        if key.is_empty() || key.len() > MAX_KEY_LEN || !printable || !trimmed {
            return Err(KeyError::Invalid);
        }
        Ok(IdempotencyKey(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 (hex) of what makes two requests "the same": method, path (with its ids, so one key
/// cannot serve two orders), user and body. A JSON body is canonicalized first (keys sorted,
/// no insignificant whitespace), so a client that re-serializes its body differently still gets
/// its replay; any other body is taken byte for byte.
pub fn fingerprint(method: &str, path: &str, user_id: &str, body: &[u8]) -> String {
    let canonical = match serde_json::from_slice::<Value>(body) {
        Ok(json) => {
            let mut out = Vec::with_capacity(body.len());
            write_canonical(&json, &mut out);
            out
        }
        Err(_) => body.to_vec(),
    };
    let mut ctx = digest::Context::new(&digest::SHA256);
    // Length prefixes: ("/a", "b") and ("/ab", "") must not collide.
    for part in [method.as_bytes(), path.as_bytes(), user_id.as_bytes(), &canonical] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    hex::encode(ctx.finish().as_ref())
}

/// JSON with object keys sorted at every depth. Written here rather than trusting `Value`'s
/// map order, which a feature of serde_json (`preserve_order`) elsewhere in the build can change.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(Value::String(key.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend(scalar.to_string().as_bytes()),
    }
}

/// What a stored key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub fingerprint: String,
    pub state: RecordState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// The first request is running; its hold ends at `locked_until`.
    InFlight { locked_until: DateTime<Utc> },
    /// The first response, replayed byte for byte.
    Done { status: u16, body: Vec<u8> },
}

/// What to do with a request carrying a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The key is new, or its holder died: run the request, holding the key until `locked_until`.
    Run { locked_until: DateTime<Utc> },
    /// Send this stored response with `Idempotent-Replayed: true`.
    Replay { status: u16, body: Vec<u8> },
    /// `422 idempotency_key_reuse`.
    Reuse,
    /// `409 idempotency_key_in_use`.
    InUse,
}

/// The decision for a request with `fingerprint` at `now`, given the key's record if any.
/// The body is compared before the lease, so a different body is always `Reuse`.
pub fn decide(record: Option<&Record>, fingerprint: &str, now: DateTime<Utc>, lease: Duration) -> Decision {
    let run = Decision::Run { locked_until: now + lease };
    let Some(record) = record else { return run };
    if record.fingerprint != fingerprint {
        return Decision::Reuse;
    }
    match &record.state {
        RecordState::Done { status, body } => Decision::Replay { status: *status, body: body.clone() },
        RecordState::InFlight { locked_until } if *locked_until > now => Decision::InUse,
        RecordState::InFlight { .. } => run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_1_to_255_printable_characters() {
        assert_eq!(IdempotencyKey::parse("a").unwrap().as_str(), "a");
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("order 42 / try #1").is_ok());
        assert_eq!(IdempotencyKey::parse(&"k".repeat(256)), Err(KeyError::Invalid));
        for bad in ["", "tab\there", "new\nline", "é", " padded", "padded ", "\u{7f}"] {
            assert_eq!(IdempotencyKey::parse(bad), Err(KeyError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_or_empty_header_is_missing_and_bad_bytes_are_invalid() {
        assert_eq!(IdempotencyKey::from_header(None), Err(KeyError::Missing));
        assert_eq!(IdempotencyKey::from_header(Some(b"")), Err(KeyError::Missing));
        assert_eq!(IdempotencyKey::from_header(Some(b"\xff\xfe")), Err(KeyError::Invalid));
        assert_eq!(IdempotencyKey::from_header(Some(b"chk_1")).unwrap().to_string(), "chk_1");
    }

    #[test]
    fn the_fingerprint_ignores_json_layout_but_nothing_else() {
        let fp = |method, path, user, body: &str| fingerprint(method, path, user, body.as_bytes());
        let base = fp("POST", "/v1/checkout", "usr_1", r#"{"payment_method":"card","card_token":"tok_visa"}"#);
        assert_eq!(base.len(), 64);
        assert_eq!(base, fp("POST", "/v1/checkout", "usr_1", "{ \"card_token\": \"tok_visa\",\n \"payment_method\": \"card\" }"));
        assert_ne!(base, fp("POST", "/v1/checkout", "usr_1", r#"{"payment_method":"card","card_token":"tok_chargeDeclined"}"#));
        assert_ne!(base, fp("POST", "/v1/checkout", "usr_2", r#"{"payment_method":"card","card_token":"tok_visa"}"#));
        assert_ne!(base, fp("PUT", "/v1/checkout", "usr_1", r#"{"payment_method":"card","card_token":"tok_visa"}"#));
        assert_ne!(
            fp("POST", "/v1/admin/orders/ord_1/refunds", "usr_1", r#"{"reason":"x"}"#),
            fp("POST", "/v1/admin/orders/ord_2/refunds", "usr_1", r#"{"reason":"x"}"#)
        );
        // Nested objects are sorted too; arrays keep their order.
        assert_eq!(fp("POST", "/p", "u", r#"{"a":{"y":1,"x":[2,1]}}"#), fp("POST", "/p", "u", r#"{"a":{"x":[2,1],"y":1}}"#));
        assert_ne!(fp("POST", "/p", "u", r#"{"x":[1,2]}"#), fp("POST", "/p", "u", r#"{"x":[2,1]}"#));
        // Fields cannot slide into each other.
        assert_ne!(fp("POST", "/a", "b", ""), fp("POST", "/ab", "", ""));
        // A body that is not JSON counts byte for byte.
        assert_ne!(fp("POST", "/p", "u", "not json"), fp("POST", "/p", "u", "not  json"));
    }

    #[test]
    fn decisions_follow_the_contract() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap().with_timezone(&Utc);
        let lease = LEASE;
        let done = Record { fingerprint: "f".into(), state: RecordState::Done { status: 201, body: b"{}".to_vec() } };
        let running = |until| Record { fingerprint: "f".into(), state: RecordState::InFlight { locked_until: until } };

        assert_eq!(decide(None, "f", now, lease), Decision::Run { locked_until: now + lease });
        assert_eq!(decide(Some(&done), "f", now, lease), Decision::Replay { status: 201, body: b"{}".to_vec() });
        assert_eq!(decide(Some(&done), "g", now, lease), Decision::Reuse);
        assert_eq!(decide(Some(&running(now + lease)), "f", now, lease), Decision::InUse);
        assert_eq!(decide(Some(&running(now + lease)), "g", now, lease), Decision::Reuse, "another body is reuse, running or not");
        assert_eq!(decide(Some(&running(now)), "f", now, lease), Decision::Run { locked_until: now + lease }, "the holder died");
    }
}
