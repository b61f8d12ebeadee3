//! `hookgate listen` with the real binary against a gateway on loopback: what
//! a pull destination holds reaches a local receiver once each, signed and
//! byte for byte; `--create` makes a temporary destination that SIGINT removes
//! (and `--keep` keeps); SIGINT lets deliveries under way finish, prints the
//! summary and exits 0; a bad token or an unknown destination is a clear error;
//! the gateway going away (restarted, or cut off while results wait) loses
//! nothing; per-key order holds through a local app that fails.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::harness::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Source `app` routed to the pull destination `dev`, which signs; `dest`
/// and `route` are extra lines of the destination and of the route.
fn pull_config(dest: &str, route: &str) -> String {
    format!(
        r#"
[[sources]]
name = "app"

[[destinations]]
name = "dev"
type = "pull"
signing_secret = "{SECRET}"
{dest}

[[routes]]
source = "app"
to = "dev"
{route}
"#
    )
}

/// A running `hookgate listen`, its stdout and stderr read into lines as
/// they come.
struct Listen {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            l.lock().push(line);
        }
    });
    lines
}

impl Listen {
    /// Starts `hookgate listen` against `gw` with `args` (the token comes
    /// from `HOOKGATE_TOKEN`).
    fn start(gw: &Gateway, args: &[&str]) -> Listen {
        Self::start_at(&gw.admin_url(""), args)
    }

