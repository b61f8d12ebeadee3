//! Traces: OpenTelemetry spans of ingest (`ingest`, with `verify` and
//! `store.commit`), of each delivery attempt (`delivery.attempt`) and of each
//! store lease that leased something (`store.lease`), exported over OTLP
//! (HTTP/protobuf) by a batch processor on its own thread, while
//! `[telemetry] otlp_endpoint` is set.
//!
//! Off is free: the gateway holds an `Option<Traces>`, and with `None` no
//! span is made, no header parsed and nothing allocated for tracing.
//!
//! Propagation is W3C Trace Context (the SDK's propagator: malformed,
//! oversized, unknown-version or all-zero `traceparent`s are ignored). An
//! incoming `traceparent` is continued by the ingest span; the ingest span's
//! own context is stored with the message as the `hookgate-traceparent` (and
//! `hookgate-tracestate`) header, so an attempt on any node, after any
//! restart, is a child of it; the request to the destination carries the
//! attempt's `traceparent`. `hookgate-*` headers are never forwarded.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Link, Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::config::TelemetryConfig;
use crate::store::{decode_headers, Leased};

/// The prefix of the stored trace context headers (`hookgate-traceparent`).
const STORED: &str = "hookgate-";

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the OTLP exporter for {url}: {reason}")]
pub struct TraceError {
    url: String,
    reason: String,
}

/// The running tracer and its provider (which owns the export thread).
#[derive(Clone)]
pub struct Traces {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Traces")
    }
}

impl Traces {
    /// The tracer of `cfg`, exporting in batches from a thread of its own;
    /// `None` when `otlp_endpoint` is not set.
    pub fn start(cfg: &TelemetryConfig) -> Result<Option<Traces>, TraceError> {
        let Some(url) = cfg.traces_url() else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TraceError {
                url: shown(&url),
                reason: e.to_string(),
            })?;
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sample_ratio)));
        let resource = Resource::builder()
            .with_service_name(cfg.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("hookgate");
        tracing::info!(endpoint = %shown(&url), ratio = cfg.sample_ratio, "exporting traces over OTLP");
        Ok(Some(Traces { tracer, provider }))
    }

    /// Exports the spans still waiting and stops the export thread, waiting
    /// at most `bound` (the thread blocks, so not on the runtime's workers).
    pub async fn shutdown(self, bound: Duration) {
        let provider = self.provider;
        let flush = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(bound));
        match flush.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the last spans were not all exported"),
            Err(e) => tracing::warn!(error = %e, "the last spans were not all exported"),
        }
    }

    /// Starts the `ingest` span of a request to `source`: a child of the
    /// request's `traceparent` when it has a valid one, else a new trace.
    pub fn ingest(&self, headers: &HeaderMap, source: &str) -> IngestSpan {
        let parent = incoming_context(headers);
        let span = self
            .tracer
            .span_builder("ingest")
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new("hookgate.source", source.to_string())])
            .start_with_context(&self.tracer, &parent);
        IngestSpan {
            tracer: self.tracer.clone(),
            cx: parent.with_span(span),
        }
    }

    /// Starts the `delivery.attempt` span of `item`, a child of its message's
    /// stored context.
    pub fn attempt(&self, item: &Leased) -> AttemptSpan {
        let parent = stored_context(&item.message.headers);
        let span = self
            .tracer
            .span_builder("delivery.attempt")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("hookgate.destination", item.destination.clone()),
                KeyValue::new("hookgate.message_id", item.message.id.to_string()),
                KeyValue::new("hookgate.delivery_id", item.delivery_id),
                KeyValue::new("hookgate.attempt", i64::from(item.attempt)),
            ])
            .start_with_context(&self.tracer, &parent);
        AttemptSpan {
            cx: parent.with_span(span),
        }
    }

    /// Records a `store.lease` call of `destination` that began at `started`
    /// and leased `items` (linked to their messages' traces), or failed with
    /// `error`. A lease that found nothing is not recorded: idle workers poll.
    pub fn lease(
        &self,
        destination: &str,
        started: SystemTime,
        items: &[Leased],
        error: Option<&str>,
    ) {
        if items.is_empty() && error.is_none() {
            return;
        }
        let links = items
            .iter()
            .map(|i| {
                stored_context(&i.message.headers)
                    .span()
                    .span_context()
                    .clone()
            })
            .filter(|sc| sc.is_valid())
            .map(Link::with_context)
            .collect();
        let mut span = self
            .tracer
            .span_builder("store.lease")
            .with_kind(SpanKind::Internal)
            .with_start_time(started)
            .with_links(links)
            .with_attributes([
                KeyValue::new("hookgate.destination", destination.to_string()),
                KeyValue::new("hookgate.count", items.len() as i64),
            ])
            .start_with_context(&self.tracer, &Context::new());
        if let Some(e) = error {
            span.set_status(Status::error(e.to_string()));
        }
        span.end();
    }
}

/// The `ingest` span of one request, with the context its children and the
/// stored message take.
pub struct IngestSpan {
    tracer: SdkTracer,
    cx: Context,
}

