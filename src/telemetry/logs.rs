//! The process's tracing subscriber: log lines (JSON by default) on standard error, and an
//! OpenTelemetry layer that gives Keel's spans their trace and span ids.
//!
//! Design: ids always come from the OpenTelemetry SDK (one source, exported or not), never from
//! a second id scheme of our own. The two layers filter separately: `log` decides which lines
//! are written, while Keel's own spans (`keel` at info and above) always get ids, so a warning
//! logged with `log = "warn"` still names its trace. The SDK layer makes each entered span's
//! context current on its thread; the line formatter reads it there and appends `trace_id` and
//! `span_id` (JSON fields, or `key=value` in the pretty format). Lines outside any span (start-up,
//! shutdown, idle loops) belong to no trace and carry neither.

use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::format::{Format, FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, layer};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use super::export::Tracing;
use crate::config::LogFormat;

/// Installs the global subscriber once (later calls, e.g. from tests, change nothing).
pub(super) fn install(filter: &str, format: LogFormat, tracing: &Tracing) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let lines = match format {
        LogFormat::Json => {
            let json = Format::default().json().flatten_event(true).with_current_span(true).with_span_list(false);
            layer()
                .fmt_fields(JsonFields::new())
                .event_format(WithTraceIds { plain: json.clone(), colored: json, json: true })
                .with_writer(std::io::stderr)
                .with_filter(filter)
                .boxed()
        }
        LogFormat::Pretty => {
            let full = Format::default();
            layer()
                .event_format(WithTraceIds { plain: full.clone().with_ansi(false), colored: full.with_ansi(true), json: false })
                .with_writer(std::io::stderr)
                .with_filter(filter)
                .boxed()
        }
    };
    let spans = tracing_opentelemetry::layer().with_tracer(tracing.tracer()).with_filter(Targets::new().with_target("keel", Level::INFO));
    let _ = tracing_subscriber::registry().with(lines).with(spans).try_init();
}

/// Writes a line with another formatter, then adds the ids of the span current on this thread.
struct WithTraceIds<F> {
    plain: F,
    /// The same format with colours, for a writer that takes ANSI escapes.
    colored: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let inner = if writer.has_ansi_escapes() { &self.colored } else { &self.plain };
        let current = opentelemetry::Context::current();
        let span = current.span();
        let ids = span.span_context();
        if !ids.is_valid() {
            return inner.format_event(ctx, writer, event);
        }
        let mut line = String::with_capacity(256);
        inner.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        let (trace_id, span_id) = (ids.trace_id(), ids.span_id());
        match line.strip_suffix('}').filter(|_| self.json) {
            Some(object) => writeln!(writer, "{object},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"),
            None => writeln!(writer, "{line} trace_id={trace_id} span_id={span_id}"),
        }
    }
}
