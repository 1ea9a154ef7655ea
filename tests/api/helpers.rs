//! The test application and what every test file shares: spawning the server on port 0 with
//! a fresh database, typed requests, the command line, problem+json assertions, and JWT minting.

use std::path::PathBuf;
use std::process::Output;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Where the suite's webhook receivers listen (loopback): allowed to webhooks by default.
pub const RECEIVER_NETWORKS: &str = "127.0.0.0/8,::1/128";

/// A password that passes every rule; tests use it unless they are about passwords.
pub const PASSWORD: &str = "correct horse battery staple";

/// Spawns the server with test defaults: port 0, a fresh data dir and database, quiet logs,
/// the sign-in and mail rate limits off (the request classes keep their defaults).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Like `spawn_app`, with some configuration keys set or replaced.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let (settings, data_dir, database_url) = test_settings(overrides).await;
    TestApp::start(settings, data_dir, database_url).await
}

/// Like `spawn_app`, but the server is the `keel serve` binary in a process of its own. For
/// tests of what is process-wide (metrics): `cargo test` runs tests as threads of one process,
/// where every in-process server records into the same global metrics recorder.
pub async fn spawn_app_process() -> TestApp {
    spawn_app_process_with(&[]).await
}

/// Like `spawn_app_process`, with some configuration keys set or replaced.
pub async fn spawn_app_process_with(overrides: &[(&str, &str)]) -> TestApp {
    let (settings, data_dir, database_url) = test_settings(overrides).await;
    TestApp::start_process(settings, data_dir, database_url, None).await
}

/// Like `spawn_app_process`, but `keel serve` is started by `sh` after the shell command
/// `prelude` (such as `ulimit -Sn 256`), so it inherits what the prelude set.
#[cfg(unix)]
pub async fn spawn_app_process_after(prelude: &str) -> TestApp {
    let (settings, data_dir, database_url) = test_settings(&[]).await;
    TestApp::start_process(settings, data_dir, database_url, Some(prelude)).await
}

