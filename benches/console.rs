//! Page times of the web console with a large embedded store (1,000,000
//! messages by default; `HOOKGATE_BENCH_MESSAGES` sets another count).
//!
//! The store is filled directly with SQL in one transaction (through the
//! store's own schema, which `SqliteStore::open` creates): an ingest of a
//! million messages would only make the setup slow, and the pages read what is
//! stored, not how it got there. Of the messages, 1% have a dead delivery with
//! three failed attempts, 1% are pending (to a paused destination), the rest are
//! delivered after one attempt; 0.1% have the event type `order.refunded`;
//! each has a dedup key (`evt_{n}`) as a Stripe source would keep.
//!
//! Then the gateway runs in this process (`hookgate::app::start`), a session
//! logs in through the login form, and each page is fetched over HTTP on
//! 127.0.0.1 as a browser would (the whole answer read). Every page must answer
//! 200: one that does not stops the bench.
//!
//! Run with `cargo bench --bench console`.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rusqlite::params;

use hookgate::store::sqlite::SqliteStore;
use hookgate::store::{encode_headers, MessageId, Store};

const TOKEN: &str = "bench-admin-token";
/// Received times start a day before the bench runs (inside the default
/// retention, so the gateway's cleanup leaves them be) and go up one
/// millisecond per message.
fn t0() -> i64 {
    hookgate::store::now_millis() - 86_400_000
}

fn messages() -> i64 {
    std::env::var("HOOKGATE_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Creates the store at `path` and fills it; returns a dead message's id, a
/// delivered one's, and a cursor-like position half-way down.
fn fill(path: &Path, n: i64, t0: i64) -> (MessageId, MessageId) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(path).unwrap();
        store.close().await;
    });
    let mut c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA synchronous = OFF").unwrap();
    let headers = encode_headers(
        [
            ("content-type", &b"application/json"[..]),
            (
                "user-agent",
                &b"Stripe/1.0 (+https://stripe.com/docs/webhooks)"[..],
            ),
            ("stripe-signature", &b"t=1790000000,v1=0123456789abcdef"[..]),
        ]
        .into_iter(),
    );
    let answer_headers = encode_headers(
        [
            ("content-type", &b"text/plain; charset=utf-8"[..]),
            ("date", &b"Mon, 21 Sep 2026 14:13:20 GMT"[..]),
            ("x-request-id", &b"4f1c2a9e-77b0-4d2b-9a51-0c3e6f1d2b7a"[..]),
        ]
        .into_iter(),
    );
    let tx = c.transaction().unwrap();
    let (mut dead, mut delivered) = (MessageId::new(), MessageId::new());
    {
        let mut msg = tx
            .prepare(
                "INSERT INTO messages (seq, id, source, event_type, received_at, content_type, headers, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'application/json', ?6, ?7)",
            )
            .unwrap();
        let mut del = tx
            .prepare(
                "INSERT INTO deliveries (id, message_seq, destination, status, priority, due_at,
                     attempts, created_at, finished_at)
                 VALUES (?1, ?1, ?2, ?3, 1, ?4, ?5, ?4, ?6)",
            )
            .unwrap();
        let mut key = tx
            .prepare(
                "INSERT INTO dedup (source, key, message_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .unwrap();
        let mut att = tx
            .prepare(
                "INSERT INTO attempts (delivery_id, attempt, started_at, duration_us, status, response_body, error, response_headers)
                 VALUES (?1, ?2, ?3, 12000, ?4, ?5, NULL, ?6)",
            )
            .unwrap();
        for seq in 1..=n {
            let id = MessageId::new();
            let at = t0 + seq;
            let source = if seq % 2 == 0 { "stripe" } else { "github" };
            let event = if seq % 1000 == 7 {
                "order.refunded"
            } else {
                "order.created"
            };
            let body = format!(
                r#"{{"id":"evt_{seq}","type":"{event}","data":{{"object":{{"amount":{},"currency":"eur","customer":"cus_{}"}}}}}}"#,
                seq % 9973,
                seq % 511
            );
            msg.execute(params![
                seq,
                id.to_string(),
                source,
                event,
                at,
                &headers[..],
                body.as_bytes()
            ])
            .unwrap();
            key.execute(params![
                source,
                format!("evt_{seq}"),
                id.to_string(),
                at + 86_400_000
            ])
            .unwrap();
            // 1% dead, 1% pending (paused destination), the rest delivered.
            let (dest, status, attempts, finished) = match seq % 100 {
                3 => ("billing", 3, 3, Some(at + 60_000)),
                5 => ("paused", 0, 0, None),
                _ => ("billing", 2, 1, Some(at + 15)),
            };
            del.execute(params![seq, dest, status, at, attempts, finished])
                .unwrap();
            for a in 1..=attempts {
                let (code, answer): (i64, &[u8]) = if status == 2 {
                    (200, b"ok")
                } else {
                    (
                        503,
                        b"upstream unavailable: the billing service is restarting",
                    )
                };
                att.execute(params![
                    seq,
                    a,
                    at + a * 1000,
                    code,
                    answer,
                    &answer_headers[..]
                ])
                .unwrap();
            }
            match seq % 100 {
                3 => dead = id,
                50 => delivered = id,
                _ => {}
            }
        }
    }
    tx.execute(
        "INSERT OR REPLACE INTO destination_state (name, paused) VALUES ('paused', 1)",
        [],
    )
    .unwrap();
    tx.commit().unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    (dead, delivered)
}

