//! The audit trail: every audited action leaves its entry (and no secret), the chain stays linear
//! under concurrent writers, the database refuses to change entries, tampering behind Keel's back
//! is found (by the API and by `keel audit verify`), and the list filters and pages.

use reqwest::Method;
use serde_json::{Value, json};

use crate::checkout::{add, checkout, product, shop};
use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app};
use crate::support::{reset_password_by_mail, totp_now};
use crate::wallet::{idem_post, usd};

/// Every entry, oldest first (walking the newest-first pages).
async fn trail(app: &TestApp, admin: &Tokens, filters: &[(&str, &str)]) -> Vec<Value> {
    let mut entries: Vec<Value> = app.all_pages("/v1/admin/audit", &admin.access, filters, 100).await.concat();
    entries.reverse();
    entries
}

fn actions(entries: &[Value]) -> Vec<&str> {
    entries.iter().map(|e| e["action"].as_str().expect("an action")).collect()
}

/// Asserts that no entry holds any of `secrets` (passwords, tokens, codes, addresses).
#[track_caller]
fn assert_no_secret(entries: &[Value], secrets: &[&str]) {
    let text = serde_json::to_string(entries).unwrap();
    for secret in secrets {
        assert!(!secret.is_empty() && !text.contains(secret), "an audit entry holds {secret:?}: {text}");
    }
}

/// A POST with an `X-Request-Id` of the caller's, so its entry can be told by it.
async fn post_as(app: &TestApp, path: &str, token: Option<&str>, request_id: &str, body: &Value) -> crate::helpers::Reply {
    let mut request = app.request(Method::POST, path).header("x-request-id", request_id).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    app.send(request).await
}

async fn verify(app: &TestApp, admin: &Tokens) -> Value {
    app.get_authed("/v1/admin/audit/verify", &admin.access).await.expect(200).json()
}

