//! Real-time delivery of committed events over WebSocket and Server-Sent Events.
//!
//! ```text
//! outbox ─relay─▶ bus ─▶ hub (every instance) ─bounded queue per connection─▶ feed ─▶ socket
//!                                                  outbox ─resume (publish order)─┘
//! ```
//!
//! Everything a client sees was committed (it comes from the outbox through the bus). Open
//! connections follow their session: one task per instance checks, once a second, each
//! session that has a connection here, and closes the connections of one that ended or lost a
//! role. Polling rather than an event on the bus: logout, revocation, disabling and demotion
//! happen in many use cases, and the check is the same one every request makes, so no change
//! to them can forget to announce itself; its cost is one indexed read per connected session
//! per second on each instance.

mod feed;
pub mod hub;
mod order;
pub mod repo;
pub mod routes;
mod sse;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

use crate::auth::Accounts;
use crate::auth::error::AuthError;
use crate::auth::service::Principal;
use crate::http::error::ApiError;
use crate::security::{random_token, sha256_hex};
use crate::store::{Store, StoreError};
use hub::{Connection, Hub, Refused, Transport};
use repo::{RealtimeRepo, TicketGrant};

/// How long a ticket can be redeemed.
pub const TICKET_TTL: TimeDelta = TimeDelta::seconds(30);
/// How often open connections' sessions are checked.
const SESSION_CHECK: Duration = Duration::from_secs(1);

/// A caller whose token (or ticket) checked out, and until when it may stay connected.
#[derive(Debug, Clone)]
pub struct Authed {
    pub principal: Principal,
    pub expires_at: DateTime<Utc>,
}

/// What the configuration decides about real-time connections.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Browser origins allowed to open a WebSocket (`cors_origins`).
    pub origins: Vec<String>,
    /// How often a WebSocket is pinged; a peer silent for two of these is dropped.
    pub ping: Duration,
    /// How often an SSE stream gets a comment line.
    pub heartbeat: Duration,
}

/// Real-time's use cases: tickets (each write its own unit of work), resume reads, and the
/// sessions of open connections.
pub struct Realtime {
    pub hub: Arc<Hub>,
    store: Store,
    repo: Arc<dyn RealtimeRepo>,
    accounts: Arc<Accounts>,
    settings: Settings,
}

/// The bearer token of `Authorization`, if there is one of that scheme.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, token) = headers.get(header::AUTHORIZATION)?.to_str().ok()?.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

impl Realtime {
    pub fn new(hub: Arc<Hub>, store: Store, accounts: Arc<Accounts>, settings: Settings) -> Realtime {
        Realtime { hub, repo: repo::for_store(&store), store, accounts, settings }
    }

    /// A browser's handshake may come only from an allowed origin (WebSockets are not
    /// covered by CORS). Clients that send no `Origin` are not browsers.
    pub fn origin_allowed(&self, origin: Option<&HeaderValue>) -> bool {
        origin.is_none_or(|o| o.to_str().is_ok_and(|o| self.settings.origins.iter().any(|allowed| allowed == o)))
    }

    /// Checks an access token and its session; the connection may live until the token expires.
    pub async fn authenticate(&self, token: &str) -> Result<Authed, AuthError> {
        let claims = self.accounts.signer().verify(token).map_err(|_| AuthError::InvalidToken)?;
        let principal = self.accounts.authenticate(token).await?;
        let expires_at = DateTime::from_timestamp(claims.exp, 0).ok_or(AuthError::InvalidToken)?;
        Ok(Authed { principal, expires_at })
    }

    /// The caller of a request by its `Authorization` header.
    pub async fn authenticate_request(&self, headers: &HeaderMap) -> Result<Authed, ApiError> {
        let token = bearer(headers).ok_or_else(ApiError::unauthenticated)?;
        Ok(self.authenticate(token).await?)
    }

    /// A single-use ticket standing for the caller's token, stored hashed.
    pub async fn issue_ticket(&self, caller: &Authed) -> Result<String, ApiError> {
        let now = crate::store::now();
        let ticket = random_token();
        let hash = sha256_hex(ticket.as_bytes());
        let grant = TicketGrant {
            user_id: caller.principal.user_id.clone(),
            session_id: caller.principal.session_id.clone(),
            token_expires_at: caller.expires_at,
        };
        let (hash, grant) = (hash.as_str(), &grant);
        self.store
            .transact(|mut tx| async move {
                // Expired tickets go as new ones come; nothing else needs to sweep them.
                self.repo.purge_tickets(&mut tx, now).await?;
                self.repo.insert_ticket(&mut tx, hash, grant, now + TICKET_TTL).await?;
                Ok::<_, StoreError>((tx, ()))
            })
            .await?;
        Ok(ticket)
    }

    /// Redeems a ticket (once, on any instance) for the session it was issued to, if still live.
    pub async fn redeem(&self, ticket: &str) -> Result<Authed, ApiError> {
        let hash = sha256_hex(ticket.as_bytes());
        let hash = hash.as_str();
        let grant = self
            .store
            .transact(|mut tx| async move {
                let grant = self.repo.redeem_ticket(&mut tx, hash, crate::store::now()).await?;
                Ok::<_, StoreError>((tx, grant))
            })
            .await?
            .ok_or_else(ApiError::invalid_token)?;
        let principal = self.accounts.session_principal(&grant.user_id, &grant.session_id).await?;
        Ok(Authed { principal, expires_at: grant.token_expires_at })
    }

    /// Registers a connection, or the problem that refuses it.
    pub fn connect(&self, who: &Authed, transport: Transport) -> Result<Connection, ApiError> {
        self.hub.register(&who.principal, transport).map_err(refusal)
    }

    /// Refuses a handshake at once when the instance is full (before a WebSocket's user is known).
    pub fn check_room(&self) -> Result<(), ApiError> {
        if self.hub.has_room() { Ok(()) } else { Err(refusal(Refused::Full)) }
    }

    /// Feeds this instance's connections from `bus` until `stop` (gaps filled from the outbox).
    pub async fn deliver(self: Arc<Self>, bus: Arc<dyn crate::events::Bus>, stop: watch::Receiver<bool>) {
        self.hub.clone().run(bus, self.repo.clone(), stop).await;
    }

    /// Closes connections whose session ended or lost a role, until `stop`.
    pub async fn watch_sessions(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(SESSION_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            for (user_id, session_id) in self.hub.sessions() {
                match self.accounts.session_principal(&user_id, &session_id).await {
                    Ok(now) => self.hub.end_session(&session_id, Some(now.roles.bits())),
                    Err(AuthError::InvalidToken) => self.hub.end_session(&session_id, None),
                    // The database blinked: keep the connections and look again next second.
                    Err(e) => tracing::warn!(error = %e, "checking a real-time session failed"),
                }
            }
        }
    }
}

/// Per-user cap: 429, the caller can close one of its own. Instance cap: 503, try another
/// instance or later. Both say when to retry.
fn refusal(why: Refused) -> ApiError {
    let (status, code, detail) = match why {
        Refused::UserLimit => {
            (StatusCode::TOO_MANY_REQUESTS, "too_many_connections", "this user has the most real-time connections allowed open")
        }
        Refused::Full => (StatusCode::SERVICE_UNAVAILABLE, "realtime_capacity", "this server has no room for another real-time connection"),
    };
    ApiError::new(status, code, detail).with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
}
