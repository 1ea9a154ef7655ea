//! Key rotation: `keel keys rotate` adds a signing and an encryption key that running instances
//! take up without a restart, every token and stored value stays readable throughout, stored
//! values move to the new key, several instances agree on the keys, and an instance with another
//! key-encryption key refuses to start rather than serve with keys it cannot open.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, jwt_parts, spawn_app_with};
use crate::support::eventually;

/// Instances reload the ring every second, so a rotation's keys are in use two seconds after.
const FAST_RING: (&str, &str) = ("key_ring_refresh_secs", "1");
const KEY_ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn kid(token: &str) -> String {
    jwt_parts(token).0["kid"].as_str().expect("a kid").to_owned()
}

/// The key id of a sealed value `v1.<kid>.<…>`.
fn sealed_by(value: &str) -> &str {
    value.split('.').nth(1).expect("a sealed value")
}

/// Runs `keel keys rotate` with the app's configuration; returns what it printed.
async fn rotate(app: &TestApp) -> String {
    let out = app.keel(&["keys", "rotate"], "").await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "keel keys rotate failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The id a rotation printed for its new key of `kind` ("signing key X and encryption key Y").
fn added(output: &str, kind: &str) -> String {
    let after = output.split(&format!("{kind} key ")).nth(1).expect("the new key's id in the output");
    after.split_whitespace().next().expect("a key id").to_owned()
}

async fn sign_in_until_signed_by(app: &TestApp, email: &str, wanted: &str) -> String {
    eventually(30, "a sign-in signed with the new key", || async {
        let access = app.login(email, PASSWORD).await.access;
        (kid(&access) == wanted).then_some(access)
    })
    .await
}

#[tokio::test]
async fn rotation_keeps_tokens_and_values_readable_and_moves_stored_values_to_the_new_key() {
    let app = spawn_app_with(&[FAST_RING]).await;
    let admin = app.create_staff("root@example.com", PASSWORD, "admin").await;
    let ada = app.customer("ada@example.com").await;
    let profile = json!({ "phone": "+442079460000", "address": { "line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB" } });
    app.patch_json_authed("/v1/me", &ada.access, &profile).await.expect(200);
    let endpoint = json!({ "url": "http://127.0.0.1:9/hook", "events": ["order.updated"] });
    app.post_json_authed("/v1/admin/webhook-endpoints", &admin.access, &endpoint).await.expect(201);
    let old_signing = kid(&ada.access);
    let old_sealing = app.texts("SELECT phone_enc FROM users WHERE phone_enc IS NOT NULL").await;
    let old_sealing = sealed_by(&old_sealing[0]).to_owned();

    let output = rotate(&app).await;
    let (signing, sealing) = (added(&output, "signing"), added(&output, "encryption"));
    assert!(signing != old_signing && sealing != old_sealing, "new keys: {output}");
    assert!(output.contains("users.phone_enc: 1 re-encrypted"), "{output}");
    assert!(output.contains("users.address_enc: 1 re-encrypted"), "{output}");
    assert!(output.contains("webhook_endpoints.secret_enc: 1 re-encrypted"), "{output}");

    // The running server took the new signing key up without a restart, and still accepts
    // (and publishes) the old one, whose tokens have not expired.
    let fresh = sign_in_until_signed_by(&app, "ada@example.com", &signing).await;
    app.me(&fresh).await.expect(200);
    let me = app.me(&ada.access).await.expect(200).json();
    assert_eq!(me["phone"], "+442079460000", "values re-sealed with the new key read back");
    assert_eq!(me["address"]["city"], "London");
    let jwks = app.get("/.well-known/jwks.json").await.expect(200).json();
    let published: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(published, [signing.as_str(), old_signing.as_str()], "the key in use first, then the replaced one");

    let sealed = app.texts("SELECT phone_enc FROM users WHERE phone_enc IS NOT NULL UNION ALL SELECT address_enc FROM users WHERE address_enc IS NOT NULL UNION ALL SELECT secret_enc FROM webhook_endpoints").await;
    assert_eq!(sealed.len(), 3);
    assert!(sealed.iter().all(|v| sealed_by(v) == sealing), "every stored value is sealed by the new key: {sealed:?}");
    let profile = json!({ "phone": "+442079460001" });
    app.patch_json_authed("/v1/me", &ada.access, &profile).await.expect(200);
    let phone = app.texts("SELECT phone_enc FROM users WHERE phone_enc IS NOT NULL").await;
    assert_eq!(sealed_by(&phone[0]), sealing, "new values are sealed by the new key");

    let trail = app.get_query_authed("/v1/admin/audit", &admin.access, &[("action", "keys.rotated")]).await.expect(200).json();
    let entry: &Value = &trail["data"][0];
    assert_eq!(entry["details"]["signing_kid"], signing.as_str());
    assert_eq!(entry["details"]["encryption_kid"], sealing.as_str());
    assert!(!trail.to_string().contains(KEY_ENCRYPTION_KEY), "no key material in the trail");

    // After a restart the rotated keys come from the ring.
    let app = app.restart().await;
    app.me(&fresh).await.expect(200);
    assert_eq!(app.me(&ada.access).await.expect(200).json()["phone"], "+442079460001");
}

#[tokio::test]
async fn several_instances_agree_on_rotated_keys() {
    let first = spawn_app_with(&[FAST_RING, ("key_encryption_key", KEY_ENCRYPTION_KEY)]).await;
    // Each instance has its own data dir, so before any rotation each signs with a key of its own.
    let second = first.same_database_instance().await;
    let ada = first.customer("ada@example.com").await;
    second.me(&ada.access).await.problem(401, "invalid_token");

    let signing = added(&rotate(&first).await, "signing");
    let token = sign_in_until_signed_by(&first, "ada@example.com", &signing).await;
    second.me(&token).await.expect(200);
    let token = sign_in_until_signed_by(&second, "ada@example.com", &signing).await;
    first.me(&token).await.expect(200);
}

#[tokio::test]
async fn an_instance_with_another_key_encryption_key_refuses_to_start() {
    let app = spawn_app_with(&[FAST_RING, ("key_encryption_key", KEY_ENCRYPTION_KEY)]).await;
    rotate(&app).await;
    let other = [("key_encryption_key", "HxwdHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=")];
    let serving = app.keel_with(&["serve"], &other, "");
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), serving).await.expect("keel serve stops at once");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot be opened with this key_encryption_key"), "{stderr}");
    assert!(!stderr.contains(KEY_ENCRYPTION_KEY) && !stderr.contains(other[0].1), "no key material in the message");
}

#[tokio::test]
async fn keys_generate_prints_fresh_keys_a_server_starts_with() {
    let generate = || async {
        let out = crate::helpers::run_keel(&["keys", "generate"], &[], "").await;
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let (printed, again) = (generate().await, generate().await);
    assert_ne!(printed, again, "each run makes new keys");
    let settings: Vec<(String, String)> = printed
        .lines()
        .map(|line| {
            let (name, value) = line.split_once('=').expect("NAME=value");
            (name.strip_prefix("KEEL_").expect("a KEEL_ variable").to_lowercase(), value.to_owned())
        })
        .collect();
    let names: Vec<&str> = settings.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["signing_key", "encryption_key", "key_encryption_key"]);
    let overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = spawn_app_with(&overrides).await;
    let ada = app.customer("ada@example.com").await;
    let jwks = app.get("/.well-known/jwks.json").await.expect(200).json();
    assert_eq!(jwks["keys"][0]["kid"], kid(&ada.access).as_str(), "tokens are signed with the generated key");
}