#[tokio::test]
async fn sign_ins_refresh_reuse_password_and_mfa_changes_are_audited_without_secrets() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada_id = app.customer("ada@example.com").await.user_id();

    let login = Tokens::from_reply(
        post_as(&app, "/v1/auth/login", None, "req-login-1", &json!({ "email": "ada@example.com", "password": PASSWORD }))
            .await
            .expect(200),
    );
    app.try_login("ada@example.com", "not the password at all").await.problem(401, "invalid_credentials");
    app.try_login("nobody@example.com", "not the password at all").await.problem(401, "invalid_credentials");
    let renewed = Tokens::from_reply(app.refresh(&login.refresh).await.expect(200));
    app.refresh(&login.refresh).await.problem(401, "token_reused");

    let fresh = app.login("ada@example.com", PASSWORD).await;
    let changed = "a brand new passphrase";
    let body = json!({ "current_password": PASSWORD, "new_password": changed });
    post_as(&app, "/v1/auth/password/change", Some(&fresh.access), "req-change-1", &body).await.expect(204);
    let reset = "another fresh passphrase";
    let reset_token = reset_password_by_mail(&app, "ada@example.com", reset).await;

    let ada = app.login("ada@example.com", reset).await;
    let setup = app.call(Method::POST, "/v1/auth/mfa/totp/setup", Some(&ada.access), None).await.expect(200).json();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    let enabled = app.post_json_authed("/v1/auth/mfa/totp/enable", &ada.access, &json!({ "code": totp_now(&secret) })).await.expect(200);
    let recovery: Vec<String> = serde_json::from_value(enabled.json()["recovery_codes"].clone()).unwrap();
    app.try_login("ada@example.com", reset).await.problem(401, "mfa_required");
    app.post_json_authed("/v1/auth/mfa/totp/disable", &ada.access, &json!({ "password": reset })).await.expect(204);

    let entries = trail(&app, &admin, &[]).await;
    assert_eq!(
        actions(&entries),
        [
            "account.login_succeeded", // the admin, signed in by `create_admin`
            "account.login_succeeded",
            "account.login_failed",
            "account.login_failed",
            "account.refresh_token_reused",
            "account.login_succeeded",
            "account.password_changed",
            "account.password_reset",
            "account.login_succeeded",
            "account.mfa_enabled",
            "account.login_failed",
            "account.mfa_disabled",
        ]
    );
    let e = |i: usize| &entries[i];
    assert_eq!((e(0)["actor"].as_str(), e(0)["target"].as_str()), (Some(admin.user_id().as_str()), Some(admin.user_id().as_str())));
    // A sign-in names the account, the session, the address and the request.
    assert_eq!(e(1)["actor"], ada_id.as_str());
    assert_eq!(e(1)["target"], ada_id.as_str());
    assert_eq!(e(1)["ip"], "127.0.0.1");
    assert_eq!(e(1)["request_id"], "req-login-1");
    assert_eq!(e(1)["details"], json!({ "session_id": login.session_id(), "mfa": false, "method": "password" }));
    // A failure has no actor; the account it tried, or for an unknown address only a hash of it.
    assert_eq!((&e(2)["actor"], &e(2)["target"]), (&Value::Null, &json!(ada_id)));
    assert_eq!(e(2)["details"], json!({ "reason": "wrong_password" }));
    assert_eq!(e(3)["target"], Value::Null);
    assert_eq!(e(3)["details"]["reason"], "unknown_account");
    let hashed = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"nobody@example.com"));
    assert_eq!(e(3)["details"]["email_sha256"], hashed);
    assert_eq!(e(4)["details"], json!({ "session_id": login.session_id() }));
    for i in [6, 7, 9, 11] {
        assert_eq!((e(i)["actor"].as_str(), e(i)["target"].as_str()), (Some(ada_id.as_str()), Some(ada_id.as_str())), "{}", e(i));
    }
    assert_eq!(e(6)["request_id"], "req-change-1");
    assert_eq!(e(10)["details"], json!({ "reason": "second_factor" }));
    for entry in &entries {
        assert!(entry["id"].as_str().is_some_and(|id| id.starts_with("aud_")), "{entry}");
        assert!(entry["hash"].as_str().is_some_and(|h| h.len() == 64), "{entry}");
    }

    let mut secrets =
        vec![PASSWORD, "not the password at all", changed, reset, &reset_token, &secret, "ada@example.com", "nobody@example.com"];
    for tokens in [&admin, &login, &renewed, &fresh, &ada] {
        secrets.extend([tokens.access.as_str(), tokens.refresh.as_str()]);
    }
    secrets.extend(recovery.iter().map(String::as_str));
    assert_no_secret(&entries, &secrets);
    assert_eq!(verify(&app, &admin).await, json!({ "valid": true, "entries": 12 }));
}

