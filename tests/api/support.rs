//! Real peers for background-work tests: an SMTP server, a webhook receiver, a TOTP
//! generator, and polling for things that happen asynchronously.

use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;

pub use crate::poll::eventually;

pub use crate::smtp::smtp_server;

/// Asks for a password reset for `email` (through `/forgot`), then resets the password to
/// `new_password` with the mailed token; returns the token.
pub async fn reset_password_by_mail(app: &crate::helpers::TestApp, email: &str, new_password: &str) -> String {
    app.post_json("/v1/auth/password/forgot", &serde_json::json!({ "email": email })).await.expect(202);
    let mail =
        eventually(20, "the reset mail", || async { mail_files(&app.data_dir).into_iter().find(|m| m.contains("Reset your password")) })
            .await;
    let token = token_in(&mail, "/reset-password");
    app.post_json("/v1/auth/password/reset", &serde_json::json!({ "token": token, "new_password": new_password })).await.expect(204);
    token
}

/// Decodes quoted-printable text (soft line breaks and `=XX` escapes).
pub fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'=' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
            .flatten();
        if let Some(b) = escaped {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The single-use token of the first `…<path>?token=<token>` link in a raw message.
pub fn token_in(message: &str, path: &str) -> String {
    let text = decode_quoted_printable(message);
    let marker = format!("{path}?token=");
    let start = text.find(&marker).unwrap_or_else(|| panic!("no {marker} link in the message:\n{text}")) + marker.len();
    let token: String = text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    crate::logs::remember_secret(&token);
    token
}

/// The `.eml` files the file mailer wrote, as text.
pub fn mail_files(data_dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("mail")) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

/// The current RFC 6238 time step (30 s).
pub fn totp_step_now() -> u64 {
    (chrono::Utc::now().timestamp() / 30) as u64
}

/// The current RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret.
pub fn totp_now(secret_base32: &str) -> String {
    crate::logs::remember_secret(secret_base32);
    totp_at(secret_base32, totp_step_now())
}

/// The RFC 6238 code of a base32 secret at time step `counter`, written here from the RFC so
/// the server's implementation is checked against an independent one.
pub fn totp_at(secret_base32: &str, counter: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut nbits = 0;
    let mut key = Vec::new();
    for c in secret_base32.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase()).expect("base32") as u64;
        bits = (bits << 5) | v;
        nbits += 5;
        if nbits >= 8 {
            key.push((bits >> (nbits - 8)) as u8);
            nbits -= 8;
        }
    }
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key);
    let mac = aws_lc_rs::hmac::sign(&key, &counter.to_be_bytes());
    let mac = mac.as_ref();
    let offset = (mac[19] & 0x0f) as usize;
    let code = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]) % 1_000_000;
    format!("{code:06}")
}

#[test]
fn totp_matches_the_rfc_6238_test_vector() {
    // RFC 6238 appendix B, SHA-1 key "12345678901234567890", T = 59 s (step 1): 94287082.
    assert_eq!(totp_at("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 1), "287082");
    assert_eq!(totp_at("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 1_111_111_109 / 30), "081804");
}

/// One request a webhook receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub signature: String,
    /// The `traceparent` header, when one was sent.
    pub traceparent: Option<String>,
    pub body: Vec<u8>,
    pub status: u16,
}

/// An HTTP server that answers webhook POSTs with the statuses scripted in `plan` (then 200),
/// or never answers when the planned status is 0.
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

pub async fn webhook_receiver(plan: Vec<u16>) -> Receiver {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let plan = Arc::new(Mutex::new(plan.into_iter()));
    let log = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (log, plan) = (log.clone(), plan.clone());
            async move {
                let status = plan.lock().unwrap().next().unwrap_or(200);
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let (signature, traceparent) = (header("keel-signature").unwrap_or_default(), header("traceparent"));
                log.lock().unwrap().push(Received { signature, traceparent, body: body.to_vec(), status });
                if status == 0 {
                    std::future::pending::<()>().await;
                }
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, received }
}

/// Verifies `Keel-Signature: t=…,v1=…` the way the documentation tells receivers to:
/// HMAC-SHA256 over `"<t>.<raw body>"` with the endpoint secret, hex, constant-time compare.
pub fn signature_is_valid(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_owned()),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap_or(0);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let message = [t.as_bytes(), b".", body].concat();
    age.abs() <= 300 && aws_lc_rs::hmac::verify(&key, &message, &v1).is_ok()
}

/// Starts the `keel` binary (e.g. `worker`) on `app`'s data dir and database, in the background.
pub fn spawn_keel(app: &crate::helpers::TestApp, args: &[&str], extra_env: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = crate::helpers::keel_command(args);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    cmd.current_dir(&app.data_dir).env("KEEL_DATA_DIR", &app.data_dir).env("KEEL_LOG", "warn");
    cmd.env("KEEL_WEBHOOK_ALLOWED_NETWORKS", crate::helpers::RECEIVER_NETWORKS);
    if let Some(url) = &app.database_url {
        cmd.env("KEEL_DATABASE_URL", url);
    }
    for (key, value) in extra_env {
        cmd.env(key, value);
    }
    cmd.spawn().expect("the keel binary starts")
}
