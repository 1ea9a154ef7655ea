//! Storage: pools, migrations per backend, and the SQL seam shared by all repositories.

pub mod backup;
mod lease;
mod sql;
#[cfg(test)]
pub mod testing;
mod tx;

use std::collections::HashSet;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use lease::{Lease, LeaseName};
pub use sql::{Arg, Backend, Columns, Db, Sql, placeholders};
pub use tx::{Transient, Tx};

/// Errors of the storage layer. Unique violations become `Conflict` here, once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; `constraint` is one of [`unique`]'s names.
    #[error("unique constraint {constraint} violated")]
    Conflict { constraint: &'static str },
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    /// A repository of one backend was handed the other backend's transaction.
    #[error("a transaction of the other database backend")]
    OtherBackend,
    #[error(transparent)]
    Database(sqlx::Error),
}

/// The unique constraints use cases tell apart, named by their columns as SQLite reports them.
pub mod unique {
    pub const USER_EMAIL: &str = "users.email";
    pub const PRODUCT_SKU: &str = "products.sku";
    /// An identity at a provider (issuer, subject) is linked to one account.
    pub const IDENTITY: &str = "identities.issuer, identities.subject";
    pub const PASSKEY_CREDENTIAL: &str = "passkeys.credential_id";
    /// A unique violation of a constraint not listed here.
    pub const OTHER: &str = "other";

    /// (PostgreSQL's name for the constraint, its name here).
    const KNOWN: &[(&str, &str)] = &[
        ("users_email_key", USER_EMAIL),
        ("products_sku_key", PRODUCT_SKU),
        ("identities_issuer_subject_key", IDENTITY),
        ("passkeys_credential_id_key", PASSKEY_CREDENTIAL),
    ];

    /// The constraint a unique violation names: PostgreSQL reports the index name, SQLite
    /// only the column list in its message (`UNIQUE constraint failed: users.email`).
    pub(super) fn named(db: &dyn sqlx::error::DatabaseError) -> &'static str {
        let columns = db.message().strip_prefix("UNIQUE constraint failed: ");
        KNOWN.iter().find(|(pg, ours)| db.constraint() == Some(*pg) || columns == Some(*ours)).map_or(OTHER, |(_, ours)| ours)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict { constraint: unique::named(db.as_ref()) },
            _ => StoreError::Database(e),
        }
    }
}

/// The current time at the precision both backends store (microseconds), so a value
/// read back compares equal to the one written.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

/// Whether `url` names a PostgreSQL database (the configuration allows only it and SQLite).
fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

/// Connection settings the store needs from the configuration.
pub struct StoreOptions {
    pub url: String,
    pub max_connections: u32,
    /// SQLite only: when a commit is on disk.
    pub sqlite_synchronous: SqliteDurability,
}

/// SQLite's `synchronous` setting (config `sqlite_synchronous`). In WAL mode, `Full` syncs the
/// log at every commit, so an acknowledged write survives a power cut; `Normal` syncs only at
/// checkpoints: it survives a crash of the process but a power cut can drop the last commits,
/// for several times the write throughput.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqliteDurability {
    #[default]
    Full,
    Normal,
}

/// A repository constructor for either backend: each capability's `repo::for_store` passes
/// one to [`Store::build`], so the store needs to know no repository.
pub trait Build {
    type Output;
    fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output;
}

/// The connected database, whichever backend the URL chose.
#[derive(Clone)]
pub enum Store {
    Sqlite { db: Db<Sqlite>, path: PathBuf },
    Postgres(Db<Postgres>),
}

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// A migration applied by `Store::migrate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
}

/// sqlx's bookkeeping table (the migrator's default).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// The versions applied so far, creating the bookkeeping table on a new database.
async fn applied_versions<C: Migrate>(conn: &mut C) -> Result<HashSet<i64>, MigrateError> {
    conn.ensure_migrations_table(MIGRATIONS_TABLE).await?;
    Ok(conn.list_applied_migrations(MIGRATIONS_TABLE).await?.into_iter().map(|m| m.version).collect())
}

/// After a successful run: every up migration that was not applied `before`.
fn newly_applied(migrator: &Migrator, before: &HashSet<i64>) -> Vec<AppliedMigration> {
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !before.contains(&m.version))
        .map(|m| AppliedMigration { version: m.version, description: m.description.to_string() })
        .collect()
}

