//! The cluster under test: `deploy/local-cluster` with three `keel serve` and one `keel worker`
//! behind HAProxy, on a fresh PostgreSQL database and a Redis and NATS of the cluster's own, with
//! mail going to an SMTP server inside this test process. Started once for the whole run by the
//! first test that asks; `.ci/run` stops it afterwards (`deploy/local-cluster down`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub const PASSWORD: &str = "correct horse battery staple";
/// Failed sign-ins one account may have per minute, across the whole cluster.
pub const ACCOUNT_LOGIN_BUDGET: usize = 6;
pub const WAIT_SECS: u64 = 30;
pub const WAIT: Duration = Duration::from_secs(WAIT_SECS);

pub struct Cluster {
    pub balancer: String,
    /// Each `keel serve`, reached directly.
    pub instances: Vec<String>,
    script: PathBuf,
    dir: PathBuf,
    script_env: Vec<(String, String)>,
    /// Every message the SMTP server received.
    mail: Arc<Mutex<Vec<String>>>,
}

/// The cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

impl Cluster {
    fn start() -> Cluster {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = PathBuf::from(
            std::env::var("CLUSTER_DIR")
                .unwrap_or_else(|_| std::env::temp_dir().join(format!("keel-cluster-{}", std::process::id())).display().to_string()),
        );
        let (smtp_url, mail) = smtp_sink();
        let base = free_port_block();
        let database = format!("postgres://postgres@127.0.0.1:5432/keel_t_cluster_{}", uuid::Uuid::new_v4().simple());
        let script_env: Vec<(String, String)> = [
            ("CLUSTER_DIR", dir.display().to_string()),
            ("CLUSTER_BIN", env!("CARGO_BIN_EXE_keel").to_owned()),
            ("CLUSTER_PORT", base.to_string()),
            ("CLUSTER_BASE_PORT", base.to_string()),
            ("CLUSTER_OWN_SERVICES", "1".to_owned()),
            ("KEEL_DATABASE_URL", database),
            ("KEEL_SMTP_URL", smtp_url),
            ("KEEL_LOG", "info".to_owned()),
            ("KEEL_IDEMPOTENCY_LEASE_SECS", "5".to_owned()),
            ("KEEL_RATE_LIMIT_AUTH_ACCOUNT", format!("{ACCOUNT_LOGIN_BUDGET}/min")),
            ("KEEL_RATE_LIMIT_AUTH_ACCOUNT_IP", "1000/min".to_owned()),
            ("KEEL_RATE_LIMIT_AUTH_IP", "1000000/min".to_owned()),
            ("KEEL_RATE_LIMIT_ANONYMOUS", "1000000/min".to_owned()),
            ("KEEL_RATE_LIMIT_USER", "1000000/min".to_owned()),
            ("KEEL_RATE_LIMIT_MONEY", "1000000/min".to_owned()),
            ("KEEL_RATE_LIMIT_MAIL_IP", "1000000/min".to_owned()),
            ("KEEL_RATE_LIMIT_MAIL_ACCOUNT", "1000000/min".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let cluster = Cluster {
            balancer: format!("http://127.0.0.1:{base}"),
            instances: (1..=3).map(|i| format!("http://127.0.0.1:{}", base + i)).collect(),
            script: root.join("deploy/local-cluster"),
            dir,
            script_env,
            mail,
        };
        let out = cluster.script(&["up", "--serve", "3", "--workers", "1"]);
        assert!(out.status.success(), "deploy/local-cluster up failed:\n{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout(&out).trim().lines().last(), Some(cluster.balancer.as_str()), "up prints the balancer's URL");
        cluster
    }

    /// Runs `deploy/local-cluster ARGS` for this cluster.
    pub fn script(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(&self.script);
        cmd.args(args);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("KEEL_") || k.starts_with("CLUSTER_")) {
            cmd.env_remove(key);
        }
        cmd.envs(self.script_env.iter().map(|(k, v)| (k, v)));
        cmd.output().expect("running deploy/local-cluster")
    }

    pub fn script_ok(&self, args: &[&str]) {
        let out = self.script(args);
        assert!(out.status.success(), "deploy/local-cluster {args:?} failed:\n{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    }

    /// Runs the `keel` binary with the cluster's shared configuration.
    pub fn keel(&self, args: &[&str], stdin: &str) -> std::process::Output {
        crate::cluster_cli::run_keel(&self.dir, args, stdin).expect("running keel with the cluster's settings")
    }

    /// Every message the SMTP server has received so far.
    pub fn mail(&self) -> Vec<String> {
        self.mail.lock().unwrap().clone()
    }

    /// An admin, created through the command line and signed in through the balancer.
    pub async fn admin(&self, email: &str) -> Tokens {
        let out = self.keel(&["admin", "create", "--email", email, "--password-stdin", "--role", "admin"], &format!("{PASSWORD}\n"));
        assert!(out.status.success(), "keel admin create: {}", String::from_utf8_lossy(&out.stderr));
        Client::new(&self.balancer).login(email, PASSWORD).await
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An SMTP server on a runtime of its own, which outlives every test's runtime.
fn smtp_sink() -> (String, Arc<Mutex<Vec<String>>>) {
    let mail: Arc<Mutex<Vec<String>>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let kept = mail.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let mut server = crate::smtp::smtp_server().await;
            tx.send(server.url.clone()).unwrap();
            while let Some(message) = server.messages.recv().await {
                kept.lock().unwrap().push(message);
            }
        });
    });
    (rx.recv().expect("the SMTP server's URL"), mail)
}

/// A port P such that P (the balancer), P+1…P+3 (the instances), P+98 and P+99 (Redis, NATS) are free.
fn free_port_block() -> u16 {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let first = (std::process::id() % 100) as u16;
    (0..100)
        .map(|i| 20_000 + (first + i) % 100 * 200)
        .find(|&p| [0, 1, 2, 3, 98, 99].iter().all(|d| free(p + d)))
        .expect("a free block of ports")
}

/// A token pair.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// HTTP to one address (the balancer or an instance).
#[derive(Clone)]
pub struct Client {
    pub base: String,
    http: reqwest::Client,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self.body
    }

    #[track_caller]
    pub fn problem(self, status: u16, code: &str) {
        assert_eq!((self.status.as_u16(), self.body["code"].as_str()), (status, Some(code)), "{}", self.body);
    }
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client { base: base.to_owned(), http: reqwest::Client::builder().timeout(WAIT).build().unwrap() }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Sends `request`; `Err` when no HTTP answer came (refused, reset, timed out).
    pub async fn try_send(&self, request: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
        let response = request.send().await?;
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await?;
        Ok(Reply { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) })
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        self.try_send(request).await.expect("an answer")
    }

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

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn register(&self, email: &str) -> Tokens {
        tokens(self.post("/v1/auth/register", None, &json!({ "email": email, "password": PASSWORD, "name": "Shopper" })).await.expect(201))
    }

