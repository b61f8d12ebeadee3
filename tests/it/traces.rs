//! W3C trace context on the way through the gateway, in-process. The spans
//! themselves, decoded by an OTLP receiver, are checked by
//! `tests/traces/traces.py` against the real binary.

use std::time::Duration;

use crate::harness::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

async fn post_traced(gw: &Gateway) -> String {
    let r = client()
        .post(gw.ingest_url("app"))
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header("tracestate", "provider=abc")
        .body(r#"{"n":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    message_id(&r)
}

/// With tracing off, the received `traceparent` and `tracestate` reach the
/// destination unchanged (as any forwarded header), and nothing is added to
/// the stored message.
#[tokio::test]
async fn with_tracing_off_the_incoming_traceparent_reaches_the_destination_unchanged() {
    let rx = Receiver::start().await;
    let mut gw = Gateway::start(&app_to_svc(&rx, None, "")).await;
    let id = post_traced(&gw).await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let expected = format!("00-{TRACE}-{PARENT}-01");
    assert_eq!(got[0].header("traceparent"), Some(expected.as_str()));
    assert_eq!(got[0].header("tracestate"), Some("provider=abc"));
    assert_eq!(got[0].header("hookgate-traceparent"), None);
    let (_, m) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
    let headers = m["headers"].as_object().unwrap();
    assert_eq!(headers["traceparent"], expected.as_str());
    assert!(
        !headers.keys().any(|k| k.starts_with("hookgate-trace")),
        "{headers:?}"
    );
    gw.stop().await;
}

/// With tracing off and `forward_headers = "none"`, trace context goes as
/// every other received header: not at all.
#[tokio::test]
async fn with_tracing_off_forward_headers_none_holds_back_the_traceparent() {
    let rx = Receiver::start().await;
    let mut gw = Gateway::start(&app_to_svc(&rx, None, "forward_headers = \"none\"")).await;
    post_traced(&gw).await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("traceparent"), None);
    assert_eq!(got[0].header("tracestate"), None);
    gw.stop().await;
}

/// With tracing on, the destination gets the same trace with a new parent
/// (the attempt's span), the message keeps its ingest span's context in
/// `hookgate-traceparent`, and the spans are posted to the OTLP endpoint's
/// `/v1/traces` as protobuf by the shutdown at the latest.
#[tokio::test]
async fn with_tracing_on_the_destination_continues_the_trace() {
    let rx = Receiver::start().await;
    let otlp = Receiver::start().await;
    // An empty ExportTraceServiceResponse: all spans accepted.
    otlp.respond(|_| (200, vec![], String::new()));
    let config = format!(
        "[telemetry]\notlp_endpoint = \"{}\"\n{}",
        otlp.url(""),
        app_to_svc(&rx, None, "forward_headers = \"none\"")
    );
    let mut gw = Gateway::start(&config).await;
    let id = post_traced(&gw).await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let sent = got[0]
        .header("traceparent")
        .expect("a traceparent")
        .to_string();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE, "01"),
        "{sent}"
    );
    assert_ne!(
        parts[2], PARENT,
        "the attempt is the parent, not the sender"
    );
    assert_eq!(got[0].header("tracestate"), Some("provider=abc"));
    assert_eq!(got[0].header("hookgate-traceparent"), None);
    let (_, m) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
    let stored = m["headers"]["hookgate-traceparent"].as_str().unwrap();
    let stored: Vec<&str> = stored.split('-').collect();
    assert_eq!(stored[1], TRACE);
    assert_ne!(stored[2], PARENT, "the ingest span's own id");
    assert_ne!(stored[2], parts[2]);
    assert_eq!(m["headers"]["hookgate-tracestate"], "provider=abc");
    gw.stop().await;
    let posts = otlp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(posts[0].path, "/v1/traces");
    assert_eq!(
        posts[0].header("content-type"),
        Some("application/x-protobuf")
    );
    assert!(
        posts[0]
            .body
            .windows(16)
            .any(|w| w == hex::decode(TRACE).unwrap()),
        "the spans carry the trace id"
    );
}