/// The test defaults with `overrides`, a fresh data dir path, and a fresh PostgreSQL database
/// when the suite runs on PostgreSQL.
async fn test_settings(overrides: &[(&str, &str)]) -> (Vec<(String, String)>, PathBuf, Option<String>) {
    let data_dir = std::env::temp_dir().join(format!("keel-test-{}", Uuid::new_v4().simple()));
    let database_url = match std::env::var("KEEL_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(fresh_postgres_database(url.trim()).await),
        _ => None,
    };
    // With KEEL_TEST_NATS_URL the bus is NATS JetStream, on subjects and a stream of this test's own.
    let nats = std::env::var("KEEL_TEST_NATS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .map(|url| (url.trim().to_owned(), format!("t{}", Uuid::new_v4().simple())));
    // With KEEL_TEST_REDIS_URL rate limits and the cache's second tier live in Redis, under a key
    // prefix of this test's own (`.ci/run` deletes `keel-test:*` afterwards).
    let redis = std::env::var("KEEL_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .map(|url| (url.trim().to_owned(), format!("keel-test:{}:", Uuid::new_v4().simple())));
    let mut settings: Vec<(String, String)> = [
        ("listen", "127.0.0.1:0"),
        ("data_dir", data_dir.to_str().expect("temp dir is UTF-8")),
        ("log", "warn"),
        ("rate_limit_auth_ip", "off"),
        ("rate_limit_auth_account", "off"),
        ("rate_limit_auth_account_ip", "off"),
        ("rate_limit_mail_ip", "off"),
        ("rate_limit_mail_account", "off"),
        ("webhook_allowed_networks", RECEIVER_NETWORKS),
    ]
    .into_iter()
    .chain(database_url.as_deref().map(|url| ("database_url", url)))
    .chain(nats.iter().flat_map(|(url, prefix)| [("nats_url", url.as_str()), ("nats_subject_prefix", prefix.as_str())]))
    .chain(redis.iter().flat_map(|(url, prefix)| [("redis_url", url.as_str()), ("redis_key_prefix", prefix.as_str())]))
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (key, value) in overrides {
        settings.retain(|(k, _)| k != key);
        settings.push(((*key).to_owned(), (*value).to_owned()));
    }
    let secret_settings =
        ["signing_key", "previous_signing_keys", "encryption_key", "key_encryption_key", "payment_api_key", "payment_webhook_secret"];
    for (_, value) in settings.iter().filter(|(k, _)| secret_settings.contains(&k.as_str())) {
        value.split(',').for_each(crate::logs::remember_secret);
    }
    (settings, data_dir, database_url)
}

/// Creates `keel_t_<random>` on the server of `admin_url` and returns its URL.
pub async fn fresh_postgres_database(admin_url: &str) -> String {
    use sqlx::Connection as _;
    let name = format!("keel_t_{}", Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin_url).await.expect("connecting to KEEL_TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("creating a test database");
    let _ = conn.close().await;
    with_database_name(admin_url, &name)
}

/// `postgres://u@h:5432/postgres?x=y` → `postgres://u@h:5432/<name>?x=y`.
fn with_database_name(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

pub struct TestApp {
    pub address: String,
    pub data_dir: PathBuf,
    /// Set when the test runs on PostgreSQL; SQLite lives in `data_dir`.
    pub database_url: Option<String>,
    pub client: reqwest::Client,
    settings: Vec<(String, String)>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// The `keel serve` process, for apps from `spawn_app_process` (killed on drop).
    process: Option<tokio::process::Child>,
    /// Every line the `keel serve` process has logged so far.
    process_logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    owns_data_dir: bool,
}

impl TestApp {
    async fn start(settings: Vec<(String, String)>, data_dir: PathBuf, database_url: Option<String>) -> TestApp {
        let config = keel::config::Config::from_pairs(settings.clone()).expect("test configuration is valid");
        if crate::logs::dir().is_some() {
            crate::logs::capture_in_process();
        } else if std::env::var_os("KEEL_TEST_LOG").is_some() {
            let _ = keel::telemetry::init_logging(&config);
        }
        let app = keel::app::Application::build(config).await.expect("the application builds");
        let address = format!("{}://{}", if app.uses_tls() { "https" } else { "http" }, app.local_addr());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        TestApp {
            address,
            data_dir,
            database_url,
            client: http_client(),
            settings,
            shutdown: Some(tx),
            server: Some(server),
            process: None,
            process_logs: Default::default(),
            owns_data_dir: true,
        }
    }

    /// Runs `keel serve` with `settings` as `KEEL_*` variables; reads the bound address from its
    /// `listening` (or `listening with TLS`) log line.
    async fn start_process(
        settings: Vec<(String, String)>,
        data_dir: PathBuf,
        database_url: Option<String>,
        prelude: Option<&str>,
    ) -> TestApp {
        use tokio::io::AsyncBufReadExt as _;
        std::fs::create_dir_all(&data_dir).expect("a data dir");
        let mut cmd = match prelude {
            None => keel_command(&["serve"]),
            Some(prelude) => {
                let mut sh = tokio::process::Command::new("sh");
                sh.arg("-c").arg(format!("{prelude} && exec \"$0\" serve")).arg(env!("CARGO_BIN_EXE_keel")).kill_on_drop(true);
                without_keel_env(&mut sh);
                sh
            }
        };
        cmd.current_dir(&data_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (key, value) in &settings {
            cmd.env(format!("KEEL_{}", key.to_uppercase()), value);
        }
        // A test may ask for a level of its own (`log`); else info, or all the suite keeps.
        let asked = settings.iter().find(|(k, v)| k == "log" && v != "warn").map(|(_, v)| v.as_str());
        let level = asked.unwrap_or(if crate::logs::dir().is_some() { crate::logs::CAPTURE_FILTER } else { "info" });
        cmd.env("KEEL_LOG", level).env("KEEL_LOG_FORMAT", "json");
        let mut child = cmd.spawn().expect("the keel binary starts");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        let mut seen = Vec::new();
        let process_logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let address = loop {
            let line = lines.next_line().await.expect("reading keel's logs");
            let line = line.unwrap_or_else(|| panic!("keel serve ended before listening:\n{}", seen.join("\n")));
            crate::logs::keep_process_line(&line);
            let log: Value = serde_json::from_str(&line).unwrap_or_default();
            let scheme = match log["message"].as_str() {
                Some("listening") => Some("http"),
                Some("listening with TLS") => Some("https"),
                _ => None,
            };
            if let Some(scheme) = scheme {
                break format!("{scheme}://{}", log["address"].as_str().expect("the listening address"));
            }
            process_logs.lock().unwrap().push(line.clone());
            seen.push(line);
        };
        // Keep reading, so the server never blocks on a full pipe.
        let show = std::env::var_os("KEEL_TEST_LOG").is_some();
        let kept = process_logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                crate::logs::keep_process_line(&line);
                kept.lock().unwrap().push(line.clone());
                if show {
                    eprintln!("{line}");
                }
            }
        });
        TestApp {
            address,
            data_dir,
            database_url,
            client: http_client(),
            settings,
            shutdown: None,
            server: None,
            process: Some(child),
            process_logs,
            owns_data_dir: true,
        }
    }

    /// Stops the server (draining requests) and starts a new one on the same data dir and database,
    /// on another port. A `keel serve` process must have been ended by `kill` first; its
    /// successor is a process too.
    pub async fn restart(self) -> TestApp {
        self.restart_with(&[]).await
    }

    /// Like `restart`, with some configuration keys set or replaced.
    pub async fn restart_with(mut self, overrides: &[(&str, &str)]) -> TestApp {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task ends").expect("the server stops cleanly");
        }
        let was_process = match self.process.as_mut() {
            Some(child) => {
                assert!(child.try_wait().expect("the process's state").is_some(), "a keel serve process is restarted after `kill`");
                true
            }
            None => false,
        };
        self.owns_data_dir = false;
        let mut settings = self.settings.clone();
        for (key, value) in overrides.iter().copied().chain([("listen", "127.0.0.1:0")]) {
            settings.retain(|(k, _)| k != key);
            settings.push((key.to_owned(), value.to_owned()));
        }
        if was_process {
            TestApp::start_process(settings, self.data_dir.clone(), self.database_url.clone(), None).await
        } else {
            TestApp::start(settings, self.data_dir.clone(), self.database_url.clone()).await
        }
    }

    /// Ends the `keel serve` process of `spawn_app_process` with SIGKILL, as a crash or the OOM
    /// killer would: nothing is drained, whatever was in flight is cut off.
    pub async fn kill(&mut self) {
        let child = self.process.as_mut().expect("kill works on process apps (spawn_app_process)");
        child.kill().await.expect("killing keel serve");
    }

    /// Ends the `keel serve` process of `spawn_app_process` with SIGTERM, as a supervisor
    /// stopping it would, and waits until it has exited.
    #[cfg(unix)]
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let child = self.process.as_mut().expect("terminate works on process apps (spawn_app_process)");
        let pid = rustix::process::Pid::from_raw(child.id().expect("keel is running") as i32).expect("a process id");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("sending SIGTERM");
        tokio::time::timeout(std::time::Duration::from_secs(60), child.wait()).await.expect("keel exits").expect("keel's exit status")
    }

    /// Every line the `keel serve` process of `spawn_app_process` has logged so far.
    pub fn process_logs(&self) -> String {
        self.process_logs.lock().unwrap().join("\n")
    }

    /// Whether the bus is NATS, which every instance on the database shares.
    pub fn shares_bus(&self) -> bool {
        self.settings.iter().any(|(k, _)| k == "nats_url")
    }

    /// Whether rate limits and the cache's second tier are in Redis, shared by every instance
    /// started with `same_database_instance`.
    pub fn uses_redis(&self) -> bool {
        self.settings.iter().any(|(k, _)| k == "redis_url")
    }

    /// Starts a second instance on the same database and bus, with a data dir (instance id,
    /// generated secrets) of its own, as a scaled-out deployment runs. `None` unless the bus
    /// is NATS: the in-process bus reaches only its own process.
    pub async fn another_instance(&self) -> Option<TestApp> {
        if !self.shares_bus() {
            return None;
        }
        Some(self.same_database_instance().await)
    }

    /// Starts a second instance on the same database (and bus, with NATS), with a data dir of
    /// its own. Without NATS, what it commits reaches clients only through the instance whose
    /// relay leads: the first one started.
    pub async fn same_database_instance(&self) -> TestApp {
        let data_dir = std::env::temp_dir().join(format!("keel-test-{}", Uuid::new_v4().simple()));
        let database_url = match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}/keel.db", self.data_dir.display()),
        };
        let mut settings = self.settings.clone();
        for (key, value) in [("data_dir", data_dir.to_str().expect("temp dir is UTF-8")), ("database_url", &database_url)] {
            settings.retain(|(k, _)| k != key);
            settings.push((key.to_owned(), value.to_owned()));
        }
        TestApp::start(settings, data_dir, self.database_url.clone()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A request to `path` on this app, for tests that need unusual headers or bodies.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn send(&self, request: RequestBuilder) -> Reply {
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        Reply { status, headers, text }
    }

    /// One JSON request, with a bearer token when given.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        let mut request = self.request(method, path);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None, None).await
    }

    pub async fn get_authed(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// A GET with query parameters (encoded properly, e.g. cursors).
    pub async fn get_query_authed(&self, path: &str, token: &str, query: &[(&str, &str)]) -> Reply {
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v))).collect();
        self.get_authed(&format!("{path}?{}", query.join("&")), token).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, None, Some(body)).await
    }

    pub async fn post_json_authed(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch_json_authed(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body)).await
    }

    pub async fn delete_authed(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    pub async fn delete_json_authed(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.call(Method::DELETE, path, Some(token), Some(body)).await
    }

    // --- accounts and sessions ---

    pub async fn try_register(&self, email: &str, password: &str, name: &str) -> Reply {
        crate::logs::remember_secret(password);
        self.post_json("/v1/auth/register", &json!({ "email": email, "password": password, "name": name })).await
    }

    pub async fn register(&self, email: &str, password: &str, name: &str) -> Tokens {
        Tokens::from_reply(self.try_register(email, password, name).await.expect(201))
    }

    /// Registers a customer with the standard test password.
    pub async fn customer(&self, email: &str) -> Tokens {
        self.register(email, PASSWORD, "Test Customer").await
    }

    pub async fn try_login(&self, email: &str, password: &str) -> Reply {
        crate::logs::remember_secret(password);
        self.post_json("/v1/auth/login", &json!({ "email": email, "password": password })).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Tokens {
        Tokens::from_reply(self.try_login(email, password).await.expect(200))
    }

    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post_json("/v1/auth/refresh", &json!({ "refresh_token": refresh_token })).await
    }

    pub async fn logout(&self, refresh_token: &str) -> Reply {
        self.post_json("/v1/auth/logout", &json!({ "refresh_token": refresh_token })).await
    }

    pub async fn me(&self, token: &str) -> Reply {
        self.get_authed("/v1/me", token).await
    }

    /// Creates an admin through the command line, then signs in as them.
    pub async fn create_admin(&self, email: &str, password: &str) -> Tokens {
        self.create_staff(email, password, "admin").await
    }

    /// Creates a `support` or `admin` account through the command line, then signs in.
    pub async fn create_staff(&self, email: &str, password: &str, role: &str) -> Tokens {
        let out = self.keel(&["admin", "create", "--email", email, "--password-stdin", "--role", role], &format!("{password}\n")).await;
        assert!(out.status.success(), "keel admin create failed: {}", String::from_utf8_lossy(&out.stderr));
        self.login(email, password).await
    }

    /// Runs the `keel` binary with this app's configuration (its data dir and database among
    /// it), feeding `stdin`.
    pub async fn keel(&self, args: &[&str], stdin: &str) -> Output {
        self.keel_with(args, &[], stdin).await
    }

    /// Like `keel`, with some configuration keys set or replaced.
    pub async fn keel_with(&self, args: &[&str], overrides: &[(&str, &str)], stdin: &str) -> Output {
        let mut settings = self.settings.clone();
        for (key, value) in overrides {
            settings.retain(|(k, _)| k != key);
            settings.push(((*key).to_owned(), (*value).to_owned()));
        }
        settings.retain(|(key, _)| key != "log");
        let names: Vec<String> = settings.iter().map(|(key, _)| format!("KEEL_{}", key.to_uppercase())).collect();
        let env: Vec<(&str, String)> = names.iter().map(String::as_str).zip(settings.into_iter().map(|(_, v)| v)).collect();
        run_keel(args, &env, stdin).await
    }

    /// The first column of every row `sql` returns, as text, read from a connection of its own.
    pub async fn texts(&self, sql: &'static str) -> Vec<String> {
        use sqlx::Connection as _;
        match &self.database_url {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connecting to the test database");
                sqlx::query_scalar(sql).fetch_all(&mut conn).await.expect("running the query")
            }
            None => {
                let url = format!("sqlite://{}", self.data_dir.join("keel.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("opening the test database");
                sqlx::query_scalar(sql).fetch_all(&mut conn).await.expect("running the query")
            }
        }
    }

    /// Everything stored, as text: the files of the data dir (SQLite), or every row of every
    /// table (PostgreSQL). For checking what is, and is not, kept in clear.
    pub async fn stored_text(&self) -> String {
        if self.database_url.is_none() {
            let mut text = String::new();
            let mut dirs = vec![self.data_dir.clone()];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).expect("a readable data dir").flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else if let Ok(bytes) = std::fs::read(&path) {
                        text.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
            }
            return text;
        }
        self.stored_rows().await
    }

    /// Every row of every table, as text, on either backend: what the database holds as data
    /// (not what its files may still hold of overwritten rows until pages are reused).
    pub async fn stored_rows(&self) -> String {
        use sqlx::Connection as _;
        let Some(url) = &self.database_url else {
            let url = format!("sqlite://{}", self.data_dir.join("keel.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("opening the test database");
            let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&mut conn)
                .await
                .expect("listing tables");
            let mut text = String::new();
            for table in tables {
                let columns: Vec<String> =
                    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{table}')")))
                        .fetch_all(&mut conn)
                        .await
                        .expect("listing columns");
                let row = columns.iter().map(|c| format!("quote(\"{c}\")")).collect::<Vec<_>>().join(" || '|' || ");
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {row} FROM \"{table}\"")))
                    .fetch_all(&mut conn)
                    .await
                    .expect("reading a table");
                text.push_str(&rows.join("\n"));
            }
            let _ = conn.close().await;
            return text;
        };
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connecting to the test database");
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&mut conn)
        .await
        .expect("listing tables");
        let mut text = String::new();
        for table in tables {
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT t::text FROM \"{table}\" t")))
                .fetch_all(&mut conn)
                .await
                .expect("reading a table");
            text.push_str(&rows.join("\n"));
        }
        let _ = conn.close().await;
        text
    }

    /// Runs one statement on the app's database from a connection of its own (as another
    /// process, or an operator, would), returning the rows it changed.
    pub async fn execute_sql(&self, sql: &'static str) -> u64 {
        self.try_execute_sql(sql).await.expect("running the statement")
    }

    /// Like `execute_sql`, for a statement the database may refuse: its error message then.
    pub async fn try_execute_sql(&self, sql: &'static str) -> Result<u64, String> {
        use sqlx::Connection as _;
        match &self.database_url {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connecting to the test database");
                sqlx::query(sql).execute(&mut conn).await.map(|done| done.rows_affected()).map_err(|e| e.to_string())
            }
            None => {
                let url = format!("sqlite://{}", self.data_dir.join("keel.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("opening the test database");
                sqlx::query(sql).execute(&mut conn).await.map(|done| done.rows_affected()).map_err(|e| e.to_string())
            }
        }
    }

    /// Walks a list with `limit` until `next_cursor` is null; returns each page's `data`.
    pub async fn all_pages(&self, path: &str, token: &str, filters: &[(&str, &str)], limit: usize) -> Vec<Vec<Value>> {
        let limit = limit.to_string();
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = filters.to_vec();
            query.push(("limit", &limit));
            if let Some(c) = &cursor {
                query.push(("cursor", c));
            }
            let page = self.get_query_authed(path, token, &query).await.expect(200).json();
            pages.push(page["data"].as_array().expect("`data` is an array").clone());
            match &page["next_cursor"] {
                Value::Null => return pages,
                Value::String(next) => cursor = Some(next.clone()),
                other => panic!("next_cursor must be a string or null, got {other}"),
            }
            assert!(pages.len() <= 100, "pagination does not end");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if self.owns_data_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().expect("an HTTP client")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The `keel` binary with `args`, without this process's `KEEL_*` variables (each caller sets
/// its own), killed if dropped while it runs.
pub fn keel_command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_keel"));
    cmd.args(args).kill_on_drop(true);
    without_keel_env(&mut cmd);
    cmd
}

/// Leaves this process's `KEEL_*` variables out of `cmd`'s environment.
fn without_keel_env(cmd: &mut tokio::process::Command) {
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("KEEL_")) {
        cmd.env_remove(key);
    }
}

