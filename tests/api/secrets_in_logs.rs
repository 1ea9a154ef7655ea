//! No secret reaches a log: a server logging everything at debug level goes through sign-up,
//! sign-in, refresh and its reuse, password change and reset, MFA, a webhook endpoint and a key
//! rotation, and its logs hold none of the passwords, tokens, codes or secrets that passed.
//! (`.ci/scan-logs` runs the same search over the logs of a whole pass of the suite.)

use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app_process_with};
use crate::support::{reset_password_by_mail, totp_now};

#[tokio::test]
async fn a_server_logging_at_debug_level_logs_no_password_token_or_secret() {
    let app = spawn_app_process_with(&[("log", "debug"), ("key_ring_refresh_secs", "1")]).await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let renewed = crate::helpers::Tokens::from_reply(app.refresh(&ada.refresh).await.expect(200));
    app.refresh(&ada.refresh).await.problem(401, "token_reused");
    app.try_login("ada@example.com", "a wrong password of some length").await.problem(401, "invalid_credentials");

    let fresh = app.login("ada@example.com", PASSWORD).await;
    let changed = "a brand new passphrase";
    let body = json!({ "current_password": PASSWORD, "new_password": changed });
    app.post_json_authed("/v1/auth/password/change", &fresh.access, &body).await.expect(204);
    let reset = "another fresh passphrase";
    let reset_token = reset_password_by_mail(&app, "ada@example.com", reset).await;

    let signed_in = app.login("ada@example.com", reset).await;
    let setup = app.post_json_authed("/v1/auth/mfa/totp/setup", &signed_in.access, &json!({})).await.expect(200).json();
    let totp_secret = setup["secret"].as_str().unwrap().to_owned();
    let enabled = app.post_json_authed("/v1/auth/mfa/totp/enable", &signed_in.access, &json!({ "code": totp_now(&totp_secret) })).await;
    let recovery: Vec<String> = serde_json::from_value(enabled.expect(200).json()["recovery_codes"].clone()).unwrap();

    let endpoint = json!({ "url": "http://127.0.0.1:9/hook", "events": ["*"] });
    let endpoint = app.post_json_authed("/v1/admin/webhook-endpoints", &admin.access, &endpoint).await.expect(201).json();
    let webhook_secret = endpoint["secret"].as_str().unwrap().to_owned();
    let rotated = app.keel(&["keys", "rotate"], "").await;
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));

    let logs = app.process_logs();
    let logged = |what: &str| logs.lines().any(|line| line.contains(what));
    assert!(logged("\"level\":\"DEBUG\"") && logged("request finished"), "the server logged its requests at debug level: {logs}");
    let key_files = ["jwt-ed25519.pk8", "field-encryption.key", "key-encryption.key"];
    let keys: Vec<String> = key_files.iter().map(|f| std::fs::read_to_string(app.data_dir.join("secrets").join(f)).unwrap()).collect();
    let mut secrets = vec![PASSWORD, changed, reset, &reset_token, &totp_secret, &webhook_secret];
    secrets.extend([&ada, &renewed, &fresh, &signed_in, &admin].iter().flat_map(|t| [t.access.as_str(), t.refresh.as_str()]));
    secrets.extend(recovery.iter().map(String::as_str));
    secrets.extend(keys.iter().map(|k| k.trim()));
    for secret in secrets {
        assert!(!logs.contains(secret), "a log line holds a secret starting {:?}", &secret[..6]);
    }
}
