//! `keel backup FILE`: an online copy of the SQLite database taken while money moves, which
//! verifies, holds consistent books and serves the users once restored as the README says; on
//! PostgreSQL the command points to pg_dump instead.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app, spawn_app_with};
use crate::support::eventually;
use crate::wallet::{balance, top_up, transfer};

/// Every top-up is of this amount, so the books say how much money the wallets must hold.
const TOP_UP: i64 = 100;

const CUSTOMERS: [&str; 4] = ["b0@example.com", "b1@example.com", "b2@example.com", "b3@example.com"];

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// On PostgreSQL the command copies nothing: exit code 2, naming pg_dump and the README section.
#[track_caller]
fn assert_points_to_pg_dump(out: &Output, dest: &Path) {
    assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
    let message = stderr(out);
    assert!(message.contains("pg_dump") && message.contains("\"Backup and restore\""), "{message}");
    assert!(!dest.exists(), "nothing is written");
}

/// Runs `keel backup` on `app`'s database.
async fn backup(app: &TestApp, dest: &Path, force: bool) -> Output {
    let dest = dest.to_str().expect("temp paths are UTF-8");
    let args: &[&str] = if force { &["backup", dest, "--force"] } else { &["backup", dest] };
    app.keel(args, "").await
}

/// Until `stop`: tops up `users[i]`, passes some of it on to the next customer, and signs in
/// again (an audit entry), counting rounds in `rounds`.
async fn churn(app: &TestApp, users: &[Tokens], i: usize, stop: &AtomicBool, rounds: &AtomicUsize) {
    while !stop.load(Ordering::SeqCst) {
        top_up(app, &users[i], TOP_UP, "tok_visa").await.expect(201);
        transfer(app, &users[i], CUSTOMERS[(i + 1) % CUSTOMERS.len()], 30 + i as i64).await.expect(201);
        app.login(CUSTOMERS[i], PASSWORD).await;
        rounds.fetch_add(1, Ordering::SeqCst);
    }
}

/// The SQLite file at `db`, opened read-only.
async fn open(db: &Path) -> sqlx::SqliteConnection {
    use sqlx::Connection as _;
    sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", db.display())).await.expect("opening a database file")
}

/// (money in all wallets, top-ups recorded, what the provider clearing account says it owes),
/// read from the SQLite file at `db`.
async fn books(db: &Path) -> (i64, i64, i64) {
    let mut conn = open(db).await;
    let wallets: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(balance), 0) FROM ledger_accounts WHERE kind = 'wallet'")
        .fetch_one(&mut conn)
        .await
        .expect("summing wallets");
    let top_ups: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'top_up'")
        .fetch_one(&mut conn)
        .await
        .expect("counting top-ups");
    let clearing: i64 = sqlx::query_scalar("SELECT balance FROM ledger_accounts WHERE account = 'platform:provider_clearing'")
        .fetch_one(&mut conn)
        .await
        .expect("the provider clearing account");
    (wallets, top_ups, clearing)
}

/// A data dir restored as the README says: the secrets folder of the original, and the copy
/// as `keel.db`.
fn restored_data_dir(original: &Path, copy: &Path) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-test-restore-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("secrets")).expect("a data dir");
    for secret in std::fs::read_dir(original.join("secrets")).expect("the original's secrets").flatten() {
        std::fs::copy(secret.path(), dir.join("secrets").join(secret.file_name())).expect("copying a secret");
    }
    std::fs::copy(copy, dir.join("keel.db")).expect("copying the backup in");
    dir
}

