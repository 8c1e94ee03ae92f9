//! Telemetry shared by `batond` and `baton-mcp`: logs on stderr (text or JSON lines, filtered by
//! `RUST_LOG`), OpenTelemetry traces exported over OTLP, and the helpers both binaries use for
//! Prometheus metrics and gRPC statuses, and the shutdown signal both serve until.
//!
//! Tracing is on only when an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). Otherwise no OpenTelemetry layer is installed: the
//! spans Baton creates (calls, tools, SQL statements, Redis round trips) are at DEBUG level
//! and, below `RUST_LOG=debug`, disabled at their call sites, so they cost a branch.
//!
//! ```text
//! tracing spans ─┬─► fmt layer (RUST_LOG) ─────────────► stderr (text | JSON + trace ids)
//!                └─► OpenTelemetry layer (baton*=DEBUG, others WARN)
//!                      └─► SDK tracer (sampler from OTEL_TRACES_SAMPLER)
//!                            └─► batch span processor (own thread) ─► OTLP gRPC | HTTP/protobuf
//! ```

pub mod grpc;
mod logs;
pub mod metrics;
pub mod signal;
#[cfg(feature = "testing")]
pub mod testing;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::{EnvResourceDetector, ResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::Filter;
use tracing_subscriber::prelude::*;

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// One JSON object per line; lines inside a traced span carry `trace_id` and `span_id`.
    Json,
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318, path `/v1/traces`).
    HttpProtobuf,
}

impl Protocol {
    fn parse(value: &str) -> Result<Protocol, Error> {
        match value.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => {
                Err(Error::Config(format!("OTLP protocol `{other}` is not supported; use `grpc` or `http/protobuf`")))
            }
        }
    }
}

/// Where traces go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Otlp {
    /// `None`: from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` (for
    /// HTTP the latter gets `/v1/traces` appended). `Some`: used as given.
    pub endpoint: Option<String>,
    pub protocol: Protocol,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Otlp {
    /// From the standard variables: tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, unless `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`. The protocol is `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, else gRPC.
    pub fn from_env() -> Result<Option<Otlp>, Error> {
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match env("OTEL_TRACES_EXPORTER").as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(Error::Config(format!(
                    "OTEL_TRACES_EXPORTER `{other}` is not supported; use `otlp` or `none`"
                )));
            }
        }
        if env("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() && env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none() {
            return Ok(None);
        }
        let protocol = match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL")) {
            Some(p) => Protocol::parse(&p)?,
            None => Protocol::Grpc,
        };
        Ok(Some(Otlp { endpoint: None, protocol }))
    }
}

/// Everything [`init`] needs.
pub struct Settings {
    /// `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names one.
    pub service_name: &'static str,
    pub service_version: &'static str,
    pub log_format: LogFormat,
    /// An `EnvFilter` directive; `None`: `RUST_LOG`, else `info`.
    pub log_filter: Option<String>,
    /// Where log lines go (stderr in both binaries).
    pub log_writer: BoxMakeWriter,
    /// `None`: no tracing.
    pub otlp: Option<Otlp>,
}

impl Settings {
    /// Logs to stderr, filtered by `RUST_LOG`; OTLP from the standard variables.
    pub fn from_env(
        service_name: &'static str,
        service_version: &'static str,
        log_format: LogFormat,
    ) -> Result<Settings, Error> {
        Ok(Settings {
            service_name,
            service_version,
            log_format,
            log_filter: None,
            log_writer: BoxMakeWriter::new(std::io::stderr),
            otlp: Otlp::from_env()?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("telemetry configuration: {0}")]
    Config(String),
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// The installed telemetry. Call [`Telemetry::shutdown`] when the service has stopped, so the
/// spans still queued are exported.
#[derive(Debug)]
#[must_use = "shut telemetry down when the service stops, or queued spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// True when spans are exported.
    pub fn is_tracing(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now (blocks until the exporter answers).
    pub fn force_flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(e) = provider.force_flush()
        {
            tracing::warn!(error = %e, "flushing spans failed");
        }
    }

    /// Exports what is queued and stops the exporter. Blocks: in async code call it from
    /// `spawn_blocking`.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "shutting the span exporter down failed");
        }
    }
}

/// Installs the global `tracing` subscriber (fmt layer, plus the OpenTelemetry layer when
/// `settings.otlp` is set), and the W3C propagators and tracer provider as OpenTelemetry's
/// globals. With OTLP/gRPC it must run inside a Tokio runtime (the exporter's channel lives
/// there); spans are exported from the batch processor's own thread and never block a request.
pub fn init(settings: Settings) -> Result<Telemetry, Error> {
    let Settings { service_name, service_version, log_format, log_filter, log_writer, otlp } = settings;
    let filter = match log_filter {
        Some(directives) => EnvFilter::try_new(directives)?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let provider = match otlp {
        Some(otlp) => Some(
            SdkTracerProvider::builder()
                .with_resource(resource(service_name, service_version))
                .with_batch_exporter(exporter(&otlp)?)
                .build(),
        ),
        None => None,
    };
    let tracer = provider.as_ref().map(|p| p.tracer("baton"));
    if let Some(provider) = &provider {
        global::set_tracer_provider(provider.clone());
    }
    global::set_text_map_propagator(baton_propagator());
    subscriber(log_format, filter, log_writer, tracer).try_init()?;
    Ok(Telemetry { provider })
}

/// The subscriber: the fmt layer filtered by `filter`; with a tracer, also the OpenTelemetry
/// layer, which sees Baton's own spans (all DEBUG) and other crates'
/// warnings, as events on the span they happen in.
fn subscriber(
    format: LogFormat,
    filter: EnvFilter,
    writer: BoxMakeWriter,
    tracer: Option<SdkTracer>,
) -> Box<dyn tracing::Subscriber + Send + Sync> {
    let Some(tracer) = tracer else {
        // One global filter, as simple and as cheap as logging alone.
        return Box::new(tracing_subscriber::registry().with(filter).with(fmt_layer(format, writer)));
    };
    let exported = Targets::new().with_default(Level::WARN).with_target("baton", Level::DEBUG);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(AskEveryTime(exported));
    Box::new(tracing_subscriber::registry().with(fmt_layer(format, writer).with_filter(filter)).with(otel))
}

fn fmt_layer<S>(format: LogFormat, writer: BoxMakeWriter) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .event_format(logs::JsonWithTraceIds::default())
            .with_writer(writer)
            .boxed(),
    }
}

