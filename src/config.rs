//! Configuration: an optional `keel.toml`, then `KEEL_*` environment variables, validated once
//! at start-up. Every key is read as text and parsed here, so a bad value is reported with the
//! variable's name and what is allowed (the binary exits with code 2).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format as _, Toml};
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::security::rate_limit::{Policies, Policy, Rate};

/// Every accepted key, as written in `keel.toml` (env: `KEEL_` + upper case).
const KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "db_max_connections",
    "migrate_on_start",
    "cors_origins",
    "currency",
    "log",
    "log_format",
    "otlp_endpoint",
    "otlp_service_name",
    "request_timeout_secs",
    "body_limit_bytes",
    "shutdown_grace_secs",
    "http_max_connections",
    "http_header_timeout_secs",
    "http_idle_timeout_secs",
    "tls_cert",
    "tls_key",
    "jwt_issuer",
    "jwt_audience",
    "access_token_ttl_secs",
    "refresh_token_ttl_secs",
    "signing_key",
    "previous_signing_keys",
    "encryption_key",
    "key_encryption_key",
    "key_ring_refresh_secs",
    "rate_limit_auth_ip",
    "rate_limit_auth_account",
    "rate_limit_auth_account_ip",
    "rate_limit_mail_ip",
    "rate_limit_mail_account",
    "rate_limit_anonymous",
    "rate_limit_user",
    "rate_limit_money",
    "rate_limit_admin",
    "rate_limit_api_key",
    "rate_limit_enabled",
    "rate_limit_max_keys",
    "trusted_proxies",
    "smtp_url",
    "mail_from",
    "app_base_url",
    "public_url",
    "oauth_redirect_urls",
    "webauthn_rp_id",
    "webauthn_origins",
    "webhook_retry_base_ms",
    "webhook_max_attempts",
    "webhook_allowed_networks",
    "nats_url",
    "nats_subject_prefix",
    "redis_url",
    "redis_key_prefix",
    "redis_connect_timeout_ms",
    "redis_response_timeout_ms",
    "run_workers",
    "run_relay",
    "worker_lease_secs",
    "worker_concurrency",
    "worker_queues",
    "payment_provider",
    "payment_api_base",
    "payment_api_key",
    "payment_webhook_secret",
    "payment_timeout_ms",
    "payment_max_retries",
    "payment_breaker_failures",
    "payment_breaker_cooldown_secs",
    "payment_reconcile_delay_secs",
    "sqlite_synchronous",
    "idempotency_lease_secs",
    "realtime_max_connections",
    "realtime_max_per_user",
    "realtime_ping_secs",
    "realtime_heartbeat_secs",
];

/// The keys of each social login provider: `oauth_<name>_<field>` (`<name>` lower-case letters
/// and digits, such as `oauth_google_client_id`). `url` and `api_url` are GitHub's only.
const OAUTH_FIELDS: &[&str] = &["issuer", "client_id", "client_secret", "api_url", "url"];

/// `(name, field)` of a provider's key.
fn oauth_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("oauth_")?;
    // `api_url` is tried before `url`, so `github_api_url` is GitHub's API URL.
    OAUTH_FIELDS.iter().find_map(|field| {
        let name = rest.strip_suffix(field)?.strip_suffix('_')?;
        let valid = !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        valid.then_some((name, *field))
    })
}

/// Whether `key` names a setting (a fixed one, or a provider's).
fn is_known_key(key: &str) -> bool {
    KEYS.contains(&key) || oauth_key(key).is_some()
}

/// Keys whose values must never be echoed in an error message.
const SECRET_KEYS: &[&str] = &[
    "signing_key",
    "previous_signing_keys",
    "encryption_key",
    "key_encryption_key",
    "database_url",
    "smtp_url",
    "nats_url",
    "redis_url",
    "payment_api_key",
    "payment_webhook_secret",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// The validated configuration, built once and passed down.
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: SecretString,
    pub db_max_connections: u32,
    pub migrate_on_start: bool,
    pub cors_origins: Vec<String>,
    pub currency: String,
    pub log: String,
    pub log_format: LogFormat,
    /// Spans exported over OTLP/HTTP (`otlp_endpoint`, `otlp_service_name`); none without it.
    pub otlp: Option<crate::telemetry::OtlpExport>,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    pub shutdown_grace: Duration,
    /// Open client connections, the time a request's headers may take, and how long a
    /// connection may sit with nothing moving.
    pub http: crate::http::server::ServerLimits,
    /// TLS from `tls_cert` and `tls_key` (files read and checked at start-up); plain HTTP without.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub signing_key: Option<SecretString>,
    /// Keys that signed before `signing_key` (base64 PKCS#8, checked): tokens they signed are
    /// still accepted until they expire, and the JWKS publishes them.
    pub previous_signing_keys: Vec<SecretString>,
    pub encryption_key: Option<SecretString>,
    /// Seals the key ring's keys in the database (32 bytes, base64); the same on every instance.
    /// Without it, a key generated in `data_dir` (enough for one machine).
    pub key_encryption_key: Option<SecretString>,
    /// How often every instance reloads the key ring; a rotated key is put in use two periods
    /// after it is added.
    pub key_ring_refresh: Duration,
    /// The rate of each rate-limited action (`rate_limit_<policy>`); every one off when
    /// `rate_limit_enabled` is false.
    pub rate_limits: Policies,
    /// Cells the in-process rate limiter may hold (its memory bound).
    pub rate_limit_max_keys: usize,
    pub trusted_proxies: Vec<IpAddr>,
    /// SMTP server for mail; without it, mail is written as `.eml` files under `data_dir/mail`.
    pub smtp_url: Option<SecretString>,
    pub mail_from: lettre::message::Mailbox,
    /// Keel's own address as browsers and providers reach it (`public_url`); unset: its address
    /// at `listen`. Social login's callback URLs are built on it.
    pub public_url: Option<String>,
    /// App URLs a social sign-in may return to besides `app_base_url`, each matched exactly.
    pub oauth_redirect_urls: Vec<String>,
    /// The social login providers (`oauth_<name>_*`), in name order.
    pub oauth_providers: Vec<crate::auth::social::model::ProviderSettings>,
    /// Where the shop's web app lives: links in mail point there (`/verify-email?token=…`).
    /// Unset: Keel's own address, where built-in pages complete the flows (see `mail_base_url`).
    pub app_base_url: Option<String>,
    /// The passkeys' relying party id (a domain) and the origins browsers use them from; by
    /// default those of `app_base_url` (see [`Config::relying_party`]).
    pub webauthn_rp_id: Option<String>,
    pub webauthn_origins: Vec<webauthn_rs::prelude::Url>,
    /// NATS server with JetStream; without it the bus is in-process (one instance).
    pub nats_url: Option<SecretString>,
    /// Subjects are `<prefix>.events.<type>`, the stream `<PREFIX>_EVENTS`.
    pub nats_subject_prefix: String,
    /// Redis, shared by every instance for rate limits and the cache's second tier; without
    /// it both are per instance.
    pub redis: Option<crate::redis::RedisSettings>,
    /// Webhook retries: the first delay (doubling per attempt up to an hour) and the attempts.
    pub webhook_retry: crate::notify::webhooks::RetryPolicy,
    /// Networks webhooks may reach besides public addresses (development receivers on loopback).
    pub webhook_allowed_networks: Vec<ipnet::IpNet>,
    /// Run job workers inside `serve` (`keel worker` runs them alone).
    pub run_workers: bool,
    pub worker_concurrency: usize,
    /// A job whose worker stops heart-beating runs again after this long.
    pub worker_lease: Duration,
    /// Publish the outbox from `serve` (turn off only to run the relay elsewhere).
    pub run_relay: bool,
    pub worker_queues: Vec<String>,
    /// The payment provider, its timeouts, retries, circuit breaker and webhook secret.
    pub payment: crate::payments::PaymentConfig,
    /// SQLite's durability of a commit: `full` (default; survives a power cut) or `normal`.
    pub sqlite_synchronous: crate::store::SqliteDurability,
    /// How long a request holds its idempotency key before a retry may take it over.
    pub idempotency_lease: Duration,
    /// Open real-time connections (WebSocket and SSE) this instance accepts in all, and per user.
    pub realtime_max_connections: usize,
    pub realtime_max_per_user: usize,
    /// How often the server pings a WebSocket; a peer silent for two of these is dropped.
    pub realtime_ping: Duration,
    /// How often an SSE stream gets a comment line, so proxies do not time it out.
    pub realtime_heartbeat: Duration,
}

