//! Applying rate-limit decisions to HTTP: `RateLimit-*` headers, and `429` with `Retry-After`.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};

use super::error::ApiError;
use crate::security::rate_limit::{Decision, Limiter, Policy};

/// The headers of the tightest policy a request was checked against.
pub struct RateLimitHeaders(Option<Decision>);

/// `RateLimit-Reset`, and on a refusal `Retry-After`: whole seconds, rounded up (waiting that
/// long is always enough) and at least 1.
fn reset_seconds(d: &Decision) -> u64 {
    d.reset_after.as_nanos().div_ceil(1_000_000_000).max(1) as u64
}

fn header_values(d: &Decision) -> [(HeaderName, HeaderValue); 3] {
    [
        (HeaderName::from_static("ratelimit-limit"), HeaderValue::from(d.limit)),
        (HeaderName::from_static("ratelimit-remaining"), HeaderValue::from(d.remaining)),
        (HeaderName::from_static("ratelimit-reset"), HeaderValue::from(reset_seconds(d))),
    ]
}

/// The `429` for a refused decision: `Retry-After` and `RateLimit-Reset` name the same moment.
fn refusal(d: &Decision) -> ApiError {
    let retry = reset_seconds(d);
    let err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("too many requests; retry in {retry} s"))
        .with_header(header::RETRY_AFTER, HeaderValue::from(retry));
    header_values(d).into_iter().fold(err, |err, (name, value)| err.with_header(name, value))
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

    /// The headers of whichever of two checks left less room.
    pub fn and(self, other: RateLimitHeaders) -> RateLimitHeaders {
        match (self.0, other.0) {
            (Some(a), Some(b)) => RateLimitHeaders(Some(if b.remaining < a.remaining { b } else { a })),
            (a, b) => RateLimitHeaders(a.or(b)),
        }
    }
}

/// Checks each (policy, key) in order and stops at the first refusal.
pub async fn enforce(limiter: &dyn Limiter, checks: &[(Policy, &str)]) -> Result<RateLimitHeaders, ApiError> {
    let mut tightest: Option<Decision> = None;
    for (policy, key) in checks {
        let Some(decision) = limiter.check(*policy, key).await else { continue };
        if !decision.allowed {
            return Err(refusal(&decision));
        }
        if tightest.is_none_or(|t| decision.remaining < t.remaining) {
            tightest = Some(decision);
        }
    }
    Ok(RateLimitHeaders(tightest))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::security::rate_limit::{Rate, gcra};

    fn header(response: &Response, name: &str) -> u64 {
        response.headers()[name].to_str().unwrap().parse().unwrap()
    }

    #[test]
    fn a_refusal_names_one_moment_in_retry_after_and_ratelimit_reset() {
        // 3 per 10 s: an exhausted bucket is full again after 10 s, but one more request fits after 3.33 s.
        let rate = Rate { burst: 3, period: Duration::from_secs(10) };
        let tat = (0..3).fold(None, |tat, _| Some(gcra(rate, tat, 0).1));
        let (refused, _) = gcra(rate, tat, 0);
        assert!(!refused.allowed);
        let response = refusal(&refused).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&response, "retry-after"), 4, "3.33 s, rounded up");
        assert_eq!(header(&response, "ratelimit-reset"), header(&response, "retry-after"));
        assert_eq!(header(&response, "ratelimit-remaining"), 0);
    }

    #[test]
    fn seconds_round_up_and_are_never_zero() {
        let at = |nanos: u64| reset_seconds(&Decision { allowed: true, limit: 1, remaining: 0, reset_after: Duration::from_nanos(nanos) });
        assert_eq!(at(1), 1);
        assert_eq!(at(1_000_000_000), 1);
        assert_eq!(at(1_000_000_001), 2);
        assert_eq!(at(0), 1);
    }
}