#[tokio::test]
async fn role_changes_disabling_price_and_rule_changes_are_audited_as_the_admin() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await.user_id();
    let user = format!("/v1/admin/users/{ada}");
    app.patch_json_authed(&user, &admin.access, &json!({ "roles": ["support"] })).await.expect(200);
    app.patch_json_authed(&user, &admin.access, &json!({ "roles": ["support"] })).await.expect(200);
    app.patch_json_authed(&user, &admin.access, &json!({ "disabled": true })).await.expect(200);
    app.patch_json_authed(&user, &admin.access, &json!({ "disabled": false })).await.expect(200);

    let mug = product(&app, &admin, "MUG-1", 100, 5).await;
    let path = format!("/v1/admin/products/{mug}");
    let reply = app
        .send(
            app.request(Method::PATCH, &path)
                .bearer_auth(&admin.access)
                .header("x-request-id", "req-price-1")
                .json(&json!({ "price": usd(250) })),
        )
        .await
        .expect(200);
    let version = reply.json()["version"].clone();
    app.patch_json_authed(&path, &admin.access, &json!({ "name": "Renamed mug" })).await.expect(200);
    app.patch_json_authed(&path, &admin.access, &json!({ "price": usd(250) })).await.expect(200);

    let rule =
        json!({ "name": "Sale", "kind": "promotion", "conditions": { "coupon_code": "SECRET10" }, "effect": { "percent_bps": -1000 } });
    let rule =
        app.post_json_authed("/v1/admin/pricing/rules", &admin.access, &rule).await.expect(201).json()["id"].as_str().unwrap().to_owned();
    let rule_path = format!("/v1/admin/pricing/rules/{rule}");
    app.patch_json_authed(&rule_path, &admin.access, &json!({ "name": "Bigger sale", "effect": { "percent_bps": -2000 } }))
        .await
        .expect(200);
    app.delete_authed(&rule_path, &admin.access).await.expect(204);

    let entries = trail(&app, &admin, &[]).await;
    assert_eq!(
        actions(&entries[1..]),
        [
            "account.roles_changed",
            "account.disabled",
            "account.enabled",
            "product.price_changed",
            "pricing.rule_created",
            "pricing.rule_updated",
            "pricing.rule_deleted",
        ],
        "an unchanged role set, an edit without a new price and the same price again are not audited"
    );
    for entry in &entries[1..] {
        assert_eq!(entry["actor"], admin.user_id().as_str(), "{entry}");
        assert_eq!(entry["ip"], "127.0.0.1", "{entry}");
    }
    assert_eq!(entries[1]["target"], ada.as_str());
    assert_eq!(entries[1]["details"], json!({ "from": ["customer"], "to": ["customer", "support"] }));
    assert_eq!((&entries[2]["target"], &entries[3]["target"]), (&json!(ada), &json!(ada)));
    assert_eq!(entries[4]["target"], mug.as_str());
    assert_eq!(entries[4]["request_id"], "req-price-1");
    assert_eq!(entries[4]["details"], json!({ "from": usd(100), "to": usd(250), "version": version }));
    for entry in &entries[5..] {
        assert_eq!(entry["target"], rule.as_str());
    }
    for pair in entries[5..].windows(2) {
        let version = |e: &Value| e["details"]["rules_version"].as_i64().expect("the rules version it made");
        assert_eq!(version(&pair[1]), version(&pair[0]) + 1, "{pair:?}");
    }
    assert_eq!(entries[6]["details"]["fields"], json!(["effect", "name"]));
    assert_no_secret(&entries, &[PASSWORD, "SECRET10", &admin.access, &admin.refresh, "ada@example.com"]);
}

#[tokio::test]
async fn card_captures_refunds_and_failed_ledger_checks_are_audited() {
    let app = spawn_app().await;
    let (admin, mug, ada) = shop(&app).await;
    add(&app, &ada, &mug, 2).await;
    let order = checkout(&app, &ada, &json!({ "payment_method": "card", "card_token": "tok_visa" })).await.expect(201).json();
    let order_id = order["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/admin/orders/{order_id}/refunds");
    idem_post(&app, &path, &admin, "refund-1", &json!({ "amount": usd(300), "reason": "one mug chipped" })).await.expect(201);

    assert!(app.execute_sql("UPDATE ledger_accounts SET balance = balance + 1").await > 0);
    assert_eq!(crate::wallet::verify(&app, &admin).await["balanced"], false);
    let out = app.keel(&["ledger", "verify"], "").await;
    assert_eq!(out.status.code(), Some(1), "the command line finds the discrepancy too");

    let entries = trail(&app, &admin, &[]).await;
    let of = |action: &str| entries.iter().filter(|e| e["action"] == action).cloned().collect::<Vec<_>>();
    let [captured] = &of("payment.captured")[..] else { panic!("one capture in {entries:?}") };
    assert_eq!((&captured["actor"], &captured["target"]), (&Value::Null, &json!(order_id)));
    assert_eq!(captured["details"]["amount"], usd(2500));
    assert_eq!(captured["details"]["settled_by"], "checkout");
    assert_eq!(captured["details"]["provider_ref"], order["payment"]["provider_ref"]);
    let [refunded] = &of("order.refunded")[..] else { panic!("one refund in {entries:?}") };
    assert_eq!((&refunded["actor"], &refunded["target"]), (&json!(admin.user_id()), &json!(order_id)));
    assert_eq!(refunded["details"], json!({ "amount": usd(300), "refunded": usd(300) }));
    let failed = of("ledger.verification_failed");
    assert_eq!(failed.len(), 2, "one by the API, one by the command line: {entries:?}");
    assert_eq!((&failed[0]["actor"], &failed[1]["actor"]), (&json!(admin.user_id()), &Value::Null));
    assert!(failed[0]["details"]["discrepancies"].as_u64().is_some_and(|n| n > 0), "{}", failed[0]);
    assert_no_secret(&entries, &["tok_visa", "one mug chipped", PASSWORD, &ada.access, &ada.refresh]);
}

