//! The cost per message of a transformation, as the dispatcher pays it: the
//! request object made from the stored message, the run on the engine's pool
//! (a round trip to a pool thread, JSON in and out of QuickJS), and the answer
//! turned into the request to send. A trivial script (return the request) and
//! a realistic one (the documented Telegram example on a real update), and the
//! throughput of the pool with every thread busy.
//!
//! Run with `cargo bench --bench transform`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use hookgate::transform::request::Parts;
use hookgate::transform::{Delivery, Engine, Limits, Request, Script};

/// A fixture's content type and body bytes.
fn fixture(name: &str) -> (String, Vec<u8>) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let body = match &v["body"] {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        other => serde_json::to_vec(other).unwrap(),
    };
    (v["content_type"].as_str().unwrap().to_string(), body)
}

fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/transforms")
            .join(name),
    )
    .unwrap()
}

/// One message through a script, as the dispatcher does it.
fn once(engine: &Engine, script: &Arc<Script>, ct: &str, body: &[u8]) -> Delivery {
    let headers = vec![("user-agent".to_string(), b"TelegramBot".to_vec())];
    let req = Request::from_parts(Parts {
        source: "telegram",
        event_type: None,
        content_type: Some(ct),
        headers: &headers,
        body,
    });
    let out = engine
        .run_blocking(script.clone(), &req, "msg_01J0000000000000000000000")
        .unwrap()
        .unwrap();
    Delivery::from_output(&out, Some(ct)).unwrap()
}

fn per_message(c: &mut Criterion) {
    let (ct, body) = fixture("telegram-message.json");
    let engine = Engine::start(1);
    let trivial = Arc::new(Script::new(
        "trivial",
        "function transform(request) { return request; }",
        Limits::default(),
    ));
    let realistic = Arc::new(Script::new(
        "telegram-to-chat",
        example("telegram-to-chat.js"),
        Limits::default(),
    ));
    let mut g = c.benchmark_group("transform");
    g.throughput(Throughput::Elements(1));
    g.bench_function("trivial", |b| {
        b.iter(|| black_box(once(&engine, &trivial, &ct, &body)))
    });
    g.bench_function("telegram_to_chat", |b| {
        b.iter(|| black_box(once(&engine, &realistic, &ct, &body)))
    });
    g.finish();
}

/// Messages per second with every pool thread busy: as many callers as
/// threads, each running the realistic script in a loop.
fn saturated(c: &mut Criterion) {
    let (ct, body) = fixture("telegram-message.json");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let engine = Engine::start(threads);
    let realistic = Arc::new(Script::new(
        "telegram-to-chat",
        example("telegram-to-chat.js"),
        Limits::default(),
    ));
    const PER_CALLER: u64 = 200;
    let mut g = c.benchmark_group("transform_saturated");
    g.throughput(Throughput::Elements(PER_CALLER * threads as u64));
    g.sample_size(10);
    g.bench_function(format!("{threads}_threads"), |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        for _ in 0..PER_CALLER {
                            black_box(once(&engine, &realistic, &ct, &body));
                        }
                    });
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, per_message, saturated);
criterion_main!(benches);
