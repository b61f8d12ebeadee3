//! Live reload: `POST /api/v1/reload` and SIGHUP on the real binary, while
//! traffic flows; a broken file refused with `check`'s errors; a changed source
//! secret; admin token rotation; a gateway without a file.

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::console::Browser;
use crate::harness::*;

/// Source `app` routed to `svc` at `rx`.
fn base(rx: &Receiver) -> String {
    format!(
        r#"
[[sources]]
name = "app"

[[destinations]]
name = "svc"
url = "{}"

[[routes]]
source = "app"
to = "svc"
"#,
        rx.url("/hook")
    )
}

/// A second destination `extra` at `rx` and a route from `app` to it.
fn extra(rx: &Receiver) -> String {
    format!(
        r#"
[[destinations]]
name = "extra"
url = "{}"

[[routes]]
source = "app"
to = "extra"
"#,
        rx.url("/extra")
    )
}

/// Replaces the gateway's config file in one step (a rename), so a reload
/// never reads half of it.
fn rewrite(gw: &Gateway, f: impl FnOnce(String) -> String) {
    let text = f(std::fs::read_to_string(&gw.config).unwrap());
    let tmp = gw.config.with_extension("toml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &gw.config).unwrap();
}

/// `POST /api/v1/reload` with `token`.
async fn reload_with(gw: &Gateway, token: &str) -> (u16, Value) {
    let r = client()
        .post(gw.admin_url("/api/v1/reload"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn reload(gw: &Gateway) -> (u16, Value) {
    reload_with(gw, ADMIN_TOKEN).await
}

fn sighup(gw: &Gateway) {
    let ok = Command::new("kill")
        .arg("-HUP")
        .arg(gw.pid().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP failed");
}

/// The value of a counter line of `/metrics` (0 when absent).
fn counter(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Which config runs, as the senders see it: `gen` counts every change of
/// state; `with_extra` is `None` while a reload is under way.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Phase {
    gen: u64,
    with_extra: Option<bool>,
}

/// The issue's test: 20 reloads, alternating a config without and with a
/// second destination and route, while 5,000 messages are ingested. Every
/// ingest answer is 200, every message reaches `svc`, every message sent
/// wholly after a reload that added the route (and before the next reload)
/// reaches `extra`, and none sent while the route was absent does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: 20 reloads while 5,000 messages are ingested (about 7 s)"]
async fn twenty_reloads_under_load_lose_nothing_and_routes_follow() {
    const TOTAL: usize = 5_000;
    const RELOADS: usize = 20;
    const SENDERS: usize = 16;
    let (rx, rx_extra) = (Receiver::start().await, Receiver::start().await);
    let without = base(&rx);
    let with = format!("{without}{}", extra(&rx_extra));
    // Started with the route, so the last of the 20 reloads (an even number)
    // puts it back and every delivery to `extra` can finish.
    let gw = Arc::new(Gateway::binary(&with).await);
    let phase = Arc::new(Mutex::new(Phase {
        gen: 0,
        with_extra: Some(true),
    }));
    let next = Arc::new(AtomicUsize::new(0));
    let sent: Arc<Mutex<Vec<(String, Phase, Phase)>>> = Arc::default();
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();

    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (gw, phase, next, sent, refused) = (
            gw.clone(),
            phase.clone(),
            next.clone(),
            sent.clone(),
            refused.clone(),
        );
        senders.push(tokio::spawn(async move {
            let c = client();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= TOTAL {
                    break;
                }
                let before = *phase.lock();
                let r = c
                    .post(gw.ingest_url("app"))
                    .header("content-type", "application/json")
                    .body(format!("{{\"n\":{n}}}"))
                    .send()
                    .await;
                let after = *phase.lock();
                match r {
                    Ok(r) if r.status() == 200 => sent.lock().push((message_id(&r), before, after)),
                    Ok(r) => refused.lock().push(format!("message {n}: {}", r.status())),
                    Err(e) => refused.lock().push(format!("message {n}: {e}")),
                }
            }
        }));
    }

    let files = [without.clone(), with.clone()];
    let text_of = |body: &str| {
        let current = std::fs::read_to_string(&gw.config).unwrap();
        let head = current.split("\n[[sources]]").next().unwrap().to_string();
        format!("{head}{body}")
    };
    for i in 0..RELOADS {
        // Spread the reloads over the traffic: wait until enough was sent.
        let due = (i + 1) * TOTAL / (RELOADS + 2);
        eventually(Duration::from_secs(60), "messages sent", || async {
            (sent.lock().len() + refused.lock().len() >= due).then_some(())
        })
        .await;
        let adds = i % 2 == 1;
        let text = text_of(&files[usize::from(adds)]);
        rewrite(&gw, |_| text);
        {
            let mut p = phase.lock();
            *p = Phase {
                gen: p.gen + 1,
                with_extra: None,
            };
        }
        let (status, v) = reload(&gw).await;
        assert_eq!(status, 200, "reload {i}: {v}");
        let key = if adds { "added" } else { "removed" };
        assert_eq!(v["changes"]["destinations"][key], json!(["extra"]), "{v}");
        assert_eq!(v["changes"]["routes"][key], json!(["app → extra"]), "{v}");
        let mut p = phase.lock();
        *p = Phase {
            gen: p.gen + 1,
            with_extra: Some(adds),
        };
    }
    for s in senders {
        s.await.unwrap();
    }
    let refused = refused.lock().clone();
    assert!(refused.is_empty(), "refused during reloads: {refused:?}");
    let sent = sent.lock().clone();
    assert_eq!(sent.len(), TOTAL);

    let all: Vec<String> = sent.iter().map(|(id, _, _)| id.clone()).collect();
    let got = rx.wait_for_ids(&all, Duration::from_secs(120)).await;
    let seen: HashSet<&str> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
    let lost: Vec<&String> = all
        .iter()
        .filter(|id| !seen.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} messages never reached svc: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    let stable = |want: bool| -> Vec<String> {
        sent.iter()
            .filter(|(_, b, a)| b == a && b.with_extra == Some(want))
            .map(|(id, _, _)| id.clone())
            .collect()
    };
    let (routed, unrouted) = (stable(true), stable(false));
    assert!(
        !routed.is_empty() && !unrouted.is_empty(),
        "the traffic spans both configs: {} with the route, {} without",
        routed.len(),
        unrouted.len()
    );
    let got = rx_extra
        .wait_for_ids(&routed, Duration::from_secs(120))
        .await;
    let seen: HashSet<&str> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
    let missing = routed
        .iter()
        .filter(|id| !seen.contains(id.as_str()))
        .count();
    assert_eq!(
        missing, 0,
        "sent after the route was added, yet not at extra"
    );
    // Everything is final: what `extra` got now is all it will get.
    gw.nothing_pending().await;
    let got = rx_extra.received();
    let seen: HashSet<&str> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
    let stray = unrouted
        .iter()
        .filter(|id| seen.contains(id.as_str()))
        .count();
    assert_eq!(
        stray, 0,
        "sent while the route was gone, yet delivered to extra"
    );

    let metrics = gw.metrics_text().await;
    assert_eq!(
        counter(
            &metrics,
            "hookgate_config_reloads_total{outcome=\"applied\"}"
        ),
        RELOADS as f64,
        "{metrics}"
    );
    let log = gw.log();
    assert!(
        log.contains("config reloaded: destination `extra` added, route `app → extra` added"),
        "{log}"
    );
}

/// A file that fails `check` is refused with `check`'s own errors, through the
/// API (422) and SIGHUP (the log), and the running config keeps working; once
/// fixed, SIGHUP applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_file_is_refused_and_the_running_config_stays() {
    let rx = Receiver::start().await;
    let mut gw = Gateway::binary(&base(&rx)).await;
    let good = std::fs::read_to_string(&gw.config).unwrap();
    rewrite(&gw, |t| {
        t.replace("url = ", "max_inflight = 3\nurl = ")
            .replace("to = \"svc\"", "to = \"nowhere\"")
    });

    let (status, v) = reload(&gw).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid_config", "{v}");
    let texts: Vec<String> = v["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["text"].as_str().unwrap().to_string())
        .collect();
    let check = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .arg("check")
        .arg("--config")
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(!check.status.success());
    let printed = String::from_utf8_lossy(&check.stderr);
    let check_lines: Vec<&str> = printed
        .lines()
        .filter(|l| !l.ends_with("errors found") && !l.ends_with("error found"))
        .collect();
    assert_eq!(texts, check_lines, "the same errors as `hookgate check`");
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains("max_inflight"), "{texts:?}");
    let file = gw.config.display().to_string();
    assert!(
        texts.iter().all(|t| t.starts_with(&format!("{file}:"))),
        "{texts:?}"
    );

    // The old config runs on: ingest and delivery to svc.
    let r = client()
        .post(gw.ingest_url("app"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = message_id(&r);
    let m = gw.settled(&id).await;
    assert_eq!(m["deliveries"][0]["destination"], "svc", "{m}");

    // The same through SIGHUP: logged with the errors, still running.
    sighup(&gw);
    eventually(
        Duration::from_secs(20),
        "the refusal logged twice",
        || async { (gw.log().matches("config reload refused").count() == 2).then_some(()) },
    )
    .await;
    let log = gw.log();
    assert!(log.contains(&texts[0]), "{log}");
    let metrics = gw.metrics_text().await;
    assert_eq!(
        counter(
            &metrics,
            "hookgate_config_reloads_total{outcome=\"refused\"}"
        ),
        2.0
    );
    assert_eq!(
        counter(
            &metrics,
            "hookgate_config_reloads_total{outcome=\"applied\"}"
        ),
        0.0
    );
    assert!(
        reqwest::get(gw.admin_url("/healthz")).await.is_ok(),
        "SIGHUP did not stop it"
    );

    // Fixed, with a new source: SIGHUP applies it.
    rewrite(&gw, |_| format!("{good}\n[[sources]]\nname = \"second\"\n"));
    sighup(&gw);
    eventually(Duration::from_secs(20), "the new source", || async {
        let r = client()
            .post(gw.ingest_url("second"))
            .body("{}")
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    assert!(gw.log().contains("config reloaded: source `second` added"));
    assert_eq!(gw.terminate(), Some(0));
}

fn hmac_hex(secret: &str, body: &str) -> String {
    use hmac::Mac as _;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// A changed source secret: after the reload, requests signed with the new
/// secret are accepted and those signed with the old one refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_source_secret_applies_from_the_reload_on() {
    let rx = Receiver::start().await;
    let body = base(&rx).replace(
        "name = \"app\"\n",
        "name = \"app\"\nverify = { type = \"hmac\", header = \"x-sig\", secret = \"old-secret\" }\n",
    );
    let gw = Gateway::binary(&body).await;
    let post = |secret: &'static str| {
        let url = gw.ingest_url("app");
        async move {
            let payload = "{\"hello\":1}";
            client()
                .post(url)
                .header("x-sig", hmac_hex(secret, payload))
                .body(payload)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post("old-secret").await, 200);
    assert_eq!(post("new-secret").await, 401);

    rewrite(&gw, |t| t.replace("old-secret", "new-secret"));
    let (status, v) = reload(&gw).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["changes"]["sources"]["changed"], json!(["app"]), "{v}");
    assert!(!v.to_string().contains("new-secret"), "{v}");

    assert_eq!(post("new-secret").await, 200);
    assert_eq!(post("old-secret").await, 401);
    assert!(!gw.log().contains("new-secret"), "a secret in the log");
}

/// Admin tokens rotate with a reload: the old one is refused from then on,
/// and a console session opened with it ends. A setting fixed at start is
/// named as needing a restart and keeps its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_tokens_rotate_and_fixed_settings_need_a_restart() {
    let rx = Receiver::start().await;
    let gw = Gateway::binary(&base(&rx)).await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.login(ADMIN_TOKEN).await, 303);
    assert_eq!(browser.get("/messages").await.status(), 200);
    rewrite(&gw, |t| {
        t.replace(ADMIN_TOKEN, "rotated-token")
            .replace("shutdown_grace = \"5s\"", "shutdown_grace = \"6s\"")
    });
    let (status, v) = reload(&gw).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["changes"]["settings"],
        json!(["server.admin_tokens"]),
        "{v}"
    );
    assert_eq!(v["needs_restart"], json!(["server.shutdown_grace"]), "{v}");
    assert!(!v.to_string().contains("rotated-token"), "{v}");

    let list = |token: &'static str| {
        let url = gw.admin_url("/api/v1/destinations");
        async move {
            client()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(list(ADMIN_TOKEN).await, 401);
    assert_eq!(list("rotated-token").await, 200);
    let (status, _) = reload_with(&gw, ADMIN_TOKEN).await;
    assert_eq!(status, 401, "reloading takes the admin token too");
    // The console: the old session ends, the old token no longer logs in.
    assert_eq!(browser.get("/messages").await.status(), 303);
    assert_eq!(Browser::new(&gw).login(ADMIN_TOKEN).await, 401);
    assert_eq!(Browser::new(&gw).login("rotated-token").await, 303);
    let log = gw.log();
    assert!(
        log.contains("needs a restart: server.shutdown_grace"),
        "{log}"
    );
    assert!(!log.contains("rotated-token"), "a token in the log");
}

/// A file destination may not take the name of one made through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_destination_named_like_an_api_one_is_refused() {
    let (rx, rx_extra) = (Receiver::start().await, Receiver::start().await);
    let gw = Gateway::binary_opts(&base(&rx), "allow_private_destinations = true\n", &[]).await;
    let (status, v) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "extra", "url": rx_extra.url("/api")}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    rewrite(&gw, |t| format!("{t}{}", extra(&rx_extra)));
    let (status, v) = reload(&gw).await;
    assert_eq!(status, 422, "{v}");
    let text = v["error"]["details"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("destination `extra` has the name of a destination made through the API"),
        "{v}"
    );
    // The API destination is untouched.
    let (status, d) = gw.api_get("/api/v1/destinations/extra").await;
    assert_eq!(status, 200, "{d}");
}

/// A gateway given its config as text (not a file) has nothing to reload.
#[tokio::test]
async fn without_a_file_there_is_nothing_to_reload() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&base(&rx)).await;
    let (status, v) = reload(&gw).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "no_config_file");
}

