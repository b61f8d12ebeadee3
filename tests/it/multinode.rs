//! Several nodes on one PostgreSQL database: two gateways (real `hookgate
//! serve` processes where a test kills one or reads each node's metrics) share a fresh database (created and dropped by each test) and one
//! receiver. Load spreads over both; a node killed with SIGKILL loses nothing
//! that was acknowledged; dedup, ordering and `max_in_flight` hold across nodes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate::store::postgres::scratch::ScratchDatabase;
use parking_lot::Mutex;

use crate::harness::*;

/// A fresh database for `test`, or `None` (skipped, with one line saying so)
/// when no PostgreSQL server answers.
async fn scratch_db(test: &str) -> Option<ScratchDatabase> {
    ScratchDatabase::for_test(test).await
}

/// A config for one node on `db`; `storage`, `source`, `dest` and `route` are
/// extra lines of the storage section, the source, the destination and the route.
fn node_config(
    db: &ScratchDatabase,
    rx: &Receiver,
    storage: &str,
    source: &str,
    dest: &str,
    route: &str,
) -> String {
    format!(
        r#"
[storage]
backend = "postgres"
url = "{url}"
pool_size = 8
{storage}

[[sources]]
name = "app"
{source}

[[destinations]]
name = "svc"
url = "{target}"
{dest}

[[routes]]
source = "app"
to = "svc"
{route}
"#,
        url = db.url(),
        target = rx.url("/hook"),
    )
}

