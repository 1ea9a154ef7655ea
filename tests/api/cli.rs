//! The `keel` command line: admin creation, configuration errors, migrations, OpenAPI, secrets.

use std::process::Output;

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, run_keel, spawn_app};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new data dir, and a fresh PostgreSQL database when the suite runs on PostgreSQL.
async fn fresh_environment() -> (std::path::PathBuf, Vec<(&'static str, String)>) {
    let data_dir = std::env::temp_dir().join(format!("keel-test-{}", uuid::Uuid::new_v4().simple()));
    let mut env = vec![("KEEL_DATA_DIR", data_dir.display().to_string())];
    if let Ok(url) = std::env::var("KEEL_TEST_DATABASE_URL")
        && !url.trim().is_empty()
    {
        env.push(("KEEL_DATABASE_URL", crate::helpers::fresh_postgres_database(url.trim()).await));
    }
    (data_dir, env)
}

async fn admin_create(app: &crate::helpers::TestApp, email: &str, role: &str, password: &str) -> Output {
    app.keel(&["admin", "create", "--email", email, "--password-stdin", "--role", role], &format!("{password}\n")).await
}

#[tokio::test]
async fn admin_create_makes_an_admin_who_can_sign_in() {
    let app = spawn_app().await;
    let out = admin_create(&app, "root@example.com", "admin", PASSWORD).await;
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), stderr(&out));
    let tokens = app.login("root@example.com", PASSWORD).await;
    let roles = tokens.user["roles"].as_array().expect("roles").clone();
    assert!(roles.contains(&json!("admin")) && roles.contains(&json!("customer")), "{roles:?}");
    app.get_authed("/v1/admin/users", &tokens.access).await.expect(200);
    app.patch_json_authed(
        &format!("/v1/admin/users/{}", app.customer("ada@example.com").await.user_id()),
        &tokens.access,
        &json!({ "roles": ["support"] }),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn admin_create_can_make_a_support_user() {
    let app = spawn_app().await;
    let out = admin_create(&app, "help@example.com", "support", PASSWORD).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let tokens = app.login("help@example.com", PASSWORD).await;
    let roles = tokens.user["roles"].as_array().expect("roles").clone();
    assert!(roles.contains(&json!("support")) && !roles.contains(&json!("admin")), "{roles:?}");
}

#[tokio::test]
async fn admin_create_refuses_a_weak_password_or_a_bad_email() {
    let app = spawn_app().await;
    for (email, password) in [("root@example.com", "password123"), ("root@example.com", "short"), ("not-an-email", PASSWORD)] {
        let out = admin_create(&app, email, "admin", password).await;
        assert!(!out.status.success(), "{email} / {password} must be refused");
        assert!(!stderr(&out).is_empty(), "the refusal says why");
        assert!(!stderr(&out).contains(PASSWORD), "the password is not echoed");
    }
    app.try_login("root@example.com", "password123").await.problem(401, "invalid_credentials");
}

#[tokio::test]
async fn admin_create_refuses_a_taken_email_and_explains_how_to_change_roles() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let out = admin_create(&app, "ada@example.com", "admin", "a different passphrase").await;
    assert_eq!(out.status.code(), Some(1), "a taken email must be refused: {}", stderr(&out));
    let message = stderr(&out);
    for hint in ["ada@example.com already has an account", "PATCH /v1/admin/users/{id}", r#"{"roles": ["admin"]}"#, "another email"] {
        assert!(message.contains(hint), "{hint:?} in {message}");
    }
    assert!(stdout(&out).is_empty(), "nothing on stdout: {}", stdout(&out));
    let tokens = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(tokens.user["roles"], json!(["customer"]));

    // Following the advice works.
    let root = app.create_admin("root@example.com", PASSWORD).await;
    let users = app.get_authed("/v1/admin/users?email_prefix=ada@example.com", &root.access).await.expect(200).json();
    assert_eq!(users["data"][0]["id"], ada.user_id());
    let path = format!("/v1/admin/users/{}", ada.user_id());
    app.patch_json_authed(&path, &root.access, &json!({ "roles": ["admin"] })).await.expect(200);
    let roles = app.me(&ada.access).await.expect(200).json()["roles"].clone();
    assert!(roles.as_array().expect("roles").contains(&json!("admin")), "{roles}");
}

