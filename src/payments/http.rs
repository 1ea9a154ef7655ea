//! The `http` provider: a Stripe-shaped API.
//!
//! - `POST {base}/v1/payment_intents`, form-encoded: `amount`, `currency` (lower case),
//!   `payment_method` (the card token), `payment_method_types[]=card`, `confirm=true`,
//!   `metadata[<key>]`; header `Idempotency-Key`, the same on every retry of one charge.
//! - `GET {base}/v1/payment_intents/{id}`.
//! - `POST {base}/v1/refunds`: `payment_intent`, `amount`; `Idempotency-Key`.
//!
//! `Authorization: Bearer <api key>` and the call's `traceparent` on every call. Errors come as
//! `{"error":{"type","code","decline_code","message","payment_intent"}}`; a `402` `card_error` is
//! a decline, which is an answer ([`ChargeStatus::Declined`]), not an error. The client is built
//! once, with a connect timeout, a total timeout per attempt and no redirects (a redirect would
//! carry the key somewhere else).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode, Url};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use tracing::Instrument as _;

use crate::telemetry::trace;

use super::{Charge, ChargeLookup, ChargeRequest, ChargeStatus, PaymentProvider, ProviderError, Refund, RefundRequest, RefundStatus};

/// The provider could not be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the payment API base must be an http:// or https:// URL")]
    Base,
    #[error("the payment HTTP client could not be built: {0}")]
    Client(String),
}

pub struct HttpProvider {
    client: reqwest::Client,
    base: Url,
    api_key: SecretString,
}

impl HttpProvider {
    /// `timeout` bounds each attempt from connecting to the last byte of the answer.
    pub fn new(api_base: &str, api_key: SecretString, timeout: Duration, connect_timeout: Duration) -> Result<Self, SetupError> {
        let base = Url::parse(api_base).map_err(|_| SetupError::Base)?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(SetupError::Base);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SetupError::Client(e.without_url().to_string()))?;
        Ok(Self { client, base, api_key })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // Checked in `new`: an http(s) URL can take path segments. Pushing segments (rather than
        // formatting a string) percent-encodes an id, so it cannot change the path.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// One attempt, in a client span whose `traceparent` the provider gets.
    async fn send(&self, request: RequestBuilder) -> Result<(StatusCode, HeaderMap, Vec<u8>), ProviderError> {
        let mut request = request.bearer_auth(self.api_key.expose_secret()).build().map_err(transport)?;
        let span = tracing::info_span!(
            "payment.call",
            otel.name = %format!("payment provider {}", request.method()),
            otel.kind = "client",
            http.method = %request.method(),
            url.path = %request.url().path()
        );
        if let Some(value) = trace::traceparent_of(&span).and_then(|t| HeaderValue::from_str(&t).ok()) {
            request.headers_mut().insert(trace::TRACEPARENT, value);
        }
        async {
            let response = self.client.execute(request).await.map_err(transport)?;
            let (status, headers) = (response.status(), response.headers().clone());
            let body = response.bytes().await.map_err(transport)?;
            Ok((status, headers, body.to_vec()))
        }
        .instrument(span)
        .await
    }

