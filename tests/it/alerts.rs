//! Alerts with the real binary: local receivers stand in for a signed webhook,
//! a Slack incoming webhook and the Telegram Bot API. A failing destination
//! raises one `circuit_opened` and one `failing`, a reminder, one `recovered`;
//! flapping stays within the channel's cap; `message.dead` only for the routes
//! a channel asks for; the store out of reach raises `store.degraded` and its
//! recovery.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// The webhook channel's signing secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The Telegram bot's token (only ever sent to the local receiver).
const BOT_TOKEN: &str = "123456:test-token";

/// One alert as a channel received it.
#[derive(Debug, Clone)]
struct Got {
    /// `webhook`, `slack` or `telegram`.
    channel: &'static str,
    /// The event type.
    kind: String,
    /// A reminder of a condition that still holds.
    reminder: bool,
    /// The JSON body.
    body: Value,
}

/// Reads what the alert receiver got: each request by its path, checked
/// against the shape of its channel (signed Standard Webhooks event, Slack's
/// `{"text"}`, Telegram's `sendMessage`).
fn alerts(rx: &Receiver) -> Vec<Got> {
    rx.received().iter().map(parse).collect()
}

fn parse(r: &Received) -> Got {
    let body: Value = serde_json::from_slice(&r.body).expect("an alert is JSON");
    if r.path == "/webhook" {
        let id = r.header("webhook-id").expect("webhook-id");
        let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
        let sig = r.header("webhook-signature").unwrap();
        let key = hookgate::signing::decode_secret(SECRET).unwrap();
        assert!(
            hookgate::signing::verify(&key, id, ts, &r.body, sig),
            "the webhook alert's signature verifies"
        );
        assert_eq!(body["type"], body["data"]["type"]);
        return Got {
            channel: "webhook",
            kind: body["type"].as_str().unwrap().to_string(),
            reminder: body["data"]["reminder"].as_bool().unwrap(),
            body,
        };
    }
    let (channel, text) = if r.path == "/slack" {
        // Slack's incoming webhooks take `text` (mrkdwn) and nothing else is required.
        let obj = body.as_object().unwrap();
        assert!(obj.keys().all(|k| k == "text"), "slack body: {body}");
        ("slack", body["text"].as_str().unwrap().to_string())
    } else {
        assert_eq!(
            r.path,
            format!("/tg/bot{BOT_TOKEN}/sendMessage"),
            "Telegram's method URL"
        );
        assert_eq!(body["chat_id"], "-100123");
        let text = body["text"].as_str().unwrap().to_string();
        assert!(!text.is_empty() && text.chars().count() <= 4096);
        ("telegram", text)
    };
    // `[CRITICAL] destination.failing (still): …`
    let head = text.split(':').next().unwrap();
    let after = head.split("] ").nth(1).expect("a [SEVERITY] mark");
    let reminder = after.ends_with(" (still)");
    Got {
        channel,
        kind: after.trim_end_matches(" (still)").to_string(),
        reminder,
        body,
    }
}

/// Waits until `GET /api/v1/alerts` lists a past alert for which `f` holds
/// (an alert is logged once its delivery is stored: it may arrive first);
/// returns the past alerts.
async fn logged(gw: &Gateway, what: &str, f: impl Fn(&Value) -> bool) -> Vec<Value> {
    eventually(Duration::from_secs(10), what, || async {
        let (_, list) = gw.api_get("/api/v1/alerts?limit=1000").await;
        let past = list["past"].as_array().cloned().unwrap_or_default();
        past.iter().any(&f).then_some(past)
    })
    .await
}

/// Waits until the condition `key` holds (or not) in `GET /api/v1/alerts`.
async fn holds(gw: &Gateway, key: &str, on: bool) {
    eventually(Duration::from_secs(10), key, || async {
        let (_, list) = gw.api_get("/api/v1/alerts").await;
        let now = list["current"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["key"] == key);
        (now == on).then_some(())
    })
    .await
}

/// How many first (not reminder) alerts of `kind` each channel got.
fn starts(got: &[Got], channel: &str, kind: &str) -> usize {
    got.iter()
        .filter(|g| g.channel == channel && g.kind == kind && !g.reminder)
        .count()
}

/// The three channels, posting to `rx`, with `extra` lines in each.
fn channels(rx: &Receiver, extra: &str) -> String {
    format!(
        r#"
[[alerts]]
name = "hook"
format = "webhook"
url = "{webhook}"
secret = "{SECRET}"
{extra}

[[alerts]]
name = "slack"
format = "slack"
url = "{slack}"
{extra}

[[alerts]]
name = "tg"
format = "telegram"
bot_token = "{BOT_TOKEN}"
chat_id = "-100123"
api_url = "{tg}"
{extra}
"#,
        webhook = rx.url("/webhook"),
        slack = rx.url("/slack"),
        tg = rx.url("/tg"),
    )
}

