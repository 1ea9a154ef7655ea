//! The admin console at `/admin`: a single-page app built from `console/` (Vite) and embedded
//! here, so the binary serves it with no Node at build or run time. Client-side routes under
//! `/admin/…` all get the page; only the two built assets are files.
//!
//! The bundle is rebuilt and compared with the committed one by `console/check-dist`.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use super::etag::{etag_of, matches_if_none_match};
use crate::app::AppState;

/// Same-origin script, style and API calls only (the built bundle has nothing inline); images
/// may be `data:` URLs (the favicon); never framed, no forms posted anywhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                       base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file, and its validator once computed.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(body: &'static [u8], content_type: &'static str) -> Asset {
        Asset { body, content_type, etag: OnceLock::new() }
    }

    fn etag(&self) -> &str {
        self.etag.get_or_init(|| etag_of(self.body))
    }
}

static INDEX: Asset = Asset::new(include_bytes!("../../console/dist/index.html"), "text/html; charset=utf-8");
static SCRIPT: Asset = Asset::new(include_bytes!("../../console/dist/assets/app.js"), "text/javascript; charset=utf-8");
static STYLE: Asset = Asset::new(include_bytes!("../../console/dist/assets/app.css"), "text/css; charset=utf-8");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route("/admin/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route("/admin/assets/app.js", get(|h: HeaderMap| async move { serve(&SCRIPT, &h) }))
        .route("/admin/assets/app.css", get(|h: HeaderMap| async move { serve(&STYLE, &h) }))
        // A missing asset is a 404, not the page: a script tag must never receive HTML.
        .route("/admin/assets/{*rest}", get(|| async { ApiError::not_found("asset") }))
        .route("/admin/{*route}", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
}

/// The file with its type and the console's CSP; `no-cache` so a new binary's bundle is picked
/// up at once, with an `ETag` so an unchanged one costs a `304`.
fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let etag = HeaderValue::from_str(asset.etag()).expect("a hex ETag is a valid header value");
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
    ];
    if matches_if_none_match(headers, asset.etag()) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (common, [(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type))], asset.body).into_response()
}
