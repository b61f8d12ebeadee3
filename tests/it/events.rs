//! Sending: the events API, Standard Webhooks signing, run-time destinations,
//! rotation, the SSRF guard, scheduled delivery across crashes, endpoint health.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(rx: &Receiver) -> String {
    format!(
        r#"
[[destinations]]
name = "crm"
url = "{}"
signing_secret = "{SECRET}"
retry = {{ schedule = ["0s", "200ms"] }}

[[routes]]
source = "api"
event_types = ["lead.*"]
to = "crm"
"#,
        rx.url("/crm")
    )
}

async fn publish(gw: &Gateway, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (st, v) = gw.api_post("/api/v1/events", body).await;
    (st.as_u16(), v)
}

/// The wall clock in milliseconds since the epoch (the gateway's clock).
fn unix_millis() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn verify(secret: &str, r: &Received) -> bool {
    let key = hookgate::signing::decode_secret(secret).unwrap();
    let id = r.header("webhook-id").unwrap();
    let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
    hookgate::signing::verify(
        &key,
        id,
        ts,
        &r.body,
        r.header("webhook-signature").unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_needs_a_token_and_routes_by_event_type_globs() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&config(&rx)).await;
    let r = client()
        .post(gw.admin_url("/api/v1/events"))
        .json(&json!({"type": "lead.created", "payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (st, v) = publish(
        &gw,
        json!({"type": "lead.created", "payload": {"name": "Ada", "score": 9.5}}),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("msg_"));
    let (st, v2) = publish(&gw, json!({"type": "order.paid", "payload": {"n": 1}})).await;
    assert_eq!(st, 202);
    assert_eq!(
        v2["destinations"], 0,
        "an unmatched type is delivered nowhere"
    );
    let got = rx.wait_for(1, Duration::from_secs(5)).await;
    gw.nothing_pending().await;
    assert_eq!(rx.count(), 1);
    let r = &got[0];
    assert_eq!(r.header("webhook-id"), Some(id.as_str()));
    assert_eq!(r.header("hookgate-event-type"), Some("lead.created"));
    assert_eq!(r.header("hookgate-source"), Some("api"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let payload: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(payload, json!({"name": "Ada", "score": 9.5}));
    assert!(verify(SECRET, r), "signed with Standard Webhooks");
    // Bad input is a clear 4xx.
    for bad in [
        json!({"payload": {}}),
        json!({"type": "", "payload": {}}),
        json!({"type": "a", "payload": {}, "delay": "soon"}),
        json!({"type": "a", "payload": {}, "deliver_at": "tomorrow"}),
        json!({"type": "a", "payload": {}, "deliver_at": "2030-01-01T00:00:00Z", "delay": "1s"}),
        json!({"type": "a", "payload": {}, "priority": "urgent"}),
        json!({"type": "a", "payload": {}, "extra": 1}),
        json!({"type": "a"}),
    ] {
        let (st, v) = publish(&gw, bad.clone()).await;
        assert!(st == 400 || st == 422, "{bad} -> {st}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_payload_is_delivered_byte_for_byte() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&config(&rx)).await;
    let raw = r#"{"type":"lead.created","payload":{"b": [1, 2,  3], "a":"\u00e9"}}"#;
    let r = client()
        .post(gw.admin_url("/api/v1/events"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let got = rx.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(&got[0].body[..], br#"{"b": [1, 2,  3], "a":"\u00e9"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_idempotency_key_gives_the_same_id_and_delivers_once() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&config(&rx)).await;
    let body = json!({"type": "lead.created", "payload": {"x": 1}, "idempotency_key": "lead-42"});
    let (_, a) = publish(&gw, body.clone()).await;
    let (_, b) = publish(&gw, body.clone()).await;
    assert_eq!(a["id"], b["id"]);
    assert_eq!(b["duplicate"], true);
    let c = client();
    let sends = (0..10).map(|_| {
        c.post(gw.admin_url("/api/v1/events"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    });
    for r in futures::future::join_all(sends).await {
        let v: serde_json::Value = r.unwrap().json().await.unwrap();
        assert_eq!(v["id"], a["id"]);
    }
    rx.wait_for(1, Duration::from_secs(5)).await;
    gw.nothing_pending().await;
    assert_eq!(rx.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delay_and_deliver_at_survive_kill_nine() {
    let rx = Receiver::start().await;
    let mut gw = Gateway::binary(&config(&rx)).await;
    let t0 = Instant::now();
    let (_, a) = publish(
        &gw,
        json!({"type": "lead.later", "payload": {"n": "delay"}, "delay": "3s"}),
    )
    .await;
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(4);
    let at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (_, b) = publish(
        &gw,
        json!({"type": "lead.later", "payload": {"n": "at"}, "deliver_at": at}),
    )
    .await;
    // Its time will pass while the gateway is down.
    let (_, c) = publish(
        &gw,
        json!({"type": "lead.later", "payload": {"n": "soon"}, "delay": "1s"}),
    )
    .await;
    let (_, v) = gw.api_get("/api/v1/messages?status=pending&limit=10").await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(rx.count(), 0, "nothing before its time");
    // When the store has it due: that time passes while the gateway is down.
    let (_, m) = gw
        .api_get(&format!("/api/v1/messages/{}", c["id"].as_str().unwrap()))
        .await;
    let due = m["deliveries"][0]["next_attempt_at"]
        .as_i64()
        .unwrap_or_else(|| panic!("a due time: {m}"));
    gw.kill9();
    eventually(Duration::from_secs(10), "the delay to expire", || async {
        (unix_millis() >= due).then_some(())
    })
    .await;
    gw.restart().await;
    let got = rx.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(
        got[0].header("webhook-id"),
        c["id"].as_str(),
        "an overdue one goes at once"
    );
    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    let arrival = |id: &serde_json::Value| {
        got.iter()
            .find(|r| r.header("webhook-id") == id.as_str())
            .map(|r| r.at.duration_since(t0))
            .unwrap()
    };
    assert!(
        arrival(&a["id"]) >= Duration::from_millis(2900),
        "{:?}",
        arrival(&a["id"])
    );
    assert!(
        arrival(&b["id"]) >= Duration::from_millis(3500),
        "{:?}",
        arrival(&b["id"])
    );
    assert!(arrival(&a["id"]) < Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_time_destinations_crud_and_rotation() {
    let rx = Receiver::start().await;
    let gw = Gateway::start_opts(&config(&rx), "allow_private_destinations = true", &[]).await;
    let (st, created) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "hooks", "url": rx.url("/rt"), "event_types": ["order.*"], "timeout": "2s"}),
        )
        .await;
    assert_eq!(st, 201, "{created}");
    let secret = created["signing_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["origin"], "api");
    // Duplicate names conflict, also with config destinations.
    let (st, _) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "hooks", "url": rx.url("/x")}),
        )
        .await;
    assert_eq!(st, 409);
    let (st, _) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "crm", "url": rx.url("/x")}),
        )
        .await;
    assert_eq!(st, 409);
    // Routed by its event_types.
    publish(&gw, json!({"type": "order.paid", "payload": {"n": 1}})).await;
    let got = rx.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].path, "/rt");
    assert!(verify(&secret, &got[0]));
    // GET and the listing show it; secrets are not shown there.
    let (st, one) = gw.api_get("/api/v1/destinations/hooks").await;
    assert_eq!(st, 200);
    assert!(one.get("signing_secret").is_none());
    assert!(!one.to_string().contains(&secret));
    let (_, all) = gw.api_get("/api/v1/destinations").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    // Rotation: both the new and the old secret sign during the grace period.
    let (st, rot) = gw
        .api_post(
            "/api/v1/destinations/hooks/rotate-secret",
            json!({"grace": "500ms"}),
        )
        .await;
    assert_eq!(st, 200, "{rot}");
    let new_secret = rot["signing_secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    publish(&gw, json!({"type": "order.paid", "payload": {"n": 2}})).await;
    let got = rx.wait_for(2, Duration::from_secs(5)).await;
    let sig = got[1].header("webhook-signature").unwrap();
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
    assert!(verify(&secret, &got[1]) && verify(&new_secret, &got[1]));
    // The grace ends at the time the answer gave; from then on only the new
    // secret signs.
    let until = rot["previous_valid_until"]
        .as_i64()
        .expect("previous_valid_until");
    eventually(
        Duration::from_secs(10),
        "the rotation grace to end",
        || async { (unix_millis() >= until).then_some(()) },
    )
    .await;
    publish(&gw, json!({"type": "order.paid", "payload": {"n": 3}})).await;
    let got = rx.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(
        got[2]
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        1
    );
    assert!(verify(&new_secret, &got[2]) && !verify(&secret, &got[2]));
    // PATCH changes the route; null removes a field.
    let r = client()
        .patch(gw.admin_url("/api/v1/destinations/hooks"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"event_types": ["invoice.*"], "timeout": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, v) = publish(&gw, json!({"type": "order.paid", "payload": {}})).await;
    assert_eq!(v["destinations"], 0);
    let (_, v) = publish(&gw, json!({"type": "invoice.sent", "payload": {}})).await;
    assert_eq!(v["destinations"], 1);
    rx.wait_for(4, Duration::from_secs(5)).await;
    // Config-file destinations are read-only.
    for (method, path) in [
        ("PATCH", "/api/v1/destinations/crm"),
        ("DELETE", "/api/v1/destinations/crm"),
        ("POST", "/api/v1/destinations/crm/rotate-secret"),
    ] {
        let r = client()
            .request(method.parse().unwrap(), gw.admin_url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409, "{method} {path}");
    }
    // DELETE removes it; later events are not routed there.
    let r = client()
        .delete(gw.admin_url("/api/v1/destinations/hooks"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (st, _) = gw.api_get("/api/v1/destinations/hooks").await;
    assert_eq!(st, 404);
    let (_, v) = publish(&gw, json!({"type": "invoice.sent", "payload": {}})).await;
    assert_eq!(v["destinations"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_time_destinations_survive_a_restart() {
    let rx = Receiver::start().await;
    let mut gw = Gateway::binary_opts(&config(&rx), "allow_private_destinations = true", &[]).await;
    let (st, created) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "keep", "url": rx.url("/k"), "event_types": ["*"], "signing_secret": SECRET}),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(created["signing_secret"], SECRET);
    gw.kill9();
    gw.restart().await;
    let (st, _) = gw.api_get("/api/v1/destinations/keep").await;
    assert_eq!(st, 200);
    publish(&gw, json!({"type": "x.y", "payload": {}})).await;
    let got = rx.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].path, "/k");
    assert!(verify(SECRET, &got[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ssrf_guard_refuses_every_class_of_private_address() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&config(&rx)).await;
    for url in [
        "http://127.0.0.1:9000/x",
        "http://localhost:9000/x",
        "http://[::1]/x",
        "http://10.0.0.5/x",
        "http://172.16.3.4/x",
        "http://192.168.1.10/x",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/x",
        "http://224.0.0.1/x",
        "http://0.0.0.0/x",
        "http://240.0.0.1/x",
        "http://255.255.255.255/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://[::ffff:a9fe:a9fe]/x",
        "http://[fe80::1]/x",
        "http://[fc00::1]/x",
        "http://[ff02::1]/x",
        "http://[::]/x",
        "http://2130706433/x",
        "http://0x7f000001/x",
    ] {
        let (st, v) = gw
            .api_post("/api/v1/destinations", json!({"name": "evil", "url": url}))
            .await;
        assert_eq!(st, 422, "{url}: {v}");
        assert_eq!(v["error"]["code"], "invalid_destination");
    }
    // Other bad input is refused with a reason.
    for bad in [
        json!({"name": "a b", "url": "http://93.184.215.14/"}),
        json!({"name": "ok", "url": "ftp://93.184.215.14/"}),
        json!({"name": "ok", "url": "not a url"}),
        json!({"name": "ok", "url": "http://93.184.215.14/", "max_in_flight": 0}),
        json!({"name": "ok", "url": "http://93.184.215.14/", "signing_secret": "nope"}),
        json!({"name": "ok", "url": "http://93.184.215.14/", "retry": {"schedule": []}}),
        json!({"name": "ok", "url": "http://93.184.215.14/", "signing_secrets": []}),
        json!({"name": "ok", "url": "http://93.184.215.14/", "surprise": true}),
        json!({"url": "http://93.184.215.14/"}),
    ] {
        let (st, v) = gw.api_post("/api/v1/destinations", bad.clone()).await;
        assert_eq!(st, 422, "{bad}: {v}");
    }
    // A public address is accepted.
    let (st, v) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "public", "url": "http://93.184.215.14/hook"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

/// A refused definition names every problem with a JSON pointer to its field,
/// in the same words `check` uses for the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_destination_points_at_each_bad_field() {
    let rx = Receiver::start().await;
    let gw = Gateway::start_opts(&config(&rx), "allow_private_destinations = true", &[]).await;
    let (st, v) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "d", "url": rx.url("/d"), "max_in_flight": 0,
                   "retry": {"max_attempts": 0}, "signing_secret": "nope"}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid_destination");
    let details = v["error"]["details"].as_array().expect("details");
    let pointers: Vec<&str> = details
        .iter()
        .map(|d| d["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        ["/max_in_flight", "/retry/max_attempts", "/signing_secret"],
        "{v}"
    );
    assert_eq!(
        details[2]["message"],
        "signing_secret must be `whsec_` followed by base64"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("max_in_flight must be at least 1"), "{v}");
    assert!(!message.contains("nope"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_destination_failing_for_disable_after_is_disabled_and_reported() {
    let rx = Receiver::start().await;
    let ok = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let o = ok.clone();
    rx.respond(move |_| {
        if o.load(std::sync::atomic::Ordering::SeqCst) {
            (200, vec![], String::new())
        } else {
            (500, vec![], String::new())
        }
    });
    let gw = Gateway::binary_opts(&config(&rx), "allow_private_destinations = true", &[]).await;
    let (st, _) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "flaky", "url": rx.url("/f"), "disable_after": "1s",
                   "retry": {"schedule": ["0s", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms"]}}),
        )
        .await;
    assert_eq!(st, 201);
    publish(&gw, json!({"type": "t", "payload": {}})).await;
    let v = eventually(Duration::from_secs(10), "disabled", || async {
        let (_, v) = gw.api_get("/api/v1/destinations/flaky").await;
        (v["disabled"] == true).then_some(v)
    })
    .await;
    assert!(v["disabled_at"].is_i64());
    let attempts = rx.count();
    let (_, v) = gw.api_get("/api/v1/destinations/flaky").await;
    assert_eq!(v["disabled"], true, "{v}");
    assert_eq!(rx.count(), attempts, "no attempts while disabled");
    let text = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = eventually(Duration::from_secs(5), "gauge", || async {
        let text = client()
            .get(gw.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with("hookgate_destination_disabled{destination=\"flaky\"} 1"))
            .map(str::to_string)
    })
    .await;
    assert!(!line.is_empty() && !text.is_empty());
    // Resume re-enables it; a success resets the clock.
    ok.store(true, std::sync::atomic::Ordering::SeqCst);
    let (st, v) = gw
        .api_post("/api/v1/destinations/flaky/resume", json!({}))
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["disabled"], false);
    eventually(Duration::from_secs(5), "delivered", || async {
        let (_, v) = gw.api_get("/api/v1/destinations/flaky").await;
        (v["failing_since"].is_null() && v["pending"] == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_no_route_takes_is_answered_with_a_warning_and_counted() {
    let rx = Receiver::start().await;
    let gw = Gateway::binary(&format!("[[sources]]\nname = \"app\"\n{}", config(&rx))).await;
    let (st, v) = publish(&gw, json!({"type": "invoice.paid", "payload": {}})).await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["destinations"], 0);
    let warning = v["warning"].as_str().unwrap_or_default();
    assert!(warning.contains("invoice.paid"), "{v}");
    // A routed event carries no warning.
    let (_, v) = publish(&gw, json!({"type": "lead.created", "payload": {}})).await;
    assert_eq!(v["destinations"], 1);
    assert!(v.get("warning").is_none(), "{v}");
    // Ingest on a source without routes is counted too.
    let r = client()
        .post(gw.ingest_url("app"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = gw.metrics_text().await;
    for source in ["api", "app"] {
        let line = format!("hookgate_unrouted_total{{source=\"{source}\"}} 1");
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
}