/// Runs the `keel` binary with only the given `KEEL_*` variables, in a scratch directory
/// (so no stray `keel.toml` is read).
pub async fn run_keel(args: &[&str], env: &[(&str, String)], stdin: &str) -> Output {
    let cwd = std::env::temp_dir().join(format!("keel-cli-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&cwd).expect("a scratch directory");
    let mut cmd = keel_command(args);
    cmd.current_dir(&cwd).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd.env("KEEL_LOG", "warn");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().expect("the keel binary starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin.as_bytes()).await.expect("writing stdin");
    drop(input);
    let out = child.wait_with_output().await.expect("the keel binary ends");
    let _ = std::fs::remove_dir_all(&cwd);
    out
}

/// A token pair as returned by register, login and refresh.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub user: Value,
}

impl Tokens {
    #[track_caller]
    pub fn from_reply(reply: Reply) -> Tokens {
        let body = reply.json();
        let field = |name: &str| body[name].as_str().unwrap_or_else(|| panic!("`{name}` missing in {body}")).to_owned();
        crate::logs::remember_secret(&field("access_token"));
        crate::logs::remember_secret(&field("refresh_token"));
        Tokens { access: field("access_token"), refresh: field("refresh_token"), user: body["user"].clone() }
    }

    pub fn user_id(&self) -> String {
        self.user["id"].as_str().expect("user.id").to_owned()
    }

    /// The session id (`sid` claim) of the access token.
    pub fn session_id(&self) -> String {
        jwt_parts(&self.access).1["sid"].as_str().expect("sid claim").to_owned()
    }
}

/// A finished response, body read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("header is ASCII"))
    }

    /// Asserts the status code, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        self
    }

    /// Asserts an RFC 9457 problem with this status and `code`, and the fields every problem has.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("application/problem+json"), "content-type {content_type:?} for {}", self.text);
        let body = self.json();
        assert_eq!(body["code"], code, "problem code in {body}");
        assert_eq!(body["status"], status, "problem status in {body}");
        for key in ["type", "title"] {
            assert!(body[key].as_str().is_some_and(|s| !s.is_empty()), "problem `{key}` missing in {body}");
        }
        let request_id = body["request_id"].as_str().unwrap_or_else(|| panic!("problem request_id missing in {body}"));
        assert_eq!(Some(request_id), self.header("x-request-id"), "request_id matches the X-Request-Id header");
        if code == "unauthenticated" || code == "invalid_token" {
            let challenge = self.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "401 {code} carries WWW-Authenticate: Bearer, got {challenge:?}");
        }
        body
    }

    /// Asserts `422 validation_failed` naming `field` among the errors; returns that error.
    #[track_caller]
    pub fn field_error(&self, field: &str) -> Value {
        let body = self.problem(422, "validation_failed");
        let errors = body["errors"].as_array().unwrap_or_else(|| panic!("`errors` missing in {body}"));
        let error = errors.iter().find(|e| e["field"] == field).unwrap_or_else(|| panic!("no error for `{field}` in {body}"));
        assert!(error["code"].as_str().is_some_and(|c| !c.is_empty()), "error code for {field} in {body}");
        assert!(error["message"].is_string(), "error message for {field} in {body}");
        error.clone()
    }

    /// Asserts `422 validation_failed` with `code` on `field`.
    #[track_caller]
    pub fn field_error_code(&self, field: &str, code: &str) {
        let error = self.field_error(field);
        assert_eq!(error["code"], code, "error code for {field}");
    }
}

