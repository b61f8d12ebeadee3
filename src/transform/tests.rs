//! The engine's limits and sandbox, each contained with a clear error, and
//! random payloads through a transformation without a panic.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::json;

use super::request::Parts;
use super::*;

fn script(code: &str) -> Arc<Script> {
    Arc::new(Script::new("t", code, Limits::default()))
}

fn request(body: serde_json::Value) -> Request {
    let text = body.to_string();
    let headers = vec![
        ("Content-Type".to_string(), b"application/json".to_vec()),
        (
            "X-Telegram-Bot-Api-Secret-Token".to_string(),
            b"s3cret".to_vec(),
        ),
        ("X-Slack-Retry-Num".to_string(), b"1".to_vec()),
    ];
    Request::from_parts(Parts {
        source: "tg",
        event_type: Some("private"),
        content_type: Some("application/json"),
        headers: &headers,
        body: text.as_bytes(),
    })
}

fn run(code: &str) -> Result<Option<serde_json::Value>, TransformError> {
    let engine = Engine::start(1);
    engine.run_blocking(script(code), &request(json!({"a": 1})), "msg_1")
}

#[test]
fn a_transformation_reshapes_the_request() {
    let out = run("function transform(r, c) { r.body = {a: r.body.a + 1, id: c.message_id, src: r.source, et: r.event_type}; return r; }")
        .unwrap()
        .unwrap();
    assert_eq!(
        out["body"],
        json!({"a": 2, "id": "msg_1", "src": "tg", "et": "private"})
    );
}

#[test]
fn secret_headers_are_not_given_to_the_script() {
    let out = run("function transform(r) { return {body: r.headers}; }")
        .unwrap()
        .unwrap();
    let h = out["body"].as_object().unwrap();
    assert_eq!(h["x-slack-retry-num"], "1");
    assert!(!h.contains_key("x-telegram-bot-api-secret-token"), "{h:?}");
}

#[test]
fn null_drops_and_undefined_is_an_error() {
    assert_eq!(run("function transform(r) { return null; }"), Ok(None));
    let e = run("function transform(r) { }").unwrap_err();
    assert!(matches!(e, TransformError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("returned nothing"), "{e}");
    let e = run("function transform(r) { return 7; }").unwrap_err();
    assert!(e.to_string().contains("returned a number"), "{e}");
}

#[test]
fn a_throw_is_contained_with_its_message() {
    let e = run("function transform(r) { throw new TypeError('no chat in update'); }").unwrap_err();
    assert!(
        e.to_string().contains("threw TypeError: no chat in update"),
        "{e}"
    );
    let e = run("function transform(r) { throw 'plain'; }").unwrap_err();
    assert!(e.to_string().contains("\"plain\""), "{e}");
}

#[test]
fn an_endless_loop_costs_one_timeout_and_the_thread_goes_on() {
    let engine = Engine::start(1);
    let t0 = Instant::now();
    let e = engine
        .run_blocking(
            script("function transform(r) { while (true) {} }"),
            &request(json!({})),
            "m",
        )
        .unwrap_err();
    assert_eq!(e, TransformError::Timeout(DEFAULT_TIMEOUT));
    assert!(e.to_string().contains("50ms"), "{e}");
    // Stopped near the limit, not after seconds.
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // The same thread runs the next script.
    let ok = engine
        .run_blocking(
            script("function transform(r) { return r; }"),
            &request(json!({})),
            "m",
        )
        .unwrap();
    assert!(ok.is_some());
    // A loop at the top level of the script is stopped too.
    let e = engine
        .run_blocking(
            script("for (;;) {} function transform(r) { return r; }"),
            &request(json!({})),
            "m",
        )
        .unwrap_err();
    assert!(matches!(e, TransformError::Timeout(_)), "{e}");
}

#[test]
fn a_gibibyte_allocation_is_refused() {
    let e = run("function transform(r) { const a = new Array(1024 * 1024 * 128).fill(1.5); let s = 'x'; while (true) { s = s + s; } }")
        .unwrap_err();
    assert!(matches!(e, TransformError::Memory(DEFAULT_MEMORY)), "{e}");
    assert!(e.to_string().contains("out of memory"), "{e}");
    let e = run("function transform(r) { new ArrayBuffer(1024 * 1024 * 1024); return r; }")
        .unwrap_err();
    assert!(matches!(e, TransformError::Memory(_)), "{e}");
    // Within the limit, the same kind of work runs.
    assert!(run("function transform(r) { new ArrayBuffer(1024 * 1024); return r; }").is_ok());
}

#[test]
fn no_require_fetch_process_or_import() {
    for (call, name) in [
        ("require('fs')", "require"),
        ("fetch('http://127.0.0.1/')", "fetch"),
        ("process.env.HOME", "process"),
    ] {
        let e = run(&format!(
            "function transform(r) {{ return {{body: {call}}}; }}"
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("ReferenceError: {name} is not defined")),
            "{call}: {e}"
        );
    }
    let e = run("import('os'); function transform(r) { return r; }");
    // A dynamic import has no loader to answer it: never a module.
    if let Ok(Some(v)) = &e {
        assert!(v.get("body").is_some());
    }
    let e = run("import * as os from 'os'; function transform(r) { return r; }").unwrap_err();
    assert!(e.to_string().contains("SyntaxError"), "{e}");
}

#[test]
fn a_script_without_transform_says_so() {
    assert_eq!(run("var x = 1;"), Err(TransformError::NoFunction));
    let e = run("function transform(r) { return r").unwrap_err();
    assert!(e.to_string().contains("SyntaxError"), "{e}");
}

#[test]
fn helpers_encode_hash_and_log() {
    let out = run(
        "function transform(r) { console.log('seen', r.body); return {body: {
            b: base64.encode('hi'), bd: base64.decode('aGk='), h: hex.encode('hi'), hd: hex.decode('6869'),
            s: sha256('abc'), m: hmacSha256('key', 'The quick brown fox jumps over the lazy dog'),
            u: urlEncode('a b&c'), ud: urlDecode('a+b%26c'), bad: base64.decode('%%') === undefined }}; }",
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        out["body"],
        json!({
            "b": "aGk=", "bd": "hi", "h": "6869", "hd": "hi",
            "s": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "m": "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
            "u": "a%20b%26c", "ud": "a b&c", "bad": true
        })
    );
}

