//! Stores for the crate's own tests.

use super::{Store, StoreOptions};

/// A migrated store of its own: SQLite in a scratch directory, or a fresh PostgreSQL database
/// on the server of `KEEL_TEST_DATABASE_URL` when it is set (as the black-box suite does).
pub async fn scratch_store() -> Store {
    let name = format!("keel_t_{}", uuid::Uuid::new_v4().simple());
    let url = match std::env::var("KEEL_TEST_DATABASE_URL") {
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
    };
    let store = Store::connect(&StoreOptions { url, max_connections: 4, sqlite_synchronous: Default::default() }).await.unwrap();
    store.migrate().await.unwrap();
    store
}
