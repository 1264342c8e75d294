//! Optional export of the host's call spans to an OpenTelemetry collector over OTLP/HTTP, on
//! when the config names `otlp_endpoint`, and the context a call carries from host to host so
//! that the spans of one cluster call form one trace.
//!
//! Owns the export's set-up and shutdown and the [`RemoteParent`] a relayed call carries (the
//! W3C `traceparent` of the span that passed it on). It exports only the `call` spans the
//! dispatcher opens, with their fields as attributes, in batches from the SDK's own thread, so
//! a slow or absent collector never holds a call up (a full queue drops spans). It imports
//! nothing else of the host: the dispatcher and the cluster links call into it. [`LogSafe`]
//! and [`LogText`] show a caller's or a guest's text (a request id, an error, a guest's log
//! line) in logs and spans without letting it forge lines.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::Layer;

/// Whether spans are exported: relayed calls then carry their span's context.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The path a collector takes traces on, below its base URL.
const TRACES_PATH: &str = "/v1/traces";

/// The running export. Dropping it sends the spans still queued (at most the export timeout).
pub struct SpanExport {
    provider: SdkTracerProvider,
}

impl Drop for SpanExport {
    fn drop(&mut self) {
        EXPORTING.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            eprintln!("easyrpc: sending the last spans failed: {e}");
        }
    }
}

/// Why the export could not start.
#[derive(Debug, thiserror::Error)]
#[error("otlp_endpoint {endpoint}: {why}")]
pub struct ExportError {
    endpoint: String,
    why: String,
}

/// The URL spans are posted to: `endpoint` is the collector's base URL (`http://host:4318`),
/// or already the traces URL.
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        base.to_owned()
    } else {
        format!("{base}{TRACES_PATH}")
    }
}

/// Starts exporting to `endpoint` (plain `http://`; the collector normally runs beside the
/// host) and returns the layer that feeds it, for the process's subscriber, and the export to
/// keep until the process ends. Only spans named `call` from this crate reach it.
pub fn export_to<S>(endpoint: &str) -> Result<(impl Layer<S> + Send + Sync, SpanExport), ExportError>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span> + Send + Sync,
{
    let failed = |why: String| ExportError { endpoint: endpoint.to_owned(), why };
    if !endpoint.starts_with("http://") {
        return Err(failed("the export speaks plain http:// to a collector beside the host".into()));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
        .with_endpoint(traces_url(endpoint))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("easyrpc")
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_attribute(opentelemetry::KeyValue::new("service.instance.id", instance_id()))
        .build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let tracer = provider.tracer("easyrpc");
    let calls_only =
        FilterFn::new(|meta| meta.is_span() && meta.name() == "call" && meta.target().starts_with("easyrpc"));
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(calls_only);
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((layer, SpanExport { provider }))
}

/// Which host exported a span: the machine's host name where the environment gives one (a pod's
/// name on Kubernetes), else an id drawn for this process.
fn instance_id() -> String {
    std::env::var("HOSTNAME").ok().filter(|name| !name.is_empty()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Whether spans are being exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The span on another host that passed a call on: its trace and span id, from the call's
/// `traceparent` (W3C Trace Context, version 00). Fixed size, so that it travels by copy. Its
/// sampled flag is read but not kept: every call's span here is exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
}

impl RemoteParent {
    /// Reads `00-<32 hex>-<16 hex>-<2 hex>`; anything else (or all-zero ids) is none.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|_| trace.len() == 32 && is_hex(trace))?;
        let span_id = u64::from_str_radix(span, 16).ok().filter(|_| span.len() == 16 && is_hex(span))?;
        let _flags = u8::from_str_radix(flags, 16).ok().filter(|_| flags.len() == 2 && is_hex(flags))?;
        (trace_id != 0 && span_id != 0)
            .then(|| Self { trace_id: trace_id.to_be_bytes(), span_id: span_id.to_be_bytes() })
    }

    /// The `traceparent` text of this parent.
    pub fn traceparent(&self) -> String {
        format!("00-{:032x}-{:016x}-01", u128::from_be_bytes(self.trace_id), u64::from_be_bytes(self.span_id))
    }

    /// The exported span `span` is, when spans are exported.
    pub fn of(span: &tracing::Span) -> Option<Self> {
        if !exporting() {
            return None;
        }
        let context = span.context();
        let span_context = context.span().span_context().clone();
        span_context
            .is_valid()
            .then(|| Self { trace_id: span_context.trace_id().to_bytes(), span_id: span_context.span_id().to_bytes() })
    }

    /// Makes `span` (not yet entered) a child of this parent in the exported trace.
    pub fn adopt(self, span: &tracing::Span) {
        if !exporting() {
            return;
        }
        let parent = SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        // A span that is disabled or already started keeps the parent it has.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
}

/// A caller's text (a request id) as logs and spans show it: visible ASCII as it is, anything
/// else escaped, and at most [`LogSafe::MAX_CHARS`] characters, so that a caller can neither
/// forge log lines nor fill the log.
pub struct LogSafe<'a>(pub &'a str);

impl LogSafe<'_> {
    pub const MAX_CHARS: usize = 128;
}

