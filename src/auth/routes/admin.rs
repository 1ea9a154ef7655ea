//! Back-office user management.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::extract::{AdminUser as Admin, StaffUser};
use crate::auth::model::{AdminPatch, AdminUser, Role, Roles};
use crate::auth::service::Accounts;
use crate::http::error::{ApiResult, Problem};
use crate::http::extract::{Json, Path, Query};
use crate::http::pagination::{Page, PageQuery};
use crate::validation::Invalid;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Only emails starting with this (case-insensitive).
    pub email_prefix: Option<String>,
    /// Only users with this role.
    #[param(value_type = Option<Role>)]
    pub role: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    pub page: PageQuery,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// The full new set of roles (`customer` is always kept).
    #[schema(value_type = Option<Vec<Role>>)]
    pub roles: Option<Vec<String>>,
    /// Disabling revokes every session of the user.
    pub disabled: Option<bool>,
}

/// List users (support, admin).
#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", params(UserListQuery, PageQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<AdminUser>)))]
pub async fn list_users(
    State(accounts): State<Arc<Accounts>>,
    _staff: StaffUser,
    Query(q): Query<UserListQuery>,
) -> ApiResult<Json<Page<AdminUser>>> {
    let mut invalid = Invalid::default();
    let role = q.role.as_deref().and_then(|r| invalid.check(Role::parse("role", r)));
    let page = invalid.check(q.page.parse());
    invalid.clone().finish()?;
    let page = page.ok_or(invalid)?;
    Ok(Json(accounts.list_users(q.email_prefix.as_deref().filter(|p| !p.is_empty()), role, page).await?))
}

/// Change a user's roles or disable them (admin).
#[utoipa::path(patch, path = "/v1/admin/users/{id}", tag = "admin", security(("bearer" = [])), request_body = UpdateUserRequest,
    params(("id" = String, Path, description = "user id (usr_…)")),
    responses((status = 200, body = AdminUser),
        (status = 409, description = "`conflict`: admins cannot remove their own `admin` role nor disable themselves", body = Problem)))]
pub async fn update_user(
    State(accounts): State<Arc<Accounts>>,
    Admin(actor): Admin,
    Path(id): Path<String>,
    Json(req): Json<UpdateUserRequest>,
) -> ApiResult<Json<AdminUser>> {
    let mut invalid = Invalid::default();
    let roles = req
        .roles
        .map(|list| list.iter().enumerate().filter_map(|(i, r)| invalid.check(Role::parse(&format!("roles[{i}]"), r))).collect::<Vec<_>>())
        .map(|list| Roles::from_list(&list));
    invalid.finish()?;
    Ok(Json(accounts.admin_update(&actor, &id, AdminPatch { roles, disabled: req.disabled }).await?))
}
