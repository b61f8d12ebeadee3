//! The store conformance suite against the embedded SQLite store, plus checks
//! only an embedded store has (reopening the same file).

use std::sync::Arc;

use hookgate::store::conformance::{self, Made, T0};
use hookgate::store::sqlite::SqliteStore;
use hookgate::store::{Appended, Store};

async fn make() -> Made {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("hg.db")).unwrap();
    (Arc::new(store), Box::new(dir))
}

hookgate::store_conformance_tests!(make());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_messages_survive_reopen_and_leases_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hg.db");
    let store = SqliteStore::open(&path).unwrap();
    let m = conformance::msg("src", &["a"], Some("key"));
    let id = m.id;
    assert_eq!(store.append(m).await.unwrap(), Appended::Stored(id));
    // Leased but never completed, as if the process died mid-delivery.
    assert_eq!(store.lease("a", T0, 10, 1000).await.unwrap().items.len(), 1);
    store.close().await;
    drop(store);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.pending_estimate(), 1);
    let again = store.lease("a", T0, 10, 1000).await.unwrap().items;
    assert_eq!(
        again.len(),
        1,
        "in-flight work is due again after a restart"
    );
    assert_eq!(again[0].message.id, id);
    let dup = conformance::msg("src", &["a"], Some("key"));
    assert_eq!(store.append(dup).await.unwrap(), Appended::Duplicate(id));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_cannot_open_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hg.db");
    let store = SqliteStore::open(&path).unwrap();
    let err = SqliteStore::open(&path)
        .err()
        .expect("second open must fail");
    assert!(err.to_string().contains("in use"), "{err}");
    store.close().await;
}

/// A bulk replay of 100,000 dead deliveries runs in small batches: appends and
/// leases go on while it runs, and every dead delivery is revived once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_replay_of_a_hundred_thousand_dead_deliveries_does_not_block() {
    use hookgate::store::{Next, ReplayFilter};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("hg.db")).unwrap());
    const N: usize = 100_000;
    for _ in 0..N / 1000 {
        let batch = (0..1000).map(|_| store.append(conformance::msg("src", &["dlq"], None)));
        for r in futures::future::join_all(batch).await {
            r.unwrap();
        }
    }
    let mut dead = 0;
    while dead < N {
        let leased = store.lease("dlq", T0, 256, 30_000).await.unwrap().items;
        assert!(!leased.is_empty());
        dead += leased.len();
        let results = leased
            .iter()
            .map(|l| conformance::result(l, Next::Dead))
            .collect();
        store.complete(results).await.unwrap();
    }
    let f = ReplayFilter {
        destination: Some("dlq".into()),
        ..Default::default()
    };
    assert_eq!(store.count_dead(&f).await.unwrap(), N as u64);
    let replay = {
        let store = store.clone();
        let f = f.clone();
        tokio::spawn(async move {
            let mut total = 0;
            loop {
                let n = store.replay_dead_batch(&f, T0 + 1, 500).await.unwrap();
                if n == 0 {
                    break total;
                }
                total += n;
            }
        })
    };
    // While it runs, other work is served between its batches.
    let mut served_during = 0;
    while !replay.is_finished() {
        let m = conformance::msg("src", &["other"], None);
        store.append(m).await.unwrap();
        let got = store.lease("other", T0, 10, 30_000).await.unwrap().items;
        assert_eq!(got.len(), 1);
        store
            .complete(vec![conformance::result(&got[0], Next::Delivered)])
            .await
            .unwrap();
        served_during += 1;
    }
    assert_eq!(replay.await.unwrap(), N);
    assert!(
        served_during > 0,
        "appends and leases ran during the replay"
    );
    assert_eq!(store.count_dead(&f).await.unwrap(), 0);
    assert_eq!(store.pending_estimate(), N as u64);
    store.close().await;
}

/// At `max_size` the store refuses new messages with `Full` (ingest answers
/// 503), keeps every one it took, and still records their deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_new_messages_and_keeps_delivering_the_old() {
    use hookgate::store::sqlite::SqliteOptions;
    use hookgate::store::{Next, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_opts(
        dir.path().join("hg.db"),
        SqliteOptions {
            max_size: Some(1 << 20),
            ..Default::default()
        },
    )
    .unwrap();
    let mut accepted = Vec::new();
    let refused = loop {
        let mut m = conformance::msg("src", &["a"], None);
        m.body = bytes::Bytes::from(vec![b'x'; 4096]);
        let id = m.id;
        match store.append(m).await {
            Ok(_) => accepted.push(id),
            Err(e) => break e,
        }
        assert!(accepted.len() < 10_000, "the bound never took effect");
    };
    assert_eq!(refused, StoreError::Full);
    assert!(accepted.len() > 50, "{} accepted", accepted.len());
    // Refused again while full.
    assert_eq!(
        store
            .append(conformance::msg("src", &["a"], None))
            .await
            .unwrap_err(),
        StoreError::Full
    );
    // Every accepted message is there and its delivery can be completed.
    let mut done = 0;
    loop {
        let leased = store.lease("a", T0, 64, 30_000).await.unwrap().items;
        if leased.is_empty() {
            break;
        }
        let results = leased
            .iter()
            .map(|l| conformance::result(l, Next::Delivered))
            .collect();
        store.complete(results).await.unwrap();
        done += leased.len();
    }
    assert_eq!(done, accepted.len());
    for id in &accepted {
        assert!(store.message(*id).await.is_ok());
    }
    store.close().await;
}
