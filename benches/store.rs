//! Micro-benchmarks of the embedded store, on a real file with real syncs:
//! - `append`: 1 KiB messages, N at once, so group commit folds them into one
//!   transaction and one sync (throughput is messages);
//! - `lease`: picking due work from a store holding 100,000 pending deliveries
//!   (only the lease is timed; the batch is released again between samples).
//!
//! Run with `cargo bench --bench store`. Figures depend on the disk's sync time.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use hookgate::config::Priority;
use hookgate::store::sqlite::SqliteStore;
use hookgate::store::{encode_headers, now_millis, MessageId, NewDelivery, NewMessage, Store};

const DESTINATION: &str = "sink";
const PENDING: usize = 100_000;

fn message(body: &Bytes, now: i64) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        source: "bench".into(),
        event_type: Some("order.created".into()),
        received_at: now,
        content_type: Some("application/json".into()),
        headers: encode_headers(
            [
                ("content-type", &b"application/json"[..]),
                ("x-signature", &b"0123456789abcdef0123456789abcdef"[..]),
            ]
            .into_iter(),
        ),
        body: body.clone(),
        dedup: None,
        deliveries: vec![NewDelivery {
            destination: DESTINATION.into(),
            due_at: now,
            priority: Priority::Normal,
            ordering_key: None,
        }],
    }
}

fn body() -> Bytes {
    let (b, _) = hookgate::bench::load::body_template(1024).expect("1 KiB fits");
    Bytes::from(b)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn append_all(store: &Arc<SqliteStore>, body: &Bytes, n: usize) {
    let now = now_millis();
    let calls = (0..n).map(|_| {
        let s = store.clone();
        let m = message(body, now);
        async move { s.append(m).await.expect("append") }
    });
    futures::future::join_all(calls).await;
}

fn append(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("bench.db")).unwrap());
    let body = body();
    let mut g = c.benchmark_group("store-append-1KiB");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for n in [1usize, 16, 128] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("concurrent", n), &n, |b, &n| {
            b.to_async(&rt).iter(|| append_all(&store, &body, n))
        });
    }
    g.finish();
    rt.block_on(store.close());
}

fn lease(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("bench.db")).unwrap());
    let body = body();
    let t = Instant::now();
    rt.block_on(async {
        for _ in 0..PENDING / 1000 {
            append_all(&store, &body, 1000).await;
        }
    });
    eprintln!(
        "store-lease: {PENDING} pending deliveries written in {:?}",
        t.elapsed()
    );
    let mut g = c.benchmark_group("store-lease-100k-pending");
    for limit in [1usize, 32, 256] {
        g.throughput(Throughput::Elements(limit as u64));
        g.bench_with_input(BenchmarkId::new("limit", limit), &limit, |b, &limit| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = store.clone();
                async move {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let now = now_millis();
                        let t = Instant::now();
                        let batch = store
                            .lease(DESTINATION, now, limit, 60_000)
                            .await
                            .expect("lease");
                        spent += t.elapsed();
                        let ids = black_box(batch)
                            .items
                            .iter()
                            .map(|l| l.delivery_id)
                            .collect();
                        store.release(ids).await.expect("release");
                    }
                    spent
                }
            })
        });
    }
    g.finish();
    rt.block_on(store.close());
}

criterion_group!(benches, append, lease);
criterion_main!(benches);
