//! The `keel` command line: admin creation, configuration errors, migrations, OpenAPI, secrets.

use std::process::Output;

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, run_keel, spawn_app};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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
async fn admin_create_refuses_a_taken_email() {
    let app = spawn_app().await;
    app.customer("ada@example.com").await;
    let out = admin_create(&app, "ada@example.com", "admin", "a different passphrase").await;
    assert!(!out.status.success(), "a taken email must be refused");
    let tokens = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(tokens.user["roles"], json!(["customer"]));
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
    let data_dir = std::env::temp_dir().join(format!("keel-test-{}", uuid::Uuid::new_v4().simple()));
    let mut env = vec![("KEEL_DATA_DIR", data_dir.display().to_string())];
    if let Ok(url) = std::env::var("KEEL_TEST_DATABASE_URL")
        && !url.trim().is_empty()
    {
        env.push(("KEEL_DATABASE_URL", crate::helpers::fresh_postgres_database(url.trim()).await));
    }
    let (a, b) = tokio::join!(run_keel(&["migrate"], &env, ""), run_keel(&["migrate"], &env, ""));
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
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
