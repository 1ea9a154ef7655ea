//! Builds the application from a configuration: storage, secrets, services, router; serves
//! until told to stop, then drains in-flight requests within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::FromRef;
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;

use crate::auth::Accounts;
use crate::auth::ApiKeys;
use crate::auth::passkeys::Passkeys;
use crate::auth::password::Hasher;
use crate::auth::recovery::PasswordResetRequests;
use crate::auth::social::Social;
use crate::auth::tokens::{TokenSigner, generate_key};
use crate::cache::shared::SharedCache;
use crate::cache::{Cache, LocalCache};
use crate::cart::Carts;
use crate::catalog::Catalog;
use crate::catalog::routes::Currency;
use crate::catalog::service::InvalidateOnChange;
use crate::config::Config;
use crate::events::nats::NatsBus;
use crate::events::subscriber::Subscriber;
use crate::events::{Bus, LocalBus, Outbox};
use crate::http::HttpSettings;
use crate::http::extract::TrustedProxies;
use crate::http::idempotency::guard::IdempotencyKeys;
use crate::http::server::ServerLimits;
use crate::jobs::maintenance::{self, PurgeEvents, PurgeIdempotencyKeys, PurgeJobs, ReleaseExpiredReservations};
use crate::jobs::worker::{Worker, WorkerSettings};
use crate::jobs::{Jobs, Registry};
use crate::ledger::{Ledger, Wallet};
use crate::notify::delivery::Deliver;
use crate::notify::mail::{FileMailer, Mailer, SendMail, SmtpMailer};
use crate::notify::notifications::{Notifications, NotifyUsers};
use crate::notify::webhooks::{FanOut, RetryPolicy, Webhooks};
use crate::orders::Orders;
use crate::orders::card::{CardPayments, Reconcile};
use crate::orders::receipt::SendReceipt;
use crate::payments::PaymentProvider;
use crate::pricing::Pricing;
use crate::pricing::service::ReloadRules;
use crate::realtime::hub::{Close, Hub, Limits};
use crate::realtime::{Realtime, Settings as RealtimeSettings};
use crate::redis::Redis;
use crate::security::audit::AuditTrail;
use crate::security::crypto::FieldCipher;
use crate::security::egress::Egress;
use crate::security::keys::KeyRing;
use crate::security::rate_limit::{Limiter, LocalLimiter};
use crate::security::redis_limiter::RedisLimiter;
use crate::security::{random_bytes, secrets};
use crate::store::{Store, StoreOptions};

/// Longest time a committed event waits for the relay when no NOTIFY wakes it.
const RELAY_POLL: Duration = Duration::from_millis(50);

/// Frames a real-time connection may have waiting before it counts as too slow (1013).
const REALTIME_QUEUE: usize = 512;

/// How often the scheduler looks for recurring jobs due.
const SCHEDULE_TICK: Duration = Duration::from_secs(60);

/// How often the rate limiter forgets expired cells.
const LIMITER_SWEEP: Duration = Duration::from_secs(60);

/// What handlers can reach.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub carts: Arc<Carts>,
    pub catalog: Arc<Catalog>,
    pub pricing: Arc<Pricing>,
    pub currency: Currency,
    /// Present when the bus is NATS (readiness checks it).
    pub nats: Option<Arc<NatsBus>>,
    /// Present when Redis is configured (readiness checks it).
    pub redis: Option<Arc<Redis>>,
    pub accounts: Arc<Accounts>,
    pub api_keys: Arc<ApiKeys>,
    /// Sign-in through OAuth 2.0 / OpenID Connect providers.
    pub social: Arc<Social>,
    pub passkeys: Arc<Passkeys>,
    pub jobs: Jobs,
    pub bus: Arc<dyn Bus>,
    pub notifications: Arc<Notifications>,
    pub webhooks: Arc<Webhooks>,
    pub outbox: Arc<Outbox>,
    pub cipher: Arc<FieldCipher>,
    pub webhook_retry: RetryPolicy,
    pub limiter: Arc<dyn Limiter>,
    pub store: Store,
    pub proxies: TrustedProxies,
    pub wallet: Arc<Wallet>,
    pub orders: Arc<Orders>,
    pub ledger: Arc<Ledger>,
    pub idempotency: Arc<IdempotencyKeys>,
    /// The one configured provider (with its breaker) that every use case that charges shares.
    pub payments: Arc<dyn PaymentProvider>,
    pub realtime: Arc<Realtime>,
    pub audit: Arc<AuditTrail>,
    pub keys: Arc<KeyRing>,
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    store: Store,
    grace: Duration,
    limits: ServerLimits,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    worker: Option<Worker>,
    outbox: Arc<Outbox>,
    bus: Arc<dyn Bus>,
    subscribers: Vec<Arc<dyn Subscriber>>,
    nats: Option<(Arc<NatsBus>, String)>,
    jobs: Jobs,
    relay: bool,
    realtime: Arc<Realtime>,
    limiter: Arc<dyn Limiter>,
    keys: Arc<KeyRing>,
}