#[tokio::test]
async fn a_backup_taken_while_money_moves_has_consistent_books_verifies_and_serves_the_users_once_restored() {
    let app = spawn_app_with(&[("rate_limit_enabled", "false")]).await;
    let dest = app.data_dir.join("snapshot.db");
    if app.database_url.is_some() {
        assert_points_to_pg_dump(&backup(&app, &dest, false).await, &dest);
        return;
    }
    let mut users = Vec::new();
    for email in CUSTOMERS {
        let user = app.customer(email).await;
        top_up(&app, &user, TOP_UP, "tok_visa").await.expect(201);
        users.push(user);
    }
    // A value sealed with the data dir's encryption key, to read back after the restore.
    app.patch_json_authed("/v1/me", &users[0].access, &json!({ "phone": "+442079460000" })).await.expect(200);

    let (stop, rounds) = (AtomicBool::new(false), AtomicUsize::new(0));
    let load = futures::future::join_all((0..users.len()).map(|i| churn(&app, &users, i, &stop, &rounds)));
    let backed_up = async {
        eventually(60, "the write load to run", || async { (rounds.load(Ordering::SeqCst) >= CUSTOMERS.len()).then_some(()) }).await;
        let out = backup(&app, &dest, false).await;
        stop.store(true, Ordering::SeqCst);
        out
    };
    let (_, out) = tokio::join!(load, backed_up);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    let dest = dest.canonicalize().expect("the backup exists");
    assert!(printed.contains(&dest.display().to_string()) && printed.contains("bytes") && printed.contains(" s"), "{printed}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&dest).expect("the backup's metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup holds personal data: mode {mode:o}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&app.data_dir)
        .expect("the data dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "no partial copy stays behind: {leftovers:?}");

    // One moment of the books: every top-up in the wallets, and owed by the provider.
    let (wallets, top_ups, clearing) = books(&dest).await;
    assert!(top_ups >= CUSTOMERS.len() as i64 * 2, "the copy holds the load's top-ups too: {top_ups}");
    assert_eq!(wallets, top_ups * TOP_UP, "the wallets hold every top-up and nothing else");
    assert_eq!(clearing, -wallets, "the provider owes what the wallets hold");
    let (_, live_top_ups, _) = books(&app.data_dir.join("keel.db")).await;
    assert!(live_top_ups >= top_ups, "the copy is of a moment of the live database: {top_ups} > {live_top_ups}");

    let copy_url = format!("sqlite://{}", dest.display());
    for check in [["ledger", "verify"], ["audit", "verify"]] {
        let out = app.keel_with(&check, &[("database_url", &copy_url)], "").await;
        assert!(out.status.success(), "keel {} on the copy: {}{}", check.join(" "), String::from_utf8_lossy(&out.stdout), stderr(&out));
    }

    let restored_dir = restored_data_dir(&app.data_dir, &dest);
    let restored = spawn_app_with(&[("data_dir", restored_dir.to_str().expect("temp paths are UTF-8"))]).await;
    let ada = restored.login(CUSTOMERS[0], PASSWORD).await;
    let me = restored.me(&ada.access).await.expect(200).json();
    assert_eq!(me["phone"], "+442079460000", "encrypted columns open with the data dir's secrets");
    let ada_balance: i64 = sqlx::query_scalar("SELECT balance FROM ledger_accounts WHERE account = $1")
        .bind(format!("wallet:{}", ada.user_id()))
        .fetch_one(&mut open(&dest).await)
        .await
        .expect("ada's wallet in the copy");
    assert_eq!(balance(&restored, &ada).await, ada_balance, "the restored server serves the copy's balances");
    drop(restored);
    let _ = std::fs::remove_dir_all(restored_dir);
}

#[tokio::test]
async fn a_second_backup_to_the_same_path_is_refused_unless_forced() {
    let app = spawn_app().await;
    let dest = app.data_dir.join("snapshot.db");
    if app.database_url.is_some() {
        assert_points_to_pg_dump(&backup(&app, &dest, true).await, &dest);
        return;
    }
    app.customer("ada@example.com").await;
    let first = backup(&app, &dest, false).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let before = std::fs::read(&dest).expect("the first backup");

    app.customer("bob@example.com").await;
    let again = backup(&app, &dest, false).await;
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(stderr(&again).contains("already exists") && stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(std::fs::read(&dest).expect("the first backup"), before, "the first backup is left as it was");

    let forced = backup(&app, &dest, true).await;
    assert!(forced.status.success(), "{}", stderr(&forced));
    let emails: Vec<String> =
        sqlx::query_scalar("SELECT email FROM users ORDER BY email").fetch_all(&mut open(&dest).await).await.expect("the copy's users");
    assert_eq!(emails, ["ada@example.com", "bob@example.com"], "--force replaced the backup with a newer one");
}

#[tokio::test]
async fn a_backup_never_replaces_the_live_database_nor_creates_a_database_where_there_is_none() {
    let app = spawn_app().await;
    let live = app.data_dir.join("keel.db");
    if app.database_url.is_some() {
        assert_points_to_pg_dump(&backup(&app, &live, true).await, &live);
        return;
    }
    app.customer("bob@example.com").await;
    let onto_live = backup(&app, &live, true).await;
    assert_eq!(onto_live.status.code(), Some(1), "{}", stderr(&onto_live));
    assert!(stderr(&onto_live).contains("is the database being backed up"), "{}", stderr(&onto_live));
    app.login("bob@example.com", PASSWORD).await;

    let into_missing_dir = backup(&app, &app.data_dir.join("missing").join("snapshot.db"), false).await;
    assert_eq!(into_missing_dir.status.code(), Some(1), "{}", stderr(&into_missing_dir));
    assert!(!app.data_dir.join("missing").exists());

    // A configuration that names no database (a mistyped data dir) backs up nothing and creates nothing.
    let elsewhere = app.data_dir.join("elsewhere");
    let dest = elsewhere.join("snapshot.db");
    std::fs::create_dir_all(&elsewhere).expect("a directory");
    let out = app.keel_with(&["backup", dest.to_str().expect("UTF-8")], &[("data_dir", elsewhere.to_str().expect("UTF-8"))], "").await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("there is no SQLite database at"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&elsewhere).expect("the directory").count(), 0, "no database and no backup are created");
}