/// How long start-up waits for PostgreSQL to answer at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One direct connection attempt. A pool retries a refused connection until its acquire
/// timeout and then reports only the timeout; this names the server and the cause at once.
async fn check_reachable(options: &PgConnectOptions) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let server = format!("{}:{}", options.get_host(), options.get_port());
    let cause = match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Ok(Err(sqlx::Error::Io(e))) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::TimedOut => "connection timed out".to_owned(),
            _ => e.to_string(),
        },
        Ok(Err(sqlx::Error::Database(e))) => e.message().to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
    };
    anyhow::bail!("cannot connect to PostgreSQL at {server}: {cause}")
}

/// Opens the writer pool. Switching a new database to WAL takes an exclusive lock that the
/// busy timeout does not wait for, so two processes creating one database at once can see
/// `database is locked`: try again for a few seconds.
async fn open_sqlite_writer(options: &SqliteConnectOptions) -> Result<sqlx::SqlitePool, sqlx::Error> {
    let mut attempt = 0;
    loop {
        let opened =
            SqlitePoolOptions::new().max_connections(1).acquire_timeout(Duration::from_secs(30)).connect_with(options.clone()).await;
        match opened {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("5") && attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

impl Store {
    pub async fn connect(opts: &StoreOptions) -> anyhow::Result<Store> {
        if opts.url.starts_with("sqlite:") {
            let base = SqliteConnectOptions::from_str(&opts.url)
                .context("parsing the SQLite database URL")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(match opts.sqlite_synchronous {
                    SqliteDurability::Full => SqliteSynchronous::Full,
                    SqliteDurability::Normal => SqliteSynchronous::Normal,
                })
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Erased personal data is overwritten in the file, not left in free pages.
                .pragma("secure_delete", "ON");
            let path = base.get_filename().to_path_buf();
            // One writer: SQLite serialises writes anyway, and a single connection
            // turns lock contention into a fair queue instead of SQLITE_BUSY errors.
            let write = open_sqlite_writer(&base).await.context("opening the SQLite database")?;
            let read = SqlitePoolOptions::new()
                .max_connections(opts.max_connections.max(2))
                .connect_with(base.read_only(true))
                .await
                .context("opening the SQLite database for reading")?;
            Ok(Store::Sqlite { db: Db::new(write, Some(read)), path })
        } else if is_postgres_url(&opts.url) {
            // No statement logs from the driver: it asks the subscriber whether its DEBUG lines are
            // wanted on the runtime's threads and logs nothing when they are not, which leaves
            // tracing-subscriber's per-layer filter state set, so the next span on that thread was
            // dropped by the trace layer (requests without a trace context at `keel=debug`).
            let options = PgConnectOptions::from_str(&opts.url).context("parsing the PostgreSQL database URL")?;
            let options = sqlx::ConnectOptions::disable_statement_logging(options);
            check_reachable(&options).await?;
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .context("connecting to PostgreSQL")?;
            Ok(Store::Postgres(Db::new(pool, None)))
        } else {
            anyhow::bail!("unsupported database URL scheme (expected sqlite: or postgres:)")
        }
    }

    /// Applies pending migrations and returns those this call applied, in order. Safe from two
    /// processes at once: on PostgreSQL the migrator's advisory lock, on SQLite a lock file next
    /// to the database, is held from reading what is applied until done, so the second waits and
    /// finds nothing pending.
    pub async fn migrate(&self) -> anyhow::Result<Vec<AppliedMigration>> {
        match self {
            Store::Sqlite { db, path } => {
                let lock_path = path.with_extension("migrate-lock");
                let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
                    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(lock_path)?;
                    file.lock()?;
                    Ok(file)
                })
                .await?
                .context("taking the migration lock")?;
                let mut conn = db.writer_pool().acquire().await.context("opening the SQLite database")?;
                let before = applied_versions(&mut *conn).await.context("reading the applied SQLite migrations")?;
                SQLITE_MIGRATIONS.run(&mut *conn).await.context("applying SQLite migrations")?;
                drop(lock);
                Ok(newly_applied(&SQLITE_MIGRATIONS, &before))
            }
            Store::Postgres(db) => {
                let mut conn = db.writer_pool().acquire().await.context("connecting to PostgreSQL")?;
                // Advisory locks nest within a session: the migrator takes this one again inside.
                conn.lock().await.context("taking the migration lock")?;
                let ran = async {
                    let before = applied_versions(&mut *conn).await?;
                    POSTGRES_MIGRATIONS.run(&mut *conn).await?;
                    Ok::<_, MigrateError>(before)
                }
                .await;
                match ran {
                    Ok(before) => {
                        conn.unlock().await.context("releasing the migration lock")?;
                        Ok(newly_applied(&POSTGRES_MIGRATIONS, &before))
                    }
                    Err(e) => {
                        // A failed run may leave the lock held: closing the session releases it.
                        conn.close_on_drop();
                        Err(e).context("applying PostgreSQL migrations")
                    }
                }
            }
        }
    }

    /// A cheap round trip for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite { db, .. } => ping(db).await,
            Store::Postgres(db) => ping(db).await,
        }
    }

    /// Signalled after every write transaction this process commits.
    pub fn commits(&self) -> Arc<tokio::sync::Notify> {
        match self {
            Store::Sqlite { db, .. } => db.commits(),
            Store::Postgres(db) => db.commits(),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Sqlite { .. } => Sqlite::NAME,
            Store::Postgres(_) => Postgres::NAME,
        }
    }

    /// (open connections, idle connections) over all pools.
    pub fn pool_stats(&self) -> (u32, u32) {
        fn stats<DB: Backend>(db: &Db<DB>) -> (u32, u32) {
            db.pools().fold((0, 0), |(s, i), p| (s + p.size(), i + p.num_idle() as u32))
        }
        match self {
            Store::Sqlite { db, .. } => stats(db),
            Store::Postgres(db) => stats(db),
        }
    }

    /// Wakes `wake` whenever any process commits a NOTIFY on `channel` (`keel_jobs`,
    /// `keel_events`; PostgreSQL only). SQLite has no cross-process signal: its loops poll.
    pub async fn forward_notifications(
        &self,
        channel: &str,
        wake: Arc<tokio::sync::Notify>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let Store::Postgres(db) = self else { return Ok(()) };
        let mut listener = sqlx::postgres::PgListener::connect_with(db.writer_pool()).await.context("LISTEN for wake-ups")?;
        listener.listen(channel).await?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    received = listener.recv() => match received {
                        Ok(_) => wake.notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %e, "wake-up listener failed; reconnecting");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    },
                    changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
                }
            }
        });
        Ok(())
    }

    /// What `build` makes from this store's pools (a repository of the chosen backend).
    pub fn build<B: Build>(&self, build: B) -> B::Output {
        match self {
            Store::Sqlite { db, .. } => build.build(db.clone()),
            Store::Postgres(db) => build.build(db.clone()),
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite { db, .. } => close(db).await,
            Store::Postgres(db) => close(db).await,
        }
    }
}