/// Deliveries a node counted as delivered (its own `/metrics`: a binary's, as
/// in-process gateways share one recorder).
async fn delivered_by(gw: &Gateway) -> u64 {
    assert!(gw.is_binary(), "per-node metrics need Gateway::binary");
    let Ok(r) = client().get(gw.admin_url("/metrics")).send().await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("hookgate_deliveries_total{")
                && l.contains("destination=\"svc\"")
                && l.contains("outcome=\"delivered\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Counts rows in the shared database (the test's own view, not a node's).
async fn count(db: &ScratchDatabase, sql: &str) -> i64 {
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let n: i64 = sqlx::query(sql).fetch_one(&mut c).await.unwrap().get(0);
    let _ = c.close().await;
    n
}

/// Deliveries not yet delivered or dead.
async fn live_deliveries(db: &ScratchDatabase) -> i64 {
    count(db, "SELECT count(*) FROM deliveries").await
}

/// Leases that have not expired.
async fn live_leases(db: &ScratchDatabase) -> i64 {
    count(
        db,
        "SELECT count(*) FROM deliveries WHERE lease_owner IS NOT NULL AND lease_until > hookgate_now_ms()",
    )
    .await
}

/// The most time any live lease has left, in milliseconds (0 with none).
async fn longest_lease_left(db: &ScratchDatabase) -> i64 {
    count(
        db,
        "SELECT coalesce(max(lease_until - hookgate_now_ms()), 0) FROM deliveries
         WHERE lease_owner IS NOT NULL",
    )
    .await
}

/// Posts a body; the message id of a 200.
async fn send(
    c: &reqwest::Client,
    gw: &Gateway,
    body: String,
    headers: &[(&str, &str)],
) -> Option<String> {
    let mut req = c.post(gw.ingest_url("app")).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    Some(
        r.headers()["hookgate-message-id"]
            .to_str()
            .ok()?
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: two PostgreSQL nodes under load, one killed with kill -9, the survivor finishing its share (about 11 s)"]
async fn two_nodes_share_the_load_and_a_kill_nine_loses_nothing_acknowledged() {
    let Some(db) =
        scratch_db("two_nodes_share_the_load_and_a_kill_nine_loses_nothing_acknowledged").await
    else {
        return;
    };
    let rx = Receiver::start().await;
    // Slow enough that deliveries are in flight when the node dies.
    rx.set_delay(Duration::from_millis(5));
    // A short timeout and lease margin make a short lease (1 s + 2 s), so the
    // work the killed node held is due again soon.
    let cfg = node_config(
        &db,
        &rx,
        "lease_margin = \"2s\"",
        "",
        "timeout = \"1s\"\nmax_in_flight = 8\nretry = { schedule = [\"0s\", \"200ms\", \"1s\"] }",
        "",
    );
    let mut first = Gateway::binary(&cfg).await;
    let second = Gateway::binary(&cfg).await;
    let nodes = Arc::new([first.ingest_url("app"), second.ingest_url("app")]);

    let acked = Arc::new(Mutex::new(HashSet::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for w in 0..8usize {
        let (acked, stop, nodes) = (acked.clone(), stop.clone(), nodes.clone());
        senders.push(tokio::spawn(async move {
            let c = client();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                // Alternately to each node.
                let url = &nodes[(w + i) % 2];
                match c
                    .post(url)
                    .body(format!("{{\"w\":{w},\"i\":{i}}}"))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        let id = crate::harness::message_id(&r);
                        acked.lock().insert(id);
                    }
                    // Refused or reset once the first node is gone.
                    _ => tokio::time::sleep(Duration::from_millis(2)).await,
                }
            }
        }));
    }
    // Both nodes deliver before one of them dies.
    eventually(Duration::from_secs(60), "load on both nodes", || async {
        let (a, b) = (delivered_by(&first).await, delivered_by(&second).await);
        (acked.lock().len() >= 1500 && a >= 100 && b >= 100).then_some(())
    })
    .await;
    let before = (delivered_by(&first).await, delivered_by(&second).await);
    first.kill9();
    let killed_at = Instant::now();
    let leases_at_kill = live_leases(&db).await;
    // Every lease, the dead node's too, ends within timeout + lease_margin.
    let longest = longest_lease_left(&db).await;
    assert!(
        longest <= 3_000,
        "a lease had {longest} ms left, more than timeout + storage.lease_margin"
    );
    // Ingest goes on at the survivor for a while after the kill.
    let acked_at_kill = acked.lock().len();
    eventually(Duration::from_secs(30), "acks after the kill", || async {
        (acked.lock().len() >= acked_at_kill + 50).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    let acked: HashSet<String> = acked.lock().clone();

    // The survivor delivers every acknowledged message, the ones the dead node
    // had leased once their leases (1 s + 2 s) run out.
    let delivered = eventually(
        Duration::from_secs(120),
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
    let took = killed_at.elapsed();
    // Work the dead node held is live until its lease ends and the survivor
    // finishes it; only then is every duplicate in.
    eventually(Duration::from_secs(120), "nothing left pending", || async {
        (live_deliveries(&db).await == 0).then_some(())
    })
    .await;
    let (st, v) = second.api_get("/api/v1/destinations").await;
    assert_eq!(st, 200);
    assert_eq!(
        v["data"][0]["pending"], 0,
        "the survivor counts none pending"
    );
    let drained = killed_at.elapsed();
    // No live delivery is left in the database, so none is in flight: what
    // the receiver has is final.
    let received = rx.received();
    let missing = acked.difference(&delivered).count();
    assert_eq!(missing, 0, "{missing} acknowledged messages were lost");
    let distinct: HashSet<&str> = received
        .iter()
        .filter_map(|r| r.header("webhook-id"))
        .collect();
    let duplicates = received.len() - distinct.len();
    let rate = duplicates as f64 / distinct.len() as f64;
    eprintln!(
        "acked {}, delivered before the kill {before:?}, live leases right after the kill {leases_at_kill}, received {}, duplicates {duplicates} ({:.2}%), acked all delivered {took:?} and queue empty {drained:?} after the kill",
        acked.len(),
        received.len(),
        rate * 100.0
    );
    assert!(
        rate < 0.01,
        "{duplicates} duplicates of {} messages",
        distinct.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_dedup_key_on_both_nodes_is_delivered_once() {
    let Some(db) = scratch_db("the_same_dedup_key_on_both_nodes_is_delivered_once").await else {
        return;
    };
    let rx = Receiver::start().await;
    let cfg = node_config(
        &db,
        &rx,
        "",
        "dedup = { key = \"header:X-Key\", window = \"1h\" }",
        "timeout = \"5s\"",
        "",
    );
    let a = Gateway::start(&cfg).await;
    let b = Gateway::start(&cfg).await;
    let c = client();
    let mut ids = HashSet::new();
    for k in 0..20 {
        let key = format!("key-{k}");
        let h = [("x-key", key.as_str())];
        // At the same moment on both nodes.
        let (x, y) = tokio::join!(
            send(&c, &a, format!("{{\"k\":{k},\"via\":\"a\"}}"), &h),
            send(&c, &b, format!("{{\"k\":{k},\"via\":\"b\"}}"), &h)
        );
        let (x, y) = (x.expect("node a acks"), y.expect("node b acks"));
        assert_eq!(x, y, "both nodes answer with the one stored id");
        ids.insert(x);
    }
    assert_eq!(ids.len(), 20);
    let got = rx.wait_for(20, Duration::from_secs(20)).await;
    a.nothing_pending().await;
    let got = if rx.count() > got.len() {
        rx.received()
    } else {
        got
    };
    assert_eq!(got.len(), 20, "each key delivered once");
    let keys: HashSet<&str> = got.iter().filter_map(|r| r.header("x-key")).collect();
    assert_eq!(keys.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_ordering_key_sent_alternately_to_both_nodes_arrives_in_order() {
    let Some(db) =
        scratch_db("one_ordering_key_sent_alternately_to_both_nodes_arrives_in_order").await
    else {
        return;
    };
    let rx = Receiver::start().await;
    // Each delivery takes a while, so later messages queue behind it on both nodes.
    rx.set_delay(Duration::from_millis(30));
    let cfg = node_config(
        &db,
        &rx,
        "",
        "",
        "timeout = \"5s\"\nmax_in_flight = 16",
        "ordering_key = \"body:/k\"",
    );
    let a = Gateway::binary(&cfg).await;
    let b = Gateway::binary(&cfg).await;
    let c = client();
    for n in 0..30 {
        let gw = if n % 2 == 0 { &a } else { &b };
        // Each after the previous one's ack.
        send(&c, gw, format!("{{\"k\":\"chat-1\",\"n\":{n}}}"), &[])
            .await
            .expect("acked");
    }
    let got = rx.wait_for(30, Duration::from_secs(30)).await;
    let order: Vec<i64> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(order, (0..30).collect::<Vec<_>>(), "ingest order");
    assert_eq!(rx.max_concurrent(), 1, "the key was never in flight twice");
    eventually(Duration::from_secs(5), "30 deliveries counted", || async {
        (delivered_by(&a).await + delivered_by(&b).await == 30).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_in_flight_holds_across_both_nodes() {
    let Some(db) = scratch_db("max_in_flight_holds_across_both_nodes").await else {
        return;
    };
    let rx = Receiver::start().await;
    rx.set_delay(Duration::from_millis(50));
    let cfg = node_config(&db, &rx, "", "", "timeout = \"5s\"\nmax_in_flight = 3", "");
    let a = Gateway::binary(&cfg).await;
    let b = Gateway::binary(&cfg).await;
    let c = client();
    let mut sent = HashMap::new();
    // Enough deliveries that both nodes take a share.
    for n in 0..80 {
        let gw = if n % 2 == 0 { &a } else { &b };
        let id = send(&c, gw, format!("{{\"n\":{n}}}"), &[])
            .await
            .expect("acked");
        sent.insert(id, n);
    }
    let got = rx.wait_for(80, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 80);
    assert!(rx.max_concurrent() <= 3, "{} at once", rx.max_concurrent());
    let (da, db_) = eventually(Duration::from_secs(5), "80 deliveries counted", || async {
        let (da, db_) = (delivered_by(&a).await, delivered_by(&b).await);
        (da + db_ == 80).then_some((da, db_))
    })
    .await;
    assert!(da > 0 && db_ > 0, "both nodes delivered: {da} + {db_}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_and_api_destinations_made_on_one_node_reach_the_other() {
    let Some(db) = scratch_db("pause_and_api_destinations_made_on_one_node_reach_the_other").await
    else {
        return;
    };
    let rx = Receiver::start().await;
    let cfg = node_config(&db, &rx, "", "", "timeout = \"5s\"", "");
    let a = Gateway::start_opts(&cfg, "allow_private_destinations = true", &[]).await;
    let b = Gateway::start_opts(&cfg, "allow_private_destinations = true", &[]).await;
    let (st, _) = a
        .api_post("/api/v1/destinations/svc/pause", serde_json::json!({}))
        .await;
    assert_eq!(st, 200);
    // Node b picks the pause up from the shared store.
    eventually(Duration::from_secs(10), "b sees the pause", || async {
        let (_, v) = b.api_get("/api/v1/destinations").await;
        (v["data"][0]["paused"] == true).then_some(())
    })
    .await;
    let c = client();
    for n in 0..6 {
        send(&c, &b, format!("{{\"n\":{n}}}"), &[])
            .await
            .expect("acked");
    }
    for gw in [&a, &b] {
        let (_, v) = gw.api_get("/api/v1/destinations").await;
        assert_eq!(v["data"][0]["paused"], true, "{v}");
    }
    let (_, v) = b.api_get("/api/v1/messages?status=pending&limit=10").await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(6), "{v}");
    assert_eq!(rx.count(), 0, "neither node delivers while paused");
    b.api_post("/api/v1/destinations/svc/resume", serde_json::json!({}))
        .await;
    rx.wait_for(6, Duration::from_secs(10)).await;

    // A destination made through node a's API is used by node b.
    let (st, v) = a
        .api_post(
            "/api/v1/destinations",
            serde_json::json!({"name": "rt", "url": rx.url("/rt"), "event_types": ["lead.*"]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let routed = eventually(Duration::from_secs(10), "b routes to rt", || async {
        let (_, v) = b
            .api_post(
                "/api/v1/events",
                serde_json::json!({"type": "lead.created", "payload": {"x": 1}}),
            )
            .await;
        (v["destinations"] == 1).then_some(v)
    })
    .await;
    let id = routed["id"].as_str().unwrap().to_string();
    let got = eventually(Duration::from_secs(10), "delivered to /rt", || async {
        rx.received()
            .into_iter()
            .find(|r| r.path == "/rt" && r.header("webhook-id") == Some(id.as_str()))
    })
    .await;
    assert!(got.header("webhook-signature").is_some());
    // And removed through node b, node a stops routing there.
    let r = client()
        .delete(b.admin_url("/api/v1/destinations/rt"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually(Duration::from_secs(10), "a forgets rt", || async {
        let (st, _) = a.api_get("/api/v1/destinations/rt").await;
        (st == 404).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transform_made_on_one_node_is_run_by_the_other() {
    let Some(db) = scratch_db("a_transform_made_on_one_node_is_run_by_the_other").await else {
        return;
    };
    let rx = Receiver::start().await;
    let cfg = node_config(&db, &rx, "", "", "", "");
    let a = Gateway::start_opts(&cfg, "allow_private_destinations = true", &[]).await;
    let b = Gateway::start_opts(&cfg, "allow_private_destinations = true", &[]).await;
    let (st, v) = a
        .api_post(
            "/api/v1/transforms",
            serde_json::json!({"name": "tag", "code": "function transform(r) { r.body = {tagged: r.body.n}; return r; }"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    // Node b takes it in at its sync, and a destination made there runs it.
    eventually(Duration::from_secs(10), "b has tag", || async {
        let (st, _) = b.api_get("/api/v1/transforms/tag").await;
        (st == 200).then_some(())
    })
    .await;
    let (st, v) = b
        .api_post(
            "/api/v1/destinations",
            serde_json::json!({"name": "tagged", "url": rx.url("/tagged"), "event_types": ["t.*"], "transform": "tag"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = b
        .api_post(
            "/api/v1/events",
            serde_json::json!({"type": "t.one", "payload": {"n": 7}}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let got = eventually(Duration::from_secs(10), "delivered to /tagged", || async {
        rx.received().into_iter().find(|r| r.path == "/tagged")
    })
    .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&got.body).unwrap(),
        serde_json::json!({"tagged": 7})
    );
    // Deleted through b (its destination gone first), a forgets it.
    let r = client()
        .delete(b.admin_url("/api/v1/destinations/tagged"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = client()
        .delete(b.admin_url("/api/v1/transforms/tag"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually(Duration::from_secs(10), "a forgets tag", || async {
        let (st, _) = a.api_get("/api/v1/transforms/tag").await;
        (st == 404).then_some(())
    })
    .await;
}
