//! Trace context: the W3C `traceparent` that names a span across processes, and how Keel's
//! units of work continue a trace they were handed.
//!
//! Every span Keel opens gets its ids from the OpenTelemetry layer (see [`super::logs`]),
//! whether or not the spans are exported. A request continues its caller's trace; a job, an
//! event's publication and each subscriber's handling of it continue the trace of the unit of
//! work that enqueued or wrote them (stored with the row, or carried as a NATS header); calls
//! Keel makes (webhooks, the payment provider) send the `traceparent` of their own span.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header (and NATS message header) that carries a trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Reads a version-00 `traceparent` (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`,
/// lower-case, neither id all zeros). Anything else is `None`: a malformed header starts a new
/// trace rather than failing the request.
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if parts.next().is_some() || version != "00" || !lower_hex(trace_id, 32) || !lower_hex(parent_id, 16) || !lower_hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok().filter(|id| *id != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(parent_id).ok().filter(|id| *id != SpanId::INVALID)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    // Only the sampled bit has a meaning in version 00; the others are not passed on.
    let flags = TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8());
    Some(SpanContext::new(trace_id, span_id, flags, true, TraceState::NONE))
}

/// The `traceparent` naming the span of `context`; `None` for an invalid (absent) span.
pub fn format(context: &SpanContext) -> Option<String> {
    context.is_valid().then(|| format!("00-{}-{}-{:02x}", context.trace_id(), context.span_id(), context.trace_flags().to_u8()))
}

/// The `traceparent` naming `span` (`None` when no trace layer is installed, as in a test
/// process that set up no logging). Starts the span's trace data: set its parent first.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    format(span.context().span().span_context())
}

/// The `traceparent` of the innermost traced span being run on this thread, if any: what a job
/// or an event written now records as the context it was made in.
pub fn current() -> Option<String> {
    format(opentelemetry::Context::current().span().span_context())
}

/// Makes `span` (new, not yet entered) a child of the span `traceparent` names; without one, or
/// with a malformed one, `span` starts a new trace. Returns the `traceparent` naming `span`.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) -> Option<String> {
    if let Some(parent) = traceparent.and_then(parse) {
        // Fails only for a span already started or disabled, which then keeps its own trace.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    traceparent_of(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let context = parse(VALID).unwrap();
        assert_eq!(context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_sampled() && context.is_remote());
        assert_eq!(format(&context).as_deref(), Some(VALID));
        let unsampled = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn flags_other_than_sampled_are_dropped() {
        assert_eq!(format(&parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").unwrap()).as_deref(), Some(VALID));
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} is refused");
        }
    }

    #[test]
    fn no_span_has_no_traceparent() {
        assert_eq!(format(&SpanContext::empty_context()), None);
        assert_eq!(traceparent_of(&tracing::Span::none()), None);
    }
}
