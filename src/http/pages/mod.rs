//! The built-in pages behind mailed links (`/verify-email`, `/reset-password`): mail points
//! here unless `app_base_url` names a shop's own front end. They are static, load nothing from
//! elsewhere, and finish each flow by calling the API from a same-origin script.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;

/// Same-origin script, style and API calls only; nothing inline, no forms posted anywhere
/// (the script sends the token), never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                       form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/verify-email", get(|| page(Html(include_str!("verify-email.html")))))
        .route("/reset-password", get(|| page(Html(include_str!("reset-password.html")))))
        .route("/pages/account.js", get(|| page(([(header::CONTENT_TYPE, "text/javascript")], include_str!("account.js")))))
        .route("/pages/account.css", get(|| page(([(header::CONTENT_TYPE, "text/css")], include_str!("account.css")))))
}

async fn page(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    response
}