    pub async fn login(&self, email: &str, password: &str) -> Tokens {
        tokens(self.post("/v1/auth/login", None, &json!({ "email": email, "password": password })).await.expect(200))
    }

    pub async fn product(&self, admin: &Tokens, sku: &str, price: i64, stock: i64) -> String {
        let body = json!({ "sku": sku, "name": format!("Item {sku}"), "category": "misc", "price": usd(price), "stock": stock });
        self.post("/v1/admin/products", Some(&admin.access), &body).await.expect(201)["id"].as_str().unwrap().to_owned()
    }

    /// A WebSocket to this address, authenticated as `who`.
    pub async fn websocket(&self, who: &Tokens) -> Ws {
        let ticket =
            self.post("/v1/realtime/tickets", Some(&who.access), &json!({})).await.expect(201)["ticket"].as_str().unwrap().to_owned();
        let url = format!("{}/v1/ws?ticket={ticket}", self.base.replacen("http://", "ws://", 1));
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("a WebSocket");
        let mut ws = Ws(socket);
        assert_eq!(ws.next_json().await["type"], "authenticated");
        ws
    }
}

pub fn usd(amount: i64) -> Value {
    json!({ "amount": amount, "currency": "USD" })
}

fn tokens(body: Value) -> Tokens {
    let field = |name: &str| body[name].as_str().unwrap_or_else(|| panic!("`{name}` missing in {body}")).to_owned();
    Tokens { access: field("access_token"), refresh: field("refresh_token") }
}

pub struct Ws(tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>);

impl Ws {
    /// The next JSON message, skipping control frames; fails on close or after `WAIT`.
    pub async fn next_json(&mut self) -> Value {
        loop {
            match tokio::time::timeout(WAIT, self.0.next()).await.expect("a message in time") {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.0.send(Message::Close(None)).await;
    }
}
