//! Admits requests that carry an API key: the key must parse (checksum), be live and hold a
//! scope of the route; its principal then stands in for a signed-in user, so handlers and their
//! role checks work unchanged. Requests with an access token pass through untouched.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::model::KeyText;
use super::service::ApiKeys;
use crate::auth::extract::bearer;
use crate::http::error::ApiError;

pub async fn admit(State(keys): State<Arc<ApiKeys>>, mut req: Request, next: Next) -> Response {
    let key = match bearer(req.headers()) {
        Ok(token) if KeyText::claims_to_be(token) => KeyText::parse(token),
        _ => return next.run(req).await,
    };
    // A malformed key or a wrong checksum costs no lookup.
    let Some(key) = key else { return ApiError::invalid_token().into_response() };
    let Some(route) = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else { return next.run(req).await };
    match keys.authenticate(&key, req.method(), &route).await {
        Ok(principal) => {
            tracing::Span::current().record("user.id", principal.user_id.as_str());
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(refused) => ApiError::from(refused).into_response(),
    }
}
