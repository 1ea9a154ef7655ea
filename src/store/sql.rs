//! The one seam between domain repositories and the two SQL backends.
//!
//! Repositories are written once, generic over [`Backend`]; the SQL text is shared
//! (SQLite accepts `$1` placeholders). What differs between SQLite and PostgreSQL is
//! kept here: how a write transaction begins and how values bind and decode.

use chrono::{DateTime, Utc};
use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;
use sqlx::sqlite::Sqlite;
use std::sync::Arc;

use sqlx::{
    Arguments, AssertSqlSafe, ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, SqlSafeStr, SqlStr, Transaction, Type,
};
use tokio::sync::Notify;

use super::StoreError;
use super::tx::Tx;

/// A value bound to a query. Nulls are typed because PostgreSQL checks parameter types.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Time(Option<DateTime<Utc>>),
    Bytes(Option<Vec<u8>>),
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(Some(v))
    }
}
impl From<Option<bool>> for Arg {
    fn from(v: Option<bool>) -> Self {
        Arg::Bool(v)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Self {
        Arg::Time(Some(v))
    }
}
impl From<Option<DateTime<Utc>>> for Arg {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Arg::Time(v)
    }
}
impl From<Option<Vec<u8>>> for Arg {
    fn from(v: Option<Vec<u8>>) -> Self {
        Arg::Bytes(v)
    }
}

/// Argument buffers that can take every [`Arg`].
pub trait PushArg {
    fn push(&mut self, arg: Arg) -> Result<(), BoxDynError>;
}

impl<A> PushArg for A
where
    A: Arguments,
    Option<String>: for<'t> Encode<'t, A::Database> + Type<A::Database>,
    Option<i64>: for<'t> Encode<'t, A::Database> + Type<A::Database>,
    Option<bool>: for<'t> Encode<'t, A::Database> + Type<A::Database>,
    Option<DateTime<Utc>>: for<'t> Encode<'t, A::Database> + Type<A::Database>,
    Option<Vec<u8>>: for<'t> Encode<'t, A::Database> + Type<A::Database>,
{
    fn push(&mut self, arg: Arg) -> Result<(), BoxDynError> {
        match arg {
            Arg::Text(v) => self.add(v),
            Arg::Int(v) => self.add(v),
            Arg::Bool(v) => self.add(v),
            Arg::Time(v) => self.add(v),
            Arg::Bytes(v) => self.add(v),
        }
    }
}

/// Typed column access on a row of either backend.
pub trait Columns {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn flag(&self, col: &str) -> Result<bool, StoreError>;
    fn time(&self, col: &str) -> Result<DateTime<Utc>, StoreError>;
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

impl<R> Columns for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    Option<String>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Option<DateTime<Utc>>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Option<Vec<u8>>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, col: &str) -> Result<String, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn flag(&self, col: &str) -> Result<bool, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn time(&self, col: &str) -> Result<DateTime<Utc>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.try_get(col)?)
    }
}

/// Connections that execute queries of their own backend.
pub trait AsExecutor<DB: sqlx::Database>: Send {
    fn executor(&mut self) -> impl Executor<'_, Database = DB>;
}

impl<DB: sqlx::Database, C: Send> AsExecutor<DB> for C
where
    for<'c> &'c mut C: Executor<'c, Database = DB>,
{
    fn executor(&mut self) -> impl Executor<'_, Database = DB> {
        self
    }
}

