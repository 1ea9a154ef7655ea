//! Request extractors whose rejections are problem+json: JSON and form bodies, query strings,
//! path parameters, client IP.
//!
//! None of them lets a NUL character through: no field of ours may hold one, and PostgreSQL
//! refuses it in text (which would otherwise surface as a 500).

use std::net::{IpAddr, SocketAddr};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ApiError, current_request_id};
use crate::security::audit::Origin;
use crate::validation::Invalid;

/// A JSON object body. Wrong content type → 415, bad syntax → 400, wrong shape (an array, …) → 422, too big → 413.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, bytes) = read_body(req, state, |why| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", why)).await?;
        // Parse first, so the content type and the syntax are judged before the NUL check.
        let nul = has_nul_escape(&bytes);
        // Every body of ours is an object; serde would also fill a struct from an array.
        let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        match axum::Json::<T>::from_request(Request::from_parts(parts, Body::from(bytes.clone())), state).await {
            Ok(_) if !object => Err(Invalid::one("body", "invalid", "the body must be a JSON object").into()),
            Ok(_) if nul => Err(Invalid::one("body", "invalid", "strings must not contain NUL characters").into()),
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection, &bytes)),
        }
    }
}

/// The whole body and the request's parts: a body over the limit is `413`, another failure
/// to read it is `unreadable`'s error.
async fn read_body<S: Send + Sync>(req: Request, state: &S, unreadable: fn(String) -> ApiError) -> Result<(Parts, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        } else {
            unreadable(e.body_text())
        }
    })?;
    Ok((parts, bytes))
}

/// True when JSON text holds a `\u0000` escape (an escaped backslash before `u0000` is text).
pub fn has_nul_escape(json: &[u8]) -> bool {
    json.windows(6).enumerate().any(|(i, w)| w == b"\\u0000" && json[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0)
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection, body: &[u8]) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "expected Content-Type: application/json")
        }
        // serde_json reports some shape errors as syntax (a number where an enum is expected):
        // text that parses as JSON is well formed, so its error is about the shape.
        JsonRejection::JsonSyntaxError(e) if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() => {
            ApiError::validation(shape_error(&e.body_text()))
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.body_text()),
        JsonRejection::JsonDataError(e) => ApiError::validation(shape_error(&e.body_text())),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        }
        other => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", other.body_text()),
    }
}

/// Turns serde's message ("…: address: missing field `line1` at line 1 column 2") into a
/// field error named by its full path (`address.line1`).
fn shape_error(message: &str) -> Invalid {
    let message = ["Failed to deserialize the JSON body into the target type: ", "Failed to parse the request body as JSON: "]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .unwrap_or(message);
    // serde_path_to_error puts the path first: "path.to.field: what went wrong".
    let (path, detail) = match message.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(' ') => (Some(path), rest),
        _ => (None, message),
    };
    // For an unknown field the path already ends with it; for a missing one it is the parent.
    let join = |leaf: &str| match path {
        Some(p) if p == leaf || p.ends_with(&format!(".{leaf}")) => p.to_owned(),
        Some(p) => format!("{p}.{leaf}"),
        None => leaf.to_owned(),
    };
    let quoted = |marker: &str| detail.split_once(marker).and_then(|(_, rest)| rest.split('`').next()).map(str::to_owned);
    if let Some(field) = quoted("missing field `") {
        let field = join(&field);
        return Invalid::one(&field, "required", format!("{field} is required"));
    }
    if let Some(field) = quoted("unknown field `") {
        let field = join(&field);
        return Invalid::one(&field, "unknown_field", format!("{field} is not a known field"));
    }
    Invalid::one(path.unwrap_or("body"), "invalid", plain(detail))
}

/// serde's wording without what means nothing to a client: the parser position and Rust type
/// names ("invalid type: integer `5`, expected struct Money at line 1 column 62").
fn plain(detail: &str) -> String {
    let detail = detail.rsplit_once(" at line ").filter(|(_, at)| at.contains(" column ")).map_or(detail, |(text, _)| text);
    match [("expected struct ", "expected an object"), ("expected enum ", "expected one of the documented values")]
        .into_iter()
        .find_map(|(rust, json)| detail.split_once(rust).map(|(head, _)| format!("{head}{json}")))
    {
        Some(text) => text,
        None => detail.to_owned(),
    }
}

