//! `/readyz` says whether an ingest would succeed now: not while the node
//! drains, nor while the embedded store refuses every write; and the body says
//! why.

use std::time::Duration;

use crate::harness::*;

/// One source, one destination, the database at `db` (a path of the test's own).
fn config(rx: &Receiver, db: &std::path::Path) -> String {
    app_to_svc(rx, Some(db), "timeout = \"30s\"")
}

/// GET /readyz: status and body.
async fn readyz(gw: &Gateway) -> (u16, serde_json::Value) {
    let r = client().get(gw.admin_url("/readyz")).send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or_default())
}

fn codes(v: &serde_json::Value) -> Vec<String> {
    v["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["code"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Posts one message; the status and `Retry-After`.
async fn ingest(gw: &Gateway) -> (u16, Option<String>) {
    let r = client()
        .post(gw.ingest_url("app"))
        .body(r#"{"x":1}"#)
        .send()
        .await
        .unwrap();
    let ra = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), ra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draining_node_is_not_ready() {
    let rx = Receiver::start().await;
    // Deliveries outlast the grace period: the drain takes its whole length.
    rx.set_delay(Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::binary(&config(&rx, &dir.path().join("h.db"))).await;
    assert_eq!(readyz(&gw).await.0, 200);
    assert_eq!(ingest(&gw).await.0, 200);
    rx.wait_for(1, Duration::from_secs(20)).await;
    gw.signal_term();
    let body = eventually(
        Duration::from_secs(20),
        "not ready while draining",
        || async {
            let r = client().get(gw.admin_url("/readyz")).send().await.ok()?;
            (r.status() == 503).then_some(())?;
            r.json::<serde_json::Value>().await.ok()
        },
    )
    .await;
    assert_eq!(body["ready"], false);
    assert!(codes(&body).contains(&"draining".to_string()), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_file_of_another_program_is_reported_not_ready() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
             INSERT INTO messages (text) VALUES ('someone else''s data');",
        )
        .unwrap();
    }
    let gw = Gateway::start(&config(&rx, &db)).await;
    let (st, ra) = ingest(&gw).await;
    assert_eq!(st, 503, "an ingest into a foreign database file");
    assert!(ra.is_some());
    let (st, body) = readyz(&gw).await;
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert!(
        codes(&body).contains(&"store_unavailable".to_string()),
        "{body}"
    );
    assert!(body["reason"].as_str().unwrap().contains("write"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_page_is_reported_not_ready() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let mut gw = Gateway::binary(&config(&rx, &db)).await;
    for _ in 0..3 {
        assert_eq!(ingest(&gw).await.0, 200);
    }
    rx.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(gw.terminate(), Some(0));
    // Overwrite the root page of the messages table: every insert reads it.
    let (page_size, root): (u64, u64) = {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        let ps = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        let root = c
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'messages'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (ps, root)
    };
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.seek(SeekFrom::Start((root - 1) * page_size)).unwrap();
        f.write_all(&vec![0xA5; page_size as usize]).unwrap();
        f.sync_all().unwrap();
    }
    gw.restart().await;
    let (st, ra) = ingest(&gw).await;
    assert_eq!(st, 503, "{}", gw.log());
    assert!(ra.is_some());
    let (st, body) = readyz(&gw).await;
    assert_eq!(st, 503, "{body}");
    assert!(
        codes(&body).contains(&"store_unavailable".to_string()),
        "{body}"
    );
}