fn config(db: &Path) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
admin_tokens = ["{TOKEN}"]

[storage]
path = "{}"

[[sources]]
name = "stripe"

[[sources]]
name = "github"

[[destinations]]
name = "billing"
url = "http://127.0.0.1:9/billing"

[[destinations]]
name = "paused"
url = "http://127.0.0.1:9/paused"

[[routes]]
source = "stripe"
to = "billing"
"#,
        db.display()
    )
}

/// Logs in through the form; returns the session cookie.
async fn login(http: &reqwest::Client, base: &str) -> String {
    let r = http.get(format!("{base}/login")).send().await.unwrap();
    let cookie = cookie(r.headers(), "hookgate_login");
    let html = r.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    let csrf = &html[at..at + html[at..].find('"').unwrap()];
    let r = http
        .post(format!("{base}/login"))
        .header("sec-fetch-site", "same-origin")
        .header("cookie", format!("hookgate_login={cookie}"))
        .form(&[("csrf", csrf), ("token", TOKEN), ("next", "/")])
        .send()
        .await
        .unwrap();
    cookie_of(r.headers(), "hookgate_session").expect("logged in")
}

fn cookie(h: &reqwest::header::HeaderMap, name: &str) -> String {
    cookie_of(h, name).unwrap_or_else(|| panic!("no {name} cookie"))
}

fn cookie_of(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}

fn pages(c: &mut Criterion) {
    let n = messages();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("console.db");
    let t = Instant::now();
    let t0 = t0();
    let (dead, delivered) = fill(&db, n, t0);
    eprintln!("filled {n} messages in {:.1} s", t.elapsed().as_secs_f64());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cfg = hookgate::config::parse(&config(&db), "bench.toml", &|_| None).expect("config");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = rt
        .block_on(hookgate::app::start(cfg, shutdown.clone()))
        .expect("gateway starts");
    let base = format!("http://{}", running.admin_addr);
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let session = rt.block_on(login(&http, &base));
    // A cursor half-way down the table, as "Older" would hand out.
    let deep = rt.block_on(async {
        let mut cursor = None;
        let page = format!("{base}/api/v1/messages?limit=1000");
        for _ in 0..(n / 2 / 1000).max(1) {
            let url = match &cursor {
                Some(c) => format!("{page}&cursor={c}"),
                None => page.clone(),
            };
            let v: serde_json::Value = http
                .get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        cursor.expect("a cursor half-way down")
    });
    let paths = [
        ("overview", "/".to_string()),
        ("messages", "/messages".to_string()),
        ("messages_rows_live", "/messages/rows".to_string()),
        ("messages_half_way_down", format!("/messages?cursor={deep}")),
        ("messages_status_dead", "/messages?status=dead".to_string()),
        ("messages_source", "/messages?source=github".to_string()),
        (
            "messages_event_type_rare",
            "/messages?event_type=order.refunded".to_string(),
        ),
        ("messages_time_range", {
            // A minute half-way through the messages.
            let at = |ms: i64| {
                let t = std::time::UNIX_EPOCH + Duration::from_millis(ms as u64);
                humantime::format_rfc3339_seconds(t).to_string()
            };
            let since = t0 + n / 2;
            format!("/messages?since={}&until={}", at(since), at(since + 60_000))
        }),
        ("messages_dedup_key", "/messages?q=evt_123".to_string()),
        ("message_detail_dead", format!("/messages/{dead}")),
        ("message_detail_delivered", format!("/messages/{delivered}")),
        ("dead_letters", "/dead".to_string()),
        (
            "dead_letters_one_destination",
            "/dead?destination=billing".to_string(),
        ),
        (
            "dead_replay_confirmation",
            "/dead/replay?destination=billing".to_string(),
        ),
        ("destinations", "/destinations".to_string()),
        ("sources", "/sources".to_string()),
        ("rejected", "/rejected".to_string()),
    ];
    let mut g = c.benchmark_group(format!("console_{n}_messages"));
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for (name, path) in paths {
        let url = format!("{base}{path}");
        let get = || async {
            let r = http
                .get(&url)
                .header("cookie", format!("hookgate_session={session}"))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.bytes().await.unwrap();
            (status, body.len())
        };
        let (status, len) = rt.block_on(get());
        assert_eq!(status, reqwest::StatusCode::OK, "{name}: GET {path}");
        eprintln!("{name}: {len} bytes");
        g.bench_function(name, |b| b.to_async(&rt).iter(get));
    }
    g.finish();
    running.stop();
    drop(rt);
}

criterion_group!(benches, pages);
criterion_main!(benches);