impl IngestSpan {
    /// Starts a child (`verify`, `store.commit`); it ends when dropped.
    pub fn child(&self, name: &'static str) -> opentelemetry_sdk::trace::Span {
        self.tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .start_with_context(&self.tracer, &self.cx)
    }

    /// The headers stored with the message so that its attempts continue
    /// this trace: `hookgate-traceparent` and, when there is one,
    /// `hookgate-tracestate`.
    pub fn stored_headers(&self) -> Vec<(String, String)> {
        let mut out = PrefixedInjector(Vec::with_capacity(2));
        TraceContextPropagator::new().inject_context(&self.cx, &mut out);
        out.0
    }

    /// Ends the span with what came of the request.
    pub fn end(self, outcome: Option<&'static str>, status: u16, message_id: Option<&str>) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if let Some(o) = outcome {
            span.set_attribute(KeyValue::new("hookgate.outcome", o));
        }
        if let Some(id) = message_id {
            span.set_attribute(KeyValue::new("hookgate.message_id", id.to_string()));
        }
        if status >= 500 {
            span.set_status(Status::error(format!("answered {status}")));
        }
        span.end();
    }
}

/// The `delivery.attempt` span of one attempt.
pub struct AttemptSpan {
    cx: Context,
}

impl AttemptSpan {
    /// Sets the request's `traceparent` (and `tracestate`) to this attempt's,
    /// replacing forwarded ones.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.remove("traceparent");
        headers.remove("tracestate");
        TraceContextPropagator::new().inject_context(&self.cx, &mut HeaderInjector(headers));
    }

    /// Ends the span with the attempt's result: its status, what follows
    /// (`delivered`, `retry`, `dead`) and why no answer came.
    pub fn end(self, status: Option<u16>, outcome: &'static str, error: Option<&str>) {
        let span = self.cx.span();
        if let Some(s) = status {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(s)));
        }
        span.set_attribute(KeyValue::new("hookgate.outcome", outcome));
        if let Some(e) = error {
            span.set_attribute(KeyValue::new("hookgate.error", e.to_string()));
        }
        if outcome != "delivered" {
            let why = error
                .map(str::to_string)
                .or_else(|| status.map(|s| format!("answered {s}")))
                .unwrap_or_else(|| outcome.to_string());
            span.set_status(Status::error(why));
        }
        span.end();
    }
}

/// The context of an incoming request's `traceparent` and `tracestate`; an
/// empty context (a new trace) when there is none or it is not valid.
pub fn incoming_context(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract_with_context(&Context::new(), &HeaderExtractor(headers))
}

/// The context stored with a message (`hookgate-traceparent`); failing that,
/// the `traceparent` it was received with; else an empty context.
pub fn stored_context(encoded: &[u8]) -> Context {
    let headers = decode_headers(encoded);
    let prefixed = headers
        .iter()
        .any(|(k, _)| k.strip_prefix(STORED) == Some("traceparent"));
    let extractor = StoredExtractor {
        headers: &headers,
        prefix: if prefixed { STORED } else { "" },
    };
    TraceContextPropagator::new().extract_with_context(&Context::new(), &extractor)
}

/// An endpoint as logs and `check` show it: scheme, host and port, never a
/// credential or path a URL may carry.
pub fn shown(endpoint: &str) -> String {
    url::Url::parse(endpoint.trim()).map_or_else(
        |_| "(not a URL)".to_string(),
        |u| u.origin().ascii_serialization(),
    )
}

/// Whether `v` has the shape W3C Trace Context gives a `traceparent`:
/// `vv-<32 hex>-<16 hex>-ff`, lowercase, version not `ff`, exactly that for
/// version `00` and followed by nothing or `-…` for later versions. The SDK's
/// propagator takes shorter ids, signs and one-digit fields too; such a
/// header is not continued but starts a new trace, as the standard says.
/// (Zero ids and the flags are the propagator's to refuse.)
pub fn well_formed_traceparent(v: &str) -> bool {
    let b = v.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b[r].iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    b.len() >= 55
        && hex(0..2)
        && &b[0..2] != b"ff"
        && b[2] == b'-'
        && hex(3..35)
        && b[35] == b'-'
        && hex(36..52)
        && b[52] == b'-'
        && hex(53..55)
        && (b.len() == 55 || (&b[0..2] != b"00" && b[55] == b'-'))
}

/// Gives the propagator `traceparent` only when it is well formed.
fn checked<'a>(key: &str, value: Option<&'a str>) -> Option<&'a str> {
    value.filter(|v| key != "traceparent" || well_formed_traceparent(v.trim()))
}

/// Reads the trace headers of a request.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        checked(key, self.0.get(key).and_then(|v| v.to_str().ok()))
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes the trace headers of a request.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Writes trace headers under the stored names (`hookgate-traceparent`).
struct PrefixedInjector(Vec<(String, String)>);

impl Injector for PrefixedInjector {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((format!("{STORED}{key}"), value));
    }
}

/// Reads trace headers from a stored message's headers, under `prefix`; the
/// last of a name counts (the gateway's own comes after the received ones).
struct StoredExtractor<'a> {
    headers: &'a [(String, Vec<u8>)],
    prefix: &'static str,
}

