//! Transformations with the real binary: each example of
//! docs/transformations.md (the scripts in `examples/transforms/`) on a real
//! fixture payload; bad scripts (a throw, an endless loop, 1 GiB, `require`,
//! `fetch`, `process.env`) each contained as `transform_failed` with a clear
//! error while a healthy route keeps delivering; a fixed script and a replay
//! deliver.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

const TG: &str = "tg-secret-token";

/// The path of a documented example script.
fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/transforms")
        .join(name)
        .display()
        .to_string()
}

/// A fixture's body as the bytes to send (JSON compact, a form as it is).
fn fixture_body(name: &str) -> (String, Vec<u8>) {
    let f = fixture(name);
    let ct = f["content_type"].as_str().unwrap().to_string();
    let body = match &f["body"] {
        Value::String(s) => s.clone().into_bytes(),
        v => serde_json::to_vec(v).unwrap(),
    };
    (ct, body)
}

/// Posts a fixture to a source with extra headers; returns the message id.
async fn post_fixture(gw: &Gateway, source: &str, name: &str, headers: &[(&str, &str)]) -> String {
    let (ct, body) = fixture_body(name);
    let mut req = client()
        .post(gw.ingest_url(source))
        .header("content-type", ct)
        .body(body);
    let f = fixture(name);
    for (k, v) in f["headers"].as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "{source}");
    message_id(&r)
}

/// The one delivery of a settled message.
async fn delivery(gw: &Gateway, id: &str) -> Value {
    let m = gw.settled(id).await;
    let ds = m["deliveries"].as_array().unwrap();
    assert_eq!(ds.len(), 1, "{m:#}");
    ds[0].clone()
}

/// The received request at `path` (waiting for it).
async fn received_at(rx: &Receiver, path: &str) -> Received {
    eventually(Duration::from_secs(20), path, || async {
        rx.received().into_iter().find(|r| r.path == path)
    })
    .await
}

