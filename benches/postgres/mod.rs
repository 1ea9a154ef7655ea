//! Scratch PostgreSQL databases for the benchmarks that measure both backends: each run gets
//! fresh ones and drops them at the end. `BENCH_PG_URL` names the server's admin database
//! (default `postgres://postgres@127.0.0.1:5432/postgres`); `off` skips PostgreSQL.

use sqlx::Connection as _;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The admin database's URL, or `None` when `BENCH_PG_URL=off`.
pub fn admin_url() -> Option<String> {
    match std::env::var("BENCH_PG_URL") {
        Ok(url) if url == "off" => None,
        Ok(url) => Some(url),
        Err(_) => Some(DEFAULT_ADMIN_URL.to_owned()),
    }
}

/// A database of the benchmark's own, `keel_bench_<random>`.
pub struct Scratch {
    pub url: String,
    name: String,
    admin_url: String,
}

impl Scratch {
    /// Creates the database; the error says why it could not (the server is down, …).
    pub async fn create(admin_url: &str) -> Result<Scratch, String> {
        let mut conn = sqlx::PgConnection::connect(admin_url).await.map_err(|e| format!("connecting to {admin_url}: {e}"))?;
        let name = format!("keel_bench_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("creating a database on {admin_url}: {e}"))?;
        let _ = conn.close().await;
        let server = admin_url.split('?').next().unwrap_or(admin_url).rsplit_once('/').map_or(admin_url, |(server, _)| server);
        Ok(Scratch { url: format!("{server}/{name}"), name, admin_url: admin_url.to_owned() })
    }

    /// Drops the database, closing whatever connections are still open on it.
    pub async fn remove(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let dropped =
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))).execute(&mut conn).await;
            if let Err(e) = dropped {
                eprintln!("could not drop the scratch database {}: {e}", self.name);
            }
        }
    }
}
