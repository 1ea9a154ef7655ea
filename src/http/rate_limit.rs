//! Applying rate-limit decisions to HTTP: `RateLimit-*` headers, and `429` with `Retry-After`.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};

use super::error::ApiError;
use crate::security::rate_limit::{Decision, Limiter, Policy};

/// The headers of the tightest policy a request was checked against.
pub struct RateLimitHeaders(Option<Decision>);

fn header_values(d: &Decision) -> [(HeaderName, HeaderValue); 3] {
    [
        (HeaderName::from_static("ratelimit-limit"), HeaderValue::from(d.limit)),
        (HeaderName::from_static("ratelimit-remaining"), HeaderValue::from(d.remaining)),
        (HeaderName::from_static("ratelimit-reset"), HeaderValue::from(d.reset_after.as_secs_f64().ceil() as u64)),
    ]
}

impl IntoResponseParts for RateLimitHeaders {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if let Some(d) = &self.0 {
            res.headers_mut().extend(header_values(d));
        }
        Ok(res)
    }
}

impl RateLimitHeaders {
    /// Sends these headers with whatever the handler produced, success or error.
    pub fn attach<T: IntoResponse>(self, result: Result<T, ApiError>) -> Response {
        (self, result).into_response()
    }
}

/// Checks each (policy, key) in order and stops at the first refusal.
pub async fn enforce(limiter: &dyn Limiter, checks: &[(Policy, &str)]) -> Result<RateLimitHeaders, ApiError> {
    let mut tightest: Option<Decision> = None;
    for (policy, key) in checks {
        let Some(decision) = limiter.check(*policy, key).await else { continue };
        if !decision.allowed {
            let retry = decision.retry_after.map_or(1, |d| d.as_secs_f64().ceil().max(1.0) as u64);
            let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("too many requests; retry in {retry} s"))
                .with_header(header::RETRY_AFTER, HeaderValue::from(retry));
            for (name, value) in header_values(&decision) {
                err = err.with_header(name, value);
            }
            return Err(err);
        }
        if tightest.is_none_or(|t| decision.remaining < t.remaining) {
            tightest = Some(decision);
        }
    }
    Ok(RateLimitHeaders(tightest))
}