fn json_of(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test]
async fn documented_examples_transform_real_fixtures() {
    let rx = Receiver::start().await;
    let body = format!(
        r#"
[[sources]]
name = "telegram"
verify = {{ type = "telegram", secret = "{TG}" }}

[[sources]]
name = "sms"

[[sources]]
name = "respondio"

[[sources]]
name = "slack"

[[destinations]]
name = "chat"
url = "{chat}"

[[destinations]]
name = "sms-app"
url = "{sms}"

[[destinations]]
name = "crm"
url = "{crm}"

[[destinations]]
name = "slack-app"
url = "{slack}"

[[destinations]]
name = "leads"
url = "{leads}"
transform = "lead-priority"

[[routes]]
source = "telegram"
to = "chat"
transform = "telegram-to-chat"

[[routes]]
source = "sms"
to = "sms-app"
transform = "twilio-sms-to-json"

[[routes]]
source = "respondio"
to = "crm"
transform = "respondio-to-lead"

[[routes]]
source = "slack"
to = "slack-app"
transform = "drop-slack-retries"

[[routes]]
source = "api"
event_types = ["lead.*"]
to = "leads"

[[transforms]]
name = "telegram-to-chat"
file = "{f_tg}"

[[transforms]]
name = "twilio-sms-to-json"
file = "{f_sms}"

[[transforms]]
name = "respondio-to-lead"
file = "{f_rio}"

[[transforms]]
name = "drop-slack-retries"
file = "{f_slack}"

[[transforms]]
name = "lead-priority"
file = "{f_lead}"
"#,
        chat = rx.url("/chat"),
        sms = rx.url("/sms"),
        crm = rx.url("/crm"),
        slack = rx.url("/slack"),
        leads = rx.url("/leads"),
        f_tg = example("telegram-to-chat.js"),
        f_sms = example("twilio-sms-to-json.js"),
        f_rio = example("respondio-to-lead.js"),
        f_slack = example("drop-slack-retries.js"),
        f_lead = example("lead-priority.js"),
    );
    let gw = Gateway::binary(&body).await;

    // Telegram update → {chat_id, user, text}; the secret header never reaches the app.
    let id = post_fixture(
        &gw,
        "telegram",
        "telegram-message.json",
        &[("X-Telegram-Bot-Api-Secret-Token", TG)],
    )
    .await;
    let r = received_at(&rx, "/chat").await;
    assert_eq!(
        json_of(&r),
        json!({"chat_id": 1111111, "user": "Testusername", "text": "/start"})
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-telegram-bot-api-secret-token"), None);
    assert_eq!(r.header("webhook-id"), Some(id.as_str()));
    assert_eq!(delivery(&gw, &id).await["status"], "delivered");

    // Twilio SMS form → JSON.
    post_fixture(&gw, "sms", "twilio-sms-received.json", &[]).await;
    let r = received_at(&rx, "/sms").await;
    assert_eq!(
        json_of(&r),
        json!({
            "sid": "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
            "from": "+14017122661",
            "to": "+15558675310",
            "text": "Ahoy! Let's build something amazing.",
            "media": 0,
            "from_city": "SAN FRANCISCO"
        })
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    // The received headers go along, but for those named like a secret
    // (this one has "token" in its name), which the script never saw.
    assert_eq!(r.header("x-home-region"), Some("us1"));
    assert_eq!(r.header("i-twilio-idempotency-token"), None);

    // respond.io message → lead, with its event type changed.
    let id = post_fixture(&gw, "respondio", "respondio-message.received.json", &[]).await;
    let r = received_at(&rx, "/crm").await;
    assert_eq!(
        json_of(&r),
        json!({
            "contact_id": 12345,
            "channel": "respond.io",
            "first_message": "hello",
            "received_message_id": id
        })
    );
    assert_eq!(r.header("hookgate-event-type"), Some("lead.created"));

    // Slack: the first delivery goes through unchanged, a retry is dropped.
    let (_, slack_body) = fixture_body("slack-event_callback-message.json");
    let first = post_fixture(&gw, "slack", "slack-event_callback-message.json", &[]).await;
    let r = received_at(&rx, "/slack").await;
    assert_eq!(
        json_of(&r),
        serde_json::from_slice::<Value>(&slack_body).unwrap()
    );
    assert_eq!(delivery(&gw, &first).await["status"], "delivered");
    let retry = post_fixture(
        &gw,
        "slack",
        "slack-event_callback-message.json",
        &[
            ("X-Slack-Retry-Num", "1"),
            ("X-Slack-Retry-Reason", "http_timeout"),
        ],
    )
    .await;
    let d = delivery(&gw, &retry).await;
    assert_eq!(d["status"], "dropped", "{d:#}");
    assert!(
        d["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("dropped by transform `drop-slack-retries`"),
        "{d:#}"
    );
    let (_, listing) = gw.api_get("/api/v1/deliveries?status=dropped").await;
    assert_eq!(listing["data"].as_array().unwrap().len(), 1, "{listing:#}");

    // Outbound: a lead published through the API gets its priority.
    for (email, budget, want) in [
        ("cto@acme.io", 25000, "high"),
        ("cto@acme.io", 500, "normal"),
        ("someone@gmail.com", 500, "low"),
    ] {
        let (st, v) = gw
            .api_post(
                "/api/v1/events",
                json!({"type": "lead.created", "payload": {"name": "Ada", "email": email, "budget": budget}}),
            )
            .await;
        assert_eq!(st, 202, "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        assert_eq!(delivery(&gw, &id).await["status"], "delivered");
        let r = rx
            .received()
            .into_iter()
            .find(|r| r.header("webhook-id") == Some(id.as_str()))
            .unwrap();
        assert_eq!(
            json_of(&r),
            json!({"name": "Ada", "email": email, "budget": budget, "priority": want})
        );
        assert_eq!(r.header("x-lead-priority"), Some(want));
    }

    // Counted: one dropped, never a transform failure.
    let metrics = gw.metrics_text().await;
    assert!(
        metrics
            .contains(r#"hookgate_deliveries_total{destination="slack-app",outcome="dropped"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"outcome="transform_failed"} 1"#),
        "{metrics}"
    );
}

/// The bad scripts, each with what its delivery's error must say.
const BAD: &[(&str, &str, &str)] = &[
    ("throws", "function transform(r) { throw new Error('boom'); }", "threw Error: boom"),
    ("loops", "function transform(r) { while (true) {} }", "ran longer than its time limit (50ms)"),
    (
        "gibibyte",
        "function transform(r) { const a = []; for (;;) { a.push(new ArrayBuffer(64 * 1024 * 1024)); } }",
        "ran out of memory",
    ),
    ("requires", "function transform(r) { return require('fs'); }", "ReferenceError: require is not defined"),
    ("fetches", "function transform(r) { return fetch('http://127.0.0.1:1/'); }", "ReferenceError: fetch is not defined"),
    ("env", "function transform(r) { r.body = process.env; return r; }", "ReferenceError: process is not defined"),
];

#[tokio::test]
#[ignore = "soak: delivery rates of healthy routes while bad scripts run (about 5 s); alone, so that other tests' load does not distort the rates"]
async fn bad_scripts_are_contained_while_a_healthy_route_keeps_delivering() {
    let rx = Receiver::start().await;
    let mut body = format!(
        r#"
[[sources]]
name = "bad"
event_type = "header:X-Script"

[[sources]]
name = "good"

[[destinations]]
name = "sink"
url = "{sink}"

[[destinations]]
name = "healthy"
url = "{healthy}"

[[destinations]]
name = "healthy-js"
url = "{healthy_js}"

[[routes]]
source = "good"
to = "healthy"

[[routes]]
source = "good"
to = "healthy-js"
transform = "stamp"

[[transforms]]
name = "stamp"
code = "function transform(r) {{ r.headers['x-stamped'] = 'yes'; return r; }}"
"#,
        sink = rx.url("/sink"),
        healthy = rx.url("/healthy"),
        healthy_js = rx.url("/healthy-js"),
    );
    for (name, code, _) in BAD {
        body.push_str(&format!(
            "\n[[routes]]\nsource = \"bad\"\nevent_types = [\"{name}\"]\nto = \"sink\"\ntransform = \"{name}\"\n\n[[transforms]]\nname = \"{name}\"\ncode = {code:?}\n"
        ));
    }
    let gw = Gateway::binary(&body).await;

    // The healthy routes get a message every 10 ms for 4 s; after a 1 s
    // baseline, each bad script runs 10 times at once (70 runs, 10 of them an
    // endless loop and 10 a gibibyte).
    let t0 = Instant::now();
    let good = async {
        let mut posted = Vec::new();
        while t0.elapsed() < Duration::from_secs(4) {
            let n = posted.len();
            posted.push(post_json(&gw, "good", &[], &format!("{{\"n\": {n}}}")).await);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        posted
    };
    let bad = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start = Instant::now();
        let mut ids = Vec::new();
        for round in 0..10 {
            for (name, _, _) in BAD {
                let id = post_json(
                    &gw,
                    "bad",
                    &[("x-script", name)],
                    &format!("{{\"round\": {round}}}"),
                )
                .await;
                ids.push((*name, id));
            }
        }
        for (_, id) in &ids {
            gw.settled(id).await;
        }
        (start, Instant::now(), ids)
    };
    let (good_ids, (bad_start, bad_end, bad_ids)) = tokio::join!(good, bad);
    assert!(
        bad_end < t0 + Duration::from_secs(4),
        "the bad runs outlasted the healthy traffic"
    );

    for (name, id) in &bad_ids {
        let d = delivery(&gw, id).await;
        assert_eq!(d["status"], "transform_failed", "{name}: {d:#}");
        let want = BAD.iter().find(|b| b.0 == *name).unwrap().2;
        let error = d["attempts"][0]["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(&format!("transform `{name}` ")) && error.contains(want),
            "{name}: {error}"
        );
    }
    // A message whose transformation failed is dead, so it is found.
    let (_, m) = gw
        .api_get(&format!("/api/v1/messages/{}", bad_ids[0].1))
        .await;
    assert_eq!(m["status"], "dead", "{m:#}");
    assert!(rx.received().iter().all(|r| r.path != "/sink"));

    // Every healthy message is delivered on both routes.
    for id in &good_ids {
        gw.settled(id).await;
    }
    let got = rx.received();
    let on = |path: &str| -> Vec<Instant> {
        got.iter()
            .filter(|r| r.path == path)
            .map(|r| r.at)
            .collect()
    };
    let (plain, js) = (on("/healthy"), on("/healthy-js"));
    assert_eq!(plain.len(), good_ids.len());
    assert_eq!(js.len(), good_ids.len());
    assert!(got
        .iter()
        .filter(|r| r.path == "/healthy-js")
        .all(|r| r.header("x-stamped") == Some("yes")));
    // The rates: deliveries per second of each healthy route in the baseline
    // (from 0.2 s to the first bad message) and while the bad scripts ran.
    let rate = |at: &[Instant], from: Instant, to: Instant| {
        at.iter().filter(|t| **t >= from && **t < to).count() as f64 / (to - from).as_secs_f64()
    };
    let base_from = t0 + Duration::from_millis(200);
    let (plain_base, plain_bad) = (
        rate(&plain, base_from, bad_start),
        rate(&plain, bad_start, bad_end),
    );
    let (js_base, js_bad) = (
        rate(&js, base_from, bad_start),
        rate(&js, bad_start, bad_end),
    );
    println!(
        "{} bad runs took {:?}; healthy deliveries per second, baseline → during the bad runs: {plain_base:.0} → {plain_bad:.0} (no transformation), {js_base:.0} → {js_bad:.0} (a transformation on the same pool)",
        bad_ids.len(),
        bad_end - bad_start
    );
    // A route without a transformation keeps its rate; one whose script
    // shares the pool with the bad ones keeps flowing (it waits its turn
    // behind runs of at most 50 ms each).
    assert!(plain_bad >= plain_base * 0.5, "{plain_base} → {plain_bad}");
    assert!(js_bad >= js_base * 0.25, "{js_base} → {js_bad}");
}

/// Posts a JSON body to a source with extra headers; returns the message id.
async fn post_json(gw: &Gateway, source: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut req = client()
        .post(gw.ingest_url(source))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "{source}");
    message_id(&r)
}

#[tokio::test]
async fn a_fixed_script_and_a_replay_deliver() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("chat.js");
    std::fs::write(
        &script,
        "function transform(r) { return {body: {text: r.body.message.txt.trim()}}; }",
    )
    .unwrap();
    let body = format!(
        "{}\n[[transforms]]\nname = \"chat\"\nfile = \"{}\"\n",
        app_to_svc(&rx, None, "transform = \"chat\""),
        script.display()
    );
    let gw = Gateway::binary(&body).await;
    let id = post_json(&gw, "app", &[], r#"{"message": {"text": "  hi  "}}"#).await;
    let d = delivery(&gw, &id).await;
    assert_eq!(d["status"], "transform_failed");
    let error = d["attempts"][0]["error"].as_str().unwrap();
    assert!(error.contains("TypeError"), "{error}");

    // Fix the script, reload, replay.
    std::fs::write(
        &script,
        "function transform(r) { return {body: {text: r.body.message.text.trim()}}; }",
    )
    .unwrap();
    let (st, v) = gw.api_post("/api/v1/reload", json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["changes"]["transforms"]["changed"],
        json!(["chat"]),
        "{v:#}"
    );
    let (st, v) = gw
        .api_post(&format!("/api/v1/messages/{id}/replay"), json!({}))
        .await;
    assert!(st.is_success(), "{v}");
    let got = rx.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(json_of(&got[0]), json!({"text": "hi"}));
    let m = eventually(Duration::from_secs(20), "the replay delivered", || async {
        let (_, m) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
        (m["status"] == "delivered").then_some(m)
    })
    .await;
    let statuses: Vec<&str> = m["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"transform_failed") && statuses.contains(&"delivered"),
        "{m:#}"
    );
}

/// A gateway (in this process) with the Telegram example on a route.
async fn telegram_gateway(rx: &Receiver) -> Gateway {
    Gateway::start(&format!(
        "{}\n[[transforms]]\nname = \"telegram-to-chat\"\nfile = \"{}\"\n",
        app_to_svc(rx, None, "transform = \"telegram-to-chat\""),
        example("telegram-to-chat.js")
    ))
    .await
}

#[tokio::test]
async fn the_api_lists_transforms_and_tries_them() {
    let rx = Receiver::start().await;
    let gw = telegram_gateway(&rx).await;
    let (st, v) = gw.api_get("/api/v1/transforms").await;
    assert_eq!(st, 200);
    assert_eq!(v["data"][0]["name"], "telegram-to-chat");
    assert_eq!(v["data"][0]["timeout_ms"], 50);
    assert_eq!(v["data"][0]["memory_limit"], 16 * 1024 * 1024);
    assert!(v["data"][0]["code"]
        .as_str()
        .unwrap()
        .contains("function transform"));
    let (st, _) = gw.api_get("/api/v1/transforms/nope").await;
    assert_eq!(st, 404);

    // On a stored message: what would be delivered.
    let (_, body) = fixture_body("telegram-message.json");
    let id = post_json(&gw, "app", &[], std::str::from_utf8(&body).unwrap()).await;
    let try_path = "/api/v1/transforms/telegram-to-chat/try";
    let (st, v) = gw.api_post(try_path, json!({"message_id": id})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outcome"], "deliver");
    assert_eq!(v["content_type"], "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(v["body"].as_str().unwrap()).unwrap(),
        json!({"chat_id": 1111111, "user": "Testusername", "text": "/start"})
    );
    // On a request object; a drop; other code that throws.
    let (_, v) = gw
        .api_post(
            try_path,
            json!({"request": {"body": {"message": {"chat": {"id": 7}, "from": {"username": "ada"}, "text": "hi"}}}}),
        )
        .await;
    assert_eq!(
        v["output"]["body"],
        json!({"chat_id": 7, "user": "ada", "text": "hi"})
    );
    let (_, v) = gw
        .api_post(
            try_path,
            json!({"request": {"body": {"message": {"chat": {"id": 7}}}}}),
        )
        .await;
    assert_eq!(v["outcome"], "dropped", "{v}");
    let (_, v) = gw
        .api_post(
            try_path,
            json!({"message_id": id, "code": "function transform(r) { return r.body.nothing.here; }"}),
        )
        .await;
    assert_eq!(v["outcome"], "transform_failed", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("transform `telegram-to-chat` threw TypeError"),
        "{v}"
    );
    // The saved script is unchanged by a try with other code.
    let (_, v) = gw.api_post(try_path, json!({"message_id": id})).await;
    assert_eq!(v["outcome"], "deliver");
    // Neither or both of message_id and request; an unknown message.
    for bad in [json!({}), json!({"message_id": id, "request": {}})] {
        let (st, v) = gw.api_post(try_path, bad).await;
        assert_eq!(st, 400, "{v}");
    }
    let (st, _) = gw
        .api_post(
            try_path,
            json!({"message_id": "msg_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK"}),
        )
        .await;
    assert_eq!(st, 404);
    // An API destination may name a transformation, and only a defined one.
    let (st, v) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "x", "url": "https://example.com/", "transform": "nope"}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["details"][0]["pointer"], "/transform", "{v}");
}

#[tokio::test]
async fn the_console_lists_transforms_and_tries_one_on_a_message() {
    use crate::console::Browser;
    let rx = Receiver::start().await;
    let gw = telegram_gateway(&rx).await;
    let (_, body) = fixture_body("telegram-message.json");
    let id = post_json(&gw, "app", &[], std::str::from_utf8(&body).unwrap()).await;
    let mut b = Browser::new(&gw);
    b.login(ADMIN_TOKEN).await;
    let page = b.page("/transforms").await;
    assert!(
        page.contains(r#"<a href="/transforms" aria-current="page">Transforms</a>"#),
        "{page}"
    );
    assert!(page.contains("telegram-to-chat"));
    // Every control has a label.
    for control in [
        "-code\">Script</label>",
        "-message\">Message id</label>",
        ">Try it</button>",
    ] {
        assert!(page.contains(control), "{control}: {page}");
    }
    let csrf = crate::console::csrf_field(&page);
    let code = std::fs::read_to_string(example("telegram-to-chat.js")).unwrap();
    let r = b
        .post(
            "/transforms/telegram-to-chat/try",
            &[("csrf", &csrf), ("message_id", &id), ("code", &code)],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("Would deliver"), "{html}");
    assert!(html.contains("&quot;chat_id&quot;:1111111"), "{html}");
    // An edited script that fails shows the error.
    let r = b
        .post(
            "/transforms/telegram-to-chat/try",
            &[
                ("csrf", &csrf),
                ("message_id", &id),
                ("code", "function transform(r) { throw new Error('nope'); }"),
            ],
            "same-origin",
        )
        .await;
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Transform failed: transform `telegram-to-chat` threw Error: nope"),
        "{html}"
    );
    // A message the script drops shows so in the message detail.
    let r = client()
        .post(gw.ingest_url("app"))
        .header("content-type", "application/json")
        .body(r#"{"update_id": 2, "message": {"chat": {"id": 1}, "sticker": {}}}"#)
        .send()
        .await
        .unwrap();
    let dropped = message_id(&r);
    assert_eq!(delivery(&gw, &dropped).await["status"], "dropped");
    let page = b.page(&format!("/messages/{dropped}")).await;
    assert!(page.contains("s-dropped"), "{page}");
    assert!(
        page.contains("dropped by transform `telegram-to-chat`"),
        "{page}"
    );
}

#[tokio::test]
async fn the_script_sees_the_method_path_and_query_it_was_received_with() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&format!(
        "{}\n[[transforms]]\nname = \"echo\"\ncode = \"function transform(r) {{ return {{body: {{method: r.method, path: r.path, query: r.query}}}}; }}\"\n",
        app_to_svc(&rx, None, "transform = \"echo\"")
    ))
    .await;
    // A client cannot pass its own request line off as the gateway's.
    let r = client()
        .put(format!("{}/orders?x=1&x=2&y=3", gw.ingest_url("app")))
        .header("hookgate-path", "/in/forged")
        .header("hookgate-method", "DELETE")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let plain = post_json(&gw, "app", &[], "{}").await;
    let got = rx.wait_for(2, Duration::from_secs(20)).await;
    let of = |id: &str| {
        json_of(
            got.iter()
                .find(|r| r.header("webhook-id") == Some(id))
                .unwrap(),
        )
    };
    assert_eq!(
        of(&message_id(&r)),
        json!({"method": "PUT", "path": "/in/app/orders", "query": {"x": ["1", "2"], "y": "3"}})
    );
    assert_eq!(
        of(&plain),
        json!({"method": "POST", "path": "/in/app", "query": {}})
    );
}

/// Publishes an event of `event_type` with `payload`; returns the message id.
async fn publish(gw: &Gateway, event_type: &str, payload: Value) -> String {
    let (st, v) = gw
        .api_post(
            "/api/v1/events",
            json!({"type": event_type, "payload": payload}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn transforms_are_created_changed_and_deleted_through_the_api() {
    use reqwest::Method;
    let rx = Receiver::start().await;
    let mut gw = Gateway::start_opts(
        &format!(
            "{}\n[[transforms]]\nname = \"telegram-to-chat\"\nfile = \"{}\"\n",
            app_to_svc(&rx, None, ""),
            example("telegram-to-chat.js")
        ),
        "allow_private_destinations = true",
        &[],
    )
    .await;
    let double = "function transform(r) { r.body = {doubled: r.body.x * 2}; return r; }";

    // A script that does not compile, or defines no transform, is refused.
    for (code, says) in [
        ("function transform(r) { return r;", "SyntaxError"),
        ("var x = 1;", "defines no function transform"),
        ("while (true) {}", "time limit"),
    ] {
        let (st, v) = gw
            .api_post("/api/v1/transforms", json!({"name": "shape", "code": code}))
            .await;
        assert_eq!(st, 422, "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("transform `shape` does not compile") && message.contains(says),
            "{v}"
        );
        assert_eq!(v["error"]["details"][0]["pointer"], "/code", "{v}");
    }
    // Bad fields, each at its place.
    let (st, v) = gw
        .api_post(
            "/api/v1/transforms",
            json!({"name": "no spaces", "code": double, "timeout_ms": 0}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    let pointers: Vec<_> = v["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pointer"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pointers, ["/name", "/timeout_ms"], "{v}");
    let (st, _) = gw.api_get("/api/v1/transforms/shape").await;
    assert_eq!(st, 404);

    // Created; listed beside the config file's; the name is taken after that.
    let (st, v) = gw
        .api_post(
            "/api/v1/transforms",
            json!({"name": "shape", "code": double, "timeout_ms": 100}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["origin"], "api");
    assert_eq!(v["timeout_ms"], 100);
    let (_, v) = gw.api_get("/api/v1/transforms").await;
    let listed: Vec<_> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["origin"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [("shape", "api"), ("telegram-to-chat", "config")]);
    for name in ["shape", "telegram-to-chat"] {
        let (st, v) = gw
            .api_post("/api/v1/transforms", json!({"name": name, "code": double}))
            .await;
        assert_eq!(st, 409, "{v}");
        assert_eq!(v["error"]["code"], "conflict");
    }
    // The config file's are read-only here.
    for (method, body) in [
        (Method::PUT, Some(json!({"code": double}))),
        (Method::PATCH, Some(json!({"timeout_ms": 10}))),
        (Method::DELETE, None),
    ] {
        let (st, v) = gw
            .api_call(method, "/api/v1/transforms/telegram-to-chat", body)
            .await;
        assert_eq!(st, 409, "{v}");
        assert_eq!(v["error"]["code"], "read_only", "{v}");
    }

    // An API destination runs it.
    let (st, v) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "shaped", "url": rx.url("/shaped"), "event_types": ["calc.*"], "transform": "shape"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    publish(&gw, "calc.one", json!({"x": 21})).await;
    let got = received_at(&rx, "/shaped").await;
    assert_eq!(json_of(&got), json!({"doubled": 42}));

    // Changed: the next delivery runs the new code; a change that does not
    // compile leaves the saved script as it was.
    let (st, v) = gw
        .api_call(
            Method::PATCH,
            "/api/v1/transforms/shape",
            Some(json!({"code": "function transform(r) { r.body = {tripled: r.body.x * 3}; return r; }"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["timeout_ms"], 100, "a patch keeps the fields not given");
    let (st, v) = gw
        .api_call(
            Method::PUT,
            "/api/v1/transforms/shape",
            Some(json!({"code": "function transform(r) {"})),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    let id = publish(&gw, "calc.two", json!({"x": 5})).await;
    gw.settled(&id).await;
    let bodies: Vec<Value> = rx
        .received()
        .iter()
        .filter(|r| r.path == "/shaped")
        .map(json_of)
        .collect();
    assert_eq!(bodies, [json!({"doubled": 42}), json!({"tripled": 15})]);
    let (st, v) = gw
        .api_call(
            Method::PUT,
            "/api/v1/transforms/nope",
            Some(json!({"code": double})),
        )
        .await;
    assert_eq!(st, 404, "{v}");

    // Kept in the store: a restart still has it, as changed.
    gw.stop().await;
    gw.restart().await;
    let (st, v) = gw.api_get("/api/v1/transforms/shape").await;
    assert_eq!(st, 200, "{v}");
    assert!(v["code"].as_str().unwrap().contains("tripled"), "{v}");
    assert_eq!(v["timeout_ms"], 100);

    // Not deleted while a destination names it; deleted after.
    let (st, v) = gw
        .api_call(Method::DELETE, "/api/v1/transforms/shape", None)
        .await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["error"]["code"], "in_use");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("shaped"),
        "{v}"
    );
    let (st, _) = gw
        .api_call(Method::DELETE, "/api/v1/destinations/shaped", None)
        .await;
    assert_eq!(st, 204);
    let (st, _) = gw
        .api_call(Method::DELETE, "/api/v1/transforms/shape", None)
        .await;
    assert_eq!(st, 204);
    let (st, _) = gw.api_get("/api/v1/transforms/shape").await;
    assert_eq!(st, 404);
    let (st, _) = gw
        .api_call(Method::DELETE, "/api/v1/transforms/shape", None)
        .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn the_console_creates_changes_and_deletes_a_transform() {
    use crate::console::Browser;
    let rx = Receiver::start().await;
    let gw = telegram_gateway(&rx).await;
    let mut b = Browser::new(&gw);
    b.login(ADMIN_TOKEN).await;
    let page = b.page("/transforms").await;
    for control in [
        "for=\"new-name\">Name</label>",
        "for=\"new-code\">Script</label>",
        ">Create transform</button>",
    ] {
        assert!(page.contains(control), "{control}: {page}");
    }
    // The config file's has no save or delete.
    assert!(!page.contains("Delete telegram-to-chat"), "{page}");
    let csrf = crate::console::csrf_field(&page);
    // A script that does not compile is refused with the reason.
    let r = b
        .post(
            "/transforms/new",
            &[
                ("csrf", &csrf),
                ("name", "shape"),
                ("code", "function transform(r) {"),
            ],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("transform `shape` does not compile"),
        "{html}"
    );
    let r = b
        .post(
            "/transforms/new",
            &[
                ("csrf", &csrf),
                ("name", "shape"),
                ("code", "function transform(r) { return null; }"),
            ],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), 303);
    let page = b.page("/transforms").await;
    assert!(page.contains("Delete shape"), "{page}");
    assert!(page.contains(">New script for shape</label>"), "{page}");
    let r = b
        .post(
            "/transforms/shape/save",
            &[
                ("csrf", &csrf),
                ("code", "function transform(r) { return r; }"),
            ],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), 303);
    let (_, v) = gw.api_get("/api/v1/transforms/shape").await;
    assert_eq!(v["code"], "function transform(r) { return r; }", "{v}");
    // Without the CSRF token nothing changes.
    let r = b
        .post(
            "/transforms/shape/delete",
            &[("csrf", "wrong")],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = b
        .post(
            "/transforms/shape/delete",
            &[("csrf", &csrf)],
            "same-origin",
        )
        .await;
    assert_eq!(r.status(), 303);
    let (st, _) = gw.api_get("/api/v1/transforms/shape").await;
    assert_eq!(st, 404);
}