    async fn post_intent(&self, request: &ChargeRequest) -> Result<Charge, ProviderError> {
        let mut form: Vec<(String, String)> = vec![
            ("amount".into(), request.amount.to_string()),
            ("currency".into(), request.currency.to_lowercase()),
            ("payment_method".into(), request.card_token.clone()),
            ("payment_method_types[]".into(), "card".into()),
            ("confirm".into(), "true".into()),
        ];
        form.extend(request.metadata.iter().map(|(k, v)| (format!("metadata[{k}]"), v.clone())));
        let call = self.client.post(self.url(&["v1", "payment_intents"])).header("idempotency-key", &request.idempotency_key).form(&form);
        let (status, headers, body) = self.send(call).await?;
        if status.is_success() {
            return charge_from(parse::<IntentJson>(&body)?);
        }
        let error = failure(status, &headers, &body);
        match error {
            // A decline: the provider answered, and the answer is no.
            Failure::Declined(e) => Ok(Charge {
                provider_ref: e.payment_intent.map(|pi| pi.id),
                amount: request.amount,
                currency: request.currency.clone(),
                status: ChargeStatus::Declined { code: e.decline_code.or(e.code).unwrap_or_else(|| "card_declined".into()) },
            }),
            Failure::Error(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl PaymentProvider for HttpProvider {
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, ProviderError> {
        self.post_intent(request).await
    }

    async fn retrieve(&self, lookup: &ChargeLookup) -> Result<Charge, ProviderError> {
        match lookup {
            ChargeLookup::ProviderRef(id) => {
                let (status, headers, body) = self.send(self.client.get(self.url(&["v1", "payment_intents", id]))).await?;
                if status.is_success() {
                    return charge_from(parse::<IntentJson>(&body)?);
                }
                Err(failure(status, &headers, &body).into_error())
            }
            // The provider replays the first answer for a key it has seen.
            ChargeLookup::IdempotencyKey(request) => self.post_intent(request).await,
        }
    }

    async fn refund(&self, request: &RefundRequest) -> Result<Refund, ProviderError> {
        let form = [("payment_intent", request.provider_ref.clone()), ("amount", request.amount.to_string())];
        let call = self.client.post(self.url(&["v1", "refunds"])).header("idempotency-key", &request.idempotency_key).form(&form);
        let (status, headers, body) = self.send(call).await?;
        if !status.is_success() {
            return Err(failure(status, &headers, &body).into_error());
        }
        let refund: RefundJson = parse(&body)?;
        let status = match refund.status.as_str() {
            "succeeded" => RefundStatus::Succeeded,
            "pending" | "requires_action" => RefundStatus::Pending,
            "failed" | "canceled" => RefundStatus::Failed,
            other => return Err(ProviderError::Malformed(format!("unknown refund status {other:?}"))),
        };
        Ok(Refund { provider_ref: refund.id, amount: refund.amount, status })
    }
}

#[derive(Deserialize)]
struct IntentJson {
    id: String,
    amount: i64,
    currency: String,
    status: String,
    last_payment_error: Option<ErrorJson>,
}

#[derive(Deserialize)]
struct RefundJson {
    id: String,
    amount: i64,
    status: String,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorJson,
}

#[derive(Deserialize, Default)]
struct ErrorJson {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
    payment_intent: Option<IntentRef>,
}

#[derive(Deserialize)]
struct IntentRef {
    id: String,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| ProviderError::Malformed(e.to_string()))
}

fn charge_from(intent: IntentJson) -> Result<Charge, ProviderError> {
    let status = match intent.status.as_str() {
        "succeeded" => ChargeStatus::Succeeded,
        "processing" | "requires_action" | "requires_confirmation" | "requires_capture" => ChargeStatus::Pending,
        // After a failed confirmation the intent waits for another card: for us, declined.
        "requires_payment_method" => {
            let e = intent.last_payment_error.unwrap_or_default();
            ChargeStatus::Declined { code: e.decline_code.or(e.code).unwrap_or_else(|| "card_declined".into()) }
        }
        "canceled" => ChargeStatus::Declined { code: "canceled".into() },
        other => return Err(ProviderError::Malformed(format!("unknown payment status {other:?}"))),
    };
    Ok(Charge { provider_ref: Some(intent.id), amount: intent.amount, currency: intent.currency.to_uppercase(), status })
}

enum Failure {
    Declined(ErrorJson),
    Error(ProviderError),
}

impl Failure {
    /// Outside a charge a `402` is not a decline of anything: an error like any 4xx.
    fn into_error(self) -> ProviderError {
        match self {
            Failure::Declined(e) => ProviderError::Rejected {
                status: 402,
                code: e.code.unwrap_or_else(|| "card_error".into()),
                message: e.message.unwrap_or_default(),
            },
            Failure::Error(e) => e,
        }
    }
}

/// Reads a non-2xx answer.
fn failure(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
    if status.is_server_error() {
        return Failure::Error(ProviderError::Server { status: status.as_u16() });
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Seconds only: Stripe-shaped APIs do not send the HTTP-date form.
        let retry_after =
            headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).map(Duration::from_secs);
        return Failure::Error(ProviderError::RateLimited { retry_after });
    }
    let error = serde_json::from_slice::<ErrorEnvelope>(body).map(|e| e.error).unwrap_or_default();
    if status == StatusCode::PAYMENT_REQUIRED && error.kind.as_deref() == Some("card_error") {
        return Failure::Declined(error);
    }
    if !status.is_client_error() {
        // 1xx/3xx (redirects are not followed): not an answer we understand.
        return Failure::Error(ProviderError::Malformed(format!("unexpected status {status}")));
    }
    Failure::Error(ProviderError::Rejected {
        status: status.as_u16(),
        code: error.code.or(error.kind).unwrap_or_else(|| "unknown".into()),
        message: error.message.unwrap_or_default(),
    })
}

/// A transport failure, without the URL. A connect timeout is a connect error: nothing was sent.
fn transport(e: reqwest::Error) -> ProviderError {
    let detail = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
    if e.is_connect() {
        ProviderError::Connect(detail)
    } else if e.is_timeout() {
        ProviderError::Timeout
    } else {
        ProviderError::Network(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_map_to_charges() {
        let intent = |status: &str| IntentJson {
            id: "pi_1".into(),
            amount: 5,
            currency: "usd".into(),
            status: status.into(),
            last_payment_error: Some(ErrorJson { decline_code: Some("insufficient_funds".into()), ..Default::default() }),
        };
        assert_eq!(charge_from(intent("succeeded")).unwrap().status, ChargeStatus::Succeeded);
        assert_eq!(charge_from(intent("succeeded")).unwrap().currency, "USD");
        assert_eq!(charge_from(intent("processing")).unwrap().status, ChargeStatus::Pending);
        assert_eq!(
            charge_from(intent("requires_payment_method")).unwrap().status,
            ChargeStatus::Declined { code: "insufficient_funds".into() }
        );
        assert!(matches!(charge_from(intent("exploded")), Err(ProviderError::Malformed(_))));
    }

    #[test]
    fn failures_are_classified() {
        let none = HeaderMap::new();
        let decline = br#"{"error":{"type":"card_error","code":"card_declined","decline_code":"stolen_card","message":"no"}}"#;
        assert!(
            matches!(failure(StatusCode::PAYMENT_REQUIRED, &none, decline), Failure::Declined(e) if e.decline_code.as_deref() == Some("stolen_card"))
        );
        assert!(matches!(failure(StatusCode::BAD_GATEWAY, &none, b""), Failure::Error(ProviderError::Server { status: 502 })));
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert!(matches!(
            failure(StatusCode::TOO_MANY_REQUESTS, &headers, b""),
            Failure::Error(ProviderError::RateLimited { retry_after: Some(d) }) if d == Duration::from_secs(7)
        ));
        let auth = br#"{"error":{"type":"invalid_request_error","message":"Invalid API Key"}}"#;
        assert!(matches!(
            failure(StatusCode::UNAUTHORIZED, &none, auth),
            Failure::Error(ProviderError::Rejected { status: 401, code, .. }) if code == "invalid_request_error"
        ));
        assert!(matches!(failure(StatusCode::NOT_FOUND, &none, b"<html>"), Failure::Error(ProviderError::Rejected { status: 404, .. })));
    }

    #[test]
    fn ids_cannot_change_the_path_and_bases_must_be_http() {
        let p = HttpProvider::new("http://127.0.0.1:9/stripe/", SecretString::from("sk"), Duration::from_secs(1), Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            p.url(&["v1", "payment_intents", "../refunds?x=1"]).as_str(),
            "http://127.0.0.1:9/stripe/v1/payment_intents/..%2Frefunds%3Fx=1"
        );
        for base in ["ftp://x", "mailto:a@b", "nonsense"] {
            assert!(HttpProvider::new(base, SecretString::from("sk"), Duration::from_secs(1), Duration::from_secs(1)).is_err(), "{base}");
        }
    }
}