impl Application {
    /// Connects the database, runs migrations, loads or creates secrets, binds `listen`.
    pub async fn build(mut config: Config) -> anyhow::Result<Application> {
        // Install the recorder before the first request is counted.
        crate::telemetry::metrics_handle();
        let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        // The bound address (port 0 becomes a real port), so links mailed by default point at it.
        config.listen = listener.local_addr().context("reading the bound address")?;
        if config.app_base_url.is_none() && config.listen.ip().is_unspecified() {
            tracing::warn!(
                link_base = %config.mail_base_url(),
                "app_base_url is not set: mailed links point at this host's loopback address; set it to an address users reach"
            );
        }
        let services = Services::build(&config).await?;
        let (bus, nats): (Arc<dyn Bus>, _) = match &config.nats_url {
            Some(url) => {
                let nats = NatsBus::connect(url.expose_secret(), &config.nats_subject_prefix).await?;
                (nats.clone(), Some(nats))
            }
            None => (Arc::new(LocalBus::new()), None),
        };
        // A durable consumer per instance, named by an id kept in the data dir so a
        // restarted instance resumes where it stopped.
        let instance =
            String::from_utf8(secrets::load_or_create(&config.data_dir, "instance-id", || crate::ids::new("ins").into_bytes())?)?;
        let worker = config.run_workers.then(|| services.worker(&config));
        let hub = Arc::new(Hub::new(Limits {
            max_connections: config.realtime_max_connections,
            max_per_user: config.realtime_max_per_user,
            queue: REALTIME_QUEUE,
        }));
        let local = LocalLimiter::new(config.rate_limits.clone(), config.rate_limit_max_keys);
        let limiter: Arc<dyn Limiter> = match &services.redis {
            Some(redis) => Arc::new(RedisLimiter::new(redis.clone(), config.rate_limits.clone(), local)),
            None => Arc::new(local),
        };
        let settings =
            RealtimeSettings { origins: config.cors_origins.clone(), ping: config.realtime_ping, heartbeat: config.realtime_heartbeat };
        let realtime = Arc::new(Realtime::new(hub, services.store.clone(), services.accounts.clone(), settings));
        let state = AppState {
            orders: services.orders.clone(),
            carts: services.carts.clone(),
            catalog: services.catalog.clone(),
            pricing: services.pricing.clone(),
            currency: Currency(config.currency.as_str().into()),
            accounts: services.accounts.clone(),
            api_keys: Arc::new(ApiKeys::new(services.store.clone(), services.cipher.clone(), services.accounts.clone())),
            social: Arc::new(Social::new(services.accounts.clone(), &config)?),
            passkeys: Arc::new(Passkeys::new(services.store.clone(), services.accounts.clone(), &config.relying_party()?)?),
            jobs: services.jobs.clone(),
            bus: bus.clone(),
            notifications: services.notifications.clone(),
            webhooks: services.webhooks.clone(),
            outbox: services.outbox.clone(),
            cipher: services.cipher.clone(),
            webhook_retry: config.webhook_retry,
            limiter: limiter.clone(),
            store: services.store.clone(),
            nats: nats.clone(),
            redis: services.redis.clone(),
            proxies: TrustedProxies(Arc::new(config.trusted_proxies.clone())),
            wallet: Arc::new(Wallet::new(
                services.store.clone(),
                services.ledger.clone(),
                services.idempotency.clone(),
                services.accounts.clone(),
                services.payments.clone(),
                &config.currency,
            )),
            ledger: services.ledger.clone(),
            idempotency: services.idempotency.clone(),
            payments: services.payments.clone(),
            realtime: realtime.clone(),
            audit: Arc::new(AuditTrail::new(&services.store)),
            keys: services.keys.clone(),
        };
        let settings = HttpSettings {
            request_timeout: config.request_timeout,
            body_limit_bytes: config.body_limit_bytes,
            cors_origins: config.cors_origins.clone(),
        };
        let router = crate::http::router(state, &settings)?;
        let subscribers = services.subscribers(&config);
        let store = services.store;
        Ok(Application {
            listener,
            router,
            outbox: services.outbox.clone(),
            store,
            grace: config.shutdown_grace,
            limits: config.http,
            tls: config.tls.clone(),
            worker,
            bus,
            subscribers,
            nats: nats.map(|n| (n, instance)),
            jobs: services.jobs,
            relay: config.run_relay,
            realtime,
            limiter,
            keys: services.keys,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Whether connections are served over TLS (`tls_cert` and `tls_key`).
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests (bounded by the grace period).
    pub async fn run_until<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stopping_tx.send(true);
        };
        let workers = match self.worker {
            Some(w) => {
                self.store.forward_notifications("keel_jobs", w.wake().clone(), stopping_rx.clone()).await?;
                Some(tokio::spawn(w.run(stopping_rx.clone())))
            }
            None => None,
        };
        // Local commits wake the relay at once; other processes' commits arrive by NOTIFY.
        let relay_wake = self.store.commits();
        self.store.forward_notifications("keel_events", relay_wake.clone(), stopping_rx.clone()).await?;
        if let Some((nats, instance)) = self.nats {
            nats.consume(instance, stopping_rx.clone()).await?;
        }
        let listeners: Vec<_> = self
            .subscribers
            .into_iter()
            .map(|sub| tokio::spawn(crate::events::subscriber::run(sub, self.bus.clone(), self.outbox.clone(), stopping_rx.clone())))
            .collect();
        // The hub hears the bus like any subscriber; open streams end when stopping begins,
        // so they do not hold the graceful shutdown open (clients reconnect and resume).
        let hub = tokio::spawn(self.realtime.clone().deliver(self.bus.clone(), stopping_rx.clone()));
        let sessions = tokio::spawn(self.realtime.clone().watch_sessions(stopping_rx.clone()));
        let realtime = self.realtime.clone();
        let mut stopping = stopping_rx.clone();
        let close_streams = tokio::spawn(async move {
            if stopping.wait_for(|stopping| *stopping).await.is_ok() {
                realtime.hub.close_all(Close::Restart);
            }
        });
        let sweeper = tokio::spawn(sweep_limiter(self.limiter.clone(), stopping_rx.clone()));
        let keys = tokio::spawn(self.keys.keep_loaded(stopping_rx.clone()));
        let scheduler = tokio::spawn(crate::jobs::schedule::run(self.jobs, maintenance::schedules(), SCHEDULE_TICK, stopping_rx.clone()));
        let relay =
            self.relay.then(|| tokio::spawn(crate::events::relay::run(self.outbox, self.bus, relay_wake, RELAY_POLL, stopping_rx.clone())));
        let serve = crate::http::server::serve(self.listener, self.router, self.limits, self.tls, signal);
        let grace = self.grace;
        let deadline = async move {
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = serve => {}
            () = deadline => tracing::warn!("grace period over; dropping the remaining connections"),
        }
        let _ = scheduler.await;
        for task in [hub, sessions, close_streams, sweeper, keys] {
            let _ = task.await;
        }
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        for listener in listeners {
            let _ = listener.await;
        }
        if let Some(workers) = workers {
            // The worker has its own grace period for running jobs.
            let _ = workers.await;
        }
        self.store.close().await;
        Ok(())
    }
}

/// Sweeps the rate limiter's expired cells until stopping begins.
async fn sweep_limiter(limiter: Arc<dyn Limiter>, mut stopping: tokio::sync::watch::Receiver<bool>) {
    while !*stopping.borrow() {
        tokio::select! {
            () = tokio::time::sleep(LIMITER_SWEEP) => limiter.sweep().await,
            _ = stopping.changed() => {}
        }
    }
}

/// The token signer and field cipher on the configured keys (or keys generated in the data
/// directory), and the key ring that adds the rotated ones, loaded.
pub async fn key_ring(config: &Config, store: &Store) -> anyhow::Result<(Arc<TokenSigner>, Arc<FieldCipher>, Arc<KeyRing>)> {
    let signing_key = match &config.signing_key {
        Some(key) => secrets::decode_configured(key.expose_secret(), "signing_key")?,
        None => secrets::load_or_create(&config.data_dir, "jwt-ed25519.pk8", generate_key)?,
    };
    let encryption_key = match &config.encryption_key {
        Some(key) => secrets::decode_configured(key.expose_secret(), "encryption_key")?,
        None => secrets::load_or_create(&config.data_dir, "field-encryption.key", || random_bytes::<32>().to_vec())?,
    };
    let key_encryption_key = match &config.key_encryption_key {
        Some(key) => secrets::decode_configured(key.expose_secret(), "key_encryption_key")?,
        None => secrets::load_or_create(&config.data_dir, "key-encryption.key", || random_bytes::<32>().to_vec())?,
    };
    let previous = config
        .previous_signing_keys
        .iter()
        .map(|k| secrets::decode_configured(k.expose_secret(), "previous_signing_keys"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let signer = Arc::new(
        TokenSigner::new(&signing_key, &config.jwt_issuer, &config.jwt_audience, config.access_token_ttl)?.with_previous(&previous)?,
    );
    let cipher = Arc::new(FieldCipher::new(&encryption_key)?);
    let keys = KeyRing::new(store, &key_encryption_key, signer.clone(), cipher.clone(), config.key_ring_refresh)?;
    keys.load().await.context("loading the key ring")?;
    Ok((signer, cipher, Arc::new(keys)))
}

/// Creates the data directory, connects, and migrates when configured to.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let store = Store::connect(&StoreOptions {
        url: config.database_url.expose_secret().to_owned(),
        max_connections: config.db_max_connections,
        sqlite_synchronous: config.sqlite_synchronous,
    })
    .await?;
    if config.migrate_on_start {
        for m in store.migrate().await? {
            tracing::info!(version = m.version, description = %m.description, "applied a migration");
        }
    }
    tracing::info!(backend = store.backend_name(), data_dir = %config.data_dir.display(), "database ready");
    Ok(store)
}