/// `server.max_body` follows a reload on both listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_body_follows_the_reload_on_both_listeners() {
    let rx = Receiver::start().await;
    let gw = Gateway::binary(&base(&rx)).await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(6000));
    let ingest = |body: String| {
        let url = gw.ingest_url("app");
        async move {
            let r = client().post(url).body(body).send().await.unwrap();
            r.status().as_u16()
        }
    };
    let publish = |pad: usize| {
        let gw = &gw;
        async move {
            let body = json!({"type": "t.x", "payload": {"pad": "x".repeat(pad)}});
            gw.api_post("/api/v1/events", body).await.0.as_u16()
        }
    };
    assert_eq!(ingest(big.clone()).await, 200);
    assert_eq!(publish(6000).await, 202);

    rewrite(&gw, |t| {
        t.replacen("[server]\n", "[server]\nmax_body = \"4KiB\"\n", 1)
    });
    let (status, v) = reload(&gw).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["changes"]["settings"], json!(["server.max_body"]), "{v}");
    assert_eq!(v["needs_restart"], json!([]), "{v}");

    assert_eq!(ingest(big).await, 413);
    assert_eq!(ingest("{}".into()).await, 200);
    assert_eq!(publish(6000).await, 413);
    assert_eq!(publish(10).await, 202);
}

