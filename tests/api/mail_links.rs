//! Mailed links out of the box: without `app_base_url` they point at Keel's own built-in
//! pages, which are self-contained under a strict CSP; the mail folder is the owner's alone.

use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app};
use crate::support::{eventually, mail_files, token_in};

/// The `src` and `href` values of an HTML page.
fn references(html: &str) -> Vec<String> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|attr| html.match_indices(attr).map(move |(i, _)| &html[i + attr.len()..]))
        .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
        .collect()
}

#[track_caller]
fn assert_strict_csp(csp: &str) {
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for expected in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'none'", "base-uri 'none'"] {
        assert!(directives.contains(&expected), "{expected} in the CSP {csp:?}");
    }
    for loose in ["unsafe-inline", "unsafe-eval", "*", "http:", "https:", "data:"] {
        assert!(!csp.contains(loose), "{loose} in the CSP {csp:?}");
    }
}

#[tokio::test]
async fn the_built_in_pages_load_nothing_from_elsewhere_under_a_strict_csp() {
    let app = spawn_app().await;
    for path in ["/verify-email", "/reset-password"] {
        let reply = app.get(&format!("{path}?token=abc")).await.expect(200);
        assert!(reply.header("content-type").unwrap_or_default().starts_with("text/html"), "{path}");
        assert_strict_csp(reply.header("content-security-policy").unwrap_or_else(|| panic!("{path} has a CSP")));
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"), "{path}: the token must not leak in Referer");
        assert!(!reply.text.contains("://") && !reply.text.contains("<style") && !reply.text.contains(" style="), "{path}: {}", reply.text);
        let refs = references(&reply.text);
        assert!(refs.iter().any(|r| r.ends_with(".js")), "{path} loads a script: {refs:?}");
        for reference in refs {
            assert!(reference.starts_with('/') && !reference.starts_with("//"), "{path} refers to {reference}: same origin only");
            let asset = app.get(&reference).await.expect(200);
            assert_strict_csp(asset.header("content-security-policy").unwrap_or_default());
            let kind = asset.header("content-type").unwrap_or_default();
            assert!(kind.starts_with(if reference.ends_with(".js") { "text/javascript" } else { "text/css" }), "{reference}: {kind}");
        }
    }
    let script = app.get("/pages/account.js").await.expect(200).text;
    for call in ["/v1/auth/verify-email", "/v1/auth/password/reset", "history.replaceState"] {
        assert!(script.contains(call), "the script uses {call}");
    }
    assert!(!script.contains("://") && !script.contains("innerHTML"), "no other origin, no HTML injection");
}

#[tokio::test]
async fn mailed_links_point_at_keels_own_pages_when_app_base_url_is_unset() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let mail = eventually(20, "the verification mail", || async { mail_files(&app.data_dir).into_iter().next() }).await;
    let token = token_in(&mail, &format!("{}/verify-email", app.address));
    app.get(&format!("/verify-email?token={token}")).await.expect(200);
    app.post_json("/v1/auth/verify-email", &json!({ "token": token })).await.expect(204);
    assert_eq!(app.me(&ada.access).await.expect(200).json()["email_verified"], true);

    app.post_json("/v1/auth/password/forgot", &json!({ "email": "ada@example.com" })).await.expect(202);
    let mail =
        eventually(20, "the reset mail", || async { mail_files(&app.data_dir).into_iter().find(|m| m.contains("Reset your password")) })
            .await;
    let token = token_in(&mail, &format!("{}/reset-password", app.address));
    app.get(&format!("/reset-password?token={token}")).await.expect(200);
    let new_password = "a brand new passphrase";
    app.post_json("/v1/auth/password/reset", &json!({ "token": token, "new_password": new_password })).await.expect(204);
    app.login("ada@example.com", new_password).await;
    app.try_login("ada@example.com", PASSWORD).await.problem(401, "invalid_credentials");
}

#[cfg(unix)]
#[tokio::test]
async fn mail_files_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let app = spawn_app().await;
    app.customer("ada@example.com").await;
    eventually(20, "the verification mail", || async { mail_files(&app.data_dir).into_iter().next() }).await;
    let dir = app.data_dir.join("mail");
    let dir_mode = std::fs::metadata(&dir).expect("a mail folder").permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "mail folder mode {dir_mode:o}");
    let files: Vec<_> = std::fs::read_dir(&dir).expect("readable").flatten().collect();
    assert!(!files.is_empty());
    for file in files {
        let mode = file.metadata().expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.path().display());
    }
}