#[tokio::test]
async fn migrate_says_what_it_applied_and_logs_only_warnings_unless_verbose() {
    let (data_dir, mut env) = fresh_environment().await;
    env.push(("KEEL_LOG", "info".to_owned()));
    let first = run_keel(&["migrate"], &env, "").await;
    assert!(first.status.success(), "{}", stderr(&first));
    let printed = stdout(&first);
    assert!(printed.starts_with("applied "), "{printed}");
    let listed: Vec<&str> = printed.lines().skip(1).map(str::trim).collect();
    assert!(!listed.is_empty() && listed.iter().all(|l| l.split_once(' ').is_some_and(|(v, _)| v.parse::<i64>().is_ok())), "{printed}");
    assert!(printed.starts_with(&format!("applied {} migration", listed.len())), "{printed}");
    assert_eq!(stderr(&first), "", "info logs stay off standard error without --verbose");

    let again = run_keel(&["migrate", "--verbose"], &env, "").await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).starts_with("no migrations pending"), "{}", stdout(&again));
    assert!(stderr(&again).contains("database ready"), "--verbose logs at the configured level: {}", stderr(&again));
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn an_unreachable_database_is_named_with_the_cause() {
    let url = "postgres://postgres:hunter2@127.0.0.1:1/keel";
    let env = [("KEEL_DATABASE_URL", url.to_owned())];
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), run_keel(&["migrate"], &env, ""))
        .await
        .expect("keel migrate gives up instead of hanging");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot connect to PostgreSQL at 127.0.0.1:1: connection refused"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

#[tokio::test]
async fn an_unreachable_nats_server_is_named_with_the_cause_and_serve_logs_to_stderr() {
    let (data_dir, mut env) = fresh_environment().await;
    env.extend([("KEEL_LISTEN", "127.0.0.1:0".to_owned()), ("KEEL_NATS_URL", "nats://keel:hunter2@127.0.0.1:1".to_owned())]);
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), run_keel(&["serve"], &env, ""))
        .await
        .expect("keel serve gives up instead of hanging");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot connect to NATS at 127.0.0.1:1: connection refused"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "serve logs on standard error only: {}", stdout(&out));
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn an_invalid_setting_stops_with_exit_code_2_naming_the_variable() {
    let dir = std::env::temp_dir().join(format!("keel-cfg-{}", uuid::Uuid::new_v4().simple()));
    let dir_value = dir.to_str().expect("UTF-8").to_owned();
    for (var, value) in [
        ("KEEL_LISTEN", "nonsense"),
        ("KEEL_RATE_LIMIT_AUTH_IP", "often"),
        ("KEEL_BODY_LIMIT_BYTES", "-5"),
        ("KEEL_DATABASE_URL", "mysql://x"),
    ] {
        let out = run_keel(&["migrate"], &[("KEEL_DATA_DIR", dir_value.clone()), (var, value.to_owned())], "").await;
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {}", stderr(&out));
        assert!(stderr(&out).contains(var), "the message names {var}: {}", stderr(&out));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn migrate_can_run_again_on_a_migrated_database() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let out = app.keel(&["migrate"], "").await;
    assert!(out.status.success(), "{}", stderr(&out));
    app.me(&tokens.access).await.expect(200);
}

#[tokio::test]
async fn the_openapi_command_prints_the_served_document() {
    let app = spawn_app().await;
    let out = run_keel(&["openapi"], &[], "").await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("keel openapi prints JSON");
    assert!(printed["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")));
    assert_eq!(printed, app.get("/openapi.json").await.expect(200).json());
}

#[cfg(unix)]
#[tokio::test]
async fn generated_secrets_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let app = spawn_app().await;
    let dir = app.data_dir.join("secrets");
    let dir_mode = std::fs::metadata(&dir).expect("a secrets directory").permissions().mode() & 0o777;
    assert_eq!(dir_mode & 0o077, 0, "secrets dir mode {dir_mode:o}");
    let files: Vec<_> = std::fs::read_dir(&dir).expect("readable").flatten().collect();
    assert!(!files.is_empty(), "the signing key is stored");
    for file in files {
        let mode = file.metadata().expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.path().display());
    }
}

#[tokio::test]
async fn two_migrations_started_at_once_on_a_new_database_both_succeed() {
    let (data_dir, env) = fresh_environment().await;
    let (a, b) = tokio::join!(run_keel(&["migrate"], &env, ""), run_keel(&["migrate"], &env, ""));
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    // One of them applied everything; the other waited and found nothing pending.
    let mut reports = [stdout(&a), stdout(&b)];
    reports.sort();
    assert!(reports[0].starts_with("applied ") && reports[1].starts_with("no migrations pending"), "{reports:?}");
    let again = run_keel(&["migrate"], &env, "").await;
    assert!(again.status.success(), "{}", stderr(&again));
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn a_mistyped_variable_is_named_in_a_warning() {
    let app = spawn_app().await;
    let mut env = vec![("KEEL_DATA_DIR", app.data_dir.display().to_string()), ("KEEL_LISTN", "127.0.0.1:1".to_owned())];
    if let Some(url) = &app.database_url {
        env.push(("KEEL_DATABASE_URL", url.clone()));
    }
    let out = run_keel(&["migrate"], &env, "").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("KEEL_LISTN"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("127.0.0.1:1"), "values are not logged: {}", stderr(&out));
}
