//! Pull destinations over the admin API: deliveries leased by a consumer with
//! the headers a push attempt carries, results recorded and classified as push
//! results are, the limits, ordering and pause of a push destination, every
//! bad input a clear 4xx with nothing lost, and (on PostgreSQL) a consumer that
//! pulls from one node and acknowledges on another.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Source `app` routed to the pull destination `inbox` (with `dest` as extra
/// lines of it, and `route` of the route), and a push destination `push`.
fn pull_config(dest: &str, route: &str) -> String {
    format!(
        r#"
[[sources]]
name = "app"

[[destinations]]
name = "inbox"
type = "pull"
signing_secret = "{SECRET}"
retry = {{ schedule = ["0s", "100ms", "100ms", "100ms", "100ms", "100ms"] }}
{dest}

[[destinations]]
name = "push"
url = "http://127.0.0.1:9/"

[[destinations]]
name = "other"
type = "pull"

[[routes]]
source = "app"
to = "inbox"
{route}
"#
    )
}

async fn ingest(gw: &Gateway, body: impl Into<reqwest::Body>, ct: &str) -> String {
    let r = client()
        .post(gw.ingest_url("app"))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    message_id(&r)
}

async fn pull(gw: &Gateway, dest: &str, body: Value) -> (StatusCode, Value) {
    gw.api_post(&format!("/api/v1/destinations/{dest}/pull"), body)
        .await
}

async fn ack(gw: &Gateway, dest: &str, results: Value) -> (StatusCode, Value) {
    gw.api_post(
        &format!("/api/v1/destinations/{dest}/ack"),
        json!({ "results": results }),
    )
    .await
}

/// The items of a pull that must succeed.
async fn items(gw: &Gateway, body: Value) -> Vec<Value> {
    let (st, v) = pull(gw, "inbox", body).await;
    assert_eq!(st, 200, "{v}");
    v["data"].as_array().unwrap().clone()
}

