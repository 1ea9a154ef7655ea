//! The conventions of the OpenAPI document, applied once to every operation after the routes
//! are collected, so that no handler repeats them: problem+json errors and the statuses that
//! follow from an operation's shape (a token → 401, a back-office path → 403, a path id → 404,
//! a JSON body → 400/413/415/422, a form body → 413/415/422, a query → 422), the headers every
//! response or every limited, cacheable or refused response carries, and a description for
//! each response.
//! Every rate-limited route (`rate_limit::is_limited`) gets its `429`. Statuses particular to one
//! route (409, 412, a sign-in limit's 429 …) stay in that handler's annotation.
//! Idempotent routes (`guard::ROUTES`) get the `Idempotency-Key` parameter, their `400`, `409`
//! and `422` codes, and the `Idempotent-Replayed` header on the responses that are replayed.

use utoipa::Modify;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::ServerBuilder;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Required, Response};

/// Routes under this prefix need the `support` or `admin` role.
const BACK_OFFICE: &str = "/v1/admin/";

const REQUEST_ID: &str = "X-Request-Id";
const ETAG: &str = "ETag";
const RETRY_AFTER: &str = "Retry-After";
const WWW_AUTHENTICATE: &str = "WWW-Authenticate";
const RATE_LIMIT: [&str; 3] = ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"];
const REPLAYED: &str = super::idempotency::guard::REPLAYED_HEADER;

pub struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut OpenApi) {
        // Relative: the document describes the server that serves it, wherever it runs.
        doc.servers = Some(vec![ServerBuilder::new().url("/").description(Some("The server this document was fetched from")).build()]);
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from sign-in, or an API key (`keel_sk_live_…`, made by an admin) that acts for its maker \
                         within its scopes: a route outside them answers `403 forbidden`",
                    ))
                    .build(),
            ),
        );
        components.headers.extend(headers().into_iter().map(|(name, header)| (name.to_owned(), RefOr::T(header))));
        for (path, item) in doc.paths.paths.iter_mut() {
            let idempotent = super::idempotency::guard::ROUTES.iter().any(|(method, p)| *method == "POST" && p == path);
            if idempotent && let Some(op) = item.post.as_mut() {
                idempotency(op);
            }
            for op in operations(item) {
                conform(path, op);
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().filter_map(Option::as_mut)
}

fn header(description: &str, schema: ObjectBuilder, required: bool) -> Header {
    let mut header = HeaderBuilder::new().schema(Some(schema.build())).description(Some(description)).build();
    // utoipa's `Header` has no `required` field; its extensions serialise as written.
    header.extensions = required.then(|| Extensions::from_iter([("required", true)]));
    header
}

fn headers() -> [(&'static str, Header); 8] {
    let integer = |min: i64| ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(min));
    [
        (
            REQUEST_ID,
            header(
                "The request's id: the caller's `X-Request-Id` when it is 1–128 of `[A-Za-z0-9._:-]`, else a new one. \
                 Problem documents repeat it as `request_id`.",
                ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[A-Za-z0-9._:-]{1,128}$")),
                true,
            ),
        ),
        (
            ETAG,
            header(
                "Strong validator of this representation; send it in `If-None-Match` to get `304` while it is current.",
                ObjectBuilder::new().schema_type(Type::String).pattern(Some("^\"[^\"]*\"$")),
                true,
            ),
        ),
        (
            RATE_LIMIT[0],
            header("Requests allowed in a burst by the tightest limit that applies (sent when limits are on).", integer(1), false),
        ),
        (RATE_LIMIT[1], header("Requests left before this limit refuses (sent when limits are on).", integer(0), false)),
        (RATE_LIMIT[2], header("Seconds until the limit is fully replenished (sent when limits are on).", integer(0), false)),
        (RETRY_AFTER, header("Seconds to wait before trying again.", integer(1), true)),
        (
            REPLAYED,
            header(
                "`true` when this is the stored first response to an earlier request with the same `Idempotency-Key` \
                 (replayed byte for byte); absent otherwise.",
                ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["true"])),
                false,
            ),
        ),
        (
            WWW_AUTHENTICATE,
            header(
                "`Bearer`, with `error=\"invalid_token\"` when a token was sent but refused.",
                ObjectBuilder::new().schema_type(Type::String),
                false,
            ),
        ),
    ]
}

/// Adds `status` with `description`, or joins the description to the one already declared.
fn declare(op: &mut Operation, status: &str, description: &str) {
    let entry = op.responses.responses.entry(status.to_owned()).or_insert_with(|| RefOr::T(Response::new("")));
    if let RefOr::T(response) = entry
        && !response.description.contains(description)
    {
        response.description =
            if response.description.is_empty() { description.to_owned() } else { format!("{description}; {}", response.description) };
    }
}

fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted: the work is queued",
        "204" => "Done; no body",
        "304" => "Not modified: the `If-None-Match` validator is still current; no body",
        "409" => "`conflict`",
        "412" => "`precondition_failed`",
        "429" => "`rate_limited`: too many attempts; wait `Retry-After` seconds",
        "503" => "Unavailable",
        _ => "Error",
    }
}

/// The conventions of an [idem] route: its key, the codes of the key's rules, the replay header.
fn idempotency(op: &mut Operation) {
    let key = ParameterBuilder::new()
        .name(super::idempotency::guard::KEY_HEADER)
        .parameter_in(ParameterIn::Header)
        .required(Required::True)
        .description(Some(
            "1–255 printable ASCII characters, chosen by the client per operation (a UUID). The same key, user, route and \
             body replay the first response (kept at least 24 h) with `Idempotent-Replayed: true`. Successes and `402` \
             are kept; a request refused before it ran (`4xx`) or a `5xx`/`503` releases the key for a retry.",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(255)).build()))
        .build();
    op.parameters.get_or_insert_with(Vec::new).push(RefOr::T(key));
    declare(op, "400", "`idempotency_key_required`: no `Idempotency-Key` header");
    declare(op, "409", "`idempotency_key_in_use`: a request with this key is still running");
    declare(
        op,
        "422",
        "`idempotency_key_reuse`: this key was used with another body; `validation_failed` on `Idempotency-Key`: not 1–255 printable characters",
    );
    for (status, response) in op.responses.responses.iter_mut() {
        if let RefOr::T(response) = response
            && (status.starts_with('2') || status == "402")
        {
            response.headers.insert(REPLAYED.to_owned(), RefOr::Ref(Ref::new(format!("#/components/headers/{REPLAYED}"))));
        }
    }
}

fn conform(path: &str, op: &mut Operation) {
    let params = op.parameters.as_deref().unwrap_or_default();
    let located = |place: ParameterIn| params.iter().any(|p| matches!(p, RefOr::T(p) if p.parameter_in == place));
    let (has_path_id, has_query) = (located(ParameterIn::Path), located(ParameterIn::Query));
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());

    let form = matches!(&op.request_body, Some(RefOr::T(b)) if b.content.contains_key("application/x-www-form-urlencoded"));
    if form {
        declare(op, "413", "`payload_too_large`: the body is over the size limit (1 MiB by default)");
        declare(op, "415", "`unsupported_media_type`: the body is not sent as `Content-Type: application/x-www-form-urlencoded`");
        declare(op, "422", "`validation_failed`: the form does not parse");
    } else if op.request_body.is_some() {
        declare(op, "400", "`malformed_json`: the body is not valid JSON");
        declare(op, "413", "`payload_too_large`: the body is over the size limit (1 MiB by default)");
        declare(op, "415", "`unsupported_media_type`: the body is not sent as `Content-Type: application/json`");
        declare(op, "422", "`validation_failed`: a field is missing, unknown or invalid (each is named in `errors`)");
    }
    if has_query {
        declare(op, "422", "`validation_failed`: a query parameter is invalid (named in `errors`)");
    }
    if secured {
        declare(op, "401", "`unauthenticated` (no `Authorization` header) or `invalid_token` (malformed, expired or revoked)");
    }
    if path.starts_with(BACK_OFFICE) {
        declare(op, "403", "`forbidden`: the caller lacks the role this needs");
    }
    if has_path_id {
        declare(op, "404", "`not_found`: no such resource (or not the caller's)");
    }

    if super::rate_limit::is_limited(path) {
        declare(
            op,
            "429",
            "`rate_limited`: over the budget of a request class (anonymous per address, per user, money, back office); wait `Retry-After` seconds",
        );
    }
    let rate_limited = op.responses.responses.contains_key("429");
    let cacheable = op.responses.responses.contains_key("304");
    if cacheable {
        let if_none_match = ParameterBuilder::new()
            .name("If-None-Match")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some("An `ETag` received earlier: `304` with no body while it still matches."))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String).build()))
            .build();
        op.parameters.get_or_insert_with(Vec::new).push(RefOr::T(if_none_match));
    }

    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else { continue };
        if response.description.is_empty() {
            response.description = default_description(status).to_owned();
        }
        // A 5xx that reports in JSON (readiness) keeps its body; every other error is a problem.
        if status.starts_with('4') || (status.starts_with('5') && !response.content.contains_key("application/json")) {
            response.content.clear();
            let problem = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
            response.content.insert("application/problem+json".to_owned(), RefOr::T(problem));
        }
        let mut names = vec![REQUEST_ID];
        match status.as_str() {
            "200" | "304" if cacheable => names.push(ETAG),
            "401" => names.push(WWW_AUTHENTICATE),
            "429" => names.push(RETRY_AFTER),
            _ => {}
        }
        if rate_limited {
            names.extend(RATE_LIMIT);
        }
        for name in names {
            response.headers.insert(name.to_owned(), RefOr::Ref(Ref::new(format!("#/components/headers/{name}"))));
        }
    }
}