    /// Like [`Listen::start`] with the gateway at `url`.
    fn start_at(url: &str, args: &[&str]) -> Listen {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .arg("listen")
            .arg("--gateway")
            .arg(url)
            .args(args)
            .env("HOOKGATE_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = lines_of(child.stdout.take().unwrap());
        let err = lines_of(child.stderr.take().unwrap());
        Listen { child, out, err }
    }

    /// Starts it on the destination `dev`, forwarding to `rx`'s `/hook`,
    /// with `extra` flags.
    fn dev(gw: &Gateway, rx: &Receiver, extra: &[&str]) -> Listen {
        let url = rx.url("/hook");
        let mut args = vec!["--destination", "dev", "--forward-to", &url];
        args.extend_from_slice(extra);
        Self::start(gw, &args)
    }

    fn stdout(&self) -> Vec<String> {
        self.out.lock().clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().join("\n")
    }

    /// Waits until stderr has a line containing `text`.
    async fn wait_stderr(&self, text: &str) {
        let what = format!("listen to say {text:?}");
        eventually(Duration::from_secs(20), &what, || async {
            self.err
                .lock()
                .iter()
                .any(|l| l.contains(text))
                .then_some(())
        })
        .await;
    }

    /// Sends SIGINT (Ctrl-C).
    fn interrupt(&self) {
        self.signal("-INT");
    }

    /// Sends `signal` (`-INT`, `-TERM`).
    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the exit (panics with its output after 30 s); returns the code.
    async fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // The reader threads see EOF now; let them take the last lines.
                eventually(Duration::from_secs(5), "listen's output", || async {
                    (std::sync::Arc::strong_count(&self.out) == 1
                        && std::sync::Arc::strong_count(&self.err) == 1)
                        .then_some(())
                })
                .await;
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "listen did not exit:\n{}\n{}",
                    self.stdout().join("\n"),
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ingests a body on `source`; returns the message id.
async fn send(gw: &Gateway, source: &str, content_type: &str, body: Vec<u8>) -> String {
    let r = client()
        .post(gw.ingest_url(source))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    message_id(&r)
}

/// Ingests a JSON body on `source`; returns the message id.
async fn send_json(gw: &Gateway, source: &str, body: &str) -> String {
    send(gw, source, "application/json", body.as_bytes().to_vec()).await
}

/// The `--json` delivery lines (the summary aside).
fn delivery_lines(out: &[String]) -> Vec<Value> {
    out.iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v.get("summary").is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_reaches_the_local_app_once_signed_and_byte_for_byte() {
    let gw = Gateway::start(&pull_config("", "")).await;
    let rx = Receiver::start().await;
    const N: usize = 200;
    let mut sent: HashMap<String, (Vec<u8>, &str)> = HashMap::new();
    for i in 0..N {
        let body = format!("{{\"n\":{i},\"text\":\"héllo\"}}").into_bytes();
        let id = send(&gw, "app", "application/json", body.clone()).await;
        sent.insert(id, (body, "application/json"));
    }
    // Not UTF-8: handed out as base64, forwarded as the original bytes.
    let binary = vec![0xff, 0x00, 0xfe, 0x10, 0x80];
    let id = send(&gw, "app", "application/octet-stream", binary.clone()).await;
    sent.insert(id, (binary, "application/octet-stream"));

    let mut listen = Listen::dev(&gw, &rx, &["--json", "--concurrency", "16"]);
    let ids: Vec<String> = sent.keys().cloned().collect();
    let got = rx.wait_for_ids(&ids, Duration::from_secs(60)).await;
    // Each acknowledged: nothing left to hand out again.
    gw.nothing_pending().await;
    eventually(Duration::from_secs(20), "a line per delivery", || async {
        (delivery_lines(&listen.stdout()).len() > N).then_some(())
    })
    .await;

    let key = hookgate::signing::decode_secret(SECRET).unwrap();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        let id = r.header("webhook-id").expect("webhook-id");
        *seen.entry(id).or_default() += 1;
        let (body, ct) = &sent[id];
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/hook");
        assert_eq!(&r.body[..], &body[..], "{id}: the original bytes");
        assert_eq!(r.header("content-type"), Some(*ct));
        let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
        let sig = r.header("webhook-signature").unwrap();
        assert!(
            hookgate::signing::verify(&key, id, ts, &r.body, sig),
            "{id}: the Standard Webhooks signature holds"
        );
        assert_eq!(r.header("hookgate-source"), Some("app"));
        assert_eq!(r.header("hookgate-attempt"), Some("1"));
        for (name, value) in &r.headers {
            assert!(
                !String::from_utf8_lossy(value.as_bytes()).contains(ADMIN_TOKEN),
                "the admin token never reaches the local app ({name})"
            );
        }
    }
    assert_eq!(seen.len(), N + 1);
    assert!(seen.values().all(|&n| n == 1), "each once: {seen:?}");

    let lines = delivery_lines(&listen.stdout());
    assert_eq!(lines.len(), N + 1);
    for l in &lines {
        assert_eq!(l["status"], 200, "{l}");
        assert_eq!(l["result"], "recorded", "{l}");
        assert_eq!(l["attempt"], 1, "{l}");
        assert!(sent.contains_key(l["message_id"].as_str().unwrap()), "{l}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
        assert!(l["duration_ms"].as_f64().unwrap() >= 0.0, "{l}");
    }

    listen.interrupt();
    assert_eq!(listen.exit_code().await, Some(0), "{}", listen.stderr());
    let last: Value = serde_json::from_str(listen.stdout().last().unwrap()).unwrap();
    assert_eq!(
        last,
        json!({"summary": {"forwarded": N + 1, "ok": N + 1, "failed": 0, "released": 0, "unacknowledged": 0}})
    );
}

/// The local app's answer is the attempt's: status, body and duration are
/// recorded by the gateway, which retries on its schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_answer_is_recorded_and_retried_by_the_gateway() {
    let gw = Gateway::start(&pull_config(
        r#"retry = { schedule = ["0s", "100ms"] }"#,
        "",
    ))
    .await;
    let rx = Receiver::start().await;
    let answers = Arc::new(Mutex::new(0usize));
    let a = answers.clone();
    rx.respond(move |_| {
        let mut n = a.lock();
        *n += 1;
        if *n == 1 {
            (503, vec![], "busy, try later".into())
        } else {
            (200, vec![], "done".into())
        }
    });
    let id = send_json(&gw, "app", "{}").await;
    let mut listen = Listen::dev(&gw, &rx, &[]);
    let m = gw.settled(&id).await;
    let d = &m["deliveries"][0];
    assert_eq!(d["status"], "delivered", "{m}");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{m}");
    assert_eq!(attempts[0]["response_code"], 503, "{m}");
    assert_eq!(
        attempts[0]["response_body"], "busy, try later",
        "the local answer's body is kept: {m}"
    );
    assert!(attempts[0]["duration_ms"].as_f64().unwrap() >= 0.0, "{m}");
    assert_eq!(attempts[1]["response_code"], 200, "{m}");
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].header("hookgate-attempt"), Some("2"));