/// The status of a message's only delivery.
async fn delivery_status(gw: &Gateway, id: &str) -> String {
    let (_, v) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
    v["deliveries"][0]["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The body bytes of an item.
fn body_of(item: &Value) -> Vec<u8> {
    let b = item["body"].as_str().unwrap();
    match item["body_encoding"].as_str().unwrap() {
        "utf8" => b.as_bytes().to_vec(),
        "base64" => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
        e => panic!("unknown encoding {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_deliveries_carry_push_headers_and_results_are_classified_as_push_results() {
    let gw = Gateway::start(&pull_config("", "")).await;
    let json_id = ingest(&gw, r#"{"order":1}"#, "application/json").await;
    let binary: Vec<u8> = vec![0xff, 0x00, 0xfe, b'x'];
    let bin_id = ingest(&gw, binary.clone(), "application/octet-stream").await;
    let dead_id = ingest(&gw, "third", "text/plain").await;

    let got = items(&gw, json!({"max": 10, "wait": "5s"})).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let by_id: HashMap<&str, &Value> = got
        .iter()
        .map(|i| (i["message_id"].as_str().unwrap(), i))
        .collect();
    let key = hookgate::signing::decode_secret(SECRET).unwrap();
    for (id, body, ct) in [
        (&json_id, br#"{"order":1}"#.to_vec(), "application/json"),
        (&bin_id, binary.clone(), "application/octet-stream"),
        (&dead_id, b"third".to_vec(), "text/plain"),
    ] {
        let item = by_id[id.as_str()];
        assert_eq!(body_of(item), body);
        assert_eq!(item["content_type"], ct);
        assert_eq!(item["attempt"], 1);
        assert_eq!(item["source"], "app");
        let h = &item["headers"];
        assert_eq!(h["webhook-id"], id.as_str());
        assert_eq!(h["hookgate-source"], "app");
        assert_eq!(h["hookgate-attempt"], "1");
        assert!(h.get("content-type").is_none());
        let ts: i64 = h["webhook-timestamp"].as_str().unwrap().parse().unwrap();
        assert!(
            hookgate::signing::verify(
                &key,
                id,
                ts,
                &body,
                h["webhook-signature"].as_str().unwrap()
            ),
            "the Standard Webhooks signature of {id} does not verify"
        );
    }
    assert_eq!(by_id[bin_id.as_str()]["body_encoding"], "base64");
    // Leased: a second consumer gets nothing.
    assert!(items(&gw, json!({})).await.is_empty());

    let token = |id: &str| by_id[id]["token"].as_str().unwrap().to_string();
    let (st, v) = ack(
        &gw,
        "inbox",
        json!([
            {"token": token(&json_id), "status": 204, "duration_ms": 3.5},
            {"token": token(&bin_id), "status": 503, "body": "busy"},
            {"token": token(&dead_id), "status": 404},
        ]),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["outcome"] == "recorded"));
    assert_eq!(delivery_status(&gw, &json_id).await, "delivered");
    assert_eq!(delivery_status(&gw, &dead_id).await, "dead");
    // The 503 is retried on the schedule (100 ms) as attempt 2.
    let again = items(&gw, json!({"wait": "10s"})).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["message_id"], bin_id.as_str());
    assert_eq!(again[0]["attempt"], 2);
    assert_eq!(again[0]["headers"]["hookgate-attempt"], "2");
    let (st, _) = ack(
        &gw,
        "inbox",
        json!([{"token": again[0]["token"], "result": "ok"}]),
    )
    .await;
    assert_eq!(st, 200);
    let m = gw.settled(&bin_id).await;
    let log = m["deliveries"][0]["attempts"].as_array().unwrap().clone();
    assert_eq!(log.len(), 2, "{m}");
    assert_eq!(log[0]["response_code"], 503);
    assert_eq!(log[1]["status"], "succeeded");
    assert_eq!(log[0]["response_body"], "busy");
    // The consumer's results count as attempts in the metrics.
    let (_, list) = gw.api_get("/api/v1/destinations").await;
    let inbox = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "inbox")
        .unwrap()
        .clone();
    assert_eq!(inbox["type"], "pull");
    assert_eq!(inbox["url"], Value::Null);
    assert_eq!(inbox["dead"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pulls_and_acks_get_clear_errors_and_lose_nothing() {
    let gw = Gateway::start(&pull_config("", "")).await;
    let id = ingest(&gw, "one", "text/plain").await;

    for (body, why) in [
        (json!({"max": 1001}), "max over 1000"),
        (json!({"max": 0}), "max 0"),
        (json!({"wait": "2m"}), "wait over 60 s"),
        (json!({"lease": "100ms"}), "lease under 1 s"),
    ] {
        let (st, v) = pull(&gw, "inbox", body).await;
        assert_eq!(st, 400, "{why}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{why}");
    }
    let (st, v) = pull(&gw, "inbox", json!({"lease": "soon"})).await;
    assert!(st.is_client_error(), "{v}");
    let (st, v) = pull(&gw, "nope", json!({})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (st, v) = pull(&gw, "push", json!({})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_pull"))
    );
    let r = client()
        .post(gw.admin_url("/api/v1/destinations/inbox/pull"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token");

    let got = items(&gw, json!({"lease": "1s"})).await;
    assert_eq!(got.len(), 1);
    let token = got[0]["token"].as_str().unwrap().to_string();

    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();
    let (st, v) = ack(
        &gw,
        "inbox",
        json!([{"token": "not-a-token", "result": "ok"}]),
    )
    .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_token".into())
    );
    // A well-formed token of no delivery.
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = parts.clone();
    forged[1] = "987654321";
    let (st, v) = ack(
        &gw,
        "inbox",
        json!([{"token": forged.join("."), "result": "ok"}]),
    )
    .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::NOT_FOUND, "unknown_lease".into())
    );
    // The right delivery under another owner: not this lease.
    let mut stolen = parts.clone();
    stolen[8] = "0123456789abcdef0123456789abcdef";
    let (st, v) = ack(
        &gw,
        "inbox",
        json!([{"token": stolen.join("."), "result": "ok"}]),
    )
    .await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "lease_ended".into()));
    // The token at another destination.
    let (st, v) = ack(&gw, "other", json!([{"token": token, "result": "ok"}])).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "wrong_destination".into())
    );
    let (st, v) = ack(&gw, "push", json!([{"token": token, "result": "ok"}])).await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "not_pull".into()));
    for bad in [
        json!([]),
        json!([{"token": token, "status": 700}]),
        json!([{"token": token, "result": "maybe"}]),
    ] {
        let (st, v) = ack(&gw, "inbox", bad.clone()).await;
        assert!(st.is_client_error(), "{bad}: {v}");
    }
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"token": token, "result": "ok"}))
        .collect();
    let (st, _) = ack(&gw, "inbox", Value::Array(too_many)).await;
    assert_eq!(st, 400);
    assert_eq!(
        delivery_status(&gw, &id).await,
        "pending",
        "nothing applied"
    );

    // The lease runs out: the sweeper records a timed-out attempt; the late
    // result is refused and the delivery comes back as attempt 2.
    let m = eventually(
        Duration::from_secs(20),
        "the expired lease recorded",
        || async {
            let (_, m) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
            (m["deliveries"][0]["attempt_count"] == 1).then_some(m)
        },
    )
    .await;
    let err = m["deliveries"][0]["attempts"][0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("lease ran out"), "{err}");
    let (st, v) = ack(&gw, "inbox", json!([{"token": token, "result": "ok"}])).await;
    assert_eq!((st, code(&v)), (StatusCode::GONE, "lease_expired".into()));
    let again = items(&gw, json!({"wait": "10s"})).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["attempt"], 2);
    let token2 = again[0]["token"].as_str().unwrap().to_string();
    let (st, v) = ack(
        &gw,
        "inbox",
        json!([{"token": token2, "result": "ok"}, {"token": token2, "result": "ok"}]),
    )
    .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::CONFLICT, "lease_ended".into()),
        "{v}"
    );
    assert_eq!(v["data"][0]["outcome"], "recorded");
    assert_eq!(v["data"][1]["outcome"], "lease_ended");
    let (st, v) = ack(&gw, "inbox", json!([{"token": token2, "result": "dead"}])).await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "lease_ended".into()));
    let m = gw.settled(&id).await;
    assert_eq!(
        m["deliveries"][0]["status"], "delivered",
        "the double ack changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_keeps_order_per_key_max_in_flight_and_pause() {
    let gw = Gateway::start(&pull_config(
        "max_in_flight = 1",
        r#"ordering_key = "body:/k""#,
    ))
    .await;
    for i in 0..3 {
        ingest(&gw, format!(r#"{{"k":"a","n":{i}}}"#), "application/json").await;
    }
    // max_in_flight = 1: one lease at a time, whatever is asked.
    let one = items(&gw, json!({"max": 10})).await;
    assert_eq!(one.len(), 1);
    assert!(items(&gw, json!({"max": 10})).await.is_empty());
    // Released: due again at once, the same attempt.
    let (st, _) = ack(
        &gw,
        "inbox",
        json!([{"token": one[0]["token"], "result": "release"}]),
    )
    .await;
    assert_eq!(st, 200);
    let one = items(&gw, json!({"max": 10, "wait": "5s"})).await;
    assert_eq!((one.len(), &one[0]["attempt"]), (1, &json!(1)));
    let (st, _) = ack(
        &gw,
        "inbox",
        json!([{"token": one[0]["token"], "result": "ok"}]),
    )
    .await;
    assert_eq!(st, 200);

    // Paused: nothing is handed out, however long the consumer waits.
    let (st, _) = gw
        .api_post("/api/v1/destinations/inbox/pause", json!({}))
        .await;
    assert_eq!(st, 200);
    assert!(items(&gw, json!({"wait": "1s"})).await.is_empty());
    let (st, _) = gw
        .api_post("/api/v1/destinations/inbox/resume", json!({}))
        .await;
    assert_eq!(st, 200);

    // Per-key order through a consumer that fails every third result.
    for i in 3..12 {
        let k = if i % 2 == 0 { "a" } else { "b" };
        ingest(&gw, format!(r#"{{"k":"{k}","n":{i}}}"#), "application/json").await;
    }
    let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
    let mut delivered = 1;
    let mut answered = 0;
    while delivered < 12 {
        let got = items(&gw, json!({"max": 10, "wait": "10s"})).await;
        assert_eq!(got.len(), 1, "max_in_flight = 1");
        let body: Value = serde_json::from_slice(&body_of(&got[0])).unwrap();
        let k = body["k"].as_str().unwrap().to_string();
        seen.entry(k).or_default().push(body["n"].as_i64().unwrap());
        answered += 1;
        let status = if answered % 3 == 0 { 500 } else { 200 };
        let (st, _) = ack(
            &gw,
            "inbox",
            json!([{"token": got[0]["token"], "status": status}]),
        )
        .await;
        assert_eq!(st, 200);
        if status == 200 {
            delivered += 1;
        }
    }
    for (k, ns) in &seen {
        let mut firsts = ns.clone();
        firsts.dedup();
        let mut sorted = firsts.clone();
        sorted.sort();
        assert_eq!(firsts, sorted, "key {k} out of order: {ns:?}");
    }
    gw.nothing_pending().await;
}

/// Two nodes on one PostgreSQL database: a consumer pulls from one and
/// acknowledges on the other; a lease is handed out once across both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_a_lease_taken_on_one_node_is_acknowledged_on_the_other() {
    let Some(db) =
        hookgate::store::postgres::scratch::ScratchDatabase::for_test("pull_two_nodes").await
    else {
        return;
    };
    let cfg = format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"{}\"\npool_size = 4\n{}",
        db.url(),
        pull_config("max_in_flight = 3", "")
    );
    let a = Gateway::start(&cfg).await;
    let b = Gateway::start(&cfg).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            ingest(
                if i % 2 == 0 { &a } else { &b },
                format!("m{i}"),
                "text/plain",
            )
            .await,
        );
    }
    let from_a = items(&a, json!({"max": 10})).await;
    assert_eq!(from_a.len(), 3, "max_in_flight = 3 across nodes");
    let (st, v) = pull(&b, "inbox", json!({"max": 10})).await;
    assert_eq!(st, 200);
    assert!(
        v["data"].as_array().unwrap().is_empty(),
        "the limit holds on the other node"
    );
    let results: Vec<Value> = from_a
        .iter()
        .map(|i| json!({"token": i["token"], "result": "ok"}))
        .collect();
    let (st, v) = ack(&b, "inbox", Value::Array(results.clone())).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = ack(&a, "inbox", Value::Array(results)).await;
    assert_eq!(st, 409, "a second ack on the other node: {v}");
    let rest = items(&b, json!({"max": 10, "wait": "10s"})).await;
    assert_eq!(rest.len(), 2);
    let results: Vec<Value> = rest
        .iter()
        .map(|i| json!({"token": i["token"], "status": 200}))
        .collect();
    let (st, _) = ack(&a, "inbox", Value::Array(results)).await;
    assert_eq!(st, 200);
    for id in &ids {
        let m = a.settled(id).await;
        assert_eq!(m["deliveries"][0]["status"], "delivered");
        assert_eq!(m["deliveries"][0]["attempt_count"], 1, "{m}");
    }
    drop((a, b));
    drop(db);
}