/// A reload that removes a source an API destination is routed from goes
/// through, says so in its answer and its log, and keeps the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_the_source_of_an_api_destination_is_warned_about() {
    let (rx, rx_api) = (Receiver::start().await, Receiver::start().await);
    let forms = "\n[[sources]]\nname = \"forms\"\n";
    let gw = Gateway::binary_opts(
        &format!("{}{forms}", base(&rx)),
        "allow_private_destinations = true\n",
        &[],
    )
    .await;
    let (status, v) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "crm", "url": rx_api.url("/api"), "source": "forms"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    rewrite(&gw, |t| t.replace(forms, "\n"));
    let (status, v) = reload(&gw).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["changes"]["sources"]["removed"], json!(["forms"]), "{v}");
    let warning = "destination `crm` (made through the API) is routed from source `forms`, which the file no longer defines";
    let warnings = v["changes"]["warnings"].as_array().expect("warnings");
    assert!(
        warnings.len() == 1 && warnings[0].as_str().unwrap().contains(warning),
        "{v}"
    );
    eventually(
        Duration::from_secs(10),
        "the warning in the log",
        || async { gw.log().contains(warning).then_some(()) },
    )
    .await;
    let (status, d) = gw.api_get("/api/v1/destinations/crm").await;
    assert_eq!(status, 200, "{d}");

    // The source back: no warning, and the destination gets its messages.
    rewrite(&gw, |t| format!("{t}{forms}"));
    let (status, v) = reload(&gw).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["changes"]["sources"]["added"], json!(["forms"]), "{v}");
    assert!(v["changes"].get("warnings").is_none(), "{v}");
    let r = client()
        .post(gw.ingest_url("forms"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    rx_api.wait_for(1, Duration::from_secs(20)).await;
}
