//! The OpenTelemetry tracer provider behind every span: it gives spans their ids always, and
//! exports them over OTLP/HTTP (protobuf) only when `otlp_endpoint` is set.

use std::time::Duration;

use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

/// Where spans go (`otlp_endpoint`, `otlp_service_name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpExport {
    /// The collector's traces URL: `<otlp_endpoint>/v1/traces`.
    pub traces_url: String,
    /// `service.name` of every exported span.
    pub service_name: String,
}

/// The traces URL for `otlp_endpoint`: an http(s) URL with a host and no credentials, query or
/// fragment. Spans go to `<endpoint>/v1/traces` (a URL that already ends so is taken as is).
pub fn traces_url(endpoint: &str) -> Option<String> {
    let url = reqwest::Url::parse(endpoint).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if !plain {
        return None;
    }
    let base = url.as_str().trim_end_matches('/');
    Some(if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") })
}

/// How long shutdown waits for the last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The process's tracer provider; [`Tracing::shutdown`] sends what is still buffered.
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Ids only: no processor and no thread. A trace is recorded only when the caller's
    /// `traceparent` asked for it, and then dropped.
    pub fn without_export() -> Tracing {
        Tracing { provider: SdkTracerProvider::builder().with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff))).build() }
    }

    /// Spans sampled (new traces, and callers' sampled ones) go to the collector through a
    /// batch processor: a thread of its own, with the blocking HTTP client (the async one needs
    /// a runtime that thread lacks).
    pub fn exporting_to(export: &OtlpExport) -> anyhow::Result<Tracing> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(export.traces_url.as_str())
            .build()
            .map_err(|e| anyhow::anyhow!("setting up the OTLP exporter: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .with_resource(Resource::builder().with_service_name(export.service_name.clone()).build())
            .with_batch_exporter(exporter)
            .build();
        Ok(Tracing { provider })
    }

    pub fn tracer(&self) -> opentelemetry_sdk::trace::SdkTracer {
        use opentelemetry::trace::TracerProvider as _;
        self.provider.tracer("keel")
    }

    /// Sends the spans still buffered (waiting at most a few seconds for the collector).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            tracing::warn!(error = %e, "not every span reached the OTLP collector before shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn the_traces_path_is_added_to_the_endpoint() {
        assert_eq!(traces_url("http://collector:4318").as_deref(), Some("http://collector:4318/v1/traces"));
        assert_eq!(traces_url("https://otel.example/base/").as_deref(), Some("https://otel.example/base/v1/traces"));
        assert_eq!(traces_url("http://127.0.0.1:4318/v1/traces").as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
    }

    #[test]
    fn endpoints_other_than_plain_http_urls_are_refused() {
        for bad in
            ["collector:4318", "grpc://collector:4317", "http://", "http://u:p@collector:4318", "http://c:4318/?x=1", "file:///tmp/x"]
        {
            assert_eq!(traces_url(bad), None, "{bad}");
        }
    }
}