/// A pull destination made at run time for published events: priorities,
/// delays, replay of a dead delivery and the rate limit apply as for push;
/// the console lists it as a pull destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_delays_replay_and_rate_limit_apply_to_a_run_time_pull_destination() {
    let gw = Gateway::start("[[sources]]\nname = \"app\"\n").await;
    let (st, v) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "jobs", "type": "pull", "event_types": ["job.*"],
                   "rate_limit": {"per_second": 2, "burst": 3}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["type"], "pull");
    assert_eq!(v["source"], "api");
    let (st, v) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "bad", "type": "pull", "source": "nope"}),
        )
        .await;
    assert_eq!(st, 422, "an unknown source: {v}");
    let (st, v) = gw
        .api_post(
            "/api/v1/destinations",
            json!({"name": "bad", "type": "pull", "url": "http://127.0.0.1:1/"}),
        )
        .await;
    assert_eq!(
        (st, v["error"]["details"][0]["pointer"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("/url"))
    );
    let publish = |body: Value| {
        let gw = &gw;
        async move {
            let (st, v) = gw.api_post("/api/v1/events", body).await;
            assert_eq!(st, 202, "{v}");
            v["id"].as_str().unwrap().to_string()
        }
    };
    let low = publish(json!({"type": "job.run", "payload": {"n": 1}, "priority": "low"})).await;
    let later = publish(json!({"type": "job.run", "payload": {"n": 2}, "delay": "1h"})).await;
    let high = publish(json!({"type": "job.run", "payload": {"n": 3}, "priority": "high"})).await;
    publish(json!({"type": "other.thing", "payload": {}})).await;

    let pull_jobs = |body: Value| {
        let gw = &gw;
        async move {
            let (st, v) = pull(gw, "jobs", body).await;
            assert_eq!(st, 200, "{v}");
            v["data"].as_array().unwrap().clone()
        }
    };
    let first = pull_jobs(json!({"max": 10})).await;
    let order: Vec<&str> = first
        .iter()
        .map(|i| i["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [high.as_str(), low.as_str()],
        "high first; the delayed one and the other type not at all"
    );
    assert_eq!(first[0]["priority"], "high");
    let results: Vec<Value> = first
        .iter()
        .map(|i| json!({"token": i["token"], "result": "dead", "error": "no"}))
        .collect();
    let (st, _) = ack(&gw, "jobs", Value::Array(results)).await;
    assert_eq!(st, 200);
    let (_, dead) = gw
        .api_get("/api/v1/deliveries?destination=jobs&status=dead")
        .await;
    assert_eq!(dead["data"].as_array().unwrap().len(), 2);

    // Replayed: handed out again, as a new delivery.
    let (st, _) = gw
        .api_post(&format!("/api/v1/messages/{high}/replay"), json!({}))
        .await;
    assert!(st.is_success());
    let again = pull_jobs(json!({"max": 10, "wait": "5s"})).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["message_id"], high.as_str());
    assert_ne!(again[0]["delivery_id"], first[0]["delivery_id"]);
    let (st, _) = ack(
        &gw,
        "jobs",
        json!([{"token": again[0]["token"], "result": "ok"}]),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        delivery_status_of(&gw, &later, "jobs").await,
        "pending",
        "the delayed one waits"
    );

    // The rate limit: a burst of 3, then 2 per second: however long the test
    // took so far, one pull gets at most the burst.
    for i in 0..6 {
        publish(json!({"type": "job.burst", "payload": {"i": i}})).await;
    }
    let got = pull_jobs(json!({"max": 100})).await;
    assert!(
        got.len() <= 2,
        "the rate limit let {} through at once",
        got.len()
    );

    // The console lists it as a pull destination.
    let mut b = crate::console::Browser::new(&gw);
    assert_eq!(b.login(ADMIN_TOKEN).await, StatusCode::SEE_OTHER);
    let page = b.page("/destinations").await;
    let row = page
        .split("<tr ")
        .find(|r| r.contains("data-destination=\"jobs\""))
        .expect("a row for jobs")
        .to_string();
    assert!(
        row.contains("pull (consumers lease its deliveries)"),
        "{row}"
    );
}

/// The status of a message's delivery to `dest`.
async fn delivery_status_of(gw: &Gateway, id: &str, dest: &str) -> String {
    let (_, v) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
    v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == dest)
        .map(|d| d["status"].as_str().unwrap().to_string())
        .unwrap_or_default()
}
