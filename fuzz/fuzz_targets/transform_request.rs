//! A stored message of any bytes, under each content type, made into a
//! transformation's request object, run through a script that reads every
//! part of it, and its answer made into the request to send: never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use hookgate::transform::request::Parts;
use hookgate::transform::{Delivery, Engine, Limits, Request, Script};
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 4] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/cloudevents+json",
];

fuzz_target!(|data: &[u8]| {
    static ENGINE: OnceLock<(Arc<Engine>, Arc<Script>)> = OnceLock::new();
    let (engine, script) = ENGINE.get_or_init(|| {
        let script = Script::new(
            "fuzz",
            "function transform(r) { const b = r.body; \
             r.body = typeof b === 'object' && b !== null ? {keys: Object.keys(b), h: r.headers, q: r.query} : String(b); \
             return r; }",
            Limits::default(),
        );
        (Engine::start(1), Arc::new(script))
    });
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let (header, body) = rest.split_at(rest.len().min(24));
    let ct = TYPES[kind as usize % TYPES.len()];
    let headers = vec![
        ("hookgate-path".to_string(), header.to_vec()),
        (String::from_utf8_lossy(header).into_owned(), body.to_vec()),
    ];
    let req = Request::from_parts(Parts {
        source: "fuzz",
        event_type: None,
        content_type: Some(ct),
        headers: &headers,
        body,
    });
    if let Ok(Some(out)) = engine.run_blocking(script.clone(), &req, "msg_fuzz") {
        let _ = Delivery::from_output(&out, Some(ct));
    }
});