impl Extractor for StoredExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = self
            .headers
            .iter()
            .rev()
            .find(|(k, _)| {
                k.strip_prefix(self.prefix)
                    .is_some_and(|k| k.eq_ignore_ascii_case(key))
            })
            .and_then(|(_, v)| std::str::from_utf8(v).ok());
        checked(key, value)
    }

    fn keys(&self) -> Vec<&str> {
        self.headers.iter().map(|(k, _)| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::encode_headers;
    use opentelemetry::trace::{SpanId, TraceId};

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn parent_of(value: &[u8]) -> Option<(TraceId, SpanId)> {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_bytes(value).ok()?);
        let cx = incoming_context(&h);
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
    }

    #[test]
    fn a_valid_traceparent_is_continued() {
        let (t, s) = parent_of(format!("00-{TRACE}-{SPAN}-01").as_bytes()).unwrap();
        assert_eq!(t, TraceId::from_hex(TRACE).unwrap());
        assert_eq!(s, SpanId::from_hex(SPAN).unwrap());
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_str(&format!("00-{TRACE}-{SPAN}-01")).unwrap(),
        );
        h.insert("tracestate", HeaderValue::from_static("vendor=abc"));
        let cx = incoming_context(&h);
        assert!(cx.span().span_context().is_sampled());
        assert!(cx.span().span_context().is_remote());
        assert_eq!(
            cx.span().span_context().trace_state().get("vendor"),
            Some("abc")
        );
    }

    /// Hostile or broken `traceparent`s start a new trace: never a panic,
    /// never a parent.
    #[test]
    fn hostile_traceparents_are_ignored() {
        let long = format!("00-{TRACE}-{SPAN}-01{}", "-a".repeat(10_000));
        let huge_ids = format!("00-{}-{}-01", "a".repeat(5000), "b".repeat(5000));
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"garbage".to_vec(),
            b"00".to_vec(),
            b"----".to_vec(),
            format!("00-{TRACE}-{SPAN}").into_bytes(),
            format!("00-{TRACE}-{SPAN}-01-extra").into_bytes(),
            format!("ff-{TRACE}-{SPAN}-01").into_bytes(),
            format!("zz-{TRACE}-{SPAN}-01").into_bytes(),
            format!("00-{}-{SPAN}-01", "0".repeat(32)).into_bytes(),
            format!("00-{TRACE}-{}-01", "0".repeat(16)).into_bytes(),
            format!("00-{}-{SPAN}-01", TRACE.to_uppercase()).into_bytes(),
            format!("00-{}-{SPAN}-01", &TRACE[..31]).into_bytes(),
            format!("00-{TRACE}-{SPAN}-zz").into_bytes(),
            format!("00-{TRACE}g-{SPAN}-01").into_bytes(),
            format!("00-+{}-{SPAN}-01", &TRACE[1..]).into_bytes(),
            format!("0-{TRACE}-{SPAN}-01").into_bytes(),
            format!("00-{TRACE}-{SPAN}-1").into_bytes(),
            format!("00-{TRACE}-{SPAN}-03").into_bytes(),
            format!("00-{TRACE}-{SPAN}-01-").into_bytes(),
            format!("00_{TRACE}_{SPAN}_01").into_bytes(),
            long.into_bytes(),
            huge_ids.into_bytes(),
            vec![0xff, 0xfe, b'-', 0x80],
        ];
        for c in cases {
            assert_eq!(parent_of(&c), None, "{:?}", String::from_utf8_lossy(&c));
        }
    }

    /// A later version is read by its first four fields, as the standard asks.
    #[test]
    fn a_later_version_is_read_by_its_known_fields() {
        let (t, _) = parent_of(format!("01-{TRACE}-{SPAN}-01-what-comes-next").as_bytes()).unwrap();
        assert_eq!(t, TraceId::from_hex(TRACE).unwrap());
        assert!(parent_of(format!("01-{TRACE}-{SPAN}-01x").as_bytes()).is_none());
    }

    #[test]
    fn the_stored_context_wins_over_the_received_one() {
        let other = "0af7651916cd43dd8448eb211c80319c";
        let stored = encode_headers(
            [
                ("traceparent", format!("00-{other}-{SPAN}-01")),
                ("hookgate-traceparent", format!("00-{TRACE}-{SPAN}-01")),
            ]
            .iter()
            .map(|(k, v)| (*k, v.as_bytes())),
        );
        let sc = stored_context(&stored).span().span_context().clone();
        assert_eq!(sc.trace_id(), TraceId::from_hex(TRACE).unwrap());
        let received = encode_headers(
            [("traceparent", format!("00-{other}-{SPAN}-01"))]
                .iter()
                .map(|(k, v)| (*k, v.as_bytes())),
        );
        let sc = stored_context(&received).span().span_context().clone();
        assert_eq!(sc.trace_id(), TraceId::from_hex(other).unwrap());
        assert!(!stored_context(b"\x00\x00").span().span_context().is_valid());
    }

    proptest::proptest! {
        #[test]
        fn any_traceparent_parses_without_panic(v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parent_of(&v);
            let _ = stored_context(&v);
        }
    }
}
