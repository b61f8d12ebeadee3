//! The store conformance suite against PostgreSQL, plus what only a shared
//! store has: several stores (nodes) on one database, leases that expire,
//! cluster-wide limits, wake-ups across nodes, concurrent migrations.
//!
//! Needs a PostgreSQL server (`HOOKGATE_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`); every test creates its own
//! database and drops it afterwards.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hookgate::config::{Priority, RateLimitConfig};
use hookgate::store::conformance::{keyed, msg, result, Made, T0};
use hookgate::store::postgres::scratch::ScratchDatabase;
use hookgate::store::postgres::PgStore;
use hookgate::store::{
    Appended, LeaseBatch, LeaseLimits, Leased, MessageId, Next, Store, StoreError,
};

/// A fresh database for `test`, or `None` (the test is skipped, with one line
/// saying so) when no PostgreSQL server answers; see `ScratchDatabase::for_test`.
async fn scratch_db(test: &str) -> Option<ScratchDatabase> {
    ScratchDatabase::for_test(test).await
}

async fn make() -> Option<Made> {
    let db = scratch_db("a store_postgres conformance check").await?;
    let store = PgStore::connect(db.url(), 8).await.unwrap();
    Some((Arc::new(store), Box::new(db)))
}

hookgate::store_conformance_tests!(make());

/// Two stores on one fresh database, as two nodes would be.
async fn two_nodes(test: &str) -> Option<(PgStore, PgStore, ScratchDatabase)> {
    let db = scratch_db(test).await?;
    let a = PgStore::connect(db.url(), 8).await.unwrap();
    let b = PgStore::connect(db.url(), 8).await.unwrap();
    assert_ne!(a.node_id(), b.node_id());
    Some((a, b, db))
}