#[tokio::test]
async fn the_chain_stays_linear_and_verifies_after_concurrent_audited_writes() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    app.customer("ada@example.com").await;
    let mug = product(&app, &admin, "MUG-1", 100, 5).await;
    let path = format!("/v1/admin/products/{mug}");
    let logins =
        (0..50).map(|_| async { app.try_login("ada@example.com", "not the password at all").await.problem(401, "invalid_credentials") });
    let prices = (1..=20).map(|i| {
        let (app, path, admin) = (&app, &path, &admin);
        async move { app.patch_json_authed(path, &admin.access, &json!({ "price": usd(100 + i) })).await.expect(200) }
    });
    tokio::join!(futures::future::join_all(logins), futures::future::join_all(prices));

    let entries = trail(&app, &admin, &[]).await;
    assert_eq!(entries.len(), 71, "the admin's sign-in, 50 failures, 20 price changes");
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=71).collect::<Vec<_>>(), "one place per entry, none skipped or taken twice");
    assert_eq!(actions(&entries).iter().filter(|a| **a == "account.login_failed").count(), 50);
    // Each price change links to the one committed before it: `from` is the previous entry's `to`.
    let changes: Vec<&Value> = entries.iter().filter(|e| e["action"] == "product.price_changed").collect();
    assert_eq!(changes.len(), 20);
    assert_eq!(changes[0]["details"]["from"], usd(100));
    for pair in changes.windows(2) {
        assert_eq!(pair[1]["details"]["from"], pair[0]["details"]["to"], "{pair:?}");
    }
    assert_eq!(verify(&app, &admin).await, json!({ "valid": true, "entries": 71 }));
}

#[tokio::test]
async fn the_database_refuses_to_change_or_remove_audit_entries() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let mut refused = vec!["UPDATE audit_log SET action = 'nothing'", "DELETE FROM audit_log", "DELETE FROM audit_head"];
    if app.database_url.is_some() {
        refused.extend(["TRUNCATE audit_log", "TRUNCATE audit_head"]);
    }
    for sql in refused {
        let error = app.try_execute_sql(sql).await.expect_err(sql);
        assert!(error.contains("append-only") || error.contains("head stays"), "{sql}: {error}");
    }
    assert_eq!(verify(&app, &admin).await, json!({ "valid": true, "entries": 1 }));
}

/// Three failed logins after the admin's sign-in: four entries.
async fn four_entries() -> (TestApp, Tokens) {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    for _ in 0..3 {
        app.try_login("nobody@example.com", "not the password at all").await.problem(401, "invalid_credentials");
    }
    (app, admin)
}

/// Runs `statements` (SQLite's, PostgreSQL's) as someone with direct access to the database:
/// the triggers are dropped or disabled first.
async fn behind_keels_back(app: &TestApp, sqlite: &[&'static str], postgres: &[&'static str]) {
    for sql in if app.database_url.is_some() { postgres } else { sqlite } {
        app.execute_sql(sql).await;
    }
}

