//! The back office's dashboard: today's orders and takings, the job queue and the outbox at a
//! glance (the figures `/metrics` has for machines, for the people who run the shop).

use std::sync::Arc;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiResult;
use super::extract::Json;
use crate::app::AppState;
use crate::auth::extract::StaffUser;
use crate::events::Outbox;
use crate::jobs::Jobs;
use crate::jobs::model::JobState;
use crate::money::Money;
use crate::orders::Orders;

pub fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(dashboard))
}

#[derive(Serialize, ToSchema)]
pub struct Dashboard {
    /// The start of today (UTC) that the day's figures count from.
    pub since: DateTime<Utc>,
    /// Orders placed today, in any state.
    pub orders_today: i64,
    /// What today's paid orders brought in, net of their refunds.
    pub revenue_today: Money,
    /// Jobs in each state.
    pub jobs: JobCounts,
    /// Committed events not yet published to subscribers (real-time, webhooks, caches).
    pub outbox_lag_events: i64,
}

#[derive(Serialize, ToSchema, Default)]
pub struct JobCounts {
    pub scheduled: i64,
    pub queued: i64,
    pub running: i64,
    pub retrying: i64,
    /// Failed for good: waiting for someone to retry or discard them.
    pub dead: i64,
    pub done: i64,
}

impl JobCounts {
    fn of(depth: &[(JobState, i64)]) -> JobCounts {
        let mut counts = JobCounts::default();
        for &(state, n) in depth {
            *match state {
                JobState::Scheduled => &mut counts.scheduled,
                JobState::Queued => &mut counts.queued,
                JobState::Running => &mut counts.running,
                JobState::Retrying => &mut counts.retrying,
                JobState::Dead => &mut counts.dead,
                JobState::Done => &mut counts.done,
            } += n;
        }
        counts
    }
}

/// Today's orders and revenue (UTC day), the job queue by state and the outbox lag (`support`, `admin`).
#[utoipa::path(get, path = "/v1/admin/dashboard", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Dashboard)))]
pub async fn dashboard(
    State(orders): State<Arc<Orders>>,
    State(jobs): State<Jobs>,
    State(outbox): State<Arc<Outbox>>,
    _staff: StaffUser,
) -> ApiResult<Json<Dashboard>> {
    let since = Utc::now().date_naive().and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    let (orders_today, revenue_today) = orders.sales_since(since).await?;
    let jobs = JobCounts::of(&jobs.repo().depth().await?);
    let outbox_lag_events = outbox.repo().lag().await?;
    Ok(Json(Dashboard { since, orders_today, revenue_today, jobs, outbox_lag_events }))
}