/// A per-layer filter that is asked about every span and event instead of letting the
/// callsite cache its answer.
///
/// With two per-layer filters, a callsite both enable is cached as "always" and skips the
/// per-event filter pass, so it inherits whatever that pass last left on the thread: a
/// `tracing::enabled!` check (as libraries make) for a callsite only one layer wanted leaves
/// the other layer's "disabled" mark behind, and the next "always" span would silently miss the
/// OpenTelemetry layer. Answering "sometimes" keeps every pass fresh, at the cost of one filter
/// lookup per span or event while tracing is on.
struct AskEveryTime<F>(F);

impl<S, F: Filter<S>> Filter<S> for AskEveryTime<F> {
    fn enabled(&self, meta: &tracing::Metadata<'_>, cx: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        if self.0.callsite_enabled(meta).is_never() {
            tracing::subscriber::Interest::never()
        } else {
            tracing::subscriber::Interest::sometimes()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.0.max_level_hint()
    }
}

fn baton_propagator() -> opentelemetry::propagation::TextMapCompositePropagator {
    opentelemetry::propagation::TextMapCompositePropagator::new(vec![
        Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
        Box::new(opentelemetry_sdk::propagation::BaggagePropagator::new()),
    ])
}

fn exporter(otlp: &Otlp) -> Result<SpanExporter, Error> {
    let exporter = match otlp.protocol {
        Protocol::Grpc => {
            let builder = SpanExporter::builder().with_tonic().with_protocol(opentelemetry_otlp::Protocol::Grpc);
            match &otlp.endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint.clone()).build()?,
                None => builder.build()?,
            }
        }
        Protocol::HttpProtobuf => {
            let builder = SpanExporter::builder().with_http().with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
            match &otlp.endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint.clone()).build()?,
                None => builder.build()?,
            }
        }
    };
    Ok(exporter)
}

/// `service.name` = `service_name`, overridden by `OTEL_RESOURCE_ATTRIBUTES` and then by
/// `OTEL_SERVICE_NAME`; plus `service.version`, the SDK's attributes and every other
/// `OTEL_RESOURCE_ATTRIBUTES` pair.
fn resource(service_name: &'static str, service_version: &'static str) -> Resource {
    let detectors: Vec<Box<dyn ResourceDetector>> =
        vec![Box::new(TelemetryResourceDetector), Box::new(EnvResourceDetector::new())];
    let mut builder = Resource::builder_empty()
        .with_service_name(service_name)
        .with_attribute(KeyValue::new("service.version", service_version))
        .with_detectors(&detectors);
    if let Some(name) = env("OTEL_SERVICE_NAME") {
        builder = builder.with_service_name(name);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_enabled_check_does_not_hide_the_next_span_from_tracing() {
        use opentelemetry_sdk::trace::InMemorySpanExporter;
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let subscriber = subscriber(
            LogFormat::Json,
            EnvFilter::new("info"),
            BoxMakeWriter::new(std::io::sink),
            Some(provider.tracer("test")),
        );
        tracing::subscriber::with_default(subscriber, || {
            // Logged but not traced: the layers disagree, so this asks both filters, and no
            // event follows the question.
            assert!(tracing::enabled!(target: "some_library", Level::INFO));
            // Both layers want this one.
            drop(tracing::info_span!(target: "baton::test", "after the check"));
        });
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.iter().map(|s| s.name.as_ref()).collect::<Vec<_>>(), ["after the check"]);
    }

    #[test]
    fn without_tracing_batons_spans_are_disabled_where_they_are_made() {
        let subscriber = subscriber(LogFormat::Json, EnvFilter::new("info"), BoxMakeWriter::new(std::io::sink), None);
        tracing::subscriber::with_default(subscriber, || {
            assert!(tracing::debug_span!(target: "baton_server::telemetry::grpc", "grpc").is_disabled());
            assert!(!tracing::info_span!(target: "baton_server", "logged context").is_disabled());
        });
    }

    #[test]
    fn protocols() {
        assert_eq!(Protocol::parse("grpc").unwrap(), Protocol::Grpc);
        assert_eq!(Protocol::parse(" http/protobuf ").unwrap(), Protocol::HttpProtobuf);
        assert!(Protocol::parse("http/json").is_err());
    }

    #[test]
    fn the_default_service_name_applies_without_variables() {
        let resource = resource("batond", "1.2.3");
        // The test runner does not set OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES.
        if env("OTEL_SERVICE_NAME").is_none() && env("OTEL_RESOURCE_ATTRIBUTES").is_none() {
            assert_eq!(resource.get(&"service.name".into()).unwrap().as_str(), "batond");
        }
        assert_eq!(resource.get(&"service.version".into()).unwrap().as_str(), "1.2.3");
        assert_eq!(resource.get(&"telemetry.sdk.language".into()).unwrap().as_str(), "rust");
    }
}