async fn close_all(stores: &[&PgStore]) {
    for s in stores {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_leased_again_and_its_old_holder_cannot_end_it() {
    let Some((a, b, _db)) =
        two_nodes("an_expired_lease_is_leased_again_and_its_old_holder_cannot_end_it").await
    else {
        return;
    };
    a.append(msg("src", &["d"], None)).await.unwrap();
    let first = a.lease("d", T0, 10, 300).await.unwrap().items;
    assert_eq!(first.len(), 1);
    assert!(b.lease("d", T0, 10, 30_000).await.unwrap().items.is_empty());
    // Leases run on the database's clock (the nodes' clocks may differ), so a
    // later `now` from the caller does not end one: wait for the database to
    // hand it out again, which it must within a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        let got = b.lease("d", T0, 10, 30_000).await.unwrap().items;
        if !got.is_empty() {
            break got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the 300 ms lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(second.len(), 1, "the lease expired");
    assert_eq!(second[0].delivery_id, first[0].delivery_id);
    assert_eq!(second[0].attempt, 1, "no attempt was recorded");
    // The old holder's late result does not end the new lease.
    a.complete(vec![result(&first[0], Next::Delivered)])
        .await
        .unwrap();
    assert!(a.lease("d", T0, 10, 30_000).await.unwrap().items.is_empty());
    let d = b.message(first[0].message.id).await.unwrap();
    assert_eq!(d.deliveries[0].attempt_log.as_ref().unwrap().len(), 0);
    b.complete(vec![result(&second[0], Next::Delivered)])
        .await
        .unwrap();
    let d = b.message(first[0].message.id).await.unwrap();
    assert_eq!(d.deliveries[0].attempt_log.as_ref().unwrap().len(), 1);
    close_all(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_leasing_at_once_never_take_the_same_delivery() {
    let Some((a, b, _db)) =
        two_nodes("two_nodes_leasing_at_once_never_take_the_same_delivery").await
    else {
        return;
    };
    let mut msgs = Vec::new();
    for _ in 0..400 {
        msgs.push(a.append(msg("src", &["d"], None)));
    }
    for r in futures::future::join_all(msgs).await {
        r.unwrap();
    }
    let drain = |s: PgStore| async move {
        let mut got = Vec::new();
        loop {
            let calls = (0..4).map(|_| s.lease("d", T0, 25, 30_000));
            let items: Vec<i64> = futures::future::join_all(calls)
                .await
                .into_iter()
                .flat_map(|b| b.unwrap().items)
                .map(|l| l.delivery_id)
                .collect();
            if items.is_empty() {
                return got;
            }
            got.extend(items);
        }
    };
    let (ga, gb) = tokio::join!(drain(a.clone()), drain(b.clone()));
    assert!(!ga.is_empty() && !gb.is_empty(), "both nodes took work");
    let all: Vec<i64> = ga.iter().chain(&gb).copied().collect();
    let uniq: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(uniq.len(), all.len(), "no delivery leased twice");
    assert_eq!(all.len(), 400, "every delivery leased");
    close_all(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_on_two_nodes_store_one_message() {
    let Some((a, b, _db)) = two_nodes("concurrent_duplicates_on_two_nodes_store_one_message").await
    else {
        return;
    };
    for round in 0..5 {
        let key = format!("dup-{round}");
        let calls = (0..32).map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let m = msg("src", &["d"], Some(&key));
            async move { s.append(m).await }
        });
        let res = futures::future::join_all(calls).await;
        let stored = res
            .iter()
            .filter(|r| matches!(r, Ok(Appended::Stored(_))))
            .count();
        assert_eq!(stored, 1, "round {round}");
        let ids: HashSet<MessageId> = res.iter().map(|r| r.as_ref().unwrap().id()).collect();
        assert_eq!(ids.len(), 1, "every copy answers with the stored id");
    }
    let leased = a.lease("d", T0, 100, 30_000).await.unwrap().items;
    assert_eq!(leased.len(), 5);
    close_all(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordering_key_is_never_leased_by_both_nodes_and_goes_in_order() {
    let Some((a, b, _db)) =
        two_nodes("an_ordering_key_is_never_leased_by_both_nodes_and_goes_in_order").await
    else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { &a } else { &b };
        let m = keyed("d", Some("k"), Priority::Normal, T0);
        ids.push(m.id);
        s.append(m).await.unwrap();
    }
    let mut delivered = Vec::new();
    let mut rounds = 0;
    while delivered.len() < ids.len() {
        rounds += 1;
        assert!(rounds < 200, "the key stopped moving");
        let (la, lb) = tokio::join!(a.lease("d", T0, 10, 30_000), b.lease("d", T0, 10, 30_000));
        let (la, lb) = (la.unwrap().items, lb.unwrap().items);
        assert!(
            la.len() + lb.len() <= 1,
            "the key is in flight once at most"
        );
        for (s, l) in [(&a, la), (&b, lb)] {
            for item in l {
                // Also while it is held, neither node gets the next one.
                assert!(a.lease("d", T0, 10, 30_000).await.unwrap().items.is_empty());
                assert!(b.lease("d", T0, 10, 30_000).await.unwrap().items.is_empty());
                delivered.push(item.message.id);
                s.complete(vec![result(&item, Next::Delivered)])
                    .await
                    .unwrap();
            }
        }
    }
    assert_eq!(delivered, ids, "ingest order");
    close_all(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once_without_error() {
    let Some(db) = scratch_db("nodes_starting_together_migrate_once_without_error").await else {
        return;
    };
    let connects = (0..6).map(|_| PgStore::connect(db.url(), 2));
    let stores: Vec<PgStore> = futures::future::join_all(connects)
        .await
        .into_iter()
        .map(|r| r.expect("every node starts"))
        .collect();
    // All on one schema: what one writes the others read.
    let m = msg("src", &["d"], None);
    let id = m.id;
    stores[0].append(m).await.unwrap();
    assert_eq!(stores[5].message(id).await.unwrap().summary.id, id);
    // And a node starting later finds nothing left to apply.
    let late = PgStore::connect(db.url(), 2).await.unwrap();
    assert_eq!(
        late.lease("d", T0, 10, 30_000).await.unwrap().items.len(),
        1
    );
    late.close().await;
    for s in &stores {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_holds_across_nodes() {
    let Some((a, b, _db)) = two_nodes("max_in_flight_holds_across_nodes").await else {
        return;
    };
    for _ in 0..20 {
        a.append(msg("src", &["d"], None)).await.unwrap();
    }
    let limits = LeaseLimits {
        max_in_flight: 4,
        rate: None,
        settled: Vec::new(),
    };
    let got_a = a.lease_limited("d", T0, 10, 30_000, &limits).await.unwrap();
    assert_eq!(got_a.items.len(), 4);
    let got_b = b.lease_limited("d", T0, 10, 30_000, &limits).await.unwrap();
    assert!(got_b.items.is_empty(), "A holds every slot");
    let hint = got_b.next_due.expect("told when to look again");
    assert!(hint > T0 && hint <= T0 + 1_000, "{}", hint - T0);
    // Two attempts end on A: two slots free up for B.
    for l in &got_a.items[..2] {
        a.complete(vec![result(l, Next::Delivered)]).await.unwrap();
    }
    let got_b = b.lease_limited("d", T0, 10, 30_000, &limits).await.unwrap();
    assert_eq!(got_b.items.len(), 2);
    // Concurrent leases on both never go over the limit together.
    let (x, y) = tokio::join!(
        a.lease_limited("d", T0, 10, 30_000, &limits),
        b.lease_limited("d", T0, 10, 30_000, &limits)
    );
    assert_eq!(x.unwrap().items.len() + y.unwrap().items.len(), 0);
    close_all(&[&a, &b]).await;
}

/// Leases up to 10 deliveries of `d` for 30 s within a cluster-wide
/// `max_in_flight`, the caller's `settled` attempts left out of the count.
async fn lease_d(store: &PgStore, max_in_flight: u32, settled: &[i64]) -> LeaseBatch {
    let limits = LeaseLimits {
        max_in_flight,
        rate: None,
        settled: settled.to_vec(),
    };
    store
        .lease_limited("d", T0, 10, 30_000, &limits)
        .await
        .unwrap()
}

/// Records each lease's attempt as delivered.
async fn delivered(store: &PgStore, leases: &[Leased]) {
    let results = leases.iter().map(|l| result(l, Next::Delivered)).collect();
    store.complete(results).await.unwrap();
}

/// A node's settled attempts (ended, results not yet written) free their
/// places of `max_in_flight` for that node's next lease; the same ids named
/// by another node, or once leased again, change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_attempts_do_not_count_against_max_in_flight() {
    let Some((a, b, _db)) = two_nodes("settled_attempts_do_not_count_against_max_in_flight").await
    else {
        return;
    };
    for _ in 0..20 {
        a.append(msg("src", &["d"], None)).await.unwrap();
    }
    const MAX: u32 = 4;
    let first = lease_d(&a, MAX, &[]).await;
    assert_eq!(first.items.len(), 4);
    let ids: Vec<i64> = first.items.iter().map(|l| l.delivery_id).collect();
    // Two of A's attempts ended: A may start two more.
    let second = lease_d(&a, MAX, &ids[..2]).await;
    assert_eq!(second.items.len(), 2);
    assert!(second.held_back, "the limit held the lease back");
    // B naming A's settled attempts gets nothing: they are A's leases.
    let got_b = lease_d(&b, MAX, &ids[..2]).await;
    assert!(got_b.items.is_empty(), "A's leases count for B");
    // Still four in flight: nothing more for A either.
    let got = lease_d(&a, MAX, &ids[..2]).await;
    assert!(got.items.is_empty(), "2 in flight + 2 new = 4");
    // Once recorded, the settled ids no longer name leases: the count is the
    // four that run.
    delivered(&a, &first.items[..2]).await;
    let got = lease_d(&a, MAX, &ids[..2]).await;
    assert!(got.items.is_empty(), "four in flight");
    close_all(&[&a, &b]).await;
}

/// A node that finds every place taken queues for the next free one: the node
/// whose attempts end leaves it that place instead of leasing it again at
/// once, and the queue is first come, first served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_finds_the_places_taken_gets_the_next_one() {
    let Some((a, b, db)) = two_nodes("a_node_that_finds_the_places_taken_gets_the_next_one").await
    else {
        return;
    };
    let c = PgStore::connect(db.url(), 4).await.unwrap();
    for _ in 0..20 {
        a.append(msg("src", &["d"], None)).await.unwrap();
    }
    const MAX: u32 = 4;
    let first = lease_d(&a, MAX, &[]).await;
    assert_eq!(first.items.len(), 4);
    let ids: Vec<i64> = first.items.iter().map(|l| l.delivery_id).collect();
    // B, then C, find nothing free: they queue, in that order.
    for n in [&b, &c] {
        let got = lease_d(n, MAX, &[]).await;
        assert!(got.items.is_empty() && got.held_back);
    }
    // Three of A's attempts end: A leaves one place for each node queued
    // and takes the third.
    let again = lease_d(&a, MAX, &ids[..3]).await;
    assert_eq!(again.items.len(), 1, "one place each left for B and C");
    assert!(again.held_back);
    // A leaves the places even while it keeps asking.
    let more = lease_d(&a, MAX, &ids[..3]).await;
    assert!(more.items.is_empty(), "the queued nodes keep their places");
    // A's results are written: its ended attempts no longer hold places for
    // anyone. C was queued after B: it takes one place and leaves B's.
    delivered(&a, &first.items[..3]).await;
    let got_c = lease_d(&c, MAX, &[]).await;
    assert_eq!(got_c.items.len(), 1, "C takes the place left for it");
    let got_b = lease_d(&b, MAX, &[]).await;
    assert_eq!(got_b.items.len(), 1, "B takes the place left for it");
    // Never more than four in flight.
    let in_flight = 1 + 1 + got_c.items.len() + got_b.items.len();
    assert_eq!(in_flight, 4);
    assert!(lease_d(&a, MAX, &ids[..3]).await.items.is_empty());
    close_all(&[&a, &b, &c]).await;
}

/// A node queued for places is woken by the results that free them, not
/// left to its next look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_that_free_places_wake_the_queued_node() {
    let Some((a, b, _db)) = two_nodes("results_that_free_places_wake_the_queued_node").await else {
        return;
    };
    for _ in 0..6 {
        a.append(msg("src", &["d"], None)).await.unwrap();
    }
    const MAX: u32 = 2;
    let held = lease_d(&a, MAX, &[]).await;
    assert_eq!(held.items.len(), 2);
    let queued = lease_d(&b, MAX, &[]).await;
    assert!(queued.items.is_empty() && queued.held_back);
    // A looks again and learns that B waits.
    assert!(lease_d(&a, MAX, &[]).await.items.is_empty());
    let woken = b.wakeups().get("d");
    delivered(&a, &held.items[..1]).await;
    tokio::time::timeout(Duration::from_secs(2), woken.notified())
        .await
        .expect("B is woken by A's result");
    let got = lease_d(&b, MAX, &[]).await;
    assert_eq!(got.items.len(), 1, "the freed place");
    close_all(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_holds_across_nodes() {
    let Some((a, b, _db)) = two_nodes("rate_limit_holds_across_nodes").await else {
        return;
    };
    for _ in 0..20 {
        a.append(msg("src", &["d"], None)).await.unwrap();
    }
    let limits = LeaseLimits {
        max_in_flight: 100,
        rate: Some(RateLimitConfig {
            per_second: 4.0,
            burst: Some(3),
        }),
        settled: Vec::new(),
    };
    let started = std::time::Instant::now();
    let got_a = a.lease_limited("d", T0, 10, 30_000, &limits).await.unwrap();
    assert_eq!(got_a.items.len(), 3, "the burst");
    let got_b = b.lease_limited("d", T0, 10, 30_000, &limits).await.unwrap();
    if started.elapsed() < Duration::from_millis(200) {
        assert!(got_b.items.is_empty(), "the bucket is shared");
        let hint = got_b.next_due.expect("told when a token comes");
        assert!(hint > T0 && hint <= T0 + 250, "{}", hint - T0);
    }
    // Over a second and a half, both nodes together get at most the burst plus
    // four per second.
    let mut total = got_a.items.len() + got_b.items.len();
    while started.elapsed() < Duration::from_millis(1500) {
        for s in [&a, &b] {
            total += s
                .lease_limited("d", T0, 10, 30_000, &limits)
                .await
                .unwrap()
                .items
                .len();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let allowed = 3.0 + 4.0 * started.elapsed().as_secs_f64();
    assert!(total as f64 <= allowed + 1e-9, "{total} > {allowed}");
    assert!(total >= 7, "tokens keep coming: {total}");
    close_all(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_on_one_node_wakes_the_other() {
    let Some((a, b, _db)) = two_nodes("a_commit_on_one_node_wakes_the_other").await else {
        return;
    };
    let woken = b.wakeups().get("d");
    let idle = b.wakeups().get("other");
    a.append(msg("src", &["d"], None)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), woken.notified())
        .await
        .expect("B's dispatcher of d is woken");
    // Only the destination that got work.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), idle.notified())
            .await
            .is_err()
    );
    close_all(&[&a, &b]).await;
}

/// Waits (bounded) for a wake-up of `n`.
async fn woken(n: &tokio::sync::Notify, what: &str) {
    tokio::time::timeout(Duration::from_secs(2), n.notified())
        .await
        .unwrap_or_else(|_| panic!("{what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_and_promoted_keys_on_one_node_wake_the_other() {
    let Some((a, b, _db)) = two_nodes("replays_and_promoted_keys_on_one_node_wake_the_other").await
    else {
        return;
    };
    // A dead delivery, replayed on A: B hears of the new pending work.
    let id = a.append(msg("src", &["d"], None)).await.unwrap().id();
    let l = a.lease("d", T0, 10, 30_000).await.unwrap().items;
    a.complete(vec![result(&l[0], Next::Dead)]).await.unwrap();
    let d = b.wakeups().get("d");
    a.replay_message(id, &["d".to_string()], T0).await.unwrap();
    woken(&d, "a single replay on A wakes B").await;
    a.complete(vec![result(
        &a.lease("d", T0, 10, 30_000).await.unwrap().items[0],
        Next::Dead,
    )])
    .await
    .unwrap();
    let replayed = a
        .replay_dead_batch(&Default::default(), T0, 100)
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    woken(&d, "a bulk replay on A wakes B").await;
    // A key's head finishing on A makes the next one pending: B hears of it.
    let e = b.wakeups().get("e");
    a.append(keyed("e", Some("k"), Priority::Normal, T0))
        .await
        .unwrap();
    woken(&e, "the first of a key wakes B").await;
    a.append(keyed("e", Some("k"), Priority::Normal, T0))
        .await
        .unwrap();
    let head = a.lease("e", T0, 10, 30_000).await.unwrap().items;
    assert_eq!(head.len(), 1, "the second of the key is queued");
    a.complete(vec![result(&head[0], Next::Delivered)])
        .await
        .unwrap();
    woken(&e, "the promotion on A wakes B").await;
    assert_eq!(b.lease("e", T0, 10, 30_000).await.unwrap().items.len(), 1);
    close_all(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_one_node_is_all_leasable_on_the_other_once_woken() {
    let Some((a, b, _db)) =
        two_nodes("a_burst_on_one_node_is_all_leasable_on_the_other_once_woken").await
    else {
        return;
    };
    // The wake-ups are sent after the commits, coalesced: whichever commit's
    // notification B sees, every append answered before it is leasable.
    let d = b.wakeups().get("d");
    let sends: Vec<_> = (0..400)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.append(msg("src", &["d"], None)).await.unwrap() })
        })
        .collect();
    for s in sends {
        s.await.unwrap();
    }
    woken(&d, "B is woken").await;
    let leased = b.lease("d", T0, 1000, 30_000).await.unwrap().items.len();
    assert_eq!(leased, 400, "every append committed before its answer");
    close_all(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_node_hands_its_leases_back_at_once() {
    let Some((a, b, _db)) = two_nodes("closing_a_node_hands_its_leases_back_at_once").await else {
        return;
    };
    for _ in 0..5 {
        a.append(msg("src", &["d"], None)).await.unwrap();
    }
    assert_eq!(a.lease("d", T0, 10, 600_000).await.unwrap().items.len(), 5);
    assert!(b.lease("d", T0, 10, 30_000).await.unwrap().items.is_empty());
    a.close().await;
    assert_eq!(
        a.lease("d", T0, 10, 30_000).await.unwrap_err(),
        StoreError::Closed
    );
    assert_eq!(b.lease("d", T0, 10, 30_000).await.unwrap().items.len(), 5);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_sees_the_others_pending_work_soon() {
    let Some((a, b, _db)) = two_nodes("each_node_sees_the_others_pending_work_soon").await else {
        return;
    };
    for _ in 0..5 {
        a.append(msg("src", &["d", "e"], None)).await.unwrap();
    }
    assert_eq!(a.pending_estimate(), 10, "exact for its own writes");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b.pending_estimate() != 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "B never counted A's work"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // B's completions count on B at once and on A after a refresh.
    for l in b.lease("d", T0, 10, 30_000).await.unwrap().items {
        b.complete(vec![result(&l, Next::Delivered)]).await.unwrap();
    }
    assert_eq!(b.pending_estimate(), 5);
    assert_eq!(b.destination_stats().await.unwrap()["e"].pending, 5);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while a.pending_estimate() != 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "A never saw B's progress"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    close_all(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_the_database_cannot_hold_does_not_fail_the_batch() {
    let Some(db) = scratch_db("text_the_database_cannot_hold_does_not_fail_the_batch").await else {
        return;
    };
    let s = PgStore::connect(db.url(), 4).await.unwrap();
    let mut bad = keyed("d", Some("k\0ey"), Priority::Normal, T0);
    bad.dedup = Some(hookgate::store::Dedup {
        key: "nul\0key".into(),
        until: T0 + 60_000,
    });
    bad.event_type = Some("type\0x".into());
    let good = msg("src", &["d"], None);
    let (r1, r2) = tokio::join!(s.append(bad.clone()), s.append(good));
    assert!(matches!(r1.unwrap(), Appended::Stored(_)));
    assert!(matches!(r2.unwrap(), Appended::Stored(_)));
    let mut again = bad.clone();
    again.id = MessageId::new();
    assert_eq!(s.append(again).await.unwrap(), Appended::Duplicate(bad.id));
    assert_eq!(s.lease("d", T0, 10, 30_000).await.unwrap().items.len(), 2);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_clear_and_never_show_the_password() {
    let err = PgStore::connect("not a url", 2).await.unwrap_err();
    assert!(
        err.to_string().contains("not a valid PostgreSQL URL"),
        "{err}"
    );
    let err = PgStore::connect("postgres://hookgate:s3cr3t-pw@127.0.0.1:1/hookgate", 2)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("s3cr3t-pw"), "{text}");
    assert!(PgStore::connect("postgres://postgres@127.0.0.1/x", 0)
        .await
        .unwrap_err()
        .to_string()
        .contains("pool_size"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_one_node_keeps_the_key_blocked_on_the_other() {
    let Some((a, b, _db)) =
        two_nodes("a_retry_on_one_node_keeps_the_key_blocked_on_the_other").await
    else {
        return;
    };
    let first = keyed("d", Some("k"), Priority::Normal, T0);
    let second = keyed("d", Some("k"), Priority::Normal, T0);
    let (fid, sid) = (first.id, second.id);
    a.append(first).await.unwrap();
    b.append(second).await.unwrap();
    let head = a.lease("d", T0, 10, 30_000).await.unwrap().items;
    assert_eq!(head.len(), 1);
    assert_eq!(head[0].message.id, fid);
    a.complete(vec![result(&head[0], Next::Retry(T0 + 1_000))])
        .await
        .unwrap();
    assert!(b
        .lease("d", T0 + 10, 10, 30_000)
        .await
        .unwrap()
        .items
        .is_empty());
    let retry = b.lease("d", T0 + 1_000, 10, 30_000).await.unwrap().items;
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].message.id, fid);
    assert_eq!(retry[0].attempt, 2);
    b.complete(vec![result(&retry[0], Next::Dead)])
        .await
        .unwrap();
    let next = a.lease("d", T0 + 1_000, 10, 30_000).await.unwrap().items;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].message.id, sid);
    close_all(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_stored_on_one_node_is_a_duplicate_on_the_other() {
    let Some((a, b, _db)) = two_nodes("a_key_stored_on_one_node_is_a_duplicate_on_the_other").await
    else {
        return;
    };
    let m = msg("src", &["a"], Some("k"));
    let id = m.id;
    a.append(m).await.unwrap();
    assert_eq!(
        b.append(msg("src", &["a"], Some("k"))).await.unwrap(),
        Appended::Duplicate(id)
    );
    close_all(&[&a, &b]).await;
}

/// A database migrated only to schema 1 (before deliveries could be
/// `replayed`) upgrades: a dead delivery that a replay already sent again
/// becomes replayed, linked to the replay; other dead ones stay dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_database_keeps_its_dead_letters_and_marks_the_replayed_ones() {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let Some(db) =
        scratch_db("a_schema_1_database_keeps_its_dead_letters_and_marks_the_replayed_ones").await
    else {
        return;
    };
    let (replayed, dead) = (MessageId::new(), MessageId::new());
    {
        let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
        let v1 = Migrator {
            migrations: vec![Migration::new(
                1,
                "schema".into(),
                MigrationType::Simple,
                include_str!("../../src/store/postgres/migrations/0001_schema.sql").into(),
                false,
            )]
            .into(),
            ..Migrator::DEFAULT
        };
        v1.run(&pool).await.unwrap();
        sqlx::raw_sql(&format!(
            "INSERT INTO messages (id, source, received_at, headers, body) VALUES
                 ('{replayed}', 'src', {T0}, '', '{{}}'), ('{dead}', 'src', {T0}, '', '{{}}');
             -- 1 died, 2 is its replay (delivered); 3 died and was never replayed.
             INSERT INTO deliveries_done (id, message_seq, destination, status, priority, due_at, attempts, retry_base, created_at, finished_at) VALUES
                 (1, 1, 'a', 3, 1, {T0}, 1, 0, {T0}, {T0}),
                 (2, 1, 'a', 2, 1, {T0}, 1, 0, {T0}, {T0}),
                 (3, 2, 'a', 3, 1, {T0}, 1, 0, {T0}, {T0});"
        ))
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = PgStore::connect(db.url(), 4).await.unwrap();
    hookgate::store::conformance::upgraded_replays_are_replayed(&store, replayed, dead).await;
    store.close().await;
}

/// A message id no hookgate wrote (changed with raw SQL) is reported and
/// counted, never delivered under an invented `webhook-id`; the rest of the
/// queue is still delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_is_reported_not_delivered_under_an_invented_id() {
    let Some(db) = scratch_db("a_corrupt_row_is_reported_not_delivered_under_an_invented_id").await
    else {
        return;
    };
    let store = PgStore::connect(db.url(), 8).await.unwrap();
    let (bad, good) = hookgate::store::conformance::two_messages_to_corrupt(&store).await;
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    sqlx::query("UPDATE messages SET id = 'not-a-message-id' WHERE id = $1")
        .bind(bad.to_string())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    hookgate::store::conformance::corrupt_message_is_reported_not_delivered(&store, good).await;
    store.close().await;
}

/// A pull result whose write fails hands the lease back to its consumer as it
/// was: it still ends when the consumer's lease ends, not when the node's
/// adoption of it would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_result_that_fails_to_write_keeps_the_leases_own_end() {
    use hookgate::store::PullResult;
    let Some(db) = scratch_db("a_pull_result_that_fails_to_write_keeps_the_leases_own_end").await
    else {
        return;
    };
    let store = PgStore::connect(db.url(), 8).await.unwrap();
    store.append(msg("src", &["p"], None)).await.unwrap();
    let limits = LeaseLimits {
        max_in_flight: 10,
        rate: None,
        settled: Vec::new(),
    };
    let l = store
        .lease_pull("p", "pull:a", T0, 10, 1_000, &limits)
        .await
        .unwrap()
        .items;
    assert_eq!(l.len(), 1);
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let lease_of = |id: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (Option<i64>, Option<String>)>(
                "SELECT lease_until, lease_owner FROM deliveries WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let before = lease_of(l[0].delivery_id).await;
    assert_eq!(before.1.as_deref(), Some("pull:a"));
    // Writing the attempt fails (a statement error: the database stays up).
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON attempts
             FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let result = PullResult {
        owner: "pull:a".into(),
        result: result(&l[0], Next::Delivered),
    };
    let err = store
        .complete_pull("p", vec![result.clone()], T0, false)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(
        lease_of(l[0].delivery_id).await,
        before,
        "the owner and the end are those before the result"
    );
    sqlx::raw_sql("DROP TRIGGER refuse ON attempts")
        .execute(&pool)
        .await
        .unwrap();
    // The consumer's lease runs out at its own end, and the sweep finds it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let expired = store.expired_pulls("p", T0, 10).await.unwrap();
        if !expired.is_empty() {
            assert_eq!(expired[0].delivery_id, l[0].delivery_id);
            assert_eq!(expired[0].owner, "pull:a");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the 1 s lease did not run out within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Sent again, the result applies (an expired lease its owner still holds).
    let outcomes = store
        .complete_pull("p", vec![result], T0, true)
        .await
        .unwrap();
    assert_eq!(outcomes, vec![hookgate::store::PullOutcome::Applied]);
    pool.close().await;
    store.close().await;
}

/// One node of those on a database leads; it stays the leader while its
/// session lives, and the other takes over once it closes its store. A lost
/// session is the other way a leader goes (the alerts' two-node test kills one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_leads_until_it_closes_then_the_other_does() {
    let Some((a, b, _db)) = two_nodes("one_node_leads_until_it_closes_then_the_other_does").await
    else {
        return;
    };
    assert_eq!(a.lead().await, Ok(true));
    for _ in 0..3 {
        assert_eq!(b.lead().await, Ok(false));
        assert_eq!(a.lead().await, Ok(true));
    }
    a.close().await;
    assert_eq!(a.lead().await, Err(StoreError::Closed));
    assert_eq!(b.lead().await, Ok(true));
    b.close().await;
}
