//! The embedded store alone, at full speed: 256 tasks appending 1 KiB messages
//! and (unless `noconsume`) four consumers leasing and completing them, for N
//! seconds; prints appends/s, completions/s, commits/s, writes per commit and
//! the writer's busy share. The figures of the README's "what was optimised"
//! list for the store come from it.
//!
//! `cargo run --release --example store_probe -- [SECONDS] [noconsume]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate::config::Priority;
use hookgate::store::sqlite::SqliteStore;
use hookgate::store::*;

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
            destination: "sink".into(),
            due_at: now,
            priority: Priority::Normal,
            ordering_key: None,
        }],
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let consume = std::env::args().nth(2).is_none_or(|a| a != "noconsume");
    let dir = tempfile::tempdir().unwrap();
    let commits = Arc::new(AtomicU64::new(0));
    let jobs = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let (c2, j2, b2) = (commits.clone(), jobs.clone(), busy.clone());
    let store = Arc::new(
        SqliteStore::open_with(
            dir.path().join("p.db"),
            Arc::new(move |d: Duration, n| {
                c2.fetch_add(1, Ordering::Relaxed);
                j2.fetch_add(n as u64, Ordering::Relaxed);
                b2.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
            }),
        )
        .unwrap(),
    );
    let body = Bytes::from(vec![b'x'; 1024]);
    let appended = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(secs);
    let mut tasks = vec![];
    for _ in 0..256 {
        let (s, b, a) = (store.clone(), body.clone(), appended.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                s.append(message(&b, now_millis())).await.unwrap();
                a.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    if consume {
        for _ in 0..4 {
            let (s, c) = (store.clone(), completed.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < stop {
                    let b = s.lease("sink", now_millis(), 64, 30_000).await.unwrap();
                    if b.items.is_empty() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    let futs = b.items.iter().map(|l| {
                        s.complete(vec![AttemptResult {
                            delivery_id: l.delivery_id,
                            attempt: l.attempt,
                            started_at: now_millis(),
                            duration_us: 100,
                            status: Some(200),
                            response_body: Some(Bytes::from_static(b"ok")),
                            response_headers: None,
                            error: None,
                            next: Next::Delivered,
                        }])
                    });
                    for r in futures::future::join_all(futs).await {
                        r.unwrap();
                    }
                    c.fetch_add(b.items.len() as u64, Ordering::Relaxed);
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (a, c, n, j, bz) = (
        appended.load(Ordering::Relaxed),
        completed.load(Ordering::Relaxed),
        commits.load(Ordering::Relaxed),
        jobs.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed),
    );
    println!("appends/s {:.0} completes/s {:.0} commits/s {:.0} jobs/commit {:.1} writer busy {:.0}% us/job {:.1}",
        a as f64 / secs as f64, c as f64 / secs as f64, n as f64 / secs as f64, j as f64 / n.max(1) as f64, bz as f64 / (secs as f64 * 1e6) * 100.0, bz as f64 / j.max(1) as f64);
    store.close().await;
}