/// A SQL backend Keel runs on. The bounds live on associated types, so they are
/// implied wherever `DB: Backend` is written.
pub trait Backend: sqlx::Database<Connection: AsExecutor<Self>, Arguments: IntoArguments<Self> + PushArg, Row: Columns> {
    /// Statement that opens a write transaction. SQLite must take the write lock up front,
    /// or a read-then-write transaction fails with SQLITE_BUSY on lock upgrade.
    const BEGIN_WRITE: &'static str;
    const NAME: &'static str;
    /// Row-locking suffix for a claim query: PostgreSQL lets many workers claim different
    /// rows at once; SQLite's write transaction already excludes every other writer.
    const SKIP_LOCKED: &'static str;
    /// Statement (taking the queue name) that wakes workers when the transaction commits;
    /// `None` where workers are woken in-process and by polling.
    const NOTIFY_JOBS: Option<&'static str>;
    /// Statement that wakes event relays when the transaction commits.
    const NOTIFY_EVENTS: Option<&'static str>;
    /// Statement that makes transactions numbering the publish order (`events.publish_seq`)
    /// take turns until commit; `None` where write transactions already do (SQLite's one writer).
    const LOCK_PUBLISH_ORDER: Option<&'static str>;
    /// Predicate (on `products`, parameter `$4`) matching the words of a search query.
    const PRODUCT_SEARCH: &'static str;
    /// The value of `$4` for `PRODUCT_SEARCH`: every word, as a prefix, all required.
    /// Words are letters and digits only, so they cannot carry query syntax.
    fn search_query(words: &[String]) -> String;
    fn rows_affected(done: &Self::QueryResult) -> u64;
    /// This backend's transaction inside a [`Tx`], if the unit of work runs on it.
    fn write_tx(tx: &mut Tx) -> Option<&mut WriteTx<Self>>;
}

impl Backend for Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const NAME: &'static str = "sqlite";
    const SKIP_LOCKED: &'static str = "";
    const NOTIFY_JOBS: Option<&'static str> = None;
    const NOTIFY_EVENTS: Option<&'static str> = None;
    const LOCK_PUBLISH_ORDER: Option<&'static str> = None;
    const PRODUCT_SEARCH: &'static str = "rowid IN (SELECT rowid FROM products_fts WHERE products_fts MATCH $4)";
    fn search_query(words: &[String]) -> String {
        words.iter().map(|w| format!("\"{w}\"*")).collect::<Vec<_>>().join(" ")
    }
    fn rows_affected(done: &Self::QueryResult) -> u64 {
        done.rows_affected()
    }
    fn write_tx(tx: &mut Tx) -> Option<&mut WriteTx<Self>> {
        match tx {
            Tx::Sqlite(tx) => Some(tx),
            Tx::Postgres(_) => None,
        }
    }
}

impl Backend for Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const NAME: &'static str = "postgres";
    const SKIP_LOCKED: &'static str = "FOR UPDATE SKIP LOCKED";
    const NOTIFY_JOBS: Option<&'static str> = Some("SELECT pg_notify('keel_jobs', $1)");
    const NOTIFY_EVENTS: Option<&'static str> = Some("SELECT pg_notify('keel_events', '')");
    // A transaction-level advisory lock, released at commit or rollback; the key is b"keel/pub".
    const LOCK_PUBLISH_ORDER: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(7738703050032837986)");
    const PRODUCT_SEARCH: &'static str = "to_tsvector('simple', name || ' ' || description) @@ to_tsquery('simple', $4)";
    fn search_query(words: &[String]) -> String {
        words.iter().map(|w| format!("{w}:*")).collect::<Vec<_>>().join(" & ")
    }
    fn rows_affected(done: &Self::QueryResult) -> u64 {
        done.rows_affected()
    }
    fn write_tx(tx: &mut Tx) -> Option<&mut WriteTx<Self>> {
        match tx {
            Tx::Postgres(tx) => Some(tx),
            Tx::Sqlite(_) => None,
        }
    }
}

/// `$first, $first+1, …` (`count` of them): the parameters of an `IN` list whose values are
/// bound in that order.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// One statement and its arguments.
pub struct Sql<DB: Backend> {
    text: SqlStr,
    args: DB::Arguments,
    bind_error: Option<BoxDynError>,
}

impl<DB: Backend> Sql<DB> {
    pub fn new(text: &'static str) -> Self {
        Self { text: text.into_sql_str(), args: DB::Arguments::default(), bind_error: None }
    }