/// Asserts the `/v1/me` shape of a fresh customer.
#[track_caller]
pub fn assert_fresh_user(user: &Value, email: &str, name: &str) {
    assert!(user["id"].as_str().is_some_and(|id| id.starts_with("usr_") && id.len() > 4), "id in {user}");
    assert_eq!(user["email"], email);
    assert_eq!(user["name"], name);
    assert_eq!(user["email_verified"], false);
    assert_eq!(user["roles"], json!(["customer"]));
    assert_eq!(user["mfa_enabled"], false);
    for key in ["country", "phone", "address"] {
        assert!(user.get(key).is_some_and(Value::is_null), "`{key}` is present and null in {user}");
    }
    let created = chrono::DateTime::parse_from_rfc3339(user["created_at"].as_str().expect("created_at")).expect("RFC 3339 created_at");
    assert_eq!(created.offset().local_minus_utc(), 0, "created_at is UTC");
}

// --- JWTs ---

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The decoded header and claims of a JWT (no verification).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = || {
        let part = parts.next().expect("a JWT has three parts");
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(part).expect("base64url part")).expect("JSON part")
    };
    (decode(), decode())
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()))
}

/// An Ed25519 key the test controls (given to the server as `signing_key`, or used to forge).
pub struct TestKey {
    pkcs8: Vec<u8>,
    pair: Ed25519KeyPair,
}