/// A query string. Anything that does not parse → 422.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(Invalid::one("query", "invalid", "the query string must not contain NUL characters").into());
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::validation(Invalid::one("query", "invalid", e.body_text())))
            }
            Err(other) => Err(ApiError::validation(Invalid::one("query", "invalid", other.body_text()))),
        }
    }
}

/// A form body (`application/x-www-form-urlencoded`, as providers that post their answer send
/// it). Wrong content type → 415, too big → 413, a body that does not fit → 422.
pub struct Form<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Form<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, bytes) = read_body(req, state, |why| Invalid::one("body", "invalid", why).into()).await?;
        if bytes.windows(3).any(|w| w.eq_ignore_ascii_case(b"%00")) {
            return Err(Invalid::one("body", "invalid", "the form must not contain NUL characters").into());
        }
        match axum::Form::<T>::from_request(Request::from_parts(parts, Body::from(bytes)), state).await {
            Ok(axum::Form(value)) => Ok(Form(value)),
            Err(FormRejection::InvalidFormContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/x-www-form-urlencoded",
            )),
            Err(other) => Err(ApiError::validation(Invalid::one("body", "invalid", other.body_text()))),
        }
    }
}

/// Path parameters. A value that does not decode, or holds a control character, names no
/// resource of ours: 404.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let no_such = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource");
        let raw = RawPathParams::from_request_parts(parts, state).await.map_err(|_| no_such())?;
        if raw.iter().any(|(_, value)| value.chars().any(char::is_control)) {
            return Err(no_such());
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(_) => Err(no_such()),
        }
    }
}

/// Proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Default)]
pub struct TrustedProxies(pub std::sync::Arc<Vec<IpAddr>>);

/// The client's address: the peer, or the right-most untrusted `X-Forwarded-For` hop when
/// the peer is a trusted proxy.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// This address and the id of the request being served: where an audited action came from.
    pub fn origin(self) -> Origin {
        Origin { ip: Some(self.0.to_string()), request_id: Some(current_request_id()).filter(|id| !id.is_empty()) }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp
where
    TrustedProxies: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no connection info")))?;
        let trusted = TrustedProxies::from_ref(state);
        if !trusted.0.contains(&peer) {
            return Ok(ClientIp(peer));
        }
        let hops = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|h| h.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        let client = hops.iter().rev().find(|ip| !trusted.0.contains(ip)).copied().unwrap_or(peer);
        Ok(ClientIp(client))
    }
}

#[cfg(test)]
mod tests {
    use super::{has_nul_escape, shape_error};

    #[test]
    fn finds_nul_escapes_but_not_escaped_backslashes() {
        assert!(has_nul_escape(br#"{"a":"x\u0000"}"#));
        assert!(has_nul_escape(br#"{"a":"\\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"a":"\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"a":"u0000"}"#));
    }

    #[test]
    fn names_the_field_of_a_shape_error() {
        assert_eq!(shape_error("missing field `email` at line 1 column 2").0[0].field, "email");
        let wrong_type = shape_error("effect.amount_off: invalid type: integer `5`, expected struct Money at line 1 column 62");
        assert_eq!(wrong_type.0[0].field, "effect.amount_off");
        assert_eq!(wrong_type.0[0].message, "invalid type: integer `5`, expected an object");
        assert_eq!(shape_error("unknown field `admin`, expected one of `email`").0[0].code, "unknown_field");
        assert_eq!(shape_error("name: invalid type: integer `1`, expected a string").0[0].field, "name");
        assert_eq!(shape_error("address: missing field `line1` at line 1 column 9").0[0].field, "address.line1");
        assert_eq!(shape_error("address.zip: unknown field `zip`, expected `line1`").0[0].field, "address.zip");
        assert_eq!(shape_error("roles: unknown field `roles`, expected `name`").0[0].field, "roles");
        // serde_json's syntax-category message for a number where an enum is expected.
        assert_eq!(shape_error("Failed to parse the request body as JSON: kind: expected value at line 1 column 39").0[0].field, "kind");
    }
}
