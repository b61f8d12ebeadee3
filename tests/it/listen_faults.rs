//! `hookgate listen` under faults, with the real binaries: 5,000 messages reach a
//! local receiver through `listen` each at least once, signed, with duplicates
//! only for the leases a `listen` killed with SIGKILL held (on the embedded
//! store, and on two PostgreSQL nodes with a `listen` on each); a gateway
//! killed with SIGKILL while `listen` runs is reconnected to and nothing is
//! lost; per-key order, `max_in_flight = 1` and pause hold through a receiver
//! that fails every third request.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::harness::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Leases the pull destination lets consumers hold at once: a killed
/// `listen` can have held at most this many, so at most this many arrive twice.
const MAX_IN_FLIGHT: usize = 32;

/// Source `app` routed to the pull destination `dev` (signing, quick retries),
/// with `storage` as the config's first lines and `route` as extra lines of the route.
fn config(storage: &str, dest: &str, route: &str) -> String {
    format!(
        r#"{storage}
[[sources]]
name = "app"

[[destinations]]
name = "dev"
type = "pull"
signing_secret = "{SECRET}"
retry = {{ schedule = ["0s", "200ms", "200ms", "200ms", "200ms", "200ms", "200ms", "200ms"] }}
{dest}

[[routes]]
source = "app"
to = "dev"
{route}
"#
    )
}