    /// A statement assembled at run time. Only ever from constant fragments (such as
    /// [`Backend::SKIP_LOCKED`]), never from input: values always go through `bind`.
    pub fn assembled(text: String) -> Self {
        Self { text: AssertSqlSafe(text).into_sql_str(), args: DB::Arguments::default(), bind_error: None }
    }

    pub fn bind(mut self, value: impl Into<Arg>) -> Self {
        if let Err(e) = self.args.push(value.into()) {
            self.bind_error.get_or_insert(e);
        }
        self
    }

    fn query(self) -> Result<sqlx::query::Query<'static, DB, DB::Arguments>, StoreError> {
        match self.bind_error {
            Some(e) => Err(StoreError::Database(sqlx::Error::Encode(e))),
            None => Ok(sqlx::query_with(self.text, self.args)),
        }
    }

    /// Runs the statement and returns the number of rows it touched.
    pub async fn execute(self, conn: &mut DB::Connection) -> Result<u64, StoreError> {
        let done = self.query()?.execute(conn.executor()).await?;
        Ok(DB::rows_affected(&done))
    }

    pub async fn fetch_optional(self, conn: &mut DB::Connection) -> Result<Option<DB::Row>, StoreError> {
        Ok(self.query()?.fetch_optional(conn.executor()).await?)
    }

    pub async fn fetch_one(self, conn: &mut DB::Connection) -> Result<DB::Row, StoreError> {
        Ok(self.query()?.fetch_one(conn.executor()).await?)
    }

    pub async fn fetch_all(self, conn: &mut DB::Connection) -> Result<Vec<DB::Row>, StoreError> {
        Ok(self.query()?.fetch_all(conn.executor()).await?)
    }
}

/// The pools of one database: SQLite has one writer connection and a pool of readers;
/// PostgreSQL uses one pool for both.
pub struct Db<DB: Backend> {
    write: Pool<DB>,
    read: Option<Pool<DB>>,
    committed: Arc<Notify>,
}

impl<DB: Backend> Clone for Db<DB> {
    fn clone(&self) -> Self {
        Self { write: self.write.clone(), read: self.read.clone(), committed: self.committed.clone() }
    }
}

impl<DB: Backend> Db<DB> {
    pub fn new(write: Pool<DB>, read: Option<Pool<DB>>) -> Self {
        Self { write, read, committed: Arc::new(Notify::new()) }
    }

    /// Opens a write transaction. Only the store's unit of work (`Store::begin`) does: a
    /// repository writes inside the transaction its caller hands it, never one of its own.
    pub(super) async fn begin(&self) -> Result<WriteTx<DB>, StoreError> {
        Ok(WriteTx { tx: self.write.begin_with(DB::BEGIN_WRITE).await?, committed: self.committed.clone() })
    }

    /// A connection for reads outside a transaction.
    pub async fn reader(&self) -> Result<PoolConnection<DB>, StoreError> {
        Ok(self.read.as_ref().unwrap_or(&self.write).acquire().await?)
    }

    pub fn writer_pool(&self) -> &Pool<DB> {
        &self.write
    }

    pub fn pools(&self) -> impl Iterator<Item = &Pool<DB>> {
        std::iter::once(&self.write).chain(self.read.as_ref())
    }

    /// Signalled after every committed write transaction of this process.
    pub fn commits(&self) -> Arc<Notify> {
        self.committed.clone()
    }
}

/// A write transaction that, once committed, wakes whoever waits on [`Db::commits`]
/// (the outbox relay, so events leave without waiting for a poll).
pub struct WriteTx<DB: Backend> {
    tx: Transaction<'static, DB>,
    committed: Arc<Notify>,
}

impl<DB: Backend> WriteTx<DB> {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        self.committed.notify_one();
        Ok(())
    }
}

impl<DB: Backend> std::ops::Deref for WriteTx<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.tx
    }
}

impl<DB: Backend> std::ops::DerefMut for WriteTx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.tx
    }
}
