//! Stores for the crate's own tests.

use super::{Store, StoreOptions};

/// A migrated store of its own: SQLite in a scratch directory, or a fresh PostgreSQL database
/// on the server of `KEEL_TEST_DATABASE_URL` when it is set (as the black-box suite does).
pub async fn scratch_store() -> Store {
    let store = open(&scratch_url().await).await;
    store.migrate().await.unwrap();
    store
}

/// The URL of a new, empty database of the backend the tests run on.
pub async fn scratch_url() -> String {
    let name = format!("keel_t_{}", uuid::Uuid::new_v4().simple());
    match std::env::var("KEEL_TEST_DATABASE_URL") {
        Ok(admin) => {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
            let (server, _) = admin.rsplit_once('/').unwrap();
            format!("{server}/{name}")
        }
        Err(_) => {
            let dir = std::env::temp_dir().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            format!("sqlite://{}", dir.join("keel.db").display())
        }
    }
}

/// A store of its own on the database at `url`, as another process would open it.
pub async fn open(url: &str) -> Store {
    Store::connect(&StoreOptions { url: url.to_owned(), max_connections: 4, sqlite_synchronous: Default::default() }).await.unwrap()
}
