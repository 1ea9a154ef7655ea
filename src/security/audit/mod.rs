//! The audit trail: append-only, tamper-evident entries of security-relevant actions.
//!
//! An entry is written in the unit of work of the change it records, as one more effect
//! (`Effects::audit`) or a step (`append`); what changes no state (a failed login, a failed
//! ledger check) is recorded in a small unit of work of its own (`record`). Entries form one
//! hash chain (`model.rs` defines the canonical form and the hash); the database refuses
//! `UPDATE` and `DELETE` on them (triggers), and `AuditTrail::verify` finds an entry changed or
//! removed behind Keel's back.

pub mod model;
pub mod repo;
pub mod routes;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

pub use model::{Action, Actor, NewEntry, Origin, Verdict};
use model::{ChainCheck, StoredEntry};
use repo::{AuditFilter, AuditRepo};

use crate::http::pagination::{Page, PageRequest};
use crate::store::{Store, StoreError, Tx, now};

/// How many entries verification reads at a time.
const VERIFY_BATCH: u32 = 1000;

/// Appends `entry` inside the caller's unit of work: a step like a repository's, for a use case
/// that writes no `Effects`.
pub async fn append(tx: &mut Tx, entry: &NewEntry, at: DateTime<Utc>) -> Result<(), StoreError> {
    match tx {
        Tx::Sqlite(tx) => repo::append_in::<sqlx::Sqlite>(tx, entry, at).await,
        Tx::Postgres(tx) => repo::append_in::<sqlx::Postgres>(tx, entry, at).await,
    }
}

/// Records `entry` in a small unit of work of its own: for what changes no state (a failed
/// login, a failed ledger check) and for work outside any unit of work (`keel keys rotate`
/// records `Action::KeysRotated` with it once the new keys are in place).
pub async fn record(store: &Store, entry: &NewEntry) -> Result<(), StoreError> {
    store
        .transact(|mut tx| async move {
            append(&mut tx, entry, now()).await?;
            Ok::<_, StoreError>((tx, ()))
        })
        .await
}

/// An entry as the back office reads it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    /// `aud_…`
    pub id: String,
    /// Its place in the chain: 1 for the first entry, then one more for each.
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// The user who acted (`usr_…`); `null` for someone not signed in, or Keel itself.
    #[schema(required = true)]
    pub actor: Option<String>,
    /// One of the audited actions (docs/API.md, "Audit").
    #[schema(value_type = Action)]
    pub action: String,
    /// What was acted on (`usr_…`, `prd_…`, `rul_…`, `ord_…`), when something was.
    #[schema(required = true)]
    pub target: Option<String>,
    /// The client address of the request, when a request did it.
    #[schema(required = true)]
    pub ip: Option<String>,
    /// The `X-Request-Id` of that request.
    #[schema(required = true)]
    pub request_id: Option<String>,
    /// Facts about the action (ids, amounts, reasons); never a secret.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// Lower-case hex SHA-256 over the previous entry's hash and this entry's canonical form.
    pub hash: String,
}

impl From<StoredEntry> for AuditEntry {
    fn from(e: StoredEntry) -> Self {
        // Details are written as JSON; text edited into something else is shown as it is.
        let details = serde_json::from_str(&e.details).unwrap_or(serde_json::Value::String(e.details));
        AuditEntry {
            id: e.id,
            seq: e.seq,
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            ip: e.ip,
            request_id: e.request_id,
            details,
            hash: e.hash,
        }
    }
}

/// Reading and verifying the trail.
pub struct AuditTrail {
    repo: Arc<dyn AuditRepo>,
}

impl AuditTrail {
    pub fn new(store: &Store) -> Self {
        Self { repo: repo::for_store(store) }
    }

    /// Entries matching `filter`, newest first.
    pub async fn list(&self, filter: &AuditFilter, page: PageRequest<i64>) -> Result<Page<AuditEntry>, StoreError> {
        let rows = self.repo.list(filter, page.after, page.limit).await?;
        Ok(Page::from_rows(rows, page.limit, |e| e.seq).map(AuditEntry::from))
    }

    /// Walks the chain up to the head as it is now; entries appended meanwhile wait for the next run.
    pub async fn verify(&self) -> Result<Verdict, StoreError> {
        let (head_seq, head_hash) = self.repo.head().await?;
        let (mut check, mut after, mut last_id) = (ChainCheck::default(), 0, None);
        loop {
            let batch = self.repo.chain(after, head_seq, VERIFY_BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            last_id = Some(last.id.clone());
            batch.iter().for_each(|e| check.push(e));
        }
        Ok(check.finish(head_seq, &head_hash, last_id))
    }
}