async fn ping<DB: Backend>(db: &Db<DB>) -> Result<(), StoreError> {
    let mut conn = db.reader().await?;
    Sql::<DB>::new("SELECT 1").fetch_one(&mut conn).await.map(|_| ())
}

async fn close<DB: Backend>(db: &Db<DB>) {
    for pool in db.pools() {
        pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    /// Table → column names, read from a backend's migration files in order.
    fn schema(backend: &str) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
        let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for file in &files {
            let sql = std::fs::read_to_string(file).unwrap();
            for block in sql.split("CREATE TABLE ").skip(1) {
                let (name, rest) = block.split_once('(').unwrap();
                let body = rest.split("\n);").next().unwrap();
                let columns = body
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("--") && !l.starts_with("PRIMARY KEY") && !l.starts_with("UNIQUE"))
                    .map(|l| l.split_whitespace().next().unwrap().to_owned())
                    .collect();
                tables.insert(name.trim().to_owned(), columns);
            }
            for alter in sql.lines().filter_map(|l| l.trim().strip_prefix("ALTER TABLE ")) {
                let (table, rest) = alter.split_once(" ADD COLUMN ").unwrap();
                let column = rest.split_whitespace().next().unwrap().to_owned();
                tables.get_mut(table).unwrap().push(column);
            }
        }
        (files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect(), tables)
    }

    #[test]
    fn both_backends_have_the_same_migrations_and_columns() {
        let (sqlite_files, sqlite) = schema("sqlite");
        let (pg_files, pg) = schema("postgres");
        assert_eq!(sqlite_files, pg_files, "every migration exists for both backends with the same version");
        assert_eq!(sqlite, pg, "tables and columns match between backends");
        assert!(sqlite.contains_key("users"));
    }
}
