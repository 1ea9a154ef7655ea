//! Back-office routes of the audit trail (admin only: entries name users and their addresses).

use std::sync::Arc;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{Action, Verdict};
use super::repo::AuditFilter;
use super::{AuditEntry, AuditTrail};
use crate::app::AppState;
use crate::auth::extract::AdminUser;
use crate::http::error::ApiResult;
use crate::http::extract::{Json, Query};
use crate::http::pagination::{Page, PageQuery};
use crate::validation::Invalid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_entries)).routes(routes!(verify_chain))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditListQuery {
    /// Only entries of this user's actions (`usr_…`).
    pub actor: Option<String>,
    /// Only entries of this action.
    #[param(value_type = Option<Action>)]
    pub action: Option<String>,
    /// Only entries about this id (`usr_…`, `prd_…`, `rul_…`, `ord_…`).
    pub target: Option<String>,
    /// Only entries at or after this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Only entries before this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    pub page: PageQuery,
}

fn instant(invalid: &mut Invalid, field: &str, raw: Option<&str>) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(raw?).map(|t| t.to_utc());
    if parsed.is_err() {
        invalid.add(field, "invalid", "must be an RFC 3339 date and time, such as 2026-01-31T12:00:00Z");
    }
    parsed.ok()
}

/// Audit entries, newest first (admin).
///
/// Filters combine: `actor`, `action`, `target`, and the time range `since` (inclusive) to
/// `until` (exclusive).
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", params(AuditListQuery, PageQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<AuditEntry>)))]
pub async fn list_entries(
    State(audit): State<Arc<AuditTrail>>,
    _admin: AdminUser,
    Query(q): Query<AuditListQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let mut invalid = Invalid::default();
    let action = q.action.as_deref().and_then(|name| {
        let action = Action::from_name(name);
        if action.is_none() {
            invalid.add("action", "invalid", "must be one of the audited actions (docs/API.md, \"Audit\")");
        }
        action
    });
    let since = instant(&mut invalid, "since", q.since.as_deref());
    let until = instant(&mut invalid, "until", q.until.as_deref());
    let page = invalid.check(q.page.parse::<i64>());
    invalid.clone().finish()?;
    let page = page.ok_or(invalid)?;
    let filter = AuditFilter { actor: q.actor, action, target: q.target, since, until };
    Ok(Json(audit.list(&filter, page).await?))
}

/// Verify the audit chain (admin): every entry's hash covers the previous entry's hash and the
/// entry's canonical form, and no entry is missing. `first_bad` names the first entry that
/// breaks the chain.
#[utoipa::path(get, path = "/v1/admin/audit/verify", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Verdict)))]
pub async fn verify_chain(State(audit): State<Arc<AuditTrail>>, _admin: AdminUser) -> ApiResult<Json<Verdict>> {
    Ok(Json(audit.verify().await?))
}
