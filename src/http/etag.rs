//! Strong ETags and conditional GETs.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;

/// A strong validator over the exact bytes sent.
pub fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", &crate::security::sha256_hex(body)[..32])
}

/// True when `If-None-Match` lists `etag` (or `*`).
pub fn matches_if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag))
}

/// Serialises `value` with an `ETag`, or answers `304 Not Modified` when the client has it.
/// `cache_control` says who may keep it.
pub fn json_with_etag(headers: &HeaderMap, value: &impl Serialize, cache_control: &'static str) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value).map_err(ApiError::internal)?;
    let etag = etag_of(&body);
    let etag_value = HeaderValue::from_str(&etag).map_err(ApiError::internal)?;
    let cache = HeaderValue::from_static(cache_control);
    if matches_if_none_match(headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)]).into_response());
    }
    Ok((
        [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache), (header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_accepts_lists_and_weak_forms() {
        let tag = etag_of(b"x");
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"other\", W/{tag}")).unwrap());
        assert!(matches_if_none_match(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!matches_if_none_match(&h, &tag));
    }
}