#[test]
fn a_new_version_replaces_the_compiled_one() {
    let engine = Engine::start(1);
    let v1 = Arc::new(Script::new(
        "same",
        "function transform(r) { return {body: 1}; }",
        Limits::default(),
    ));
    let v2 = Arc::new(Script::new(
        "same",
        "function transform(r) { return {body: 2}; }",
        Limits::default(),
    ));
    let r = request(json!({}));
    assert_eq!(
        engine.run_blocking(v1.clone(), &r, "m").unwrap().unwrap()["body"],
        1
    );
    assert_eq!(
        engine.run_blocking(v2, &r, "m").unwrap().unwrap()["body"],
        2
    );
    assert_eq!(
        engine.run_blocking(v1, &r, "m").unwrap().unwrap()["body"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_from_async_code_off_its_threads() {
    let engine = Engine::start(2);
    let s = script("function transform(r) { r.body.n = r.body.n * 2; return r; }");
    let mut tasks = Vec::new();
    for n in 0..50 {
        let engine = engine.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            engine.run(s, &request(json!({"n": n})), "m").await
        }));
    }
    for (n, t) in tasks.into_iter().enumerate() {
        let out = t.await.unwrap().unwrap().unwrap();
        assert_eq!(out["body"]["n"], n * 2);
    }
}

#[test]
fn form_and_text_bodies() {
    let headers = vec![(
        "hookgate-path".to_string(),
        b"/in/sms/x?a=1&a=2&b=3".to_vec(),
    )];
    let r = Request::from_parts(Parts {
        source: "sms",
        event_type: None,
        content_type: Some("application/x-www-form-urlencoded"),
        headers: &headers,
        body: b"From=%2B15551234567&Body=Hello+there",
    });
    assert_eq!(r.path, "/in/sms/x");
    assert_eq!(
        r.query,
        json!({"a": ["1", "2"], "b": "3"})
            .as_object()
            .unwrap()
            .clone()
    );
    assert_eq!(
        r.body,
        json!({"From": "+15551234567", "Body": "Hello there"})
    );
    assert!(r.headers.is_empty());
    let t = Request::from_parts(Parts {
        source: "s",
        event_type: None,
        content_type: Some("text/plain"),
        headers: &[],
        body: b"{\"not\": \"parsed\"}",
    });
    assert_eq!(t.body, json!("{\"not\": \"parsed\"}"));
    assert_eq!((t.method.as_str(), t.path.as_str()), ("POST", "/in/s"));
}

#[test]
fn output_becomes_a_delivery() {
    let d = Delivery::from_output(
        &json!({"body": {"x": 1}, "headers": {"X-A": "1", "content-type": "text/plain"}, "event_type": "e"}),
        Some("application/x-www-form-urlencoded"),
    )
    .unwrap();
    assert_eq!(&d.body[..], b"{\"x\":1}");
    assert_eq!(d.content_type.as_deref(), Some("application/json"));
    assert_eq!(d.headers, [("x-a".to_string(), "1".to_string())]);
    assert_eq!(d.event_type.as_deref(), Some("e"));
    let d = Delivery::from_output(&json!({"body": "plain"}), Some("text/csv")).unwrap();
    assert_eq!(
        (&d.body[..], d.content_type.as_deref()),
        (&b"plain"[..], Some("text/csv"))
    );
    for bad in [
        json!({"headers": "x"}),
        json!({"headers": {"bad name": "v"}}),
        json!({"headers": {"a": "\n"}}),
        json!({"headers": {"a": {}}}),
        json!({"event_type": 1}),
    ] {
        assert!(Delivery::from_output(&bad, None).is_err(), "{bad}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Whatever the payload, content type and headers, a realistic
    /// transformation gives a request to send (or a drop), never an error or a panic.
    #[test]
    fn random_payloads_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        ct in prop::sample::select(vec!["application/json", "application/x-www-form-urlencoded", "text/plain", ""]),
        header in "[a-zA-Z-]{1,12}",
        // Any value HTTP lets a header have (visible ASCII, space, obs-text).
        value in proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff], 0..40),
    ) {
        thread_local! {
            static ENGINE: Arc<Engine> = Engine::start(1);
        }
        let s = Arc::new(Script::new(
            "p",
            "function transform(r) {
                const b = r.body;
                if (typeof b === 'string') { return {body: {text: b, len: b.length, h: sha256(b)}}; }
                if (b && typeof b === 'object') { r.body = {keys: Object.keys(b), first: b[Object.keys(b)[0]] ?? null}; return r; }
                return b === null ? null : {body: String(b)};
            }",
            Limits::default(),
        ));
        let headers = vec![(header, value)];
        let r = Request::from_parts(Parts {
            source: "s",
            event_type: None,
            content_type: (!ct.is_empty()).then_some(ct),
            headers: &headers,
            body: &body,
        });
        let out = ENGINE.with(|e| e.run_blocking(s, &r, "m"));
        match out {
            Ok(Some(v)) => { Delivery::from_output(&v, Some(ct)).map_err(TestCaseError::fail)?; }
            Ok(None) => {}
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}