#[tokio::test]
async fn an_entry_changed_behind_keels_back_is_named_by_verify_and_by_the_command_line() {
    let (app, admin) = four_entries().await;
    let out = app.keel(&["audit", "verify"], "").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 entries checked"));
    let second = trail(&app, &admin, &[]).await[1]["id"].as_str().unwrap().to_owned();

    behind_keels_back(
        &app,
        &["DROP TRIGGER audit_log_no_update", "UPDATE audit_log SET details = '{\"reason\":\"nothing to see\"}' WHERE seq = 2"],
        &[
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
            "UPDATE audit_log SET details = '{\"reason\":\"nothing to see\"}' WHERE seq = 2",
        ],
    )
    .await;

    let verdict = verify(&app, &admin).await;
    assert_eq!(verdict, json!({ "valid": false, "entries": 4, "first_bad": { "seq": 2, "id": second, "reason": "hash_mismatch" } }));
    let out = app.keel(&["audit", "verify"], "").await;
    assert_eq!(out.status.code(), Some(1), "a broken chain fails the command");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&second) && stdout.contains("hash_mismatch"), "the command names the entry: {stdout}");
}

#[tokio::test]
async fn entries_removed_behind_keels_back_are_found_in_the_middle_and_at_the_end() {
    let (app, admin) = four_entries().await;
    behind_keels_back(
        &app,
        &["DROP TRIGGER audit_log_no_delete", "DELETE FROM audit_log WHERE seq = 4"],
        &["ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only", "DELETE FROM audit_log WHERE seq = 4"],
    )
    .await;
    let verdict = verify(&app, &admin).await;
    assert_eq!(verdict, json!({ "valid": false, "entries": 3, "first_bad": { "seq": 4, "id": null, "reason": "missing" } }));

    app.execute_sql("DELETE FROM audit_log WHERE seq = 2").await;
    let verdict = verify(&app, &admin).await;
    assert_eq!(verdict["first_bad"], json!({ "seq": 2, "id": null, "reason": "missing" }));
    let out = app.keel(&["audit", "verify"], "").await;
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn entries_filter_by_actor_action_target_and_time_and_page_newest_first() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let ada = app.customer("ada@example.com").await.user_id();
    let bob = app.customer("bob@example.com").await.user_id();
    for who in ["ada@example.com", "ada@example.com", "ada@example.com", "bob@example.com", "bob@example.com"] {
        app.try_login(who, "not the password at all").await.problem(401, "invalid_credentials");
    }
    app.patch_json_authed(&format!("/v1/admin/users/{bob}"), &admin.access, &json!({ "roles": ["support"] })).await.expect(200);

    let pages = app.all_pages("/v1/admin/audit", &admin.access, &[("action", "account.login_failed")], 2).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let seqs: Vec<i64> = pages.concat().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [6, 5, 4, 3, 2], "newest first, each once");

    let count = |filters: Vec<(&'static str, String)>| {
        let (app, admin) = (&app, &admin);
        async move {
            let filters: Vec<(&str, &str)> = filters.iter().map(|(k, v)| (*k, v.as_str())).collect();
            trail(app, admin, &filters).await.len()
        }
    };
    assert_eq!(count(vec![("target", ada.clone())]).await, 3);
    assert_eq!(count(vec![("target", bob.clone())]).await, 3, "two failures and the role change");
    assert_eq!(count(vec![("actor", admin.user_id())]).await, 2, "the admin's sign-in and the role change");
    assert_eq!(count(vec![("actor", admin.user_id()), ("action", "account.roles_changed".into())]).await, 1);
    assert_eq!(count(vec![("actor", ada.clone())]).await, 0, "failed sign-ins have no actor");

    let all = trail(&app, &admin, &[]).await;
    let third = all[2]["at"].as_str().unwrap().to_owned();
    assert_eq!(count(vec![("since", third.clone())]).await, all.len() - 2, "`since` includes its instant");
    assert_eq!(count(vec![("until", third.clone())]).await, 2, "`until` excludes its instant");

    for (query, field) in [("action=account.lunch", "action"), ("since=yesterday", "since"), ("until=2026-13-01T00:00:00Z", "until")] {
        app.get_authed(&format!("/v1/admin/audit?{query}"), &admin.access).await.field_error_code(field, "invalid");
    }
}
