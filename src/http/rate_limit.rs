//! Applying rate-limit decisions to HTTP: `RateLimit-*` headers, and `429` with `Retry-After`;
//! and the request classes every `/v1` request is checked against (anonymous per client
//! address, signed in per user, money and back-office routes per user).

use std::net::IpAddr;

use axum::extract::{FromRequestParts as _, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};

use super::error::ApiError;
use super::extract::ClientIp;
use super::idempotency::guard::ROUTES as MONEY_ROUTES;
use crate::app::AppState;
use crate::auth::api_keys::model::KeyText;
use crate::auth::extract::{bearer, verified_claims};
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

/// Routes no request class limits: the payment provider's signed webhooks (a server whose
/// retries must get through, from addresses shared by all its customers).
const UNLIMITED: &[&str] = &["/v1/webhooks/payments"];

/// Whether requests to this route (as routed, `/v1/products/{id}`) are limited by class.
pub fn is_limited(route: &str) -> bool {
    route.starts_with("/v1/") && !UNLIMITED.contains(&route)
}

/// Who is asking: an API key (by its fingerprint), the user of a valid access token, else the
/// client address.
pub enum Caller {
    ApiKey(String),
    User(String),
    Anonymous(IpAddr),
}

/// The (policy, key) checks of one request, narrowest first, so a refusal by a narrow class
/// (money) leaves the broad one (every request of the user) unspent.
pub fn classes(method: &Method, route: &str, caller: &Caller) -> Vec<(Policy, String)> {
    // The routes that move money are the ones that need an `Idempotency-Key`.
    let moves_money = MONEY_ROUTES.iter().any(|(m, p)| *m == method.as_str() && *p == route);
    let (id, broad) = match caller {
        Caller::Anonymous(ip) => return vec![(Policy::Anonymous, ip.to_string())],
        // A key has a budget of its own, back office or not.
        Caller::ApiKey(fingerprint) => (fingerprint, vec![Policy::ApiKey]),
        Caller::User(id) if route.starts_with("/v1/admin/") => (id, vec![Policy::Admin, Policy::User]),
        Caller::User(id) => (id, vec![Policy::User]),
    };
    moves_money.then_some(Policy::Money).into_iter().chain(broad).map(|policy| (policy, id.clone())).collect()
}

/// The request classes as a middleware: checks every class that applies before the handler
/// (and before the idempotency guard claims a key), and puts the `RateLimit-*` headers of the
/// tightest on the response unless the handler's own limits left less room.
pub async fn limit_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(route) = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else { return next.run(req).await };
    if !is_limited(&route) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let key = bearer(&parts.headers).ok().filter(|token| KeyText::claims_to_be(token)).map(KeyText::parse);
    let caller = match key {
        // Half the keyed hash names the key's bucket without revealing the key.
        Some(Some(key)) => Caller::ApiKey(state.api_keys.fingerprint(&key)[..32].to_owned()),
        Some(None) => return ApiError::invalid_token().into_response(),
        None => match verified_claims(&mut parts, &state.accounts) {
            Some(claims) => Caller::User(claims.sub),
            None => match ClientIp::from_request_parts(&mut parts, &state).await {
                Ok(ClientIp(ip)) => Caller::Anonymous(ip),
                Err(e) => return e.into_response(),
            },
        },
    };
    let checks = classes(&parts.method, &route, &caller);
    let checks: Vec<(Policy, &str)> = checks.iter().map(|(p, k)| (*p, k.as_str())).collect();
    let headers = match enforce(state.limiter.as_ref(), &checks).await {
        Ok(headers) => headers,
        Err(refused) => return refused.into_response(),
    };
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if let Some(mine) = headers.0 {
        let theirs = response.headers().get("ratelimit-remaining").and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
        if theirs.is_none_or(|theirs| mine.remaining < theirs) {
            for (name, value) in header_values(&mine) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::security::rate_limit::{Rate, gcra};

    fn policies(method: Method, route: &str, caller: &Caller) -> Vec<Policy> {
        classes(&method, route, caller).into_iter().map(|(policy, _)| policy).collect()
    }

    #[test]
    fn each_request_is_checked_against_the_classes_that_apply_narrowest_first() {
        let ada = Caller::User("usr_ada".into());
        let address = Caller::Anonymous(IpAddr::from([203, 0, 113, 7]));
        assert_eq!(policies(Method::GET, "/v1/products", &address), [Policy::Anonymous]);
        assert_eq!(policies(Method::POST, "/v1/checkout", &address), [Policy::Anonymous]);
        assert_eq!(policies(Method::GET, "/v1/me", &ada), [Policy::User]);
        assert_eq!(policies(Method::POST, "/v1/wallet/top-ups", &ada), [Policy::Money, Policy::User]);
        assert_eq!(policies(Method::GET, "/v1/wallet/transfers", &ada), [Policy::User], "reading is not moving money");
        assert_eq!(policies(Method::POST, "/v1/admin/orders/{id}/refunds", &ada), [Policy::Money, Policy::Admin, Policy::User]);
        assert_eq!(policies(Method::GET, "/v1/admin/users", &ada), [Policy::Admin, Policy::User]);
        // Social login's browser round trip is anonymous; linking an identity is the user's.
        assert_eq!(policies(Method::GET, "/v1/auth/oauth/{provider}/callback", &address), [Policy::Anonymous]);
        assert_eq!(policies(Method::POST, "/v1/me/identities/{id}", &ada), [Policy::User]);
        // Passkey logins are anonymous (their handlers also spend the address's sign-in budget);
        // registering and managing passkeys is a signed-in user's business.
        assert_eq!(policies(Method::POST, "/v1/auth/passkeys/login/finish", &address), [Policy::Anonymous]);
        assert_eq!(policies(Method::POST, "/v1/auth/passkeys/register/start", &ada), [Policy::User]);
        assert_eq!(policies(Method::DELETE, "/v1/me/passkeys/{id}", &ada), [Policy::User]);
        assert_eq!(classes(&Method::GET, "/v1/me", &ada)[0].1, "usr_ada");
        let key = Caller::ApiKey("3f9a".into());
        assert_eq!(policies(Method::GET, "/v1/admin/orders", &key), [Policy::ApiKey], "a key has a budget of its own");
        assert_eq!(policies(Method::POST, "/v1/admin/orders/{id}/refunds", &key), [Policy::Money, Policy::ApiKey]);
        assert_eq!(classes(&Method::GET, "/v1/me", &address)[0].1, "203.0.113.7");
    }

    #[test]
    fn operations_and_the_providers_webhooks_are_not_limited() {
        assert!(is_limited("/v1/products/{id}"));
        assert!(!is_limited("/v1/webhooks/payments"));
        assert!(!is_limited("/readyz"));
    }

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
