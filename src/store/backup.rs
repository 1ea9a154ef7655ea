//! Online copies of the SQLite database (`keel backup`) while Keel serves.
//!
//! `VACUUM INTO` writes what one read transaction sees, so the copy is consistent however many
//! writers commit meanwhile (in WAL mode readers and the writer do not block each other). The
//! copy is written beside its destination, synced, checked by SQLite, and only then renamed into
//! place: a failed backup never leaves a file under the destination's name. PostgreSQL is backed
//! up with its own tools (`pg_dump`, base backups); Keel does not run them.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection};

use super::{Columns as _, Db, Sql, Store, StoreError, is_postgres_url};

/// A finished backup.
#[derive(Debug)]
pub struct Snapshot {
    /// Where the copy is, absolute.
    pub path: PathBuf,
    pub bytes: u64,
    /// From starting the copy to the copy in place.
    pub took: Duration,
}

/// Why no backup was made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the database is PostgreSQL, which Keel does not copy itself")]
    Postgres,
    #[error("there is no SQLite database at {}", .0.display())]
    NoDatabase(PathBuf),
    #[error("{} already exists", .0.display())]
    Exists(PathBuf),
    /// The destination is the live database (or its log): replacing it would destroy it.
    #[error("{} is the database being backed up", .0.display())]
    IsTheDatabase(PathBuf),
    #[error("the path {} is not UTF-8, which SQLite needs", .0.display())]
    NotUtf8(PathBuf),
    #[error("the copy failed SQLite's integrity check: {0}")]
    Damaged(String),
    #[error("{doing} {}: {source}", path.display())]
    File {
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("copying the database: {0}")]
    Database(#[from] StoreError),
}

impl BackupError {
    fn file(doing: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
        let path = path.to_path_buf();
        move |source| BackupError::File { doing, path, source }
    }
}

/// The SQLite file `url` names, which must already exist: a backup creates no database (a
/// mistyped data dir would otherwise yield an empty "backup").
pub fn existing_sqlite_file(url: &str) -> Result<PathBuf, BackupError> {
    if is_postgres_url(url) {
        return Err(BackupError::Postgres);
    }
    let options = SqliteConnectOptions::from_str(url).map_err(StoreError::Database)?;
    let path = options.get_filename().to_path_buf();
    if path.is_file() { Ok(path) } else { Err(BackupError::NoDatabase(path)) }
}

impl Store {
    /// Copies the database into `dest` (a file path). An existing `dest` is refused unless
    /// `replace`; the copy is readable by its owner only, since it holds personal data.
    pub async fn back_up(&self, dest: &Path, replace: bool) -> Result<Snapshot, BackupError> {
        let Store::Sqlite { db, path } = self else { return Err(BackupError::Postgres) };
        let started = Instant::now();
        refuse_destination(dest, path, replace)?;
        let partial = partial_path(dest)?;
        let written = write_checked(db, &partial).await;
        let placed = match written {
            Ok(()) => place(&partial, dest, replace),
            Err(e) => Err(e),
        };
        if let Err(e) = placed {
            // Nothing half-written stays behind, under any name.
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        let path = std::fs::canonicalize(dest).map_err(BackupError::file("resolving", dest))?;
        let bytes = std::fs::metadata(&path).map_err(BackupError::file("reading", &path))?.len();
        Ok(Snapshot { path, bytes, took: started.elapsed() })
    }
}

/// Refuses an existing `dest` unless `replace`, and always the live database and its side files.
fn refuse_destination(dest: &Path, database: &Path, replace: bool) -> Result<(), BackupError> {
    let Ok(existing) = std::fs::canonicalize(dest) else { return Ok(()) };
    if let Ok(database) = std::fs::canonicalize(database) {
        let live = ["", "-wal", "-shm", "-journal"].map(|suffix| format!("{}{suffix}", database.display()));
        if live.iter().any(|f| Path::new(f) == existing) {
            return Err(BackupError::IsTheDatabase(dest.to_path_buf()));
        }
    }
    if replace { Ok(()) } else { Err(BackupError::Exists(dest.to_path_buf())) }
}

/// `<dest>.<random>.partial`, in `dest`'s directory so the final rename stays on one file system.
fn partial_path(dest: &Path) -> Result<PathBuf, BackupError> {
    let name = dest.file_name().ok_or_else(|| BackupError::File {
        doing: "naming the backup",
        path: dest.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file"),
    })?;
    let mut partial = name.to_os_string();
    partial.push(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
    Ok(dest.with_file_name(partial))
}

/// Writes the copy into `partial` (created first, empty and owner-only: `VACUUM INTO` fills an
/// empty file and keeps its mode), syncs it, and has SQLite check it.
async fn write_checked(db: &Db<Sqlite>, partial: &Path) -> Result<(), BackupError> {
    let target = partial.to_str().ok_or_else(|| BackupError::NotUtf8(partial.to_path_buf()))?.to_owned();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    drop(options.open(partial).map_err(BackupError::file("creating", partial))?);

    // A reader: the one writer connection stays free for the requests being served.
    let mut conn = db.reader().await?;
    Sql::<Sqlite>::new("VACUUM INTO $1").bind(target).execute(&mut conn).await?;
    drop(conn);
    // SQLite does not sync what VACUUM INTO writes.
    std::fs::File::open(partial).and_then(|f| f.sync_all()).map_err(BackupError::file("syncing", partial))?;
    integrity_check(partial).await
}

/// Runs `PRAGMA integrity_check` on the copy, opened read-only as immutable so that checking
/// creates no side files beside it.
async fn integrity_check(copy: &Path) -> Result<(), BackupError> {
    let options = SqliteConnectOptions::new().filename(copy).read_only(true).immutable(true);
    let mut conn = SqliteConnection::connect_with(&options).await.map_err(StoreError::Database)?;
    let rows = Sql::<Sqlite>::new("PRAGMA integrity_check").fetch_all(&mut conn).await;
    let _ = conn.close().await;
    let verdicts = rows?.iter().map(|row| row.text("integrity_check")).collect::<Result<Vec<_>, _>>()?;
    match verdicts.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        problems => Err(BackupError::Damaged(problems.join("; "))),
    }
}

/// Moves the finished copy to `dest` and syncs the directory, so the name survives a power cut.
fn place(partial: &Path, dest: &Path, replace: bool) -> Result<(), BackupError> {
    // Checked again: the copy may have taken a while, and rename would silently replace.
    if !replace && std::fs::symlink_metadata(dest).is_ok() {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    std::fs::rename(partial, dest).map_err(BackupError::file("renaming the copy to", dest))?;
    #[cfg(unix)]
    {
        let dir = dest.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(BackupError::file("syncing", dir))?;
    }
    Ok(())
}
