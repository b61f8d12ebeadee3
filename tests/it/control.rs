//! Delivery control: outcomes, Retry-After, circuit breaker, limits, ordering,
//! priority, pause, backpressure, the admin API and metrics.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

fn config(rx: &Receiver, dest_extra: &str, route_extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "app"

[[destinations]]
name = "svc"
url = "{}"
timeout = "5s"
{dest_extra}

[[routes]]
source = "app"
to = "svc"
{route_extra}
"#,
        rx.url("/hook")
    )
}

async fn send(gw: &Gateway, source: &str, body: &str) -> String {
    let r = client()
        .post(gw.ingest_url(source))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "ingest answered {}", r.status());
    crate::harness::message_id(&r)
}

async fn message_status(gw: &Gateway, id: &str) -> String {
    let (_, v) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
    v["status"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_400_is_tried_once_and_410_stops_but_on_4xx_retries() {
    let rx = Receiver::start().await;
    rx.respond(|r| {
        if r.body.starts_with(b"gone") {
            (410, vec![], "gone".into())
        } else {
            (400, vec![], "bad".into())
        }
    });
    let gw = Gateway::start(&config(
        &rx,
        r#"retry = { schedule = ["0s", "100ms", "100ms"] }"#,
        "",
    ))
    .await;
    let a = send(&gw, "app", "bad").await;
    let b = send(&gw, "app", "gone").await;
    eventually(Duration::from_secs(5), "both dead", || async {
        (message_status(&gw, &a).await == "dead" && message_status(&gw, &b).await == "dead")
            .then_some(())
    })
    .await;
    gw.settled(&a).await;
    gw.settled(&b).await;
    assert_eq!(rx.count(), 2, "each tried exactly once");

    // With on_4xx = true a 400 is retried (410 still stops).
    let rx2 = Receiver::start().await;
    rx2.respond(|r| {
        if r.body.starts_with(b"gone") {
            (410, vec![], String::new())
        } else {
            (400, vec![], String::new())
        }
    });
    let gw2 = Gateway::start(&config(
        &rx2,
        r#"retry = { schedule = ["0s", "100ms", "100ms"], on_4xx = true }"#,
        "",
    ))
    .await;
    let bad = send(&gw2, "app", "bad").await;
    let gone = send(&gw2, "app", "gone").await;
    rx2.wait_for(4, Duration::from_secs(5)).await;
    gw2.settled(&bad).await;
    gw2.settled(&gone).await;
    let got = rx2.received();
    assert_eq!(got.iter().filter(|r| r.body.starts_with(b"bad")).count(), 3);
    assert_eq!(
        got.iter().filter(|r| r.body.starts_with(b"gone")).count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_with_retry_after_is_retried_no_sooner() {
    let rx = Receiver::start().await;
    let mut n = 0;
    rx.respond(move |_| {
        n += 1;
        if n == 1 {
            (429, vec![("Retry-After".into(), "2".into())], String::new())
        } else {
            (200, vec![], String::new())
        }
    });
    let gw = Gateway::start(&config(
        &rx,
        r#"retry = { schedule = ["0s", "10ms", "10ms"] }"#,
        "",
    ))
    .await;
    send(&gw, "app", "{}").await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let gap = got[1].at.duration_since(got[0].at);
    assert!(gap >= Duration::from_millis(1990), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(5), "but not much later: {gap:?}");
    assert_eq!(got[1].header("hookgate-attempt"), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abort_message_header_stops_retries() {
    let rx = Receiver::start().await;
    rx.respond(|_| {
        (
            500,
            vec![("webhook-delivery".into(), "abort-message".into())],
            String::new(),
        )
    });
    let gw = Gateway::start(&config(
        &rx,
        r#"retry = { schedule = ["0s", "50ms", "50ms"] }"#,
        "",
    ))
    .await;
    let id = send(&gw, "app", "{}").await;
    eventually(Duration::from_secs(5), "dead", || async {
        (message_status(&gw, &id).await == "dead").then_some(())
    })
    .await;
    gw.settled(&id).await;
    assert_eq!(rx.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_deliveries_are_listed_and_bulk_replay_delivers_them() {
    let rx = Receiver::start().await;
    rx.respond(|_| (500, vec![], "down".into()));
    let gw = Gateway::start(&config(&rx, r#"retry = { schedule = ["0s"] }"#, "")).await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(send(&gw, "app", &format!("{{\"i\":{i}}}")).await);
    }
    let dead = eventually(Duration::from_secs(10), "25 dead", || async {
        let (_, v) = gw
            .api_get("/api/v1/deliveries?destination=svc&status=dead&limit=1000")
            .await;
        let n = v["data"].as_array().map_or(0, |a| a.len());
        (n == 25).then_some(v)
    })
    .await;
    assert!(dead["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["status"] == "dead"));
    // Pagination over the dead-letter queue.
    let (_, p1) = gw.api_get("/api/v1/deliveries?status=dead&limit=10").await;
    assert_eq!(p1["data"].as_array().unwrap().len(), 10);
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let (_, p2) = gw
        .api_get(&format!(
            "/api/v1/deliveries?status=dead&limit=10&cursor={cursor}"
        ))
        .await;
    assert_eq!(p2["data"].as_array().unwrap().len(), 10);
    assert!(p1["data"][9]["id"].as_i64() > p2["data"][0]["id"].as_i64());

    rx.respond(|_| (200, vec![], "ok".into()));
    let (st, v) = gw
        .api_post(
            "/api/v1/deliveries/replay",
            json!({"destination": "svc", "status": "dead"}),
        )
        .await;
    assert_eq!(st, 202);
    assert_eq!(v["count"], 25);
    let got = rx.wait_for(50, Duration::from_secs(10)).await;
    let replayed: Vec<_> = got.iter().skip(25).collect();
    assert!(replayed
        .iter()
        .all(|r| r.header("hookgate-attempt") == Some("2")));
    for id in &ids {
        let st = eventually(Duration::from_secs(5), "delivered", || async {
            let s = message_status(&gw, id).await;
            (s == "delivered").then_some(s)
        })
        .await;
        assert_eq!(st, "delivered");
    }
    // Nothing is dead any more.
    let (_, v) = gw.api_get("/api/v1/deliveries?status=dead").await;
    assert!(v["data"].as_array().unwrap().is_empty());
    // Bulk replay validates its input.
    let (st, v) = gw
        .api_post("/api/v1/deliveries/replay", json!({"status": "pending"}))
        .await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["code"], "invalid_request");
    let (st, _) = gw
        .api_post(
            "/api/v1/deliveries/replay",
            json!({"status": "dead", "destination": "nope"}),
        )
        .await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_message_replay_creates_a_new_delivery() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&config(&rx, "", "")).await;
    let id = send(&gw, "app", "{\"x\":1}").await;
    rx.wait_for(1, Duration::from_secs(5)).await;
    eventually(Duration::from_secs(5), "delivered", || async {
        (message_status(&gw, &id).await == "delivered").then_some(())
    })
    .await;
    let (st, v) = gw
        .api_post(&format!("/api/v1/messages/{id}/replay"), json!({}))
        .await;
    assert_eq!(st, 202, "{v}");
    let got = rx.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(got[1].header("webhook-id"), Some(id.as_str()));
    assert_eq!(got[1].header("hookgate-attempt"), Some("1"));
    let (_, d) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
    assert_eq!(d["deliveries"].as_array().unwrap().len(), 2);
    let (st, _) = gw
        .api_post(
            "/api/v1/messages/msg_01ARZ3NDEKTSV4RRFFQ69G5FAV/replay",
            json!({}),
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) = gw
        .api_post(
            &format!("/api/v1/messages/{id}/replay"),
            json!({"destination": "nope"}),
        )
        .await;
    assert_eq!(st, 404);
}

/// Makes the receiver answer 500 until the returned flag is set, then 200.
fn fails_until_healthy(rx: &Receiver) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    rx.respond(move |_| {
        if h.load(std::sync::atomic::Ordering::SeqCst) {
            (200, vec![], String::new())
        } else {
            (500, vec![], String::new())
        }
    });
    healthy
}

/// `hookgate_dead{destination="svc"}`, if exported.
async fn dead_gauge(gw: &Gateway) -> Option<f64> {
    gw.metrics_text()
        .await
        .lines()
        .find(|l| l.starts_with("hookgate_dead{") && l.contains("destination=\"svc\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A dead message replayed on its own leaves the dead-letter queue: it reads
/// delivered, its dead delivery is marked replayed (linked to the new one), the
/// destination counts no dead, and a bulk replay afterwards sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replaying_a_dead_message_takes_it_out_of_the_dead_letter_queue() {
    let rx = Receiver::start().await;
    let healthy = fails_until_healthy(&rx);
    let gw = Gateway::binary(&config(&rx, r#"retry = { schedule = ["0s"] }"#, "")).await;
    let id = send(&gw, "app", "{\"first\":1}").await;
    eventually(Duration::from_secs(10), "dead", || async {
        (message_status(&gw, &id).await == "dead").then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "the dead gauge at 1", || async {
        (dead_gauge(&gw).await == Some(1.0)).then_some(())
    })
    .await;
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);

    let (st, v) = gw
        .api_post(&format!("/api/v1/messages/{id}/replay"), json!({}))
        .await;
    assert_eq!(st, 202, "{v}");
    let new_id = v["deliveries"][0].as_i64().unwrap();
    rx.wait_for(2, Duration::from_secs(10)).await;
    eventually(Duration::from_secs(10), "delivered", || async {
        (message_status(&gw, &id).await == "delivered").then_some(())
    })
    .await;
    let (_, d) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
    let deliveries = d["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{d}");
    assert_eq!(deliveries[0]["status"], "replayed", "{d}");
    assert_eq!(deliveries[0]["replayed_by"], new_id, "{d}");
    assert_eq!(deliveries[1]["status"], "delivered", "{d}");

    let (_, dead) = gw.api_get("/api/v1/deliveries?status=dead").await;
    assert_eq!(dead["data"].as_array().unwrap().len(), 0, "{dead}");
    let (_, dests) = gw.api_get("/api/v1/destinations").await;
    assert_eq!(dests["data"][0]["dead"], 0, "{dests}");
    let (_, msgs) = gw.api_get("/api/v1/messages?status=dead").await;
    assert_eq!(msgs["data"].as_array().unwrap().len(), 0, "{msgs}");
    eventually(Duration::from_secs(10), "the dead gauge at 0", || async {
        (dead_gauge(&gw).await == Some(0.0)).then_some(())
    })
    .await;

    let (st, v) = gw
        .api_post("/api/v1/deliveries/replay", json!({"status": "dead"}))
        .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["count"], 0, "nothing is dead any more: {v}");
    // A later message goes through; the replayed one was not sent a third time.
    send(&gw, "app", "{\"second\":1}").await;
    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    let firsts = got
        .iter()
        .filter(|r| r.body.starts_with(b"{\"first\""))
        .count();
    assert_eq!(firsts, 2, "one failed attempt and one replay");
    let (_, d) = gw.api_get(&format!("/api/v1/messages/{id}")).await;
    assert_eq!(d["deliveries"][0]["status"], "replayed", "{d}");
    assert_eq!(d["deliveries"][0]["attempt_count"], 1, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_circuit_makes_no_attempts_during_cooldown_and_closes_after_a_good_probe() {
    let rx = Receiver::start().await;
    let healthy = fails_until_healthy(&rx);
    let gw = Gateway::start(&config(
        &rx,
        "max_in_flight = 1\ncircuit_breaker = { failures = 3, cooldown = \"2s\" }\nretry = { schedule = [\"0s\", \"50ms\", \"50ms\", \"50ms\", \"50ms\", \"50ms\", \"50ms\", \"50ms\"] }",
        "",
    ))
    .await;
    for i in 0..5 {
        send(&gw, "app", &format!("{{\"i\":{i}}}")).await;
    }
    rx.wait_for(3, Duration::from_secs(5)).await;
    let opened_at = rx.received()[2].at;
    // The circuit is open: nothing arrives during the cooldown (the probe
    // below comes only after it).
    let (_, v) = gw.api_get("/api/v1/destinations").await;
    assert_eq!(v["data"][0]["circuit"], "open");
    assert_eq!(rx.count(), 3, "no attempts while the circuit is open");
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    // After the cooldown one probe goes; it succeeds and the rest follow.
    let got = rx.wait_for(8, Duration::from_secs(10)).await;
    let probe = &got[3];
    assert!(probe.at.duration_since(opened_at) >= Duration::from_millis(1950));
    let (_, v) = gw.api_get("/api/v1/destinations").await;
    assert_eq!(v["data"][0]["circuit"], "closed");
}

/// The `hookgate_circuit_open` gauge as `/metrics` shows it now.
async fn circuit_gauge(gw: &Gateway) -> f64 {
    let text = gw.metrics_text().await;
    metric(
        &scrape(&text),
        "hookgate_circuit_open",
        &[("destination", "svc")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_circuit_gauge_changes_with_the_circuit() {
    let rx = Receiver::start().await;
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    rx.respond(move |_| {
        if h.load(std::sync::atomic::Ordering::SeqCst) {
            (200, vec![], String::new())
        } else {
            (500, vec![], String::new())
        }
    });
    let gw = Gateway::binary(&config(
        &rx,
        "circuit_breaker = { failures = 1, cooldown = \"1s\" }\nretry = { schedule = [\"0s\", \"50ms\", \"50ms\"] }",
        "",
    ))
    .await;
    assert_eq!(circuit_gauge(&gw).await, 0.0);
    send(&gw, "app", "{}").await;
    // Each time the API reports a new circuit state, the very next scrape
    // reports the same: no refresh interval in between.
    for (state, gauge) in [("open", 1.0), ("closed", 0.0)] {
        eventually(Duration::from_secs(20), state, || async {
            let (_, v) = gw.api_get("/api/v1/destinations").await;
            (v["data"][0]["circuit"] == state).then_some(())
        })
        .await;
        assert_eq!(
            circuit_gauge(&gw).await,
            gauge,
            "the API says the circuit is {state}"
        );
        healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_in_flight_two_never_sees_a_third_concurrent_request() {
    let rx = Receiver::start().await;
    rx.set_delay(Duration::from_millis(50));
    let gw = Gateway::start(&config(&rx, "max_in_flight = 2", "")).await;
    let c = client();
    let sends = (0..30).map(|i| {
        let c = c.clone();
        let url = gw.ingest_url("app");
        async move {
            c.post(url)
                .body(format!("{i}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    for st in futures::future::join_all(sends).await {
        assert_eq!(st, 200);
    }
    rx.wait_for(30, Duration::from_secs(20)).await;
    assert_eq!(
        rx.max_concurrent(),
        2,
        "exactly two at a time at most (and it got there)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_ten_per_second_spreads_forty_deliveries() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&config(&rx, "rate_limit = { per_second = 10 }", "")).await;
    for i in 0..40 {
        send(&gw, "app", &format!("{i}")).await;
    }
    let got = rx.wait_for(40, Duration::from_secs(20)).await;
    let spread = got[39].at.duration_since(got[0].at);
    assert!(
        spread >= Duration::from_millis(2500),
        "40 deliveries in {spread:?}"
    );
    // And no one-second window holds more than burst + rate.
    for (i, a) in got.iter().enumerate() {
        let in_window = got[i..]
            .iter()
            .take_while(|b| b.at.duration_since(a.at) < Duration::from_secs(1))
            .count();
        assert!(in_window <= 20, "{in_window} in one second");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ordering_keys_stay_in_order_with_a_flaky_receiver() {
    let rx = Receiver::start().await;
    let mut n: u64 = 0;
    rx.respond(move |_| {
        // A deterministic 30% failure pattern.
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if (n >> 33) % 10 < 3 {
            (500, vec![], String::new())
        } else {
            (200, vec![], String::new())
        }
    });
    let gw = Gateway::start(&config(
        &rx,
        "max_in_flight = 16\nretry = { schedule = [\"0s\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\", \"20ms\"] }",
        "ordering_key = \"body:/key\"",
    ))
    .await;
    // 5 keys x 40 messages, sent concurrently per key but each key in sequence.
    let mut tasks = Vec::new();
    for k in 0..5 {
        let url = gw.ingest_url("app");
        tasks.push(tokio::spawn(async move {
            let c = client();
            for seq in 0..40 {
                let r = c
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(format!("{{\"key\":\"k{k}\",\"seq\":{seq}}}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Wait for 200 successes.
    eventually(Duration::from_secs(60), "all delivered", || async {
        let (_, v) = gw
            .api_get("/api/v1/messages?status=delivered&limit=1000")
            .await;
        (v["data"].as_array().map_or(0, |a| a.len()) == 200).then_some(())
    })
    .await;
    // Per key, the first arrival of each seq is in order, and no seq is attempted
    // before its predecessor has succeeded.
    let mut per_key: HashMap<String, Vec<(u64, Instant)>> = HashMap::new();
    for r in rx.received() {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        per_key
            .entry(v["key"].as_str().unwrap().to_string())
            .or_default()
            .push((v["seq"].as_u64().unwrap(), r.at));
    }
    assert_eq!(per_key.len(), 5);
    for (k, arrivals) in per_key {
        let seqs: Vec<u64> = arrivals.iter().map(|a| a.0).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1),
            "key {k} out of order: {seqs:?}"
        );
        assert_eq!(*seqs.last().unwrap(), 39);
    }
    assert!(
        rx.count() > 200,
        "the flaky receiver made some attempts fail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_high_priority_messages_overtake_low_priority_ones() {
    let rx = Receiver::start().await;
    let text = format!(
        r#"
[[sources]]
name = "low"
[[sources]]
name = "high"

[[destinations]]
name = "svc"
url = "{}"
max_in_flight = 1

[[routes]]
source = "low"
to = "svc"
priority = "low"

[[routes]]
source = "high"
to = "svc"
priority = "high"
"#,
        rx.url("/p")
    );
    let gw = Gateway::start(&text).await;
    let (st, _) = gw
        .api_post("/api/v1/destinations/svc/pause", json!({}))
        .await;
    assert_eq!(st, 200);
    for i in 0..10 {
        send(&gw, "low", &format!("low{i}")).await;
    }
    for i in 0..10 {
        send(&gw, "high", &format!("high{i}")).await;
    }
    let (_, v) = gw.api_get("/api/v1/destinations").await;
    assert_eq!(v["data"][0]["paused"], true);
    assert_eq!(v["data"][0]["pending"], 20);
    assert_eq!(rx.count(), 0, "paused: nothing delivered");
    let (st, _) = gw
        .api_post("/api/v1/destinations/svc/resume", json!({}))
        .await;
    assert_eq!(st, 200);
    let got = rx.wait_for(20, Duration::from_secs(10)).await;
    let order: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(
        order[..10].iter().all(|b| b.starts_with("high")),
        "{order:?}"
    );
    assert!(
        order[10..].iter().all(|b| b.starts_with("low")),
        "{order:?}"
    );
    // Within a priority, ingest order.
    let highs: Vec<&String> = order[..10].iter().collect();
    assert_eq!(
        highs,
        (0..10)
            .map(|i| format!("high{i}"))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_destination_receives_nothing_until_resumed_even_across_restart() {
    let rx = Receiver::start().await;
    let mut gw = Gateway::binary(&config(&rx, "", "")).await;
    let (st, v) = gw
        .api_post("/api/v1/destinations/svc/pause", json!({}))
        .await;
    assert_eq!((st.as_u16(), v["paused"].as_bool()), (200, Some(true)));
    for i in 0..5 {
        send(&gw, "app", &format!("{i}")).await;
    }
    let (_, v) = gw.api_get("/api/v1/destinations").await;
    assert_eq!(
        (
            v["data"][0]["paused"].as_bool(),
            v["data"][0]["pending"].as_u64()
        ),
        (Some(true), Some(5))
    );
    assert_eq!(rx.count(), 0);
    gw.kill9();
    gw.restart().await;
    let (_, v) = gw.api_get("/api/v1/destinations").await;
    assert_eq!(
        (
            v["data"][0]["paused"].as_bool(),
            v["data"][0]["pending"].as_u64()
        ),
        (Some(true), Some(5))
    );
    assert_eq!(rx.count(), 0, "the pause survives a restart");
    gw.api_post("/api/v1/destinations/svc/resume", json!({}))
        .await;
    rx.wait_for(5, Duration::from_secs(5)).await;
    let (st, _) = gw
        .api_post("/api/v1/destinations/nope/pause", json!({}))
        .await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_needs_a_valid_token() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&config(&rx, "", "")).await;
    let c = client();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic dGVzdC1hZG1pbi10b2tlbg=="),
        Some("Bearer "),
        Some(ADMIN_TOKEN),
    ] {
        let mut req = c.get(gw.admin_url("/api/v1/messages"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
        assert!(!v.to_string().contains(ADMIN_TOKEN));
    }
    let r = c
        .get(gw.admin_url("/api/v1/messages"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Health, readiness and metrics need no token.
    for p in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            c.get(gw.admin_url(p)).send().await.unwrap().status(),
            200,
            "{p}"
        );
    }
    // Unknown API paths and bad parameters are JSON errors.
    let (st, v) = gw.api_get("/api/v1/nothing").await;
    assert_eq!(
        (st.as_u16(), v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (st, v) = gw.api_get("/api/v1/messages?limit=abc").await;
    assert_eq!(
        (st.as_u16(), v["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (st, _) = gw.api_get("/api/v1/messages?status=weird").await;
    assert_eq!(st, 400);
    let (st, _) = gw.api_get("/api/v1/messages?cursor=zzz").await;
    assert_eq!(st, 400);
    let (st, _) = gw.api_get("/api/v1/messages/not-an-id").await;
    assert_eq!(st, 404);
    let r = c
        .post(gw.admin_url("/api/v1/deliveries/replay"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn message_listing_is_newest_first_with_cursor_and_filters() {
    let rx = Receiver::start().await;
    let gw = Gateway::start(&config(&rx, "", "")).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(send(&gw, "app", &format!("{i}")).await);
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, v) = gw
            .api_get(&format!(
                "/api/v1/messages?source=app&limit=3&cursor={cursor}"
            ))
            .await;
        for m in v["data"].as_array().unwrap() {
            seen.push(m["id"].as_str().unwrap().to_string());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
    let (_, v) = gw.api_get(&format!("/api/v1/messages/{}", ids[0])).await;
    assert_eq!(v["source"], "app");
    assert_eq!(v["body"]["data"], "6");
    assert_eq!(v["body"]["encoding"], "utf8");
    let (_, v) = gw.api_get("/api/v1/messages?source=other").await;
    assert!(v["data"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_max_pending_ingest_answers_503_and_readiness_fails_without_losing_anything() {
    let rx = Receiver::start().await;
    let text = config(&rx, "", "").replace(
        "[[sources]]",
        "[storage]\nmax_pending = 5\npath = \"STORE\"\n\n[[sources]]",
    );
    let dir = tempfile::tempdir().unwrap();
    let text = text.replace("STORE", &dir.path().join("hg.db").display().to_string());
    let gw = Gateway::start(&text).await;
    gw.api_post("/api/v1/destinations/svc/pause", json!({}))
        .await;
    let c = client();
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..8 {
        let r = c
            .post(gw.ingest_url("app"))
            .body(format!("{i}"))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => acked.push(crate::harness::message_id(&r)),
            503 => {
                refused += 1;
                let ra: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(ra >= 1);
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(acked.len(), 5);
    assert_eq!(refused, 3);
    let r = c.get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["reason"].as_str().unwrap().contains("max_pending"));
    gw.api_post("/api/v1/destinations/svc/resume", json!({}))
        .await;
    let got = rx.wait_for(5, Duration::from_secs(5)).await;
    let delivered: std::collections::HashSet<String> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert!(acked.iter().all(|id| delivered.contains(id)));
    eventually(Duration::from_secs(5), "ready again", || async {
        (c.get(gw.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200)
            .then_some(())
    })
    .await;
}

/// Parses Prometheus text into (name{labels}) → value.
fn scrape(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn metric(m: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            k.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(l, v)| k.contains(&format!("{l}=\"{v}\"")))
        })
        .map(|(_, v)| *v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_what_was_sent_and_delivered() {
    let rx = Receiver::start().await;
    let mut n: u64 = 7;
    rx.respond(move |_| {
        // A deterministic pseudo-random 25% of failures; with twelve attempts a
        // message dying is practically impossible.
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if (n >> 33).is_multiple_of(4) {
            (500, vec![], String::new())
        } else {
            (200, vec![], String::new())
        }
    });
    let gw = Gateway::binary(&config(
        &rx,
        r#"retry = { schedule = ["0s", "20ms", "20ms", "20ms", "20ms", "20ms", "20ms", "20ms", "20ms", "20ms", "20ms", "20ms"] }"#,
        "",
    ))
    .await;
    for i in 0..30 {
        send(&gw, "app", &format!("{i}")).await;
    }
    let c = client();
    let _ = c
        .post(gw.ingest_url("app"))
        .body(vec![0u8; 2 << 20])
        .send()
        .await;
    let _ = c.post(gw.ingest_url("nope")).body("x").send().await;
    eventually(Duration::from_secs(10), "30 delivered", || async {
        let (_, v) = gw
            .api_get("/api/v1/messages?status=delivered&limit=100")
            .await;
        (v["data"].as_array().map_or(0, |a| a.len()) == 30).then_some(())
    })
    .await;
    let m = eventually(Duration::from_secs(10), "gauges refreshed", || async {
        let text = c
            .get(gw.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let m = scrape(&text);
        (metric(&m, "hookgate_pending", &[("destination", "svc")]) == 0.0
            && metric(
                &m,
                "hookgate_deliveries_total",
                &[("destination", "svc"), ("outcome", "delivered")],
            ) == 30.0)
            .then_some(m)
    })
    .await;
    let failures = rx.count() as f64 - 30.0;
    assert_eq!(
        metric(
            &m,
            "hookgate_ingest_requests_total",
            &[("source", "app"), ("outcome", "stored")]
        ),
        30.0
    );
    assert_eq!(
        metric(
            &m,
            "hookgate_ingest_requests_total",
            &[("source", "app"), ("outcome", "too_large")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "hookgate_deliveries_total",
            &[("destination", "svc"), ("outcome", "retried")]
        ),
        failures
    );
    assert_eq!(
        metric(
            &m,
            "hookgate_deliveries_total",
            &[("destination", "svc"), ("outcome", "dead")]
        ),
        0.0
    );
    assert_eq!(
        metric(&m, "hookgate_ingest_seconds_count", &[("source", "app")]),
        31.0
    );
    assert_eq!(
        metric(
            &m,
            "hookgate_delivery_attempt_seconds_count",
            &[("destination", "svc")]
        ),
        rx.count() as f64
    );
    assert_eq!(
        metric(
            &m,
            "hookgate_delivery_lag_seconds_count",
            &[("destination", "svc")]
        ),
        30.0
    );
    assert!(metric(&m, "hookgate_store_commit_seconds_count", &[]) >= 1.0);
    assert_eq!(
        metric(&m, "hookgate_circuit_open", &[("destination", "svc")]),
        0.0
    );
    assert_eq!(
        metric(
            &m,
            "hookgate_oldest_pending_seconds",
            &[("destination", "svc")]
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_logs_carry_message_destination_and_attempt() {
    let rx = Receiver::start().await;
    rx.respond(|_| (500, vec![], String::new()));
    let gw = Gateway::binary_opts(
        &config(&rx, r#"retry = { schedule = ["0s", "50ms"] }"#, ""),
        "",
        &[("HOOKGATE_LOG_FORMAT", "json")],
    )
    .await;
    let id = send(&gw, "app", "{}").await;
    rx.wait_for(2, Duration::from_secs(5)).await;
    let lines = eventually(Duration::from_secs(5), "delivery log lines", || async {
        let log = gw.log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &serde_json::Value| v["message_id"] == id.as_str())
            .collect();
        (lines.len() >= 2).then_some(lines)
    })
    .await;
    for l in &lines {
        assert_eq!(l["destination"], "svc");
        assert!(l["attempt"].as_u64().is_some());
        assert!(l["level"].is_string());
    }
    assert!(lines.iter().any(|l| l["attempt"] == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_store_answers_503_and_keeps_what_it_acknowledged() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(&rx, "", "").replace(
        "[[sources]]",
        &format!(
            "[storage]\nmax_size = \"1MiB\"\npath = \"{}\"\n\n[[sources]]",
            dir.path().join("hg.db").display()
        ),
    );
    let gw = Gateway::start(&text).await;
    gw.api_post("/api/v1/destinations/svc/pause", json!({}))
        .await;
    let c = client();
    let body = "x".repeat(4096);
    let mut acked = Vec::new();
    let mut refusal = None;
    for _ in 0..2000 {
        let r = c
            .post(gw.ingest_url("app"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => acked.push(crate::harness::message_id(&r)),
            503 => {
                refusal = Some(r.headers()["retry-after"].to_str().unwrap().to_string());
                break;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    let retry_after: u64 = refusal.expect("the store filled up").parse().unwrap();
    assert!(retry_after >= 1);
    let r = c.get(gw.admin_url("/readyz")).send().await.unwrap();
    let ready = r.status();
    let v: serde_json::Value = r.json().await.unwrap();
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            Some(format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                e.metadata().ok()?.len()
            ))
        })
        .collect();
    assert!(
        acked.len() > 50,
        "refused after {} messages; /readyz: {v}; files: {files:?}",
        acked.len()
    );
    assert_eq!(ready, 503);
    assert!(v["reason"].as_str().unwrap().contains("full"));
    // Everything acknowledged is delivered.
    gw.api_post("/api/v1/destinations/svc/resume", json!({}))
        .await;
    let got = rx.wait_for_ids(&acked, Duration::from_secs(20)).await;
    let delivered: std::collections::HashSet<String> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert!(acked.iter().all(|id| delivered.contains(id)));
}