/// A configuration error; its message names the key, the variable and what is allowed.
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A scalar setting kept as text whatever its TOML/env type (lists are joined with commas).
struct Setting(String);

impl<'de> Deserialize<'de> for Setting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Setting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, boolean or list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Setting, E> {
                Ok(Setting(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Setting, E> {
                Ok(Setting(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Setting, E> {
                Ok(Setting(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Setting, E> {
                Ok(Setting(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Setting, E> {
                Ok(Setting(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Setting, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(Setting(items.join(",")))
            }
        }
        d.deserialize_any(V)
    }
}

/// `KEEL_*` environment variables that name no setting (a typo, most likely): they are
/// ignored, and start-up warns about them by name.
pub fn unknown_env_vars() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.strip_prefix("KEEL_").is_some_and(|key| !is_known_key(&key.to_lowercase())))
        .collect()
}

impl Config {
    /// Loads `keel.toml` (at `file`, or `./keel.toml` when present) and `KEEL_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let path = file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("keel.toml"));
        if file.is_some() && !path.exists() {
            return Err(ConfigError(format!("config file {} does not exist", path.display())));
        }
        let figment =
            Figment::new().merge(Toml::file(&path)).merge(Env::prefixed("KEEL_").filter(|key| is_known_key(&key.as_str().to_lowercase())));
        let map: BTreeMap<String, Setting> = figment.extract().map_err(|e| ConfigError(format!("configuration: {e}")))?;
        Self::from_settings(map.into_iter().map(|(k, v)| (k, v.0)).collect())
    }

    /// Builds a configuration from explicit `keel.toml` keys, ignoring files and environment
    /// (tests and embedding). Same validation as start-up.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self::from_settings(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    fn from_settings(map: BTreeMap<String, String>) -> Result<Config, ConfigError> {
        if let Some(unknown) = map.keys().find(|k| !is_known_key(k)) {
            return Err(ConfigError(format!("unknown configuration key `{unknown}`; known keys: {}", KEYS.join(", "))));
        }
        let s = Settings(map);
        let payment = payment(&s)?;
        let data_dir = s.parse("data_dir", "a directory path", |v| Some(PathBuf::from(v)))?.unwrap_or_else(|| PathBuf::from("keel-data"));
        let default_db = format!("sqlite://{}?mode=rwc", data_dir.join("keel.db").display());
        let request_timeout = s.parse("request_timeout_secs", "seconds from 1 to 3600", secs(1, 3600))?.unwrap_or(Duration::from_secs(30));
        let database_url = s.parse("database_url", "a sqlite://… or postgres://… URL", |v| {
            (v.starts_with("sqlite:") || v.starts_with("postgres://") || v.starts_with("postgresql://")).then(|| v.to_owned())
        })?;
        let config = Config {
            listen: s
                .parse("listen", "an address:port such as 127.0.0.1:8080", |v| v.parse().ok())?
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
            database_url: SecretString::from(database_url.unwrap_or(default_db)),
            data_dir,
            db_max_connections: s
                .parse("db_max_connections", "an integer from 1 to 1000", |v| v.parse().ok().filter(|n| (1..=1000).contains(n)))?
                .unwrap_or(10),
            migrate_on_start: s.parse("migrate_on_start", "true or false", |v| v.parse().ok())?.unwrap_or(true),
            cors_origins: s
                .parse("cors_origins", "comma-separated origins such as https://shop.example.com", parse_origins)?
                .unwrap_or_default(),
            currency: s
                .parse("currency", "an ISO 4217 code of three upper-case letters", |v| {
                    (v.len() == 3 && v.bytes().all(|b| b.is_ascii_uppercase())).then(|| v.to_owned())
                })?
                .unwrap_or_else(|| "USD".into()),
            log: s
                .parse("log", "a tracing filter such as info or keel=debug,warn", |v| {
                    tracing_subscriber::EnvFilter::try_new(v).ok().map(|_| v.to_owned())
                })?
                .unwrap_or_else(|| "info".into()),
            log_format: s
                .parse("log_format", "json or pretty", |v| match v {
                    "json" => Some(LogFormat::Json),
                    "pretty" => Some(LogFormat::Pretty),
                    _ => None,
                })?
                .unwrap_or(LogFormat::Json),
            otlp: otlp(&s)?,
            request_timeout,
            http: http_limits(&s, request_timeout)?,
            tls: tls(&s)?,
            body_limit_bytes: s
                .parse("body_limit_bytes", "bytes from 1024 to 1073741824", |v| v.parse().ok().filter(|n| (1024..=1 << 30).contains(n)))?
                .unwrap_or(1 << 20),
            shutdown_grace: s.parse("shutdown_grace_secs", "seconds from 0 to 600", secs(0, 600))?.unwrap_or(Duration::from_secs(20)),
            jwt_issuer: s.parse("jwt_issuer", "a non-empty string", non_empty)?.unwrap_or_else(|| "keel".into()),
            jwt_audience: s.parse("jwt_audience", "a non-empty string", non_empty)?.unwrap_or_else(|| "keel-api".into()),
            access_token_ttl: s
                .parse("access_token_ttl_secs", "seconds from 1 to 86400", secs(1, 86_400))?
                .unwrap_or(Duration::from_secs(900)),
            refresh_token_ttl: s
                .parse("refresh_token_ttl_secs", "seconds from 60 to 31536000", secs(60, 31_536_000))?
                .unwrap_or(Duration::from_secs(30 * 86_400)),
            signing_key: s.parse("signing_key", "a base64 PKCS#8 Ed25519 private key", |v| {
                crate::security::secrets::decode_configured(v, "signing_key")
                    .is_ok_and(|key| crate::auth::tokens::is_signing_key(&key))
                    .then(|| SecretString::from(v.to_owned()))
            })?,
            previous_signing_keys: s
                .parse("previous_signing_keys", "comma-separated base64 PKCS#8 Ed25519 private keys", |v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(|k| {
                            let key = crate::security::secrets::decode_configured(k, "previous_signing_keys").ok()?;
                            crate::auth::tokens::is_signing_key(&key).then(|| SecretString::from(k.to_owned()))
                        })
                        .collect()
                })?
                .unwrap_or_default(),
            encryption_key: s.parse("encryption_key", "32 bytes, base64-encoded", |v| {
                crate::security::secrets::decode_configured(v, "encryption_key")
                    .is_ok_and(|key| key.len() == 32)
                    .then(|| SecretString::from(v.to_owned()))
            })?,
            key_encryption_key: s.parse("key_encryption_key", "32 bytes, base64-encoded", |v| {
                crate::security::secrets::decode_configured(v, "key_encryption_key")
                    .is_ok_and(|key| key.len() == 32)
                    .then(|| SecretString::from(v.to_owned()))
            })?,
            key_ring_refresh: s.parse("key_ring_refresh_secs", "seconds from 1 to 3600", secs(1, 3600))?.unwrap_or(Duration::from_secs(30)),
            rate_limits: rate_limits(&s)?,
            rate_limit_max_keys: s
                .parse("rate_limit_max_keys", "an integer from 1 to 100000000", |v| {
                    v.parse().ok().filter(|n| (1..=100_000_000).contains(n))
                })?
                .unwrap_or(100_000),
            trusted_proxies: s
                .parse("trusted_proxies", "comma-separated IP addresses", |v| {
                    v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(|p| p.parse().ok()).collect()
                })?
                .unwrap_or_default(),
            smtp_url: s.parse("smtp_url", "an smtp:// or smtps:// URL", |v| {
                ((v.starts_with("smtp://") || v.starts_with("smtps://")) && crate::notify::mail::smtp_url_parses(v))
                    .then(|| SecretString::from(v.to_owned()))
            })?,
            mail_from: s
                .parse("mail_from", "a mailbox such as Shop <no-reply@shop.example>", |v| v.parse().ok())?
                .unwrap_or_else(|| "Keel <no-reply@keel.invalid>".parse().expect("the default sender parses")),
            app_base_url: s.parse("app_base_url", "an http:// or https:// URL without a fragment", |v| {
                app_url(v).then(|| v.trim_end_matches('/').to_owned())
            })?,
            public_url: s.parse("public_url", "an http:// or https:// URL without a path, query or fragment", |v| {
                url_without_path(v).then(|| v.trim_end_matches('/').to_owned())
            })?,
            oauth_redirect_urls: s
                .parse("oauth_redirect_urls", "comma-separated http:// or https:// URLs without a fragment", |v| {
                    v.split(',').map(str::trim).filter(|u| !u.is_empty()).map(|u| app_url(u).then(|| u.to_owned())).collect()
                })?
                .unwrap_or_default(),
            oauth_providers: oauth_providers(&s)?,
            nats_url: s.parse("nats_url", "a nats:// URL", |v| {
                (v.starts_with("nats://") || v.starts_with("tls://")).then(|| SecretString::from(v.to_owned()))
            })?,
            nats_subject_prefix: s
                .parse("nats_subject_prefix", "letters, digits, - and _", |v| {
                    (!v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
                        .then(|| v.to_owned())
                })?
                .unwrap_or_else(|| "keel".to_owned()),
            redis: redis_settings(&s)?,
            webhook_retry: crate::notify::webhooks::RetryPolicy {
                first_delay: s
                    .parse("webhook_retry_base_ms", "milliseconds from 1 to 3600000", |v| {
                        v.parse().ok().filter(|n| (1..=3_600_000).contains(n)).map(Duration::from_millis)
                    })?
                    .unwrap_or(crate::notify::webhooks::RetryPolicy::default().first_delay),
                max_attempts: s
                    .parse("webhook_max_attempts", "an integer from 1 to 100", |v| v.parse().ok().filter(|n| (1..=100).contains(n)))?
                    .unwrap_or(crate::notify::webhooks::RetryPolicy::default().max_attempts),
            },
            webhook_allowed_networks: s
                .parse("webhook_allowed_networks", "comma-separated networks (CIDR, such as 127.0.0.0/8) or addresses", |v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(|n| n.parse::<ipnet::IpNet>().or_else(|_| n.parse::<IpAddr>().map(ipnet::IpNet::from)).ok())
                        .collect()
                })?
                .unwrap_or_default(),
            run_workers: s.parse("run_workers", "true or false", |v| v.parse().ok())?.unwrap_or(true),
            worker_lease: s.parse("worker_lease_secs", "seconds from 1 to 3600", secs(1, 3600))?.unwrap_or(Duration::from_secs(30)),
            run_relay: s.parse("run_relay", "true or false", |v| v.parse().ok())?.unwrap_or(true),
            worker_concurrency: s
                .parse("worker_concurrency", "an integer from 1 to 256", |v| v.parse().ok().filter(|n| (1..=256).contains(n)))?
                .unwrap_or(4),
            worker_queues: s
                .parse("worker_queues", "comma-separated queue names", |v| {
                    let queues: Vec<String> = v.split(',').map(str::trim).filter(|q| !q.is_empty()).map(str::to_owned).collect();
                    (!queues.is_empty()
                        && queues.iter().all(|q| q.len() <= 64 && q.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')))
                    .then_some(queues)
                })?
                .unwrap_or_else(|| crate::jobs::QUEUES.iter().map(|q| (*q).to_owned()).collect()),
            payment,
            sqlite_synchronous: s
                .parse("sqlite_synchronous", "full or normal", |v| match v {
                    "full" => Some(crate::store::SqliteDurability::Full),
                    "normal" => Some(crate::store::SqliteDurability::Normal),
                    _ => None,
                })?
                .unwrap_or_default(),
            idempotency_lease: s
                .parse("idempotency_lease_secs", "seconds from 1 to 3600", secs(1, 3600))?
                .unwrap_or(crate::http::idempotency::LEASE),
            realtime_max_connections: s
                .parse("realtime_max_connections", "an integer from 1 to 1000000", |v| {
                    v.parse().ok().filter(|n| (1..=1_000_000).contains(n))
                })?
                .unwrap_or(10_000),
            realtime_max_per_user: s
                .parse("realtime_max_per_user", "an integer from 1 to 1000", |v| v.parse().ok().filter(|n| (1..=1000).contains(n)))?
                .unwrap_or(16),
            realtime_ping: s.parse("realtime_ping_secs", "seconds from 1 to 3600", secs(1, 3600))?.unwrap_or(Duration::from_secs(30)),
            realtime_heartbeat: s
                .parse("realtime_heartbeat_secs", "seconds from 1 to 3600", secs(1, 3600))?
                .unwrap_or(Duration::from_secs(15)),
            webauthn_rp_id: s.parse("webauthn_rp_id", "a domain name such as shop.example.com or localhost (not an IP address)", |v| {
                crate::auth::passkeys::model::parse_rp_id(v)
            })?,
            webauthn_origins: s
                .parse(
                    "webauthn_origins",
                    "comma-separated origins on domains such as https://shop.example.com",
                    crate::auth::passkeys::model::parse_origins,
                )?
                .unwrap_or_default(),
        };
        // The port of Keel's own address may be 0 until bound: only the hosts are checked here.
        config.relying_party()?;
        Ok(config)
    }
}

impl Config {
    /// Where passkeys are valid: `webauthn_rp_id` and `webauthn_origins`, else the host and
    /// origin of `app_base_url`, else `localhost` at Keel's own port (WebAuthn needs a domain:
    /// browsers reach a local Keel as `http://localhost:<port>`, never as `127.0.0.1`).
    pub fn relying_party(&self) -> Result<crate::auth::passkeys::RelyingParty, ConfigError> {
        let own = own_url(self.listen, self.tls.is_some());
        crate::auth::passkeys::RelyingParty::resolve(
            self.webauthn_rp_id.as_deref(),
            &self.webauthn_origins,
            self.app_base_url.as_deref(),
            &own,
        )
        .map_err(|why| key_error(if self.webauthn_origins.is_empty() { "webauthn_rp_id" } else { "webauthn_origins" }, &why))
    }

    /// The base of links in mail: `app_base_url`, else Keel's own address at `listen` (whose
    /// built-in `/verify-email` and `/reset-password` pages complete the flows).
    pub fn mail_base_url(&self) -> String {
        self.app_base_url.clone().unwrap_or_else(|| own_url(self.listen, self.tls.is_some()))
    }

    /// Keel's own public base URL: `public_url`, else its address at `listen`.
    pub fn public_base_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| own_url(self.listen, self.tls.is_some()))
    }
}

/// An http(s) URL an app may be sent back to: it parses and has no fragment (Keel adds one).
fn app_url(v: &str) -> bool {
    (v.starts_with("http://") || v.starts_with("https://"))
        && reqwest::Url::parse(v).is_ok_and(|u| u.fragment().is_none() && u.host().is_some())
}

/// An http(s) base URL: scheme and authority only.
fn url_without_path(v: &str) -> bool {
    app_url(v) && reqwest::Url::parse(v).is_ok_and(|u| u.path() == "/" && u.query().is_none() && !v.contains('#'))
}

/// The social login providers: every name with an `oauth_<name>_*` key must have a client id
/// and secret, and an issuer unless it is `github` (plain OAuth 2.0) or an issuer Keel knows
/// (`google`, `apple`).
fn oauth_providers(s: &Settings) -> Result<Vec<crate::auth::social::model::ProviderSettings>, ConfigError> {
    use crate::auth::social::model::{GITHUB_API_URL, GITHUB_WEB_URL, ProviderKind, ProviderSettings, default_issuer};
    let names: std::collections::BTreeSet<&str> = s.0.keys().filter_map(|k| oauth_key(k)).map(|(name, _)| name).collect();
    names
        .into_iter()
        .map(|name| {
            let key = |field: &str| format!("oauth_{name}_{field}");
            let url = |field: &str| {
                s.parse(&key(field), "an http:// or https:// URL", |v| app_url(v).then(|| v.trim_end_matches('/').to_owned()))
            };
            let text = |field: &str| s.parse(&key(field), "a non-empty value", non_empty);
            let client_id = text("client_id")?.ok_or_else(|| key_error(&key("client_id"), "is required for this provider"))?;
            let client_secret = text("client_secret")?
                .map(SecretString::from)
                .ok_or_else(|| key_error(&key("client_secret"), "is required for this provider"))?;
            let kind = if name == "github" {
                if s.0.contains_key(&key("issuer")) {
                    return Err(key_error(&key("issuer"), "is not used: github is built in as plain OAuth 2.0 (set oauth_github_url)"));
                }
                ProviderKind::GitHub {
                    web_url: url("url")?.unwrap_or_else(|| GITHUB_WEB_URL.to_owned()),
                    api_url: url("api_url")?.unwrap_or_else(|| GITHUB_API_URL.to_owned()),
                }
            } else {
                if let Some(field) = ["url", "api_url"].into_iter().find(|f| s.0.contains_key(&key(f))) {
                    return Err(key_error(&key(field), "is for github only; an OpenID Connect provider takes an issuer"));
                }
                // The issuer is compared with the `iss` of ID tokens exactly: it is kept as given.
                let issuer = s.parse(&key("issuer"), "an http:// or https:// URL", |v| app_url(v).then(|| v.to_owned()))?;
                let issuer = issuer
                    .or_else(|| default_issuer(name).map(str::to_owned))
                    .ok_or_else(|| key_error(&key("issuer"), "is required for this provider (an OpenID Connect issuer URL)"))?;
                ProviderKind::Oidc { issuer }
            };
            Ok(ProviderSettings { id: name.to_owned(), kind, client_id, client_secret })
        })
        .collect()
}

/// `http://<addr>` (`https://` with TLS); a wildcard address (`0.0.0.0`, `::`) becomes
/// loopback, the one address of this host that is sure to reach it.
fn own_url(addr: SocketAddr, tls: bool) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// The `payment_*` keys. `http` needs its base URL and key; the sandbox ignores them.
fn payment(s: &Settings) -> Result<crate::payments::PaymentConfig, ConfigError> {
    use crate::payments::{PaymentConfig, ProviderKind};
    let defaults = PaymentConfig::default();
    let http = s
        .parse("payment_provider", "sandbox or http", |v| match v {
            "sandbox" => Some(false),
            "http" => Some(true),
            _ => None,
        })?
        .unwrap_or(false);
    let api_base = s.parse("payment_api_base", "an http:// or https:// URL", |v| {
        ((v.starts_with("http://") || v.starts_with("https://")) && reqwest::Url::parse(v).is_ok())
            .then(|| v.trim_end_matches('/').to_owned())
    })?;
    let api_key = s.parse("payment_api_key", "a non-empty API key", |v| (!v.is_empty()).then(|| SecretString::from(v.to_owned())))?;
    let required = |key: &str| key_error(key, "is required when payment_provider is http");
    let provider = match (http, api_base, api_key) {
        (false, _, _) => ProviderKind::Sandbox,
        (true, Some(api_base), Some(api_key)) => ProviderKind::Http { api_base, api_key },
        (true, None, _) => return Err(required("payment_api_base")),
        (true, Some(_), None) => return Err(required("payment_api_key")),
    };
    let mut config = PaymentConfig { provider, ..defaults };
    config.webhook_secret = s.parse("payment_webhook_secret", "a secret of at least 16 characters", |v| {
        (v.len() >= 16).then(|| SecretString::from(v.to_owned()))
    })?;
    if let Some(timeout) = s.parse("payment_timeout_ms", "milliseconds from 100 to 120000", |v| {
        v.parse().ok().filter(|n| (100..=120_000).contains(n)).map(Duration::from_millis)
    })? {
        config = config.with_timeout(timeout);
    }
    if let Some(retries) = s.parse("payment_max_retries", "an integer from 0 to 10", |v| v.parse().ok().filter(|n| *n <= 10))? {
        config.retry.max_retries = retries;
    }
    if let Some(failures) =
        s.parse("payment_breaker_failures", "an integer from 1 to 1000", |v| v.parse().ok().filter(|n| (1..=1000).contains(n)))?
    {
        config.breaker.failure_threshold = failures;
    }
    if let Some(cooldown) = s.parse("payment_breaker_cooldown_secs", "seconds from 1 to 3600", secs(1, 3600))? {
        config.breaker.cooldown = cooldown;
    }
    if let Some(delay) = s.parse("payment_reconcile_delay_secs", "seconds from 1 to 3600", secs(1, 3600))? {
        config.reconcile_delay = delay;
    }
    Ok(config)
}

/// The `otlp_*` keys; `None` without `otlp_endpoint` (the service name is checked either way).
fn otlp(s: &Settings) -> Result<Option<crate::telemetry::OtlpExport>, ConfigError> {
    let service_name = s
        .parse("otlp_service_name", "1 to 255 printable characters", |v| {
            (!v.is_empty() && v.len() <= 255 && !v.chars().any(char::is_control)).then(|| v.to_owned())
        })?
        .unwrap_or_else(|| "keel".to_owned());
    let traces_url = s.parse(
        "otlp_endpoint",
        "an http:// or https:// URL of an OTLP/HTTP collector without credentials, such as http://collector:4318",
        crate::telemetry::traces_url,
    )?;
    Ok(traces_url.map(|traces_url| crate::telemetry::OtlpExport { traces_url, service_name }))
}

/// The `http_*` keys. A connection idle for longer than a request may run would cut requests
/// off, so the idle timeout must exceed `request_timeout_secs` (by default it does, by 30 s).
fn http_limits(s: &Settings, request_timeout: Duration) -> Result<crate::http::server::ServerLimits, ConfigError> {
    let idle = s
        .parse("http_idle_timeout_secs", "seconds from 1 to 86400, more than request_timeout_secs", |v| {
            secs(1, 86_400)(v).filter(|idle| *idle > request_timeout)
        })?
        .unwrap_or_else(|| (request_timeout + Duration::from_secs(30)).max(Duration::from_secs(60)));
    Ok(crate::http::server::ServerLimits {
        max_connections: s
            .parse("http_max_connections", "an integer from 1 to 1000000", |v| v.parse().ok().filter(|n| (1..=1_000_000).contains(n)))?,
        header_timeout: s.parse("http_header_timeout_secs", "seconds from 1 to 300", secs(1, 300))?.unwrap_or(Duration::from_secs(10)),
        idle_timeout: idle,
    })
}

/// The `tls_*` keys: both or neither. The files are read now, so a missing or bad one stops start-up.
fn tls(s: &Settings) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, ConfigError> {
    use crate::http::tls::TlsFilesError;
    let path = |key| s.parse(key, "the path of a PEM file", |v| (!v.is_empty()).then(|| PathBuf::from(v)));
    match (path("tls_cert")?, path("tls_key")?) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(key_error("tls_key", "is required when tls_cert is set")),
        (None, Some(_)) => Err(key_error("tls_cert", "is required when tls_key is set")),
        (Some(cert), Some(key)) => crate::http::tls::server_config(&cert, &key).map(Some).map_err(|e| match e {
            TlsFilesError::Cert(why) => key_error("tls_cert", &format!("is unusable: {why}")),
            TlsFilesError::Key(why) => key_error("tls_key", &format!("is unusable: {why}")),
            TlsFilesError::Mismatch => key_error("tls_key", "is not the private key of the tls_cert certificate"),
        }),
    }
}

/// An error about one key, named with its variable: ``KEEL_TLS_KEY (keel.toml key `tls_key`) <problem>``.
fn key_error(key: &str, problem: &str) -> ConfigError {
    ConfigError(format!("KEEL_{} (keel.toml key `{key}`) {problem}", key.to_uppercase()))
}

/// Each policy's `rate_limit_<policy>` key, or its default; none when `rate_limit_enabled` is
/// false (each key is still checked).
fn rate_limits(s: &Settings) -> Result<Policies, ConfigError> {
    let enabled = s.parse("rate_limit_enabled", "true or false", |v| v.parse().ok())?.unwrap_or(true);
    Policy::ALL.into_iter().try_fold(Policies::default(), |policies, policy| {
        let rate = s.parse(&policy.setting(), "N/s, N/min, N/h (N from 1 to 1000000) or off", Rate::parse_setting)?;
        Ok(policies.with(policy, if enabled { rate.unwrap_or(Some(policy.default_rate())) } else { None }))
    })
}

/// The `redis_*` keys; `None` without `redis_url`.
fn redis_settings(s: &Settings) -> Result<Option<crate::redis::RedisSettings>, ConfigError> {
    let url = s.parse("redis_url", "a redis:// URL", |v| {
        (v.starts_with("redis://") && redis::Client::open(v).is_ok()).then(|| SecretString::from(v.to_owned()))
    })?;
    let key_prefix = s
        .parse("redis_key_prefix", "1 to 64 printable ASCII characters without spaces", |v| {
            (!v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic())).then(|| v.to_owned())
        })?
        .unwrap_or_else(|| "keel:".to_owned());
    let millis = |key: &str, default: u64| {
        s.parse(key, "milliseconds from 10 to 60000", |v| v.parse().ok().filter(|n| (10..=60_000).contains(n)))
            .map(|ms| Duration::from_millis(ms.unwrap_or(default)))
    };
    let connect_timeout = millis("redis_connect_timeout_ms", 1000)?;
    let response_timeout = millis("redis_response_timeout_ms", 250)?;
    Ok(url.map(|url| crate::redis::RedisSettings { url, key_prefix, connect_timeout, response_timeout }))
}

struct Settings(BTreeMap<String, String>);

impl Settings {
    /// Parses one key; `None` when it is not set.
    fn parse<T>(&self, key: &str, allowed: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, ConfigError> {
        let Some(raw) = self.0.get(key) else { return Ok(None) };
        parse(raw.trim()).map(Some).ok_or_else(|| {
            let secret = SECRET_KEYS.contains(&key) || oauth_key(key).is_some_and(|(_, field)| field == "client_secret");
            let shown = if secret { "(hidden)".to_owned() } else { format!("{raw:?}") };
            ConfigError(format!("invalid value for KEEL_{} (keel.toml key `{key}`): got {shown}, expected {allowed}", key.to_uppercase()))
        })
    }
}

fn secs(min: u64, max: u64) -> impl Fn(&str) -> Option<Duration> {
    move |v| v.parse().ok().filter(|n| (min..=max).contains(n)).map(Duration::from_secs)
}

fn non_empty(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_owned())
}

fn parse_origins(v: &str) -> Option<Vec<String>> {
    v.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            let scheme_ok = o.starts_with("https://") || o.starts_with("http://");
            let host = o.split_once("://").map(|(_, h)| h).unwrap_or("");
            (scheme_ok && !host.is_empty() && !host.contains('/') && o.parse::<axum::http::HeaderValue>().is_ok()).then(|| o.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_settings() {
        let c = Config::from_pairs(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.currency, "USD");
        assert_eq!(c.body_limit_bytes, 1 << 20);
        assert_eq!(c.mail_base_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn mailed_links_default_to_keels_own_address() {
        let c = Config::from_pairs([("listen", "0.0.0.0:9000")]).unwrap();
        assert_eq!(c.mail_base_url(), "http://127.0.0.1:9000");
        let c = Config::from_pairs([("listen", "[::]:9000")]).unwrap();
        assert_eq!(c.mail_base_url(), "http://[::1]:9000");
        let c = Config::from_pairs([("listen", "10.0.0.5:80"), ("app_base_url", "https://shop.example/")]).unwrap();
        assert_eq!(c.mail_base_url(), "https://shop.example");
    }

    #[test]
    fn with_tls_mailed_links_default_to_https() {
        let (cert, key) = crate::http::tls::tests::self_signed_files();
        let (cert_path, key_path) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let c = Config::from_pairs([("listen", "0.0.0.0:8443"), ("tls_cert", cert_path), ("tls_key", key_path)]).unwrap();
        assert!(c.tls.is_some());
        assert_eq!(c.mail_base_url(), "https://127.0.0.1:8443");
        let _ = std::fs::remove_dir_all(cert.parent().unwrap());
    }

    #[test]
    fn a_bad_value_names_the_variable_and_what_is_allowed() {
        let err = Config::from_pairs([("listen", "nonsense")]).err().unwrap().to_string();
        assert!(err.contains("KEEL_LISTEN") && err.contains("address:port"), "{err}");
    }

    #[test]
    fn secret_values_are_not_echoed() {
        let err = Config::from_pairs([("database_url", "mysql://u:hunter2@h/db")]).err().unwrap().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn keys_and_urls_are_checked_at_start_without_being_echoed() {
        for (key, value) in [
            ("signing_key", "bm90IGEga2V5"),
            ("signing_key", "%%%"),
            ("encryption_key", "c2hvcnQ="),
            ("previous_signing_keys", "bm90IGEga2V5"),
            ("smtp_url", "smtp://user:hunter2@"),
        ] {
            let err = Config::from_pairs([(key, value)]).err().unwrap_or_else(|| panic!("{key}={value} is refused")).to_string();
            assert!(err.contains(&format!("KEEL_{}", key.to_uppercase())), "{err}");
            assert!(!err.contains(value) && !err.contains("hunter2"), "{err}");
        }
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
        assert!(Config::from_pairs([("encryption_key", key.as_str())]).is_ok());
        assert!(Config::from_pairs([("smtp_url", "smtps://user:pw@mail.example:465")]).is_ok());
    }

    #[test]
    fn sqlite_commits_are_durable_unless_told_otherwise() {
        use crate::store::SqliteDurability;
        let c = Config::from_pairs::<_, &str, &str>([]).unwrap();
        assert_eq!((c.sqlite_synchronous, c.idempotency_lease), (SqliteDurability::Full, Duration::from_secs(60)));
        let c = Config::from_pairs([("sqlite_synchronous", "normal"), ("idempotency_lease_secs", "5")]).unwrap();
        assert_eq!((c.sqlite_synchronous, c.idempotency_lease), (SqliteDurability::Normal, Duration::from_secs(5)));
        let err = Config::from_pairs([("sqlite_synchronous", "off")]).err().unwrap().to_string();
        assert!(err.contains("KEEL_SQLITE_SYNCHRONOUS") && err.contains("full or normal"), "{err}");
    }

    #[test]
    fn the_payment_provider_defaults_to_the_sandbox_and_http_needs_its_base_and_key() {
        use crate::payments::ProviderKind;
        let c = Config::from_pairs(Vec::<(String, String)>::new()).unwrap();
        assert!(matches!(c.payment.provider, ProviderKind::Sandbox));
        assert_eq!((c.payment.timeout, c.payment.retry.max_retries, c.payment.breaker.failure_threshold), (Duration::from_secs(8), 2, 5));
        let err = Config::from_pairs([("payment_provider", "http"), ("payment_api_key", "sk_live_hunter2")]).err().unwrap().to_string();
        assert!(err.contains("KEEL_PAYMENT_API_BASE") && !err.contains("hunter2"), "{err}");
        let err =
            Config::from_pairs([("payment_provider", "http"), ("payment_api_base", "https://api.stripe.test")]).err().unwrap().to_string();
        assert!(err.contains("KEEL_PAYMENT_API_KEY"), "{err}");
        let c = Config::from_pairs([
            ("payment_provider", "http"),
            ("payment_api_base", "https://api.stripe.test/"),
            ("payment_api_key", "sk_test_1"),
            ("payment_timeout_ms", "500"),
            ("payment_max_retries", "0"),
            ("payment_breaker_failures", "3"),
            ("payment_breaker_cooldown_secs", "10"),
        ])
        .unwrap();
        assert!(matches!(&c.payment.provider, ProviderKind::Http { api_base, .. } if api_base == "https://api.stripe.test"));
        assert_eq!((c.payment.timeout, c.payment.connect_timeout), (Duration::from_millis(500), Duration::from_millis(500)));
        assert_eq!((c.payment.retry.max_retries, c.payment.breaker.failure_threshold), (0, 3));
        assert_eq!(c.payment.breaker.cooldown, Duration::from_secs(10));
    }

    #[test]
    fn bad_payment_values_name_their_variable_without_echoing_secrets() {
        for (key, value) in [
            ("payment_provider", "stripe"),
            ("payment_api_base", "ftp://x"),
            ("payment_timeout_ms", "5"),
            ("payment_max_retries", "11"),
            ("payment_breaker_failures", "0"),
            ("payment_breaker_cooldown_secs", "0"),
            ("payment_webhook_secret", "short-hunter2"),
            ("realtime_max_connections", "0"),
            ("realtime_max_per_user", "many"),
            ("realtime_ping_secs", "0"),
            ("realtime_heartbeat_secs", "1h"),
        ] {
            let err = Config::from_pairs([(key, value)]).err().unwrap_or_else(|| panic!("{key}={value} is refused")).to_string();
            assert!(err.contains(&format!("KEEL_{}", key.to_uppercase())), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn the_idle_timeout_outlasts_the_request_timeout() {
        let c = Config::from_pairs(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(
            (c.http.header_timeout, c.http.idle_timeout, c.http.max_connections),
            (Duration::from_secs(10), Duration::from_secs(60), None)
        );
        let c = Config::from_pairs([("request_timeout_secs", "120")]).unwrap();
        assert_eq!(c.http.idle_timeout, Duration::from_secs(150));
        let err = Config::from_pairs([("request_timeout_secs", "30"), ("http_idle_timeout_secs", "30")]).err().unwrap().to_string();
        assert!(err.contains("KEEL_HTTP_IDLE_TIMEOUT_SECS") && err.contains("more than request_timeout_secs"), "{err}");
    }

    #[test]
    fn every_rate_limit_policy_has_a_key() {
        for policy in Policy::ALL {
            assert!(KEYS.contains(&policy.setting().as_str()), "{} is a known key", policy.setting());
        }
        let c = Config::from_pairs([("rate_limit_mail_account", "off"), ("rate_limit_auth_ip", "3/h")]).unwrap();
        assert_eq!(c.rate_limits.rate(Policy::MailAccount), None);
        assert_eq!(c.rate_limits.rate(Policy::AuthIp), Some(Rate { burst: 3, period: Duration::from_secs(3600) }));
        assert_eq!(c.rate_limits.rate(Policy::MailIp), Some(Policy::MailIp.default_rate()));
    }

    #[test]
    fn rate_limit_enabled_false_turns_every_policy_off() {
        let c = Config::from_pairs([("rate_limit_enabled", "false"), ("rate_limit_user", "3/h")]).unwrap();
        assert!(Policy::ALL.iter().all(|p| c.rate_limits.rate(*p).is_none()));
        let err = Config::from_pairs([("rate_limit_enabled", "false"), ("rate_limit_user", "3/day")]).err().unwrap().to_string();
        assert!(err.contains("KEEL_RATE_LIMIT_USER"), "{err}");
    }

    #[test]
    fn redis_is_off_unless_configured_and_its_url_is_not_echoed() {
        assert!(Config::from_pairs(Vec::<(String, String)>::new()).unwrap().redis.is_none());
        let c = Config::from_pairs([("redis_url", "redis://127.0.0.1:6379"), ("redis_response_timeout_ms", "100")]).unwrap();
        let redis = c.redis.expect("configured");
        assert_eq!((redis.key_prefix.as_str(), redis.connect_timeout), ("keel:", Duration::from_secs(1)));
        assert_eq!(redis.response_timeout, Duration::from_millis(100));
        let err = Config::from_pairs([("redis_url", "http://user:hunter2@h")]).err().unwrap().to_string();
        assert!(err.contains("KEEL_REDIS_URL") && !err.contains("hunter2"), "{err}");
        assert!(Config::from_pairs([("redis_key_prefix", "has space")]).is_err());
    }

    #[test]
    fn webhook_networks_are_cidrs_or_addresses() {
        let c = Config::from_pairs([("webhook_allowed_networks", "127.0.0.0/8, ::1, 10.1.0.0/16")]).unwrap();
        let shown: Vec<String> = c.webhook_allowed_networks.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.0/8", "::1/128", "10.1.0.0/16"]);
        assert!(Config::from_pairs([("webhook_allowed_networks", "")]).unwrap().webhook_allowed_networks.is_empty());
        assert!(Config::from_pairs([("webhook_allowed_networks", "localhost")]).is_err());
    }

    #[test]
    fn otlp_export_is_off_unless_an_endpoint_is_set() {
        assert_eq!(Config::from_pairs(Vec::<(String, String)>::new()).unwrap().otlp, None);
        let c = Config::from_pairs([("otlp_endpoint", "http://collector:4318")]).unwrap();
        let export = c.otlp.expect("configured");
        assert_eq!((export.traces_url.as_str(), export.service_name.as_str()), ("http://collector:4318/v1/traces", "keel"));
        let c = Config::from_pairs([("otlp_endpoint", "https://otel.example"), ("otlp_service_name", "shop-api")]).unwrap();
        assert_eq!(c.otlp.expect("configured").service_name, "shop-api");
        for (key, value) in [("otlp_endpoint", "collector:4318"), ("otlp_endpoint", "ftp://c"), ("otlp_service_name", "")] {
            let err = Config::from_pairs([(key, value)]).err().unwrap_or_else(|| panic!("{key}={value} is refused")).to_string();
            assert!(err.contains(&format!("KEEL_{}", key.to_uppercase())), "{err}");
        }
    }

    #[test]
    fn social_login_providers_come_from_their_keys_and_are_checked_at_start() {
        use crate::auth::social::model::ProviderKind;
        let providers = [
            ("oauth_google_client_id", "g-id"),
            ("oauth_google_client_secret", "g-secret"),
            ("oauth_github_client_id", "gh-id"),
            ("oauth_github_client_secret", "gh-secret"),
            ("oauth_corp2_issuer", "https://idp.corp.example/realms/x"),
            ("oauth_corp2_client_id", "c-id"),
            ("oauth_corp2_client_secret", "c-secret"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| providers.iter().chain(extra).copied().collect::<Vec<_>>();
        let err = Config::from_pairs(with(&[("oauth_redirect_urls", "https://shop.example/auth/done, myapp://callback")]))
            .err()
            .map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.contains("KEEL_OAUTH_REDIRECT_URLS")), "custom schemes are refused: {err:?}");
        let c = Config::from_pairs(with(&[
            ("oauth_redirect_urls", "https://shop.example/auth/done, https://m.shop.example/done"),
            ("public_url", "https://api.shop.example/"),
        ]))
        .unwrap();
        let kinds: Vec<(&str, &ProviderKind)> = c.oauth_providers.iter().map(|p| (p.id.as_str(), &p.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("corp2", &ProviderKind::Oidc { issuer: "https://idp.corp.example/realms/x".into() }),
                ("github", &ProviderKind::GitHub { web_url: "https://github.com".into(), api_url: "https://api.github.com".into() }),
                ("google", &ProviderKind::Oidc { issuer: "https://accounts.google.com".into() }),
            ]
        );
        assert_eq!(c.oauth_redirect_urls, ["https://shop.example/auth/done", "https://m.shop.example/done"]);
        assert_eq!(c.public_base_url(), "https://api.shop.example");
        assert_eq!(Config::from_pairs([("listen", "0.0.0.0:9000")]).unwrap().public_base_url(), "http://127.0.0.1:9000");
        // Each case: a provider's keys, with a client id and secret unless the case is about them.
        let with_credentials = |name: &str, extra: &[(&str, &str)]| {
            let mut pairs: Vec<(String, String)> = [("client_id", "id"), ("client_secret", "hunter2-secret")]
                .iter()
                .map(|(k, v)| (format!("oauth_{name}_{k}"), (*v).to_owned()))
                .collect();
            pairs.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
            pairs
        };
        let only = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>();
        for (pairs, variable) in [
            (only(&[("oauth_corp_issuer", "https://idp.example")]), "KEEL_OAUTH_CORP_CLIENT_ID"),
            (only(&[("oauth_corp_issuer", "https://idp.example"), ("oauth_corp_client_id", "x")]), "KEEL_OAUTH_CORP_CLIENT_SECRET"),
            (with_credentials("corp", &[]), "KEEL_OAUTH_CORP_ISSUER"),
            (with_credentials("corp", &[("oauth_corp_issuer", "idp.example")]), "KEEL_OAUTH_CORP_ISSUER"),
            (with_credentials("github", &[("oauth_github_issuer", "https://github.com")]), "KEEL_OAUTH_GITHUB_ISSUER"),
            (with_credentials("github", &[("oauth_github_api_url", "api.github.com")]), "KEEL_OAUTH_GITHUB_API_URL"),
            (with_credentials("google", &[("oauth_google_url", "https://x.example")]), "KEEL_OAUTH_GOOGLE_URL"),
            (only(&[("oauth_github_client_id", "x"), ("oauth_github_client_secret", "")]), "KEEL_OAUTH_GITHUB_CLIENT_SECRET"),
            (only(&[("public_url", "https://api.example/v1")]), "KEEL_PUBLIC_URL"),
        ] {
            let err = Config::from_pairs(pairs).err().unwrap_or_else(|| panic!("{variable} is refused")).to_string();
            assert!(err.contains(variable) && !err.contains("hunter2"), "{err}");
        }
        assert!(Config::from_pairs([("oauth_Bad-Name_client_id", "x")]).is_err(), "provider names are lower-case letters and digits");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(Config::from_pairs([("lisen", "x")]).is_err());
    }

    #[test]
    fn the_passkeys_relying_party_is_checked_at_start() {
        let c = Config::from_pairs([("listen", "127.0.0.1:9000")]).unwrap();
        let rp = c.relying_party().unwrap();
        assert_eq!((rp.id.as_str(), rp.origins[0].as_str()), ("localhost", "http://localhost:9000/"));
        let c = Config::from_pairs([("app_base_url", "https://shop.example.com")]).unwrap();
        assert_eq!(c.relying_party().unwrap().id, "shop.example.com");
        for (key, value) in
            [("webauthn_rp_id", "127.0.0.1"), ("webauthn_origins", "http://127.0.0.1:8080"), ("webauthn_rp_id", "other.example")]
        {
            let err = Config::from_pairs([(key, value), ("app_base_url", "https://shop.example.com")])
                .err()
                .unwrap_or_else(|| panic!("{key}={value} is refused"))
                .to_string();
            assert!(err.contains(&format!("KEEL_{}", key.to_uppercase())), "{err}");
        }
        let c = Config::from_pairs([("webauthn_rp_id", "example.com"), ("webauthn_origins", "https://a.example.com,https://example.com")]);
        assert_eq!(c.unwrap().relying_party().unwrap().origins.len(), 2);
    }

    #[test]
    fn cors_origins_must_be_bare_origins() {
        assert!(Config::from_pairs([("cors_origins", "https://a.example, http://localhost:5173")]).is_ok());
        assert!(Config::from_pairs([("cors_origins", "https://a.example/path")]).is_err());
        assert!(Config::from_pairs([("cors_origins", "*")]).is_err());
    }
}