/// A `hookgate listen` process (killed when dropped), its stderr in a file.
struct Listen {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Listen {
    fn start(gw: &Gateway, rx: &Receiver, extra: &[&str]) -> Listen {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["listen", "--gateway"])
            .arg(format!("http://{}", gw.admin))
            .args([
                "--token",
                ADMIN_TOKEN,
                "--destination",
                "dev",
                "--forward-to",
            ])
            .arg(rx.url("/hook"))
            .args(["--json", "--lease", "3s", "--timeout", "2s", "--wait", "2s"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Listen { child, log }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Still running (it has not given up or crashed).
    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Posts `n` messages spread over `gws`, 32 at a time; returns their ids.
async fn ingest(gws: &[&Gateway], n: usize, body: impl Fn(usize) -> String) -> Vec<String> {
    ingest_by(gws, n, 32, body).await
}

/// Posts `n` messages spread over `gws`, `parallel` at a time (1: in order).
async fn ingest_by(
    gws: &[&Gateway],
    n: usize,
    parallel: usize,
    body: impl Fn(usize) -> String,
) -> Vec<String> {
    let c = client();
    let urls: Vec<String> = gws.iter().map(|g| g.ingest_url("app")).collect();
    futures::stream::iter(0..n)
        .map(|i| {
            let (c, url, b) = (c.clone(), urls[i % urls.len()].clone(), body(i));
            async move {
                let r = c
                    .post(url)
                    .header("content-type", "application/json")
                    .body(b)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                message_id(&r)
            }
        })
        .buffered(parallel)
        .collect()
        .await
}

/// Every request the receiver got, by message id, after checking its signature.
fn received_by_id(rx: &Receiver) -> HashMap<String, usize> {
    let key = hookgate::signing::decode_secret(SECRET).unwrap();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for r in rx.received() {
        let id = r.header("webhook-id").unwrap().to_string();
        let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
        let sig = r.header("webhook-signature").unwrap();
        assert!(
            hookgate::signing::verify(&key, &id, ts, &r.body, sig),
            "the signature of {id} does not verify"
        );
        assert!(
            r.header("authorization").is_none(),
            "the admin token leaked to the local app"
        );
        *by_id.entry(id).or_default() += 1;
    }
    by_id
}

/// Waits until the receiver has every id in `ids`.
async fn all_arrive(gw: &Gateway, rx: &Receiver, ids: &[String], listens: &mut [&mut Listen]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let got = received_by_id(rx);
        let missing: Vec<&String> = ids.iter().filter(|id| !got.contains_key(*id)).collect();
        for l in listens.iter_mut() {
            assert!(l.running(), "listen exited: {}", l.stderr());
        }
        if missing.is_empty() {
            return;
        }
        if std::time::Instant::now() > deadline {
            // What the gateway says of the first missing one, and what each
            // listen said.
            let (_, detail) = gw
                .api_get(&format!("/api/v1/messages/{}", missing[0]))
                .await;
            let (_, dests) = gw.api_get("/api/v1/destinations").await;
            let said: Vec<String> = listens
                .iter()
                .map(|l| {
                    let e = l.stderr();
                    e[e.len().saturating_sub(2000)..].to_string()
                })
                .collect();
            panic!(
                "timed out waiting for every message at the receiver: {} missing; the first: {detail:#}\ndestinations: {dests:#}\nlisten stderr (last 2,000 bytes each): {said:#?}",
                missing.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 5,000 messages through `listen`, killed with SIGKILL half-way and started
/// again (one `listen` per gateway): each arrives, signed; duplicates only for
/// leases the killed one held; nothing is left pending.
async fn five_thousand_through_listen(gws: &[&Gateway]) {
    let rx = Receiver::start().await;
    let ids = ingest(gws, 5000, |i| format!(r#"{{"n":{i}}}"#)).await;
    let mut listens: Vec<Listen> = gws.iter().map(|g| Listen::start(g, &rx, &[])).collect();
    eventually(
        Duration::from_secs(120),
        "half the messages at the receiver",
        || {
            let n = rx.count();
            async move { (n >= 2500).then_some(()) }
        },
    )
    .await;
    listens[0].kill9();
    let before_restart = rx.count();
    listens[0] = Listen::start(gws[0], &rx, &[]);
    let mut refs: Vec<&mut Listen> = listens.iter_mut().collect();
    all_arrive(gws[0], &rx, &ids, &mut refs).await;
    for g in gws {
        g.nothing_pending().await;
    }
    let got = received_by_id(&rx);
    assert_eq!(got.len(), ids.len(), "only the messages sent arrived");
    let twice: usize = got.values().map(|n| n - 1).sum();
    assert!(
        twice <= MAX_IN_FLIGHT,
        "{twice} duplicates, more than the {MAX_IN_FLIGHT} leases the killed listen could hold (it had forwarded {before_restart})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: 5,000 messages through listen with a kill -9 of listen (about 20 s)"]
async fn five_thousand_messages_through_listen_survive_a_kill_nine_of_listen() {
    let gw = Gateway::binary(&config("", &format!("max_in_flight = {MAX_IN_FLIGHT}"), "")).await;
    five_thousand_through_listen(&[&gw]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: 5,000 messages through two PostgreSQL nodes and two listens, one killed with kill -9 (about 35 s)"]
async fn on_two_postgres_nodes_five_thousand_messages_through_listen_survive_a_kill_nine() {
    let Some(db) =
        hookgate::store::postgres::scratch::ScratchDatabase::for_test("listen_two_nodes").await
    else {
        return;
    };
    let storage = format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"{}\"\npool_size = 8\n",
        db.url()
    );
    let cfg = config(&storage, &format!("max_in_flight = {MAX_IN_FLIGHT}"), "");
    let a = Gateway::binary(&cfg).await;
    let b = Gateway::binary(&cfg).await;
    five_thousand_through_listen(&[&a, &b]).await;
    drop((a, b));
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_killed_while_listen_runs_is_reconnected_to_and_nothing_is_lost() {
    let mut gw = Gateway::binary(&config("", "", "")).await;
    let rx = Receiver::start().await;
    let mut listen = Listen::start(&gw, &rx, &[]);
    let mut ids = ingest(&[&gw], 300, |i| format!(r#"{{"n":{i}}}"#)).await;
    eventually(
        Duration::from_secs(60),
        "some messages at the receiver",
        || {
            let n = rx.count();
            async move { (n >= 50).then_some(()) }
        },
    )
    .await;
    gw.kill9();
    gw.restart().await;
    ids.extend(ingest(&[&gw], 300, |i| format!(r#"{{"n":{}}}"#, 300 + i)).await);
    all_arrive(&gw, &rx, &ids, &mut [&mut listen]).await;
    gw.nothing_pending().await;
    assert!(listen.running(), "listen gave up: {}", listen.stderr());
    assert_eq!(received_by_id(&rx).len(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_listen_order_per_key_max_in_flight_and_pause_hold() {
    let gw = Gateway::binary(&config(
        "",
        "max_in_flight = 1",
        r#"ordering_key = "body:/k""#,
    ))
    .await;
    let rx = Receiver::start().await;
    // Every third request fails (500): retried, in its place.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    rx.respond(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
            (500, vec![], "try again".into())
        } else {
            (200, vec![], "ok".into())
        }
    });
    rx.set_delay(Duration::from_millis(5));
    // One at a time, so that ingest order is the order of `n`.
    let ids = ingest_by(&[&gw], 60, 1, |i| {
        format!(r#"{{"k":"k{}","n":{i}}}"#, i % 3)
    })
    .await;
    let mut listen = Listen::start(&gw, &rx, &["--concurrency", "8"]);
    all_arrive(&gw, &rx, &ids, &mut [&mut listen]).await;
    gw.nothing_pending().await;
    assert_eq!(rx.max_concurrent(), 1, "max_in_flight = 1 was exceeded");
    let mut by_key: HashMap<String, Vec<i64>> = HashMap::new();
    for r in rx.received() {
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        by_key
            .entry(v["k"].as_str().unwrap().to_string())
            .or_default()
            .push(v["n"].as_i64().unwrap());
    }
    for (k, ns) in by_key {
        let mut firsts = ns.clone();
        firsts.dedup();
        assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "key {k} out of order: {ns:?}"
        );
    }

    // Paused: nothing is handed out while it lasts; resumed: it all comes.
    let (st, _) = gw
        .api_post("/api/v1/destinations/dev/pause", serde_json::json!({}))
        .await;
    assert_eq!(st, 200);
    let before = rx.count();
    let more = ingest(&[&gw], 5, |i| format!(r#"{{"k":"p","n":{}}}"#, 100 + i)).await;
    // The store holds all five due and none in flight, and a pull (what
    // listen asks, here with a wait that a due delivery would cut short)
    // is handed none of them.
    let (_, d) = gw.api_get("/api/v1/destinations/dev").await;
    assert_eq!(
        (d["pending"].as_u64(), d["in_flight"].as_u64()),
        (Some(5), Some(0)),
        "{d}"
    );
    let (st, pulled) = gw
        .api_post(
            "/api/v1/destinations/dev/pull",
            serde_json::json!({"max": 10, "wait": "500ms", "lease": "1s"}),
        )
        .await;
    assert_eq!(st, 200, "{pulled}");
    assert_eq!(
        pulled["data"].as_array().map(Vec::len),
        Some(0),
        "a paused destination handed a delivery out: {pulled}"
    );
    let (_, d) = gw.api_get("/api/v1/destinations/dev").await;
    assert_eq!(
        (d["pending"].as_u64(), d["in_flight"].as_u64()),
        (Some(5), Some(0)),
        "{d}"
    );
    for id in &more {
        let (_, m) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
        let d = &m["deliveries"][0];
        // Pending, or queued behind the first of its ordering key; never tried.
        assert!(
            matches!(d["status"].as_str(), Some("pending" | "queued")) && d["attempt_count"] == 0,
            "{m}"
        );
    }
    assert_eq!(
        rx.count(),
        before,
        "a paused destination handed a delivery out"
    );
    let (st, _) = gw
        .api_post("/api/v1/destinations/dev/resume", serde_json::json!({}))
        .await;
    assert_eq!(st, 200);
    all_arrive(&gw, &rx, &more, &mut [&mut listen]).await;
}