/// The domain services every entry point (API, worker, command line) is built from.
pub struct Services {
    pub store: Store,
    /// Shared by every instance when configured: rate limits and the cache's second tier.
    pub redis: Option<Arc<Redis>>,
    pub catalog: Arc<Catalog>,
    pub pricing: Arc<Pricing>,
    pub jobs: Jobs,
    pub accounts: Arc<Accounts>,
    pub notifications: Arc<Notifications>,
    pub webhooks: Arc<Webhooks>,
    pub outbox: Arc<Outbox>,
    pub cipher: Arc<FieldCipher>,
    /// Keeps `cipher` and the accounts' token signer on the key ring's keys.
    pub keys: Arc<KeyRing>,
    pub ledger: Arc<Ledger>,
    pub idempotency: Arc<IdempotencyKeys>,
    /// The configured payment provider, behind retries and a circuit breaker.
    pub payments: Arc<dyn PaymentProvider>,
    pub carts: Arc<Carts>,
    pub orders: Arc<Orders>,
    /// Every job kind and its handler.
    pub registry: Registry,
}

impl Services {
    pub async fn build(config: &Config) -> anyhow::Result<Services> {
        let store = open_store(config).await?;
        let redis = config.redis.as_ref().map(Redis::connect).transpose()?.map(Arc::new);
        let jobs = Jobs::new(store.clone());
        let outbox = Arc::new(Outbox::new(store.clone()));
        let (signer, cipher, keys) = key_ring(config, &store).await?;
        let accounts = Accounts::new(store.clone(), Hasher::new()?, signer, cipher.clone(), jobs.clone(), config.refresh_token_ttl);
        // One instance on SQLite changes accounts only through itself; instances sharing a
        // database (NATS joins them) would miss each other's logouts in a session cache.
        let single_instance = matches!(store, Store::Sqlite { .. }) && config.nats_url.is_none();
        let accounts = Arc::new(if single_instance { accounts.remembering_sessions() } else { accounts });
        let mailer: Arc<dyn Mailer> = match &config.smtp_url {
            Some(url) => Arc::new(SmtpMailer::new(url.expose_secret(), config.mail_from.clone())?),
            None => Arc::new(FileMailer::new(config.data_dir.join("mail"), config.mail_from.clone())?),
        };
        let egress = Arc::new(Egress::new(config.webhook_allowed_networks.clone()));
        let webhooks = Arc::new(Webhooks::new(store.clone(), egress.clone()));
        let idempotency = Arc::new(IdempotencyKeys::new(store.clone(), config.idempotency_lease));
        let payments = crate::payments::build_provider(&config.payment).context("setting up the payment provider")?;
        let registry = Registry::default()
            .with(SendMail { mailer, cipher: cipher.clone(), base_url: config.mail_base_url() })
            .with(PasswordResetRequests(accounts.clone()))
            .with(Deliver::new(store.clone(), cipher.clone(), egress, config.webhook_retry)?)
            .with(PurgeEvents(outbox.repo().clone()))
            .with(PurgeJobs(jobs.repo().clone()))
            .with(PurgeIdempotencyKeys(idempotency.repo().clone()));
        let local = LocalCache::new(50_000, Duration::from_secs(300));
        let cache: Arc<dyn Cache> = match &redis {
            Some(redis) => Arc::new(SharedCache::new(local, redis.clone())),
            None => Arc::new(local),
        };
        let catalog = Arc::new(Catalog::new(store.clone(), &config.currency, cache.clone()));
        let registry = registry.with(ReleaseExpiredReservations(catalog.clone()));
        let pricing = Arc::new(Pricing::load(store.clone(), cache, &config.currency).await?);
        let carts = Arc::new(Carts::new(store.clone(), catalog.clone(), pricing.clone(), &config.currency));
        let ledger = Arc::new(Ledger::new(&store));
        let card = CardPayments {
            provider: payments.clone(),
            cipher: cipher.clone(),
            reconcile_delay: config.payment.reconcile_delay,
            webhook_secret: config.payment.webhook_secret.clone(),
        };
        let orders = Arc::new(Orders::new(
            store.clone(),
            catalog.clone(),
            carts.clone(),
            ledger.clone(),
            idempotency.clone(),
            card,
            &config.currency,
        ));
        let registry = registry.with(Reconcile(orders.clone())).with(SendReceipt {
            orders: orders.clone(),
            accounts: accounts.clone(),
            cipher: cipher.clone(),
        });
        Ok(Services {
            ledger,
            carts,
            orders,
            idempotency,
            payments,
            notifications: Arc::new(Notifications::new(store.clone())),
            webhooks,
            outbox,
            store,
            redis,
            jobs,
            accounts,
            cipher,
            keys,
            registry,
            catalog,
            pricing,
        })
    }

    /// Everything that reacts to published events in this process.
    pub fn subscribers(&self, config: &Config) -> Vec<Arc<dyn Subscriber>> {
        vec![
            Arc::new(NotifyUsers(self.notifications.clone())),
            Arc::new(FanOut { webhooks: self.webhooks.clone(), jobs: self.jobs.clone(), policy: config.webhook_retry }),
            Arc::new(InvalidateOnChange(self.catalog.clone())),
            Arc::new(ReloadRules(self.pricing.clone())),
        ]
    }

    /// A worker for the job queue, woken by local enqueues and (on PostgreSQL) by NOTIFY.
    pub fn worker(&self, config: &Config) -> Worker {
        let settings = WorkerSettings {
            queues: config.worker_queues.clone(),
            concurrency: config.worker_concurrency,
            lease: config.worker_lease,
            grace: config.shutdown_grace,
            ..WorkerSettings::default()
        };
        Worker::new(self.jobs.clone(), self.registry.clone(), settings)
    }
}