/// The extra lines of a destination whose circuit opens after `failures`
/// failed attempts for `cooldown`, and whose deliveries are tried again every
/// `step`, twenty times: enough attempts for a test's conditions to form.
fn breaker(failures: u32, cooldown: &str, step: &str) -> String {
    let steps = vec![format!("\"{step}\""); 20].join(", ");
    format!(
        "circuit_breaker = {{ failures = {failures}, cooldown = \"{cooldown}\" }}\nretry = {{ schedule = [\"0s\", {steps}] }}"
    )
}

async fn ingest(gw: &Gateway, source: &str) -> String {
    let r = client()
        .post(gw.ingest_url(source))
        .body(r#"{"lead":1}"#)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "ingest");
    message_id(&r)
}

/// Waits until `f` holds of the alerts received, or panics after `secs`.
async fn until(rx: &Receiver, secs: u64, what: &str, f: impl Fn(&[Got]) -> bool) -> Vec<Got> {
    eventually(Duration::from_secs(secs), what, || {
        let got = alerts(rx);
        let ok = f(&got);
        async move { ok.then_some(got) }
    })
    .await
}

#[tokio::test]
async fn a_failing_destination_alerts_once_reminds_and_recovers() {
    let svc = Receiver::start().await;
    svc.respond(|_| (500, vec![], "down".into()));
    let rx = Receiver::start().await;
    let body = format!(
        "{}\n{}",
        app_to_svc(&svc, None, &breaker(3, "500ms", "200ms")),
        channels(
            &rx,
            "events = [\"destination.*\"]\nwindow = \"2s\"\nmin_attempts = 3\nreminder = \"4s\""
        )
    );
    let gw = Gateway::binary(&body).await;
    let t0 = std::time::Instant::now();
    for _ in 0..5 {
        ingest(&gw, "app").await;
    }
    let got = until(
        &rx,
        10,
        "circuit_opened and failing on every channel",
        |g| {
            ["webhook", "slack", "telegram"].iter().all(|c| {
                starts(g, c, "destination.circuit_opened") >= 1
                    && starts(g, c, "destination.failing") >= 1
            })
        },
    )
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "alerts took {:?}",
        t0.elapsed()
    );
    // The webhook event carries the numbers, the time and the console link.
    let failing = got
        .iter()
        .find(|g| g.channel == "webhook" && g.kind == "destination.failing")
        .unwrap();
    let data = &failing.body["data"];
    assert_eq!(data["destination"], "svc");
    assert_eq!(data["severity"], "critical");
    assert_eq!(data["figures"]["succeeded"], 0);
    assert!(data["figures"]["failed"].as_u64().unwrap() >= 3);
    assert!(data["since"].as_str().unwrap().ends_with('Z'));
    let link = data["console_url"].as_str().unwrap();
    assert!(
        link == format!(
            "http://{}/destinations#dest-{}",
            gw.admin,
            hex::encode("svc")
        ),
        "{link}"
    );

    // Still failing: a reminder after the interval, and still one start each.
    let got = until(&rx, 15, "a reminder of failing", |g| {
        g.iter()
            .any(|x| x.channel == "webhook" && x.kind == "destination.failing" && x.reminder)
    })
    .await;
    for c in ["webhook", "slack", "telegram"] {
        assert_eq!(starts(&got, c, "destination.circuit_opened"), 1, "{c}");
        assert_eq!(starts(&got, c, "destination.failing"), 1, "{c}");
    }

    // It comes back, with traffic: one recovered per channel.
    svc.respond(|_| (200, vec![], "ok".into()));
    let recovered = |g: &[Got]| {
        ["webhook", "slack", "telegram"]
            .iter()
            .all(|c| starts(g, c, "destination.recovered") >= 1)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !recovered(&alerts(&rx)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no recovered alert: {:?}",
            alerts(&rx)
        );
        // Traffic paced like a provider's, so the window fills with successes.
        ingest(&gw, "app").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = alerts(&rx);
    for c in ["webhook", "slack", "telegram"] {
        assert_eq!(starts(&got, c, "destination.recovered"), 1, "{c}");
        assert_eq!(starts(&got, c, "destination.failing"), 1, "{c}");
        assert_eq!(starts(&got, c, "destination.circuit_opened"), 1, "{c}");
    }

    // The API lists what was raised; nothing holds any more.
    let (status, list) = gw.api_get("/api/v1/alerts?limit=1000").await;
    assert_eq!(status, 200);
    assert!(list["current"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["type"] != "destination.failing"));
    logged(&gw, "recovered on slack", |r| {
        r["channel"] == "slack" && r["event"]["type"] == "destination.recovered"
    })
    .await;
}

#[tokio::test]
async fn a_flapping_destination_stays_within_the_cap() {
    let svc = Receiver::start().await;
    let rx = Receiver::start().await;
    let cap = 4;
    let body = format!(
        "{}\n[[alerts]]\nname = \"hook\"\nformat = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\nevents = [\"destination.*\"]\nmax_per_hour = {cap}\nwindow = \"1s\"\nmin_attempts = 1\n",
        app_to_svc(&svc, None, &breaker(1, "100ms", "100ms")),
        rx.url("/webhook"),
    );
    let gw = Gateway::binary(&body).await;
    // Ten flaps: down until the evaluator has seen the circuit open, then up
    // until it has seen it closed.
    for _ in 0..10 {
        svc.respond(|_| (500, vec![], "down".into()));
        ingest(&gw, "app").await;
        holds(&gw, "destination.circuit_opened:svc", true).await;
        svc.respond(|_| (200, vec![], "ok".into()));
        holds(&gw, "destination.circuit_opened:svc", false).await;
    }
    let suppressed = eventually(Duration::from_secs(10), "alerts left out", || async {
        let text = gw.metrics_text().await;
        let n: f64 = text
            .lines()
            .find(|l| l.starts_with("hookgate_alerts_suppressed_total{channel=\"hook\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        (n > 0.0).then_some(n)
    })
    .await;
    assert!(suppressed >= 1.0);
    // Everything the cap let through arrives; nothing beyond it.
    let got = rx.wait_for(cap, Duration::from_secs(10)).await;
    gw.nothing_pending().await;
    assert_eq!(rx.received().len(), cap, "{got:?}");
}

#[tokio::test]
async fn message_dead_only_for_the_routes_asked_for() {
    let crm = Receiver::start().await;
    crm.respond(|_| (400, vec![], "bad lead".into()));
    let rx = Receiver::start().await;
    let body = format!(
        r#"
[[sources]]
name = "leads"

[[sources]]
name = "other"

[[destinations]]
name = "crm"
url = "{crm}"

[[routes]]
source = "leads"
to = "crm"
priority = "high"

[[routes]]
source = "other"
to = "crm"

{channels}
"#,
        crm = crm.url("/crm"),
        channels = channels(
            &rx,
            "events = [\"message.dead\"]\ndead = { sources = [\"leads\"], priorities = [\"high\"] }"
        ),
    );
    let gw = Gateway::binary(&body).await;
    // The other route's message dies first: it raises nothing.
    let other = ingest(&gw, "other").await;
    let settled = gw.settled(&other).await;
    assert_eq!(settled["deliveries"][0]["status"], "dead");
    let lead = ingest(&gw, "leads").await;
    until(&rx, 10, "message.dead on every channel", |g| {
        ["webhook", "slack", "telegram"]
            .iter()
            .all(|c| starts(g, c, "message.dead") >= 1)
    })
    .await;
    gw.nothing_pending().await;
    let got = alerts(&rx);
    assert_eq!(got.len(), 3, "one alert per channel: {got:?}");
    let hook = got
        .iter()
        .find(|g| g.channel == "webhook")
        .expect("a webhook alert");
    assert_eq!(hook.body["data"]["message_id"], lead);
    assert_eq!(
        hook.body["data"]["console_url"],
        format!("http://{}/messages/{lead}", gw.admin)
    );
    for g in &got {
        let text = g.body.to_string();
        assert!(text.contains(&lead), "{text}");
        assert!(!text.contains(&other), "the other route's message: {text}");
    }
    let is_dead = |r: &Value| r["event"]["type"] == "message.dead";
    // The channels are sent to in their order: the last one's entry comes last.
    let past = logged(&gw, "message.dead for tg", |r| {
        is_dead(r) && r["channel"] == "tg"
    })
    .await;
    let dead: Vec<&Value> = past.iter().filter(|r| is_dead(r)).collect();
    assert_eq!(dead.len(), 3, "one per channel: {dead:?}");
}

#[tokio::test]
async fn alert_channels_are_listed_without_their_secrets() {
    let rx = Receiver::start().await;
    let gw = Gateway::binary(&channels(
        &rx,
        "events = [\"destination.*\"]\ndead = { priorities = [\"high\"] }",
    ))
    .await;
    let (st, list) = gw.api_get("/api/v1/alert-channels").await;
    assert_eq!(st, 200, "{list}");
    let text = list.to_string();
    for secret in [SECRET, BOT_TOKEN, "/slack", "/webhook", "/tg"] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    let data = list["data"].as_array().unwrap();
    let names: Vec<&str> = data.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hook", "slack", "tg"]);
    let origin = format!("http://{}/…", rx.url("/").split('/').nth(2).unwrap());
    for c in data {
        assert_eq!(c["origin"], "config");
        assert_eq!(c["url"], origin.as_str(), "{c}");
        assert_eq!(c["events"], serde_json::json!(["destination.*"]));
        assert_eq!(c["dead"]["priorities"], serde_json::json!(["high"]));
        assert_eq!(
            c["destination"],
            format!("alerts.{}", c["name"].as_str().unwrap())
        );
    }
    assert_eq!(data[0]["format"], "webhook");
    assert_eq!(data[0]["secret_set"], true);
    assert_eq!(data[2]["format"], "telegram");
    assert_eq!(data[2]["bot_token_set"], true);
    assert_eq!(data[2]["chat_id"], "-100123");
    let (st, one) = gw.api_get("/api/v1/alert-channels/slack").await;
    assert_eq!(st, 200, "{one}");
    assert_eq!(one, data[1]);
    let (st, none) = gw.api_get("/api/v1/alert-channels/nope").await;
    assert_eq!(st, 404, "{none}");
    assert_eq!(none["error"]["code"], "not_found");
}

/// Pulls every delivery due at the pull destination `jobs`, keyed by message.
async fn pulled(gw: &Gateway, n: usize) -> std::collections::HashMap<String, String> {
    eventually(Duration::from_secs(10), "deliveries to pull", || async {
        let (st, v) = gw
            .api_post(
                "/api/v1/destinations/jobs/pull",
                serde_json::json!({"max": 10, "wait": "1s"}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        let got: std::collections::HashMap<String, String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["message_id"].as_str().unwrap().to_string(),
                    i["token"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (got.len() == n).then_some(got)
    })
    .await
}

#[tokio::test]
async fn a_pulled_delivery_that_dies_raises_message_dead_with_its_source_and_priority() {
    let rx = Receiver::start().await;
    let body = format!(
        r#"
[[sources]]
name = "leads"

[[sources]]
name = "other"

[[destinations]]
name = "jobs"
type = "pull"
retry = {{ schedule = ["0s"] }}

[[routes]]
source = "leads"
to = "jobs"
priority = "high"

[[routes]]
source = "other"
to = "jobs"

[[alerts]]
name = "hook"
format = "webhook"
url = "{webhook}"
secret = "{SECRET}"
events = ["message.dead"]
dead = {{ sources = ["leads"], priorities = ["high"] }}
"#,
        webhook = rx.url("/webhook"),
    );
    let gw = Gateway::binary(&body).await;
    let other = ingest(&gw, "other").await;
    let told = ingest(&gw, "leads").await;
    let exhausted = ingest(&gw, "leads").await;
    let tokens = pulled(&gw, 3).await;
    // The consumer says `dead` for two; the third's one retry is used up.
    let (st, v) = gw
        .api_post(
            "/api/v1/destinations/jobs/ack",
            serde_json::json!({"results": [
                {"token": tokens[&other], "result": "dead", "error": "bad"},
                {"token": tokens[&told], "result": "dead", "status": 422},
                {"token": tokens[&exhausted], "result": "retry", "error": "busy"},
            ]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    for id in [&other, &told, &exhausted] {
        assert_eq!(gw.settled(id).await["deliveries"][0]["status"], "dead");
    }
    let got = until(&rx, 10, "message.dead of both leads", |g| {
        starts(g, "webhook", "message.dead") >= 2
    })
    .await;
    gw.nothing_pending().await;
    let got = {
        // Nothing more arrives for the other source's message.
        let again = alerts(&rx);
        assert_eq!(again.len(), got.len(), "{again:?}");
        again
    };
    let mut ids: Vec<&str> = got
        .iter()
        .map(|g| {
            assert_eq!(g.kind, "message.dead");
            assert_eq!(g.body["data"]["source"], "leads");
            assert_eq!(g.body["data"]["destination"], "jobs");
            g.body["data"]["message_id"].as_str().unwrap()
        })
        .collect();
    ids.sort();
    let mut want = vec![told.as_str(), exhausted.as_str()];
    want.sort();
    assert_eq!(ids, want, "the two leads, not the other source's message");
    let by_id = |id: &str| {
        got.iter()
            .find(|g| g.body["data"]["message_id"] == id)
            .unwrap()
    };
    assert_eq!(by_id(&told).body["data"]["figures"]["status"], 422);
    assert!(
        by_id(&exhausted).body["data"]["summary"]
            .as_str()
            .unwrap()
            .contains("busy"),
        "{:?}",
        by_id(&exhausted).body
    );
}

#[tokio::test]
async fn an_unreachable_database_raises_store_degraded_and_its_recovery() {
    let Some((_db, proxy, url)) = proxied_db("alerts_store_degraded").await else {
        eprintln!("skipped: no PostgreSQL server");
        return;
    };
    let rx = Receiver::start().await;
    let body = format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\nquery_timeout = \"1s\"\nconnect_timeout = \"1s\"\n\n[[alerts]]\nname = \"hook\"\nformat = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\nevents = [\"store.*\"]\n",
        rx.url("/webhook")
    );
    let gw = Gateway::binary(&body).await;
    proxy.set(ProxyMode::Refuse);
    let got = until(&rx, 15, "store.degraded", |g| {
        starts(g, "webhook", "store.degraded") == 1
    })
    .await;
    let degraded = got.iter().find(|g| g.kind == "store.degraded").unwrap();
    assert_eq!(degraded.body["data"]["severity"], "critical");
    proxy.set(ProxyMode::Forward);
    let got = until(&rx, 20, "store.recovered", |g| {
        starts(g, "webhook", "store.recovered") == 1
    })
    .await;
    assert_eq!(starts(&got, "webhook", "store.degraded"), 1);
    drop(gw);
}

#[tokio::test]
async fn a_nearly_full_disk_raises_store_degraded_and_its_recovery() {
    let Some(fs) = crate::diskfull::tmpfs_or_skip(
        "a_nearly_full_disk_raises_store_degraded_and_its_recovery",
        "20m",
    ) else {
        return;
    };
    let rx = Receiver::start().await;
    let body = format!(
        "[storage]\npath = \"{}\"\n\n[[alerts]]\nname = \"hook\"\nformat = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\nevents = [\"store.*\"]\n",
        fs.path().join("hookgate.db").display(),
        rx.url("/webhook")
    );
    let gw = Gateway::binary(&body).await;
    // Something else takes the disk: the store refuses writes, and the alert
    // (which the store cannot take) is sent directly.
    let filler = crate::diskfull::fill(fs.path());
    let got = until(&rx, 20, "store.degraded", |g| {
        starts(g, "webhook", "store.degraded") == 1
    })
    .await;
    let degraded = got.iter().find(|g| g.kind == "store.degraded").unwrap();
    assert!(
        degraded.body["data"]["summary"]
            .as_str()
            .unwrap()
            .contains("nearly full"),
        "{}",
        degraded.body
    );
    std::fs::remove_file(filler).unwrap();
    let got = until(&rx, 30, "store.recovered", |g| {
        starts(g, "webhook", "store.recovered") == 1
    })
    .await;
    assert_eq!(starts(&got, "webhook", "store.degraded"), 1);
    let past = logged(&gw, "store.recovered", |r| {
        r["event"]["type"] == "store.recovered"
    })
    .await;
    let outcomes: Vec<(&str, &str)> = past
        .iter()
        .map(|r| {
            (
                r["event"]["type"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        outcomes.contains(&("store.degraded", "sent_directly")),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&("store.recovered", "queued")),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_source_refusing_most_requests_raises_source_rejections() {
    let rx = Receiver::start().await;
    // A source name no other test uses: in-process gateways share the recorder.
    let body = format!(
        r#"
[[sources]]
name = "rotated-secret"
verify = {{ type = "standard-webhooks", secret = "{SECRET}" }}

[[alerts]]
name = "hook"
format = "webhook"
url = "{}"
secret = "{SECRET}"
events = ["source.*"]
min_attempts = 5
"#,
        rx.url("/webhook")
    );
    let gw = Gateway::start(&body).await;
    // The provider signs with a secret that is no longer the source's.
    for _ in 0..6 {
        let r = client()
            .post(gw.ingest_url("rotated-secret"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    gw.sample_overview().await;
    let got = until(&rx, 10, "source.rejections", |g| {
        starts(g, "webhook", "source.rejections") == 1
    })
    .await;
    let data = &got
        .iter()
        .find(|g| g.kind == "source.rejections")
        .unwrap()
        .body["data"];
    assert_eq!(data["source"], "rotated-secret");
    assert_eq!(data["figures"]["requests"], 6);
    assert_eq!(data["figures"]["refused"], 6);
    assert_eq!(
        data["console_url"],
        format!("http://{}/rejected?source=rotated-secret", gw.admin)
    );
}

#[tokio::test]
async fn the_console_shows_current_and_past_alerts() {
    let crm = Receiver::start().await;
    crm.respond(|_| (400, vec![], "bad lead".into()));
    let rx = Receiver::start().await;
    let body = format!(
        "[[sources]]\nname = \"console-leads\"\n\n[[destinations]]\nname = \"console-crm\"\nurl = \"{}\"\n\n[[routes]]\nsource = \"console-leads\"\nto = \"console-crm\"\n\n[[alerts]]\nname = \"ops\"\nformat = \"slack\"\nurl = \"{}\"\nevents = [\"message.dead\"]\n",
        crm.url("/crm"),
        rx.url("/slack/T0/B0/s3cr3t")
    );
    let gw = Gateway::start(&body).await;
    let id = ingest(&gw, "console-leads").await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    let mut b = crate::console::Browser::new(&gw);
    b.login(ADMIN_TOKEN).await;
    // The alert is logged once its delivery is stored (it may arrive first).
    let page = eventually(Duration::from_secs(10), "the alert on the page", || async {
        let page = b.page("/alerts").await;
        page.contains("message.dead").then_some(page)
    })
    .await;
    assert!(
        page.contains(r#"<a href="/alerts" aria-current="page">Alerts</a>"#),
        "{page}"
    );
    for (table, heading) in [
        ("alerts-current", "current-heading"),
        ("alerts-past", "past-heading"),
    ] {
        assert!(
            page.contains(&format!(
                r#"<table id="{table}" aria-labelledby="{heading}">"#
            )),
            "{page}"
        );
    }
    assert!(page.contains("Nothing is wrong now."), "{page}");
    assert!(
        page.contains(&format!(r#"href="http://{}/messages/{id}""#, gw.admin)),
        "{page}"
    );
    // The channel's destination is listed with its URL cut to the origin.
    let dests = b.page("/destinations").await;
    assert!(dests.contains("alerts.ops"), "{dests}");
    assert!(!dests.contains("s3cr3t"), "{dests}");
    let (status, d) = gw.api_get("/api/v1/destinations/alerts.ops").await;
    assert_eq!(status, 200);
    assert_eq!(d["url"], format!("http://{}/…", rx.addr));
}

/// The kinds of the first (not reminder) alerts that arrived at `path`.
fn kinds_at(rx: &Receiver, path: &str) -> Vec<String> {
    rx.received()
        .iter()
        .filter(|r| r.path.starts_with(path))
        .map(parse)
        .filter(|g| !g.reminder)
        .map(|g| g.kind)
        .collect()
}

/// How many of `kinds` are `kind`.
fn count_of(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

#[tokio::test]
async fn a_channel_made_through_the_api_alerts_changes_and_stops_without_a_restart() {
    let svc = Receiver::start().await;
    svc.respond(|_| (500, vec![], "down".into()));
    let rx = Receiver::start().await;
    // One channel in the file (so the evaluator has one after the API's is gone).
    let body = format!(
        "{}\n[[alerts]]\nname = \"tg\"\nformat = \"telegram\"\nbot_token = \"{BOT_TOKEN}\"\nchat_id = \"-100123\"\napi_url = \"{}\"\nevents = [\"destination.circuit_*\"]\n",
        app_to_svc(&svc, None, &breaker(1, "300ms", "200ms")),
        rx.url("/tg"),
    );
    let gw = Gateway::start_opts(&body, "allow_private_destinations = true", &[]).await;
    let (st, made) = gw
        .api_post(
            "/api/v1/alert-channels",
            serde_json::json!({"name": "ops", "format": "webhook", "url": rx.url("/webhook"),
                "secret": SECRET, "events": ["destination.circuit_opened"]}),
        )
        .await;
    assert_eq!(st, 201, "{made}");
    assert_eq!(made["origin"], "api");
    assert_eq!(made["secret_set"], true);
    assert_eq!(made["destination"], "alerts.ops");
    for secret in [SECRET, "/webhook"] {
        assert!(
            !made.to_string().contains(secret),
            "{secret} echoed: {made}"
        );
    }
    // The channel's destination is the channel's to change.
    let (st, v) = gw
        .api_call(
            reqwest::Method::PATCH,
            "/api/v1/destinations/alerts.ops",
            Some(serde_json::json!({"timeout": "1s"})),
        )
        .await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/api/v1/alert-channels"),
        "{v}"
    );

    // A failing destination: the new channel hears of it, without a restart.
    ingest(&gw, "app").await;
    eventually(
        Duration::from_secs(10),
        "circuit_opened at /webhook",
        || async {
            (count_of(&kinds_at(&rx, "/webhook"), "destination.circuit_opened") == 1).then_some(())
        },
    )
    .await;

    // PUT: another format, URL and events; the next change goes there.
    let (st, v) = gw
        .api_call(
            reqwest::Method::PUT,
            "/api/v1/alert-channels/ops",
            Some(
                serde_json::json!({"format": "slack", "url": rx.url("/slack"),
                "events": ["destination.circuit_closed"]}),
            ),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["format"], "slack");
    svc.respond(|_| (200, vec![], "ok".into()));
    ingest(&gw, "app").await;
    eventually(
        Duration::from_secs(15),
        "circuit_closed at /slack",
        || async {
            (count_of(&kinds_at(&rx, "/slack"), "destination.circuit_closed") == 1).then_some(())
        },
    )
    .await;

    // The file's channel cannot be changed here.
    let tg = serde_json::json!({"format": "slack", "url": rx.url("/x")});
    let (st, v) = gw
        .api_call(reqwest::Method::PUT, "/api/v1/alert-channels/tg", Some(tg))
        .await;
    assert_eq!(
        (st.as_u16(), v["error"]["code"].as_str()),
        (409, Some("read_only")),
        "{v}"
    );
    let (st, v) = gw
        .api_call(reqwest::Method::DELETE, "/api/v1/alert-channels/tg", None)
        .await;
    assert_eq!(
        (st.as_u16(), v["error"]["code"].as_str()),
        (409, Some("read_only")),
        "{v}"
    );

    // DELETE: the circuit opens and closes again; only the file's channel hears.
    let (st, _) = gw
        .api_call(reqwest::Method::DELETE, "/api/v1/alert-channels/ops", None)
        .await;
    assert_eq!(st, 204);
    let (st, _) = gw.api_get("/api/v1/destinations/alerts.ops").await;
    assert_eq!(st, 404, "its destination went with it");
    svc.respond(|_| (500, vec![], "down".into()));
    ingest(&gw, "app").await;
    // The evaluator has seen it open (not only the breaker), then it closes.
    holds(&gw, "destination.circuit_opened:svc", true).await;
    svc.respond(|_| (200, vec![], "ok".into()));
    ingest(&gw, "app").await;
    eventually(
        Duration::from_secs(15),
        "the second circuit_closed at /tg",
        || async {
            (count_of(&kinds_at(&rx, "/tg"), "destination.circuit_closed") == 2).then_some(())
        },
    )
    .await;
    gw.nothing_pending().await;
    assert_eq!(
        count_of(&kinds_at(&rx, "/slack"), "destination.circuit_closed"),
        1
    );
    assert_eq!(kinds_at(&rx, "/webhook").len(), 1);
    let (_, list) = gw.api_get("/api/v1/alert-channels").await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tg"]);
}

#[tokio::test]
async fn alert_channel_bodies_that_are_bad_hostile_or_too_large_get_clear_errors() {
    let rx = Receiver::start().await;
    let gw = Gateway::start_opts(
        &channels(&rx, ""),
        "allow_private_destinations = true\nmax_body = \"64KiB\"",
        &[],
    )
    .await;
    let raw = |body: Vec<u8>, content_type: &'static str| {
        let url = gw.admin_url("/api/v1/alert-channels");
        async move {
            let r = client()
                .post(url)
                .bearer_auth(ADMIN_TOKEN)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            (st, v["error"]["code"].as_str().unwrap_or("").to_string())
        }
    };
    assert_eq!(raw(b"{".to_vec(), "application/json").await.0, 400);
    assert_eq!(
        raw(b"{}".to_vec(), "text/plain").await,
        (415, "unsupported_media_type".into())
    );
    assert_eq!(
        raw(b"[1, 2]".to_vec(), "application/json").await,
        (422, "invalid_body".into())
    );
    let deep = format!("{{\"dead\": {}{}}}", "[".repeat(5000), "]".repeat(5000));
    let (st, code) = raw(deep.into_bytes(), "application/json").await;
    assert!(matches!(st, 400 | 422) && !code.is_empty(), "{st} {code}");
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(100 * 1024));
    assert_eq!(
        raw(big.into_bytes(), "application/json").await,
        (413, "too_large".into())
    );

    // Every problem at its field, the URL (which may hold a token) never quoted.
    let (st, v) = gw
        .api_post(
            "/api/v1/alert-channels",
            serde_json::json!({"name": "a b", "format": "slack", "url": "ftp://hooks/T0/hunter2",
                "window": "soon", "max_per_hour": 0, "bogus": true, "failing_below": 2.0}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid_alert_channel");
    let pointers: Vec<&str> = v["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pointer"].as_str().unwrap())
        .collect();
    for p in [
        "/name",
        "/url",
        "/window",
        "/max_per_hour",
        "/bogus",
        "/failing_below",
    ] {
        assert!(pointers.contains(&p), "{p} in {pointers:?}");
    }
    assert!(!v.to_string().contains("hunter2"), "{v}");
    let (st, v) = gw
        .api_post("/api/v1/alert-channels", serde_json::json!({"name": "x"}))
        .await;
    assert_eq!(st, 422);
    assert_eq!(v["error"]["details"][0]["pointer"], "/format", "{v}");

    // A telegram channel: its token never comes back, by any call.
    let token = "999:very-secret-token";
    let (st, v) = gw
        .api_post(
            "/api/v1/alert-channels",
            serde_json::json!({"name": "bot", "format": "telegram", "bot_token": token,
                "chat_id": "42", "api_url": rx.url("/tg2"), "events": ["message.dead"]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["bot_token_set"], true);
    let (st, again) = gw
        .api_post(
            "/api/v1/alert-channels",
            serde_json::json!({"name": "bot", "format": "slack", "url": rx.url("/s")}),
        )
        .await;
    assert_eq!(
        (st.as_u16(), &again["error"]["code"]),
        (409, &serde_json::json!("conflict"))
    );
    let (st, v) = gw
        .api_post(
            "/api/v1/alert-channels",
            serde_json::json!({"name": "slack", "format": "slack", "url": rx.url("/s")}),
        )
        .await;
    assert_eq!(st, 409, "the file's channel's name: {v}");
    for path in [
        "/api/v1/alert-channels",
        "/api/v1/alert-channels/bot",
        "/api/v1/destinations",
        "/api/v1/destinations/alerts.bot",
    ] {
        let (st, v) = gw.api_get(path).await;
        assert_eq!(st, 200, "{path}: {v}");
        assert!(!v.to_string().contains("very-secret-token"), "{path}: {v}");
    }
    let (st, v) = gw
        .api_call(
            reqwest::Method::PUT,
            "/api/v1/alert-channels/bot",
            Some(serde_json::json!({"name": "other", "format": "slack", "url": rx.url("/s")})),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["details"][0]["pointer"], "/name");
    for method in [reqwest::Method::PUT, reqwest::Method::DELETE] {
        let body = (method == reqwest::Method::PUT)
            .then(|| serde_json::json!({"format": "slack", "url": rx.url("/s")}));
        let (st, v) = gw
            .api_call(method, "/api/v1/alert-channels/nope", body)
            .await;
        assert_eq!(st, 404, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_postgres_nodes_send_one_alert_and_the_survivor_takes_over_after_kill_nine() {
    let Some(db) = hookgate::store::postgres::scratch::ScratchDatabase::for_test(
        "two_postgres_nodes_send_one_alert_and_the_survivor_takes_over_after_kill_nine",
    )
    .await
    else {
        return;
    };
    let svc = Receiver::start().await;
    svc.respond(|_| (500, vec![], "down".into()));
    let rx = Receiver::start().await;
    // The circuit opens at the first failure and stays open for the test.
    // The channel's deliveries have one place (`max_in_flight = 1`) shared by
    // both nodes: an alert the killed node had leased holds it until the
    // lease ends (timeout + lease_margin), which these keep to 4 s.
    let body = format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"{}\"\npool_size = 4\nlease_margin = \"2s\"\n\n{}\n[[alerts]]\nname = \"hook\"\nformat = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\nevents = [\"destination.circuit_opened\"]\nreminder = \"2s\"\ntimeout = \"2s\"\n",
        db.url(),
        app_to_svc(&svc, None, &breaker(1, "10m", "300ms")),
        rx.url("/webhook"),
    );
    let a = Gateway::binary(&body).await;
    let b = Gateway::binary(&body).await;
    let mut nodes = [a, b];
    // Messages through both nodes until both have seen the destination fail.
    eventually(Duration::from_secs(20), "both circuits open", || async {
        let mut all = true;
        for gw in &nodes {
            let (_, d) = gw.api_get("/api/v1/destinations/svc").await;
            if d["circuit"] != "open" {
                all = false;
                ingest(gw, "app").await;
            }
        }
        all.then_some(())
    })
    .await;
    // Both see the condition; one judges it. A reminder (2 s on) shows the
    // other node has had its rounds with its circuit open.
    let got = until(&rx, 20, "a reminder", |g| g.iter().any(|x| x.reminder)).await;
    assert_eq!(
        starts(&got, "webhook", "destination.circuit_opened"),
        1,
        "{got:?}"
    );
    let mut leaders = Vec::new();
    for (i, gw) in nodes.iter().enumerate() {
        let (_, list) = gw.api_get("/api/v1/alerts").await;
        if list["leader"] == true {
            leaders.push(i);
        }
    }
    assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
    let (leader, survivor) = (leaders[0], 1 - leaders[0]);
    let admins = [nodes[0].admin, nodes[1].admin];
    let link = |i: usize| {
        format!(
            "http://{}/destinations#dest-{}",
            admins[i],
            hex::encode("svc")
        )
    };
    let first = got.iter().find(|g| !g.reminder).unwrap();
    assert_eq!(first.body["data"]["console_url"], link(leader).as_str());

    // The leader dies: the survivor takes over and raises what it sees.
    nodes[leader].kill9();
    let got = until(&rx, 20, "the survivor's circuit_opened", |g| {
        starts(g, "webhook", "destination.circuit_opened") == 2
    })
    .await;
    let second = got.iter().filter(|g| !g.reminder).nth(1).unwrap();
    assert_eq!(second.body["data"]["console_url"], link(survivor).as_str());
    let (_, list) = nodes[survivor].api_get("/api/v1/alerts").await;
    assert_eq!(list["leader"], true);
}

#[tokio::test]
async fn the_console_creates_and_deletes_an_alert_channel() {
    let rx = Receiver::start().await;
    let gw = Gateway::start_opts(
        &channels(&rx, ""),
        &format!(
            "allow_private_destinations = true\nadmin_read_tokens = [\"{}\"]",
            crate::console::READ_TOKEN
        ),
        &[],
    )
    .await;
    let mut b = crate::console::Browser::new(&gw);
    b.login(ADMIN_TOKEN).await;
    let page = b.page("/alerts").await;
    assert!(page.contains(r#"<table id="alert-channels""#), "{page}");
    assert!(
        !page.contains("/alerts/channels/slack/delete"),
        "the file's: {page}"
    );
    let csrf = crate::console::csrf_field(&page);
    let url = rx.url("/slack/T0/B0/s3cr3t");
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "console-ops"),
        ("format", "slack"),
        ("url", url.as_str()),
        ("events", "destination.*, message.dead"),
    ];
    let r = b.post("/alerts/channels/new", &form, "same-origin").await;
    assert_eq!(r.status(), 303);
    let (st, made) = gw.api_get("/api/v1/alert-channels/console-ops").await;
    assert_eq!(st, 200, "{made}");
    assert_eq!(made["origin"], "api");
    assert_eq!(
        made["events"],
        serde_json::json!(["destination.*", "message.dead"])
    );
    let page = b.page("/alerts").await;
    assert!(
        page.contains("/alerts/channels/console-ops/delete"),
        "{page}"
    );
    assert!(!page.contains("s3cr3t"), "{page}");
    // A bad channel: the API's problems, nothing made.
    let bad = [
        ("csrf", csrf.as_str()),
        ("name", "x y"),
        ("format", "webhook"),
    ];
    let r = b.post("/alerts/channels/new", &bad, "same-origin").await;
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("needs `url`") && text.contains("must be 1-64"),
        "{text}"
    );
    // Read-only may look, not change.
    let mut ro = crate::console::Browser::new(&gw);
    ro.login(crate::console::READ_TOKEN).await;
    let ro_csrf = crate::console::csrf_field(&ro.page("/alerts").await);
    let r = ro
        .post(
            "/alerts/channels/console-ops/delete",
            &[("csrf", ro_csrf.as_str())],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = b
        .post(
            "/alerts/channels/console-ops/delete",
            &[("csrf", csrf.as_str())],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), 303);
    let (st, _) = gw.api_get("/api/v1/alert-channels/console-ops").await;
    assert_eq!(st, 404);
    let r = b
        .post(
            "/alerts/channels/slack/delete",
            &[("csrf", csrf.as_str())],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), 409, "the file's channel");
}
