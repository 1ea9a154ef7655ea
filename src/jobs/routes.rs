//! Back-office routes for the job queue.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Jobs;
use super::model::{Job, JobState};
use super::repo::JobFilter;
use crate::app::AppState;
use crate::auth::extract::{AdminUser, StaffUser};
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path, Query};
use crate::http::pagination::{Page, PageQuery};
use crate::validation::Invalid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_jobs)).routes(routes!(retry_job)).routes(routes!(discard_job))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    #[param(value_type = Option<JobState>)]
    pub state: Option<String>,
    pub kind: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    pub page: PageQuery,
}

/// Jobs, newest first (support, admin).
#[utoipa::path(get, path = "/v1/admin/jobs", tag = "admin", params(JobListQuery, PageQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<Job>)))]
pub async fn list_jobs(State(jobs): State<Jobs>, _staff: StaffUser, Query(q): Query<JobListQuery>) -> ApiResult<Json<Page<Job>>> {
    let mut invalid = Invalid::default();
    let state = q.state.as_deref().and_then(|s| {
        let parsed = JobState::parse(s);
        if parsed.is_none() {
            invalid.add("state", "invalid", "must be one of scheduled, queued, running, retrying, dead, done");
        }
        parsed
    });
    let page = invalid.check(q.page.parse::<String>());
    invalid.clone().finish()?;
    let page = page.ok_or(invalid)?;
    let rows = jobs.repo().list(&JobFilter { state, kind: q.kind }, page.after.as_deref(), page.limit).await?;
    Ok(Json(Page::from_rows(rows, page.limit, |j| j.id.clone())))
}

/// Run a dead job again, with a fresh attempt count (admin).
#[utoipa::path(post, path = "/v1/admin/jobs/{id}/retry", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "job id (job_…)")),
    responses((status = 204), (status = 409, description = "`invalid_state`: the job is not dead", body = Problem)))]
pub async fn retry_job(State(jobs): State<Jobs>, _admin: AdminUser, Path(id): Path<String>) -> ApiResult<StatusCode> {
    if jobs.retry(&id).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    match jobs.repo().get(&id).await? {
        None => Err(ApiError::not_found("job")),
        Some(_) => Err(ApiError::new(StatusCode::CONFLICT, "invalid_state", "only a dead job can be retried")),
    }
}

/// Discard a job that is not running (admin).
#[utoipa::path(delete, path = "/v1/admin/jobs/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "job id (job_…)")),
    responses((status = 204), (status = 409, description = "`invalid_state`: the job is running", body = Problem)))]
pub async fn discard_job(State(jobs): State<Jobs>, _admin: AdminUser, Path(id): Path<String>) -> ApiResult<StatusCode> {
    if jobs.discard(&id).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    match jobs.repo().get(&id).await? {
        None => Err(ApiError::not_found("job")),
        Some(_) => Err(ApiError::new(StatusCode::CONFLICT, "invalid_state", "a running job cannot be discarded")),
    }
}
