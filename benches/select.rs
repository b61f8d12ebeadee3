//! Micro-benchmarks of selectors on real provider payloads (`tests/fixtures/`):
//! what ingest does per request to find the event type, dedup key and ordering
//! key — wrap the request, parse the body once, evaluate each selector.
//!
//! Run with `cargo bench --bench select`.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue};

use hookgate::select::{Inbound, Selector};

/// A fixture's headers and body bytes (JSON bodies serialized compactly, form
/// bodies as written).
fn fixture(name: &str) -> (HeaderMap, Vec<u8>) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let mut headers = HeaderMap::new();
    if let Some(obj) = v["headers"].as_object() {
        for (k, val) in obj {
            if let (Ok(k), Some(Ok(val))) = (
                HeaderName::from_bytes(k.as_bytes()),
                val.as_str().map(HeaderValue::from_str),
            ) {
                headers.append(k, val);
            }
        }
    }
    if let Some(ct) = v["content_type"].as_str() {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(ct).unwrap(),
        );
    }
    let body = match &v["body"] {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        other => serde_json::to_vec(other).unwrap(),
    };
    (headers, body)
}

fn selectors(c: &mut Criterion) {
    let cases: [(&str, &[&str]); 5] = [
        (
            "telegram-message.json",
            &["body:/update_id", "body:/message/chat/id"],
        ),
        (
            "stripe-payment_intent.succeeded.json",
            &["body:/type", "body:/id"],
        ),
        (
            "github-pull_request-opened.json",
            &[
                "header:X-GitHub-Event",
                "header:X-GitHub-Delivery",
                "body:/pull_request/head/sha",
            ],
        ),
        (
            "shopify-orders-create.json",
            &[
                "header:X-Shopify-Topic",
                "header:X-Shopify-Webhook-Id",
                "body:/customer/id",
            ],
        ),
        (
            "twilio-sms-received.json",
            &["form:MessageStatus", "form:MessageSid", "form:From"],
        ),
    ];
    let mut g = c.benchmark_group("select");
    for (file, sels) in cases {
        let (headers, body) = fixture(file);
        let sels: Vec<Selector> = sels.iter().map(|s| s.parse().unwrap()).collect();
        let probe = Inbound::new(&headers, None, &body);
        let found = sels
            .iter()
            .filter(|s| probe.select_key(s).is_some())
            .count();
        if found == 0 {
            eprintln!("select/{file}: no selector finds a value in this fixture");
        }
        g.throughput(Throughput::Bytes(body.len() as u64));
        let name = file.trim_end_matches(".json");
        g.bench_function(name, |b| {
            b.iter(|| {
                let inbound = Inbound::new(black_box(&headers), None, black_box(&body));
                let keys: Vec<Option<String>> =
                    sels.iter().map(|s| inbound.select_key(s)).collect();
                black_box(keys)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, selectors);
criterion_main!(benches);
