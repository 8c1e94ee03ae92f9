//! The standard variables alone configure tracing: OTLP over HTTP/protobuf to a collector
//! (here an axum route decoding `ExportTraceServiceRequest`), with the service name and
//! resource attributes they give, and the spans queued at shutdown are exported then.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::post;
use baton_telemetry::{LogFormat, Protocol, Settings};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;

#[test]
fn the_otel_variables_configure_http_export_and_shutdown_flushes() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let received: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    let store = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let store = Arc::clone(&store);
            async move {
                store.lock().unwrap().push(ExportTraceServiceRequest::decode(body).expect("OTLP protobuf"));
                ([("content-type", "application/x-protobuf")], ExportTraceServiceResponse::default().encode_to_vec())
            }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });

    // SAFETY: no other thread reads the environment yet: the runtime's workers are idle and
    // this test is alone in its process.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{address}"));
        std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        std::env::set_var("OTEL_SERVICE_NAME", "baton-under-test");
        std::env::set_var("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci,service.name=overridden");
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "600000");
    }
    let settings = Settings::from_env("batond", "9.9.9", LogFormat::Text).unwrap();
    assert_eq!(settings.otlp.as_ref().unwrap().protocol, Protocol::HttpProtobuf);
    let telemetry = runtime.block_on(async { baton_telemetry::init(settings) }).unwrap();
    assert!(telemetry.is_tracing());

    runtime.block_on(async {
        let span = tracing::info_span!(target: "baton::test", "queued until shutdown", otel.kind = "server");
        span.in_scope(|| tracing::warn!(target: "baton::test", "an event on the span"));
    });
    assert!(received.lock().unwrap().is_empty(), "the export delay holds the span back");
    telemetry.shutdown();

    let requests = received.lock().unwrap();
    let resource_spans: Vec<_> = requests.iter().flat_map(|r| &r.resource_spans).collect();
    let resource = resource_spans[0].resource.as_ref().unwrap();
    let attr = |key: &str| {
        resource.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
    };
    assert_eq!(attr("service.name").as_deref(), Some("baton-under-test"), "OTEL_SERVICE_NAME wins");
    assert_eq!(attr("deployment.environment").as_deref(), Some("ci"));
    assert_eq!(attr("service.version").as_deref(), Some("9.9.9"));
    let spans: Vec<_> = resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).collect();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "queued until shutdown");
    assert_eq!(spans[0].events.len(), 1, "events in a span are exported on it");
}