impl TestKey {
    pub fn generate() -> TestKey {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("an Ed25519 key").as_ref().to_vec();
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).expect("the key parses");
        TestKey { pkcs8, pair }
    }

    /// The `signing_key` configuration value.
    pub fn config_value(&self) -> String {
        STANDARD.encode(&self.pkcs8)
    }

    /// The JWK `x` of the public key.
    pub fn public_x(&self) -> String {
        b64(self.pair.public_key().as_ref())
    }

    /// An EdDSA JWT with exactly this header and these claims.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        format!("{input}.{}", b64(self.pair.sign(input.as_bytes()).as_ref()))
    }
}

/// A JWT with `alg: none` and an empty signature.
pub fn unsigned_jwt(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}

/// An HS256 JWT keyed with `secret`.
pub fn hs256_jwt(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = signing_input(header, claims);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    format!("{input}.{}", b64(aws_lc_rs::hmac::sign(&key, input.as_bytes()).as_ref()))
}

/// Verifies an EdDSA JWT's signature against a JWK `x` (base64url public key).
pub fn ed25519_signature_valid(token: &str, public_x: &str) -> bool {
    let (input, signature) = token.rsplit_once('.').expect("a JWT");
    let public = URL_SAFE_NO_PAD.decode(public_x).expect("base64url x");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url signature");
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, public).verify(input.as_bytes(), &signature).is_ok()
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[test]
fn database_urls_get_the_test_database_name() {
    assert_eq!(with_database_name("postgres://postgres@127.0.0.1:5432/postgres", "t1"), "postgres://postgres@127.0.0.1:5432/t1");
    assert_eq!(with_database_name("postgres://u:p@h/db?sslmode=disable", "t2"), "postgres://u:p@h/t2?sslmode=disable");
    assert_eq!(with_database_name("postgres://h:5432", "t3"), "postgres://h:5432/t3");
}