impl std::fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(Self::MAX_CHARS) {
            if c.is_ascii_graphic() {
                write!(f, "{c}")?;
            } else {
                write!(f, "{}", c.escape_unicode())?;
            }
        }
        let rest = chars.as_str().len();
        if rest > 0 {
            write!(f, "...(+{rest} bytes)")?;
        }
        Ok(())
    }
}

/// A caller's or a guest's message (an error, a guest's log line or output) as logs show it:
/// as it is, but for control characters, escaped (`\n`, `\u{1b}`), so that it stays on its own
/// log line and sends no escape codes to an operator's terminal. Bounding it is the caller's.
pub struct LogText<'a>(pub &'a str);

impl std::fmt::Display for LogText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(char::is_control) {
            f.write_str(&rest[..at])?;
            let control = rest[at..].chars().next().unwrap_or_default();
            write!(f, "{}", control.escape_default())?;
            rest = &rest[at + control.len_utf8()..];
        }
        f.write_str(rest)
    }
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::{traces_url, LogSafe, LogText, RemoteParent};

    #[test]
    fn a_message_keeps_its_text_and_loses_its_control_characters() {
        assert_eq!(LogText("plain text, é ☃").to_string(), "plain text, é ☃");
        let forged = "boom\n2026-12-07T00:00:00Z  INFO easyrpc::session: admin logged in\u{1b}[2J\r";
        let shown = LogText(forged).to_string();
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert_eq!(shown, "boom\\n2026-12-07T00:00:00Z  INFO easyrpc::session: admin logged in\\u{1b}[2J\\r");
    }

    #[test]
    fn a_caller_s_text_shows_in_logs_on_one_line_and_bounded() {
        let uuid = "d2f95712-e78f-11f1-a490-02fc00000001";
        assert_eq!(LogSafe(uuid).to_string(), uuid);
        assert_eq!(LogSafe("a b\nc=é").to_string(), "a\\u{20}b\\u{a}c=\\u{e9}");
        let long = "x".repeat(1 << 20);
        assert_eq!(LogSafe(&long).to_string(), format!("{}...(+{} bytes)", "x".repeat(128), (1 << 20) - 128));
    }

    #[test]
    fn a_traceparent_reads_back_as_written_and_nothing_else_reads() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = RemoteParent::parse(text).expect("a W3C example");
        assert_eq!(parent.traceparent(), text);
        // Unsampled parents are read, and their children exported all the same.
        let unsampled = RemoteParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert_eq!(unsampled, Some(parent));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(RemoteParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_traces_url_is_below_the_collector_s_base_url() {
        assert_eq!(traces_url("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://collector:4318/"), "http://collector:4318/v1/traces");
        assert_eq!(traces_url("http://collector:4318/v1/traces"), "http://collector:4318/v1/traces");
    }
}
