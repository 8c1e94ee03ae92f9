//! JSON log lines that name the trace they belong to.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// tracing-subscriber's JSON lines with `trace_id` and `span_id` first when the event happens
/// inside a traced span. The OpenTelemetry layer attaches a span's context while the span is
/// entered, so the current context is the innermost traced span of the event.
#[derive(Debug)]
pub(crate) struct JsonWithTraceIds {
    inner: Format<Json>,
}

impl Default for JsonWithTraceIds {
    fn default() -> Self {
        JsonWithTraceIds { inner: tracing_subscriber::fmt::format().json() }
    }
}

impl<S, N> FormatEvent<S, N> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let cx = opentelemetry::Context::current();
        let span = cx.span();
        let sc = span.span_context();
        match line.strip_prefix('{') {
            Some(rest) if sc.is_valid() => {
                write!(writer, "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}", sc.trace_id(), sc.span_id())
            }
            _ => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::prelude::*;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;

        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    #[test]
    fn lines_in_a_traced_context_carry_its_ids_and_stay_json() {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .event_format(JsonWithTraceIds::default())
                .with_writer(lines.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let sc = SpanContext::new(
                TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            );
            let _cx = opentelemetry::Context::new().with_remote_span_context(sc).attach();
            let span = tracing::info_span!("rpc", rpc.method = "GetSession");
            let _entered = span.enter();
            tracing::info!(answer = 42, "inside");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(parsed.len(), 2);
        assert!(parsed[0].get("trace_id").is_none());
        assert_eq!(parsed[0]["fields"]["message"], "outside");
        assert_eq!(parsed[1]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed[1]["span_id"], "00f067aa0ba902b7");
        assert_eq!(parsed[1]["fields"]["answer"], 42);
        assert_eq!(parsed[1]["span"]["rpc.method"], "GetSession");
    }
}
