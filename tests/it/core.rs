//! The core gateway: durable ingest, delivery with retries, crash safety, limits.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::*;

fn basic_config(receiver: &Receiver, retry: &str) -> String {
    format!(
        r#"
[[sources]]
name = "app"

[[destinations]]
name = "svc"
url = "{}"
timeout = "5s"
max_in_flight = 64
retry = {retry}

[[routes]]
source = "app"
to = "svc"
"#,
        receiver.url("/hook")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_concurrent_messages_are_each_delivered_once_with_headers() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&basic_config(&rx, r#"{ schedule = ["0s", "1s"] }"#)).await;
    let client = client();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let c = client.clone();
        let url = gw.ingest_url("app");
        tasks.push(tokio::spawn(async move {
            let body = format!("{{\"n\":{i}}}");
            let r = c
                .post(url)
                .header("content-type", "application/json; charset=utf-8")
                .header("x-custom", format!("v{i}"))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(r.headers().contains_key("server-timing"));
            let id = crate::harness::message_id(&r);
            assert!(id.starts_with("msg_"));
            (id, body)
        }));
    }
    let mut sent: HashMap<String, String> = HashMap::new();
    for t in tasks {
        let (id, body) = t.await.unwrap();
        sent.insert(id, body);
    }
    assert_eq!(sent.len(), 300, "300 distinct message ids");
    let got = rx.wait_for(300, Duration::from_secs(30)).await;
    gw.nothing_pending().await;
    let got = if rx.count() > got.len() {
        rx.received()
    } else {
        got
    };
    assert_eq!(got.len(), 300, "each message delivered exactly once");
    let mut seen = HashSet::new();
    for r in &got {
        let id = r.header("webhook-id").unwrap().to_string();
        assert!(seen.insert(id.clone()), "duplicate delivery of {id}");
        assert_eq!(sent[&id].as_bytes(), &r.body[..], "body byte-exact");
        assert_eq!(r.header("hookgate-attempt"), Some("1"));
        assert_eq!(r.header("hookgate-source"), Some("app"));
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert!(r
            .header("webhook-timestamp")
            .unwrap()
            .parse::<i64>()
            .is_ok());
        assert!(
            r.header("webhook-signature").is_none(),
            "no signing secret, no signature"
        );
        assert!(
            r.header("x-custom").unwrap().starts_with('v'),
            "original headers forwarded"
        );
        assert!(r
            .header("host")
            .unwrap()
            .contains(&rx.addr.port().to_string()));
        assert_eq!(r.path, "/hook");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_failing_twice_gets_the_message_on_attempt_three() {
    let rx = Receiver::start().await;
    let mut n = 0;
    rx.respond(move |_| {
        n += 1;
        if n <= 2 {
            (500, vec![], "boom".into())
        } else {
            (200, vec![], "ok".into())
        }
    });
    let gw = Gateway::start(&basic_config(
        &rx,
        r#"{ schedule = ["0s", "200ms", "200ms", "200ms"] }"#,
    ))
    .await;
    let r = client()
        .post(gw.ingest_url("app"))
        .body("plain text, not JSON \u{1F600}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = crate::harness::message_id(&r);
    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    let attempts: Vec<&str> = got
        .iter()
        .map(|r| r.header("hookgate-attempt").unwrap())
        .collect();
    assert_eq!(attempts, vec!["1", "2", "3"]);
    assert!(got
        .iter()
        .all(|r| r.header("webhook-id") == Some(id.as_str())));
    assert!(got
        .iter()
        .all(|r| &r.body[..] == "plain text, not JSON \u{1F600}".as_bytes()));
    // The attempt log shows all three.
    let detail = eventually(Duration::from_secs(5), "delivered status", || async {
        let (st, v) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
        (st == 200 && v["status"] == "delivered").then_some(v)
    })
    .await;
    assert_eq!(detail["deliveries"][0]["attempt_count"], 3);
    let log = detail["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0]["response_code"], 500);
    assert_eq!(log[0]["status"], "failed");
    assert!(log[0]["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(log[0]["error"].is_null());
    assert_eq!(log[0]["response_body"], "boom");
    assert_eq!(log[2]["response_code"], 200);
    assert_eq!(log[2]["status"], "succeeded");
    gw.settled(&id).await;
    assert_eq!(rx.count(), 3, "no attempt after the success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_the_last_attempt_the_delivery_is_dead() {
    let rx = Receiver::start().await;
    rx.respond(|_| (503, vec![], "down".into()));
    let gw = Gateway::start(&basic_config(&rx, r#"{ schedule = ["0s", "100ms"] }"#)).await;
    let r = client()
        .post(gw.ingest_url("app"))
        .body("x")
        .send()
        .await
        .unwrap();
    let id = crate::harness::message_id(&r);
    rx.wait_for(2, Duration::from_secs(10)).await;
    let (_, v) = eventually(Duration::from_secs(5), "dead status", || async {
        let (st, v) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
        (v["status"] == "dead").then_some((st, v))
    })
    .await;
    assert_eq!(v["deliveries"][0]["status"], "dead");
    gw.settled(&id).await;
    assert_eq!(rx.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_nine_during_ingest_loses_no_acknowledged_message() {
    let rx = Receiver::start().await;
    let mut gw = Gateway::binary(&basic_config(
        &rx,
        r#"{ schedule = ["0s", "200ms", "500ms", "1s", "2s"] }"#,
    ))
    .await;
    let acked = std::sync::Arc::new(parking_lot::Mutex::new(HashSet::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for w in 0..16 {
        let url = gw.ingest_url("app");
        let acked = acked.clone();
        let stop = stop.clone();
        let failed = failed.clone();
        senders.push(tokio::spawn(async move {
            let c = client();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                let r = c
                    .post(&url)
                    .body(format!("{{\"w\":{w},\"i\":{i}}}"))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let id = crate::harness::message_id(&r);
                        acked.lock().insert(id);
                    }
                    // Connection refused or reset once it is killed.
                    _ => {
                        failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                }
            }
        }));
    }
    // Let a good number through, then kill -9 mid-stream.
    eventually(Duration::from_secs(20), "500 acks", || async {
        (acked.lock().len() >= 500).then_some(())
    })
    .await;
    gw.kill9();
    // The senders keep going until they have met the dead process.
    eventually(Duration::from_secs(10), "sends failing", || async {
        (failed.load(std::sync::atomic::Ordering::SeqCst) >= 16).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    let acked: HashSet<String> = acked.lock().clone();
    gw.restart().await;
    let delivered = eventually(
        Duration::from_secs(60),
        "every acked message delivered",
        || async {
            let ids: HashSet<String> = rx
                .received()
                .iter()
                .filter_map(|r| r.header("webhook-id").map(str::to_string))
                .collect();
            acked.is_subset(&ids).then_some(ids)
        },
    )
    .await;
    let missing = acked.difference(&delivered).count();
    assert_eq!(missing, 0, "{missing} acknowledged messages were lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_source_oversized_body_and_malformed_requests() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&basic_config(&rx, r#"{ schedule = ["0s"] }"#)).await;
    let c = client();
    let r = c
        .post(gw.ingest_url("nope"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("server-timing"));
    let r = c
        .post(format!("http://{}/other", gw.ingest))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // 2 MiB against the default 1 MiB limit: the rest of the body is read and
    // dropped, so the client, still writing, reads the 413 rather than a reset.
    let big = vec![b'a'; 2 << 20];
    let r = c.post(gw.ingest_url("app")).body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    // Exactly at the limit is fine; a sub-path of a source is the source.
    let r = c
        .post(format!("{}/deeper/path?x=1", gw.ingest_url("app")))
        .body(vec![b'b'; 1 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Chunked and over the limit (no Content-Length to trust).
    let stream =
        futures::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b'c'; 64 * 1024])));
    let r = c
        .post(gw.ingest_url("app"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // A body to an unknown source is read and dropped too: a 404, not a reset.
    let r = c
        .post(gw.ingest_url("nope"))
        .body(vec![b'd'; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A body declared far larger than anything read and dropped is answered at
    // once, without waiting for it.
    let mut s = TcpStream::connect(gw.ingest).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /in/app HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Malformed HTTP gets a 400 from the server, never a crash.
    let mut s = TcpStream::connect(gw.ingest).unwrap();
    s.write_all(b"POST /in/app HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        .unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let mut s = TcpStream::connect(gw.ingest).unwrap();
    s.write_all(b"\x00\x01\x02garbage\r\n\r\n").unwrap();
    let n = s.read(&mut buf).unwrap_or(0);
    assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"));
    // Still serving, and only the one good message reached the receiver. (A new
    // client: the pooled connection of the refused chunked upload is closed.)
    let r = client()
        .post(gw.ingest_url("app"))
        .body("after")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    rx.wait_for(2, Duration::from_secs(10)).await;
    gw.nothing_pending().await;
    let (_, v) = gw.api_get("/api/v1/messages?limit=10").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(rx.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_incomplete_requests_are_cut_off() {
    let rx = Receiver::start().await;
    let cfg = basic_config(&rx, r#"{ schedule = ["0s"] }"#);
    let gw = Gateway::start_opts(&cfg, "read_timeout = \"500ms\"", &[]).await;
    // Headers never finish.
    let mut s = TcpStream::connect(gw.ingest).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /in/app HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap_or(0);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "cut off by read_timeout"
    );
    let _ = n;
    // Body promised but never sent in full.
    let mut s = TcpStream::connect(gw.ingest).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /in/app HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a part")
        .unwrap();
    let start = std::time::Instant::now();
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(start.elapsed() < Duration::from_secs(4));
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    let (_, v) = gw.api_get("/api/v1/messages?limit=10").await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(rx.count(), 0, "nothing incomplete is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_deliveries_and_exits_zero() {
    let rx = Receiver::start().await;
    rx.set_delay(Duration::from_millis(800));
    let mut gw = Gateway::binary(&basic_config(&rx, r#"{ schedule = ["0s", "10s"] }"#)).await;
    let r = client()
        .post(gw.ingest_url("app"))
        .body("slow")
        .send()
        .await
        .unwrap();
    let id = crate::harness::message_id(&r);
    rx.wait_for(1, Duration::from_secs(5)).await;
    // The receiver is still holding the request when SIGTERM arrives.
    let code = tokio::task::spawn_blocking(move || {
        let c = gw.terminate();
        (c, gw)
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(0));
    let mut gw = code.1;
    // The attempt finished and was recorded before exit: no redelivery on restart.
    gw.restart().await;
    let (_, v) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
    assert_eq!(v["status"], "delivered", "{v}");
    gw.settled(&id).await;
    assert_eq!(rx.count(), 1);
}

/// Writes a config file into a fresh temporary directory (kept while the guard lives).
fn config_file(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Runs the real binary to completion.
fn hookgate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_with_a_stuck_delivery_ends_within_the_grace_and_its_bound() {
    // Documented in docs/configuration.md: at most `shutdown_grace` + 0.5 s.
    const GRACE: Duration = Duration::from_secs(2);
    const BOUND: Duration = Duration::from_millis(500);
    let rx = Receiver::start().await;
    rx.set_delay(Duration::from_secs(120));
    let cfg = format!(
        "[[sources]]\nname = \"app\"\n\n[[destinations]]\nname = \"svc\"\nurl = \"{}\"\ntimeout = \"300s\"\n\n[[routes]]\nsource = \"app\"\nto = \"svc\"\n",
        rx.url("/hook")
    );
    let mut gw = Gateway::binary_opts(&cfg, "shutdown_grace = \"2s\"", &[]).await;
    let r = client()
        .post(gw.ingest_url("app"))
        .body("stuck")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = crate::harness::message_id(&r);
    rx.wait_for(1, Duration::from_secs(20)).await;
    let (code, took, mut gw) = tokio::task::spawn_blocking(move || {
        let t0 = std::time::Instant::now();
        let c = gw.terminate();
        (c, t0.elapsed(), gw)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0));
    eprintln!("shutdown with a {GRACE:?} grace took {took:?}");
    assert!(
        took <= GRACE + BOUND,
        "shutdown took {took:?}, more than the grace {GRACE:?} + {BOUND:?}"
    );
    // The cut-off attempt's lease was released: due again at once on restart.
    rx.set_delay(Duration::ZERO);
    gw.restart().await;
    eventually(Duration::from_secs(20), "redelivered", || async {
        let (_, v) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
        (v["status"] == "delivered").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_bad_config_with_key_and_line() {
    let (_dir, path) = config_file("bad.toml", "[[sources]]\nname = \"a\"\n\n[[destinations]]\nname = \"d\"\nurl = \"http://127.0.0.1:1/\"\nmax_inflight = 3\n\n[[routes]]\nsource = \"a\"\nto = \"nowhere\"\n");
    let out = hookgate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:7:1"), "{err}");
    assert!(err.contains("max_inflight"), "{err}");
    assert!(err.contains("bad.toml:11:"), "{err}");
    assert!(err.contains("nowhere"), "{err}");
    // serve refuses it too, before binding anything.
    let out = hookgate(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    // A good one passes with a summary.
    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.toml");
    let out = hookgate(&["check", "--config", good.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("/in/demo"));
    assert!(summary.contains("OK"));
    // A missing file is a clear error.
    let out = hookgate(&["check", "--config", "/nonexistent/hookgate.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_and_readiness() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&basic_config(&rx, r#"{ schedule = ["0s"] }"#)).await;
    let c = client();
    let r = c.get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_bodies_are_stored_and_delivered_byte_exact() {
    let rx = Receiver::start().await;
    let cfg = format!(
        r#"
[[sources]]
name = "app"
event_type = "body:/type"
dedup = {{ key = "body:/id" }}

[[destinations]]
name = "svc"
url = "{}"

[[routes]]
source = "app"
to = "svc"
filter = [ {{ field = "body:/drop", exists = false }} ]
ordering_key = "body:/chat"
"#,
        rx.url("/b")
    );
    let gw = Gateway::start(&cfg).await;
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies: Vec<Vec<u8>> = vec![
        deep.into_bytes(),
        vec![0xff, 0xfe, 0x00, 0x80, b'{', b'}'],
        b"{\"type\": 5, \"id\": {\"nested\": true}, \"chat\": [1,2]}".to_vec(),
        Vec::new(),
        b"{\"unterminated\": ".to_vec(),
    ];
    let c = client();
    for b in &bodies {
        let r = c
            .post(gw.ingest_url("app"))
            .header("content-type", "application/octet-stream")
            .body(b.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let got = rx.wait_for(bodies.len(), Duration::from_secs(10)).await;
    for b in &bodies {
        assert!(
            got.iter().any(|r| r.body[..] == b[..]),
            "a body was changed or lost"
        );
    }
    assert!(got
        .iter()
        .all(|r| r.header("content-type") == Some("application/octet-stream")));
    // The JSON event type (a number) became "5".
    assert!(got
        .iter()
        .any(|r| r.header("hookgate-event-type") == Some("5")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fixture_from_each_provider_passes_through_unchanged() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&basic_config(&rx, r#"{ schedule = ["0s"] }"#)).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut sent = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let f: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let body = match &f["body"] {
            serde_json::Value::String(s) => s.clone().into_bytes(),
            v => serde_json::to_vec(v).unwrap(),
        };
        let mut req = client()
            .post(gw.ingest_url("app"))
            .header(
                "content-type",
                f["content_type"].as_str().unwrap_or("application/json"),
            )
            .body(body);
        if let Some(h) = f["headers"].as_object() {
            for (k, v) in h {
                req = req.header(k.as_str(), v.as_str().unwrap_or_default());
            }
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", p.display());
        sent += 1;
    }
    assert!(sent >= 20);
    let got = rx.wait_for(sent, Duration::from_secs(10)).await;
    assert_eq!(got.len(), sent);
}

/// Deliveries to https destinations go over TLS and check the certificate: a
/// receiver with a self-signed certificate is refused, and the attempt says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_destinations_verify_the_certificate() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("selfsigned-cert.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("selfsigned-key.pem")).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    let cfg = format!(
        "[[sources]]\nname = \"app\"\n[[destinations]]\nname = \"tls\"\nurl = \"https://127.0.0.1:{port}/hook\"\nretry = {{ schedule = [\"0s\"] }}\n[[routes]]\nsource = \"app\"\nto = \"tls\"\n"
    );
    let gw = Gateway::start(&cfg).await;
    let r = client()
        .post(gw.ingest_url("app"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let id = crate::harness::message_id(&r);
    let v = eventually(
        Duration::from_secs(10),
        "the attempt is recorded",
        || async {
            let (_, v) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
            (v["status"] == "dead").then_some(v)
        },
    )
    .await;
    let attempt = &v["deliveries"][0]["attempts"][0];
    assert!(attempt["response_code"].is_null());
    let err = attempt["error"].as_str().unwrap().to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("issuer"),
        "{err}"
    );
    assert!(handshakes.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

/// `check` reports every mistake of a file in one run, each at its key or value,
/// with a suggestion for a misspelt key and no false "not a defined source".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_every_error_in_one_run() {
    let (_dir, path) = config_file("many.toml", "[server]\nmax_body = \"lots\"\nadmin_tokns = [\"t\"]\n\n[[sources]]\nname = \"demo\"\nverfy = { type = \"github\", secret = \"s\" }\n\n[[destinations]]\nname = \"d\"\nurl = \"http://127.0.0.1:1/\"\nmax_inflight = 3\nsigning_secret = \"hunter2\"\n\n[[routes]]\nsource = \"demo\"\nto = \"d\"\n");
    let out = hookgate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "many.toml:2:12: ",
        "many.toml:3:1: unknown key \"admin_tokns\", did you mean \"admin_tokens\"?",
        "many.toml:7:1: unknown key \"verfy\", did you mean \"verify\"?",
        "many.toml:12:1: unknown key \"max_inflight\", did you mean \"max_in_flight\"?",
        "many.toml:13:18: destination `d`: signing_secret must be",
        "5 errors found",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
    assert!(!err.contains("not a defined"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(out.stdout.is_empty(), "no summary for a bad config");
}

/// The summary tells routes apart by filter, ordering key and priority, and a
/// config without admin tokens passes with a warning that the API refuses all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_summary_and_warnings() {
    let (_dir, path) = config_file("ok.toml", "[[sources]]\nname = \"s\"\nverify = { type = \"bearer\", secret = \"x\" }\n\n[[destinations]]\nname = \"d\"\nurl = \"http://127.0.0.1:1/\"\n\n[[routes]]\nsource = \"s\"\nto = \"d\"\n\n[[routes]]\nsource = \"s\"\nto = \"d\"\nfilter = [ { field = \"body:/type\", eq = \"paid\" } ]\n\n[[routes]]\nsource = \"s\"\nto = \"d\"\nordering_key = \"body:/customer\"\n\n[[routes]]\nsource = \"s\"\nto = \"d\"\npriority = \"high\"\n");
    let out = hookgate(&["check", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: server.admin_tokens is empty"),
        "{err}"
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    let routes: Vec<&str> = summary
        .lines()
        .filter(|l| l.trim_start().starts_with("s [*] -> d"))
        .collect();
    assert_eq!(routes.len(), 4, "{summary}");
    let distinct: std::collections::HashSet<&str> = routes.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        4,
        "every route has its own line:\n{summary}"
    );

    // The help names the default once, the way clap shows defaults.
    let out = hookgate(&["check", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(help.matches("hookgate.toml").count(), 1, "{help}");
    assert_eq!(help.matches("HOOKGATE_CONFIG").count(), 1, "{help}");
}

/// The embedded database of another program is refused untouched unless
/// `serve --adopt` asks for it; an unclean shutdown is followed by an integrity
/// check at the next start, a clean one is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_database_needs_adopt_and_an_unclean_shutdown_is_checked() {
    let rx = Receiver::start().await;
    let mut gw = Gateway::binary(&basic_config(&rx, r#"{ schedule = ["0s"] }"#)).await;
    let checked = "PRAGMA quick_check";
    assert!(!gw.log().contains(checked), "a new database is not checked");
    assert_eq!(gw.terminate(), Some(0));
    gw.restart().await;
    assert!(
        !gw.log().contains(checked),
        "not after a clean shutdown:\n{}",
        gw.log()
    );
    gw.kill9();
    gw.restart().await;
    assert!(gw.log().contains(checked), "after kill -9:\n{}", gw.log());
    assert_eq!(gw.terminate(), Some(0));

    // Replace the database with another program's.
    let db = gw.data_dir().join("hookgate.db");
    for ext in ["db", "db-wal", "db-shm", "clean"] {
        let _ = std::fs::remove_file(db.with_extension(ext));
    }
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT);
             INSERT INTO notes (text) VALUES ('keep me');
             PRAGMA user_version = 7;",
        )
        .unwrap();
    }
    let (code, err) = gw.start_fails();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--adopt") && err.contains("notes"), "{err}");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        let version: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        let tables: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!((version, tables), (7, 1), "the file was left as it was");
    }

    gw.restart_with(&["--adopt"]).await;
    let r = client()
        .post(gw.ingest_url("app"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(gw.terminate(), Some(0));
    let c = rusqlite::Connection::open(&db).unwrap();
    let note: String = c
        .query_row("SELECT text FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(note, "keep me");
}