    listen.interrupt();
    assert_eq!(listen.exit_code().await, Some(0), "{}", listen.stderr());
    let out = listen.stdout();
    assert!(
        out.iter()
            .any(|l| l.contains(&id) && l.contains("503 Service Unavailable")),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|l| l.contains(&id) && l.contains("#2") && l.contains("200 OK")),
        "{out:?}"
    );
    assert_eq!(
        out.last().unwrap(),
        "forwarded 2: 1 ok, 1 failed; released 0"
    );
}

/// `--create --source tg --destination NAME --forward-to URL`, then `extra`.
fn create_args<'a>(name: &'a str, forward_to: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--create",
        "--source",
        "tg",
        "--destination",
        name,
        "--forward-to",
        forward_to,
    ];
    args.extend_from_slice(extra);
    args
}

/// `--create --source`: a temporary pull destination routed from that source
/// (with its filter), removed on SIGINT; with `--keep` it stays and keeps
/// queueing for the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_makes_a_temporary_destination_and_keep_keeps_it() {
    let gw = Gateway::start(
        "[[sources]]\nname = \"tg\"\n\n[[destinations]]\nname = \"pushy\"\nurl = \"http://127.0.0.1:9/\"\n",
    )
    .await;
    let rx = Receiver::start().await;
    let forward_to = rx.url("/bot");

    let mut listen = Listen::start(
        &gw,
        &create_args(
            "tmp-dev",
            &forward_to,
            &["--filter", "body:/message/chat/id=42"],
        ),
    );
    listen.wait_stderr("forwarding deliveries of tmp-dev").await;
    let (st, v) = gw.api_get("/api/v1/destinations/tmp-dev").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["type"], "pull", "{v}");
    // Routed at ingest: the other chat never becomes a delivery of it.
    let other = send_json(&gw, "tg", r#"{"message":{"chat":{"id":7}}}"#).await;
    let (_, m) = gw.api_get(&format!("/api/v1/messages/{other}")).await;
    assert_eq!(m["deliveries"], json!([]), "{m}");
    let id = send_json(&gw, "tg", r#"{"message":{"chat":{"id":42}}}"#).await;
    let got = rx
        .wait_for_ids(std::slice::from_ref(&id), Duration::from_secs(30))
        .await;
    assert_eq!(got.len(), 1);

    listen.interrupt();
    assert_eq!(listen.exit_code().await, Some(0), "{}", listen.stderr());
    assert!(
        listen.stderr().contains("removed pull destination tmp-dev"),
        "{}",
        listen.stderr()
    );
    let (st, _) = gw.api_get("/api/v1/destinations/tmp-dev").await;
    assert_eq!(st, 404, "gone after SIGINT");

    // --keep: it stays, and what comes meanwhile waits for the next run.
    let mut kept = Listen::start(&gw, &create_args("kept-dev", &forward_to, &["--keep"]));
    kept.wait_stderr("forwarding deliveries of kept-dev").await;
    // SIGTERM (a service manager's stop) is a clean stop too.
    kept.signal("-TERM");
    assert_eq!(kept.exit_code().await, Some(0), "{}", kept.stderr());
    let (st, v) = gw.api_get("/api/v1/destinations/kept-dev").await;
    assert_eq!(st, 200, "kept with --keep: {v}");
    let later = send_json(&gw, "tg", r#"{"later":true}"#).await;
    let mut again = Listen::start(
        &gw,
        &[
            "--destination",
            "kept-dev",
            "--forward-to",
            &forward_to,
            "--max",
            "1",
        ],
    );
    assert_eq!(
        again.exit_code().await,
        Some(0),
        "--max 1: {}",
        again.stderr()
    );
    let got = rx
        .wait_for_ids(std::slice::from_ref(&later), Duration::from_secs(5))
        .await;
    assert!(got
        .iter()
        .any(|r| r.header("webhook-id") == Some(later.as_str())));

    // A name taken by a push destination is refused, and left alone.
    let mut taken = Listen::start(&gw, &create_args("pushy", &forward_to, &[]));
    assert_eq!(taken.exit_code().await, Some(1));
    assert!(
        taken.stderr().contains("is not a pull destination"),
        "{}",
        taken.stderr()
    );
    let (st, _) = gw.api_get("/api/v1/destinations/pushy").await;
    assert_eq!(st, 200);
}

/// SIGINT while the local app is still answering: listen waits for the
/// answer (within the grace), reports it, prints the summary and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_finishes_what_is_under_way_and_prints_the_summary() {
    let gw = Gateway::start(&pull_config("", "")).await;
    let rx = Receiver::start().await;
    rx.set_delay(Duration::from_millis(1500));
    let id = send_json(&gw, "app", "{\"slow\":true}").await;
    let mut listen = Listen::dev(&gw, &rx, &[]);
    rx.wait_for(1, Duration::from_secs(30)).await;
    listen.interrupt();
    assert_eq!(listen.exit_code().await, Some(0), "{}", listen.stderr());
    let out = listen.stdout();
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out[0].contains(&id) && out[0].contains("200 OK"), "{out:?}");
    assert_eq!(out[1], "forwarded 1: 1 ok, 0 failed; released 0");
    let m = gw.settled(&id).await;
    assert_eq!(m["deliveries"][0]["status"], "delivered", "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_or_an_unknown_destination_is_a_clear_error() {
    let gw = Gateway::start(&pull_config("", "")).await;
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args([
            "listen",
            "--gateway",
            &gw.admin_url(""),
            "--destination",
            "dev",
        ])
        .args([
            "--forward-to",
            "http://127.0.0.1:9/",
            "--token",
            "wrong-token",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the token"), "{err}");
    assert!(
        !err.contains("wrong-token"),
        "the token is not repeated: {err}"
    );

    let mut nowhere = Listen::start(
        &gw,
        &[
            "--destination",
            "nope",
            "--forward-to",
            "http://127.0.0.1:9/",
        ],
    );
    assert_eq!(nowhere.exit_code().await, Some(1));
    assert!(
        nowhere.stderr().contains("no destination named \"nope\""),
        "{}",
        nowhere.stderr()
    );
}

/// The gateway away, then back: listen says so, keeps trying, and carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_reconnects_when_the_gateway_comes_back() {
    let mut gw = Gateway::binary(&pull_config("", "")).await;
    let rx = Receiver::start().await;
    let mut listen = Listen::dev(&gw, &rx, &["--wait", "1s"]);
    listen.wait_stderr("forwarding deliveries of dev").await;
    gw.kill9();
    listen.wait_stderr("cannot reach the gateway").await;
    gw.restart().await;
    let id = send_json(&gw, "app", "{}").await;
    rx.wait_for_ids(std::slice::from_ref(&id), Duration::from_secs(30))
        .await;
    listen.wait_stderr("connected to the gateway again").await;
    gw.settled(&id).await;
    listen.interrupt();
    assert_eq!(listen.exit_code().await, Some(0), "{}", listen.stderr());
}

/// A result that cannot reach the gateway is kept and sent again once the
/// way is back: the delivery is recorded once, never forwarded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_wait_for_the_gateway_to_come_back() {
    let gw = Gateway::start(&pull_config("", "")).await;
    let proxy = TcpProxy::start(gw.admin).await;
    let rx = Receiver::start().await;
    rx.set_delay(Duration::from_millis(1000));
    let id = send_json(&gw, "app", "{}").await;
    let mut listen = Listen::start_at(
        &format!("http://{}", proxy.addr),
        &["--destination", "dev", "--forward-to", &rx.url("/hook")],
    );
    rx.wait_for(1, Duration::from_secs(30)).await;
    // The local app is still answering: cut the way to the gateway.
    proxy.set(ProxyMode::Refuse);
    listen.wait_stderr("cannot reach the gateway").await;
    let (_, m) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
    assert_eq!(m["deliveries"][0]["status"], "pending", "{m}");
    proxy.set(ProxyMode::Forward);
    let m = gw.settled(&id).await;
    let d = &m["deliveries"][0];
    assert_eq!(d["status"], "delivered", "{m}");
    assert_eq!(d["attempt_count"], 1, "{m}");
    listen.wait_stderr("connected to the gateway again").await;
    listen.interrupt();
    assert_eq!(listen.exit_code().await, Some(0), "{}", listen.stderr());
    assert_eq!(rx.count(), 1, "forwarded once");
    let out = listen.stdout();
    assert!(out[0].contains(&id) && out[0].contains("200 OK"), "{out:?}");
    assert_eq!(out[1], "forwarded 1: 1 ok, 0 failed; released 0");
}

/// Per-key order through `listen`, with a local app that fails every third
/// request: a key's next message is forwarded only after the one before it
/// was answered 2xx, however many forwards run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_through_a_failing_local_app() {
    let retry = format!(
        r#"retry = {{ schedule = ["0s"{}] }}"#,
        r#", "50ms""#.repeat(9)
    );
    let gw = Gateway::start(&pull_config(&retry, r#"ordering_key = "body:/k""#)).await;
    let rx = Receiver::start().await;
    // (key, n, status) in the order the requests came.
    let log: Arc<Mutex<Vec<(String, u64, u16)>>> = Arc::default();
    let l = log.clone();
    rx.respond(move |r| {
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        let mut log = l.lock();
        let status = if (log.len() + 1).is_multiple_of(3) {
            503
        } else {
            200
        };
        log.push((
            v["k"].as_str().unwrap().to_string(),
            v["n"].as_u64().unwrap(),
            status,
        ));
        (status, vec![], String::new())
    });
    const PER_KEY: u64 = 15;
    for n in 0..PER_KEY {
        for k in ["a", "b", "c"] {
            send_json(&gw, "app", &format!(r#"{{"k":"{k}","n":{n}}}"#)).await;
        }
    }
    let mut listen = Listen::dev(&gw, &rx, &["--concurrency", "8"]);
    gw.nothing_pending().await;
    listen.interrupt();
    assert_eq!(listen.exit_code().await, Some(0), "{}", listen.stderr());

    let log = log.lock().clone();
    for k in ["a", "b", "c"] {
        let seen: Vec<(u64, u16)> = log
            .iter()
            .filter(|(key, ..)| key == k)
            .map(|&(_, n, s)| (n, s))
            .collect();
        // In order; a message repeats only while it fails, and the next
        // comes only after it succeeded.
        let mut expected = 0;
        for &(n, status) in &seen {
            assert_eq!(n, expected, "key {k}: {seen:?}");
            if status == 200 {
                expected += 1;
            }
        }
        assert_eq!(
            expected, PER_KEY,
            "key {k}: every message delivered: {seen:?}"
        );
    }
    assert!(
        log.iter().any(|&(.., s)| s == 503),
        "some failed and were retried"
    );
}
