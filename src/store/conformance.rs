//! The store conformance suite: `async fn` checks that take a fresh `&dyn Store`
//! and hold every backend to the same behaviour. Backends run it with
//! [`store_conformance_tests!`](crate::store_conformance_tests).
//!
//! Each check panics (like a test assertion) when the store misbehaves.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::config::Priority;

/// A fixed "now" so that checks control time.
pub const T0: Millis = 1_700_000_000_000;

/// Generates one `#[tokio::test]` per conformance check; `$make` is an async
/// expression yielding `(Arc<dyn Store>, guard)` where the guard is kept alive
/// for the test (a temp dir, a database to drop), or an `Option` of it where
/// `None` skips the test (a server that is not there; `$make` says so).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            append_lease_complete, dedup_returns_first_id, dedup_window_expires,
            concurrent_duplicates_store_one, retry_reschedules, dead_then_bulk_replay,
            ordering_key_one_at_a_time, ordering_head_dead_moves_key_on, priority_overtakes,
            delayed_until_due, release_makes_due_again, pending_counts,
            replay_message_creates_deliveries, replayed_dead_delivery_leaves_the_dead_letter_queue,
            a_delivery_that_dies_after_its_replay_is_replayed,
            message_listing_pages, message_listing_filters, delivery_listing_filters,
            destination_state_round_trip, stored_destinations_crud, stored_transforms_crud, tenant_records_crud,
            tenant_records_page_both_ways, cleanup_keeps_pending,
            lease_is_exclusive_under_concurrency, unknown_message_is_not_found,
            message_with_no_deliveries, pull_leases_name_their_owner, pull_leases_expire,
            alerts_kept_newest_first, stored_alert_channels_crud,
            transform_outcomes_are_final_states
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some((store, _guard)) = $crate::store::conformance::MaybeMade::made($make.await) else {
                    return;
                };
                $crate::store::conformance::$name(&*store).await;
                store.close().await;
            }
        )*
    };
}

/// A message for `dest` with an optional dedup key.
pub fn msg(source: &str, dests: &[&str], dedup: Option<&str>) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        source: source.into(),
        event_type: Some("test.event".into()),
        received_at: T0,
        content_type: Some("application/json".into()),
        headers: encode_headers([("x-test", &b"1"[..])].into_iter()),
        body: Bytes::from_static(br#"{"hello":"world"}"#),
        dedup: dedup.map(|k| Dedup {
            key: k.into(),
            until: T0 + 60_000,
        }),
        deliveries: dests
            .iter()
            .map(|d| NewDelivery {
                destination: (*d).into(),
                due_at: T0,
                priority: Priority::Normal,
                ordering_key: None,
            })
            .collect(),
    }
}

/// A message with one delivery carrying an ordering key and priority.
pub fn keyed(dest: &str, key: Option<&str>, prio: Priority, due_at: Millis) -> NewMessage {
    let mut m = msg("src", &[dest], None);
    m.deliveries[0].ordering_key = key.map(str::to_string);
    m.deliveries[0].priority = prio;
    m.deliveries[0].due_at = due_at;
    m
}

/// A finished attempt.
pub fn result(l: &Leased, next: Next) -> AttemptResult {
    AttemptResult {
        delivery_id: l.delivery_id,
        attempt: l.attempt,
        started_at: T0,
        duration_us: 1500,
        status: Some(match next {
            Next::Delivered => 200,
            _ => 500,
        }),
        response_body: Some(Bytes::from_static(b"ok")),
        response_headers: Some(encode_headers(
            [
                ("content-type", &b"text/plain"[..]),
                ("x-request-id", &b"r-1"[..]),
            ]
            .into_iter(),
        )),
        error: None,
        next,
    }
}

async fn lease(s: &dyn Store, dest: &str, now: Millis, limit: usize) -> Vec<Leased> {
    s.lease(dest, now, limit, 30_000).await.unwrap().items
}

/// Append, lease with the message's bytes, complete; the attempt is recorded.
pub async fn append_lease_complete(s: &dyn Store) {
    let m = msg("src", &["a"], None);
    let id = m.id;
    assert_eq!(s.append(m).await.unwrap(), Appended::Stored(id));
    let got = lease(s, "a", T0, 10).await;
    assert_eq!(got.len(), 1);
    let l = &got[0];
    assert_eq!(l.attempt, 1);
    assert_eq!(l.retry_index, 0);
    assert_eq!(l.message.id, id);
    assert_eq!(&l.message.body[..], br#"{"hello":"world"}"#);
    assert_eq!(l.message.content_type.as_deref(), Some("application/json"));
    assert_eq!(l.message.source, "src");
    assert_eq!(l.message.event_type.as_deref(), Some("test.event"));
    assert_eq!(
        decode_headers(&l.message.headers),
        vec![("x-test".to_string(), b"1".to_vec())]
    );
    // Leased: not handed out again.
    assert!(lease(s, "a", T0, 10).await.is_empty());
    // Another destination sees nothing.
    assert!(lease(s, "b", T0, 10).await.is_empty());
    s.complete(vec![result(l, Next::Delivered)]).await.unwrap();
    assert!(lease(s, "a", T0 + 1, 10).await.is_empty());
    let d = s.message(id).await.unwrap();
    assert_eq!(d.summary.status, MessageStatus::Delivered);
    assert_eq!(d.deliveries.len(), 1);
    assert_eq!(d.deliveries[0].status, DeliveryStatus::Delivered);
    let log = d.deliveries[0].attempt_log.as_ref().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].response_status, Some(200));
    assert_eq!(log[0].response_body.as_deref(), Some("ok"));
    assert_eq!(
        log[0].response_headers,
        vec![
            ("content-type".to_string(), "text/plain".to_string()),
            ("x-request-id".to_string(), "r-1".to_string())
        ]
    );
    assert_eq!(log[0].duration_ms, 1.5);
}

/// A second message with a known dedup key gets the first id and stores nothing.
pub async fn dedup_returns_first_id(s: &dyn Store) {
    let first = msg("src", &["a"], Some("k1"));
    let id = first.id;
    assert_eq!(s.append(first).await.unwrap(), Appended::Stored(id));
    let again = msg("src", &["a"], Some("k1"));
    assert_eq!(s.append(again).await.unwrap(), Appended::Duplicate(id));
    // Same key, other source: not a duplicate.
    let other = msg("other", &["a"], Some("k1"));
    let oid = other.id;
    assert_eq!(s.append(other).await.unwrap(), Appended::Stored(oid));
    assert_eq!(lease(s, "a", T0, 10).await.len(), 2);
    assert_eq!(s.pending_estimate(), 2);
}

/// After its window a dedup key no longer matches.
pub async fn dedup_window_expires(s: &dyn Store) {
    let first = msg("src", &["a"], Some("k"));
    s.append(first).await.unwrap();
    let mut later = msg("src", &["a"], Some("k"));
    later.received_at = T0 + 60_001;
    later.dedup.as_mut().unwrap().until = T0 + 120_000;
    let lid = later.id;
    assert_eq!(s.append(later).await.unwrap(), Appended::Stored(lid));
}

/// Many copies appended at the same moment: exactly one is stored.
pub async fn concurrent_duplicates_store_one(s: &dyn Store) {
    let futs = (0..32).map(|_| s.append(msg("src", &["a"], Some("same"))));
    let res = futures::future::join_all(futs).await;
    let stored = res
        .iter()
        .filter(|r| matches!(r, Ok(Appended::Stored(_))))
        .count();
    assert_eq!(stored, 1);
    let ids: HashSet<MessageId> = res.iter().map(|r| r.as_ref().unwrap().id()).collect();
    assert_eq!(ids.len(), 1, "every copy answers with the first id");
    assert_eq!(lease(s, "a", T0, 100).await.len(), 1);
}

/// A retry is due at its time with the next attempt number.
pub async fn retry_reschedules(s: &dyn Store) {
    s.append(msg("src", &["a"], None)).await.unwrap();
    let l = lease(s, "a", T0, 1).await.remove(0);
    s.complete(vec![result(&l, Next::Retry(T0 + 5_000))])
        .await
        .unwrap();
    let b = s.lease("a", T0 + 1, 10, 30_000).await.unwrap();
    assert!(b.items.is_empty());
    assert_eq!(b.next_due, Some(T0 + 5_000));
    let again = lease(s, "a", T0 + 5_000, 10).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].retry_index, 1);
    assert_eq!(s.pending_estimate(), 1);
}

/// Dead deliveries are listed, counted and revived by bulk replay.
pub async fn dead_then_bulk_replay(s: &dyn Store) {
    for _ in 0..5 {
        s.append(msg("src", &["a"], None)).await.unwrap();
    }
    s.append(msg("src", &["b"], None)).await.unwrap();
    for d in ["a", "b"] {
        for l in lease(s, d, T0, 10).await {
            s.complete(vec![result(&l, Next::Dead)]).await.unwrap();
        }
    }
    assert_eq!(s.pending_estimate(), 0);
    let dead = s
        .deliveries(&DeliveryQuery {
            destination: Some("a".into()),
            status: Some(DeliveryStatus::Dead),
            limit: 100,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(dead.items.len(), 5);
    let f = ReplayFilter {
        destination: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(s.count_dead(&f).await.unwrap(), 5);
    assert_eq!(s.count_dead(&ReplayFilter::default()).await.unwrap(), 6);
    let stats = s.destination_stats().await.unwrap();
    assert_eq!(stats["a"].dead, 5);
    assert_eq!(stats["b"].dead, 1);
    let mut revived = 0;
    loop {
        let n = s.replay_dead_batch(&f, T0 + 10, 2).await.unwrap();
        if n == 0 {
            break;
        }
        revived += n;
    }
    assert_eq!(revived, 5);
    assert_eq!(s.count_dead(&f).await.unwrap(), 0);
    assert_eq!(s.destination_stats().await.unwrap()["a"].dead, 0);
    assert_eq!(s.pending_estimate(), 5);
    let again = lease(s, "a", T0 + 10, 10).await;
    assert_eq!(again.len(), 5);
    assert!(again.iter().all(|l| l.attempt == 2 && l.retry_index == 0));
    // A time window that matches nothing revives nothing.
    let none = ReplayFilter {
        destination: Some("b".into()),
        since: Some(T0 + 1_000_000),
        until: None,
    };
    assert_eq!(s.replay_dead_batch(&none, T0, 10).await.unwrap(), 0);
}

/// Same key: one at a time in ingest order; another key is not held up.
pub async fn ordering_key_one_at_a_time(s: &dyn Store) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        let m = keyed("a", Some("k1"), Priority::Normal, T0);
        ids.push(m.id);
        s.append(m).await.unwrap();
    }
    let other = keyed("a", Some("k2"), Priority::Normal, T0);
    let other_id = other.id;
    s.append(other).await.unwrap();
    let first = lease(s, "a", T0, 10).await;
    let got: Vec<MessageId> = first.iter().map(|l| l.message.id).collect();
    assert_eq!(got, vec![ids[0], other_id], "only each key's head");
    // While k1's head is leased, k1 yields nothing more.
    assert!(lease(s, "a", T0, 10).await.is_empty());
    // The head fails and is retried later: the key stays blocked.
    let head = first.iter().find(|l| l.message.id == ids[0]).unwrap();
    s.complete(vec![result(head, Next::Retry(T0 + 1_000))])
        .await
        .unwrap();
    assert!(lease(s, "a", T0 + 10, 10).await.is_empty());
    let retry = lease(s, "a", T0 + 1_000, 10).await;
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].message.id, ids[0]);
    s.complete(vec![result(&retry[0], Next::Delivered)])
        .await
        .unwrap();
    let second = lease(s, "a", T0 + 1_000, 10).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].message.id, ids[1]);
    s.complete(vec![result(&second[0], Next::Delivered)])
        .await
        .unwrap();
    let third = lease(s, "a", T0 + 1_000, 10).await;
    assert_eq!(third[0].message.id, ids[2]);
}

/// When a key's head goes dead, the key moves on.
pub async fn ordering_head_dead_moves_key_on(s: &dyn Store) {
    let a = keyed("a", Some("k"), Priority::Normal, T0);
    let b = keyed("a", Some("k"), Priority::Normal, T0);
    let bid = b.id;
    s.append(a).await.unwrap();
    s.append(b).await.unwrap();
    let head = lease(s, "a", T0, 10).await;
    assert_eq!(head.len(), 1);
    s.complete(vec![result(&head[0], Next::Dead)])
        .await
        .unwrap();
    let next = lease(s, "a", T0, 10).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].message.id, bid);
}

/// Due high-priority deliveries go before due normal and low ones.
pub async fn priority_overtakes(s: &dyn Store) {
    let low = keyed("a", None, Priority::Low, T0);
    let normal = keyed("a", None, Priority::Normal, T0);
    let high = keyed("a", None, Priority::High, T0 + 5);
    let (lid, nid, hid) = (low.id, normal.id, high.id);
    s.append(low).await.unwrap();
    s.append(normal).await.unwrap();
    s.append(high).await.unwrap();
    let got: Vec<MessageId> = lease(s, "a", T0 + 10, 10)
        .await
        .iter()
        .map(|l| l.message.id)
        .collect();
    assert_eq!(got, vec![hid, nid, lid]);
}

/// A delivery due later is not leased before its time.
pub async fn delayed_until_due(s: &dyn Store) {
    s.append(keyed("a", None, Priority::Normal, T0 + 60_000))
        .await
        .unwrap();
    let b = s.lease("a", T0, 10, 30_000).await.unwrap();
    assert!(b.items.is_empty());
    assert_eq!(b.next_due, Some(T0 + 60_000));
    assert_eq!(lease(s, "a", T0 + 60_000, 10).await.len(), 1);
}

/// A released lease makes the delivery due again, with the same attempt number.
pub async fn release_makes_due_again(s: &dyn Store) {
    s.append(msg("src", &["a"], None)).await.unwrap();
    let l = lease(s, "a", T0, 10).await;
    s.release(l.iter().map(|l| l.delivery_id).collect())
        .await
        .unwrap();
    let again = lease(s, "a", T0, 10).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 1);
}

/// Pull limits as the dispatcher passes them.
fn pull_limits(max_in_flight: u32) -> LeaseLimits {
    LeaseLimits {
        max_in_flight,
        rate: None,
        settled: Vec::new(),
    }
}

/// A consumer's result for `l` under `owner`.
fn pulled(owner: &str, l: &Leased, next: Next) -> PullResult {
    PullResult {
        owner: owner.into(),
        result: result(l, next),
    }
}

/// Pull leases: each held by its owner; a result applies once, only under its
/// owner and at its destination; a release makes the delivery due again with
/// no attempt; `max_in_flight` counts every consumer's leases.
pub async fn pull_leases_name_their_owner(s: &dyn Store) {
    for _ in 0..3 {
        s.append(msg("src", &["p"], None)).await.unwrap();
    }
    s.append(msg("src", &["q"], None)).await.unwrap();
    let lim = pull_limits(10);
    let a = s
        .lease_pull("p", "pull:a", T0, 2, 60_000, &lim)
        .await
        .unwrap()
        .items;
    assert_eq!(a.len(), 2);
    let b = s
        .lease_pull("p", "pull:b", T0, 10, 60_000, &lim)
        .await
        .unwrap()
        .items;
    assert_eq!(b.len(), 1, "held leases are not handed out again");
    assert!(s
        .lease_pull("p", "pull:x", T0, 10, 60_000, &lim)
        .await
        .unwrap()
        .items
        .is_empty());
    // The push lease of a pull-held delivery finds nothing either.
    assert!(lease(s, "p", T0, 10).await.is_empty());

    let out = s
        .complete_pull(
            "p",
            vec![
                pulled("pull:a", &a[0], Next::Delivered),
                pulled("pull:b", &a[1], Next::Delivered),
            ],
            T0 + 1,
            false,
        )
        .await
        .unwrap();
    assert_eq!(out, [PullOutcome::Applied, PullOutcome::NotHeld]);
    let d = s.message(a[0].message.id).await.unwrap();
    assert_eq!(d.deliveries[0].status, DeliveryStatus::Delivered);
    // A second result for the same lease records nothing.
    let again = s
        .complete_pull(
            "p",
            vec![pulled("pull:a", &a[0], Next::Dead)],
            T0 + 2,
            false,
        )
        .await
        .unwrap();
    assert_eq!(again, [PullOutcome::NotHeld]);
    assert_eq!(
        s.message(a[0].message.id).await.unwrap().deliveries[0].status,
        DeliveryStatus::Delivered
    );
    // Another destination's delivery, under its own owner, through `p`.
    let q = s
        .lease_pull("q", "pull:q", T0, 10, 60_000, &lim)
        .await
        .unwrap()
        .items;
    assert_eq!(q.len(), 1);
    let wrong = s
        .complete_pull(
            "p",
            vec![pulled("pull:q", &q[0], Next::Delivered)],
            T0 + 3,
            false,
        )
        .await
        .unwrap();
    assert_eq!(wrong, [PullOutcome::OtherDestination]);
    assert_eq!(
        s.message(q[0].message.id).await.unwrap().deliveries[0].status,
        DeliveryStatus::Pending
    );
    assert_eq!(
        s.delivery_destination(q[0].delivery_id)
            .await
            .unwrap()
            .as_deref(),
        Some("q")
    );
    assert_eq!(s.delivery_destination(i64::MAX).await.unwrap(), None);

    // A release: due again at once, the same attempt number, nothing recorded.
    let rel = s
        .release_pull(
            "p",
            vec![
                PullRelease {
                    owner: "pull:b".into(),
                    delivery_id: b[0].delivery_id,
                },
                PullRelease {
                    owner: "pull:b".into(),
                    delivery_id: b[0].delivery_id,
                },
            ],
            T0 + 4,
        )
        .await
        .unwrap();
    assert_eq!(rel, [PullOutcome::Applied, PullOutcome::NotHeld]);
    let c = s
        .lease_pull("p", "pull:c", T0 + 5, 10, 60_000, &lim)
        .await
        .unwrap()
        .items;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].delivery_id, b[0].delivery_id);
    assert_eq!(c[0].attempt, 1);

    // `max_in_flight`: a[1] (pull:a) and c[0] (pull:c) are held.
    let held = s
        .lease_pull("p", "pull:d", T0 + 6, 10, 60_000, &pull_limits(2))
        .await
        .unwrap();
    assert!(held.items.is_empty());
    s.append(msg("src", &["p"], None)).await.unwrap();
    let held = s
        .lease_pull("p", "pull:d", T0 + 6, 10, 60_000, &pull_limits(2))
        .await
        .unwrap();
    assert!(
        held.items.is_empty(),
        "max_in_flight counts every consumer's leases"
    );
    let one = s
        .lease_pull("p", "pull:d", T0 + 6, 10, 60_000, &pull_limits(3))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
}

/// A pull lease that runs out: its result no longer applies, the sweep finds
/// it, records it once as a timed-out attempt, and it is due again.
pub async fn pull_leases_expire(s: &dyn Store) {
    s.append(msg("src", &["p"], None)).await.unwrap();
    let lim = pull_limits(10);
    // 50 ms by the store's clock (PostgreSQL leases by the database's).
    let l = s
        .lease_pull("p", "pull:a", T0, 10, 50, &lim)
        .await
        .unwrap()
        .items;
    assert_eq!(l.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    let later = T0 + 60_000;
    let late = s
        .complete_pull(
            "p",
            vec![pulled("pull:a", &l[0], Next::Delivered)],
            later,
            false,
        )
        .await
        .unwrap();
    assert_eq!(late, [PullOutcome::Expired]);
    let expired = s.expired_pulls("p", later, 100).await.unwrap();
    assert_eq!(expired.len(), 1);
    let e = &expired[0];
    assert_eq!(
        (e.delivery_id, e.owner.as_str(), e.attempt, e.retry_index),
        (l[0].delivery_id, "pull:a", 1, 0)
    );
    assert_eq!(e.message_id, l[0].message.id);
    assert!(s.expired_pulls("q", later, 100).await.unwrap().is_empty());
    // Two sweeps (two nodes) record it once.
    let timeout = pulled("pull:a", &l[0], Next::Retry(T0 + 1000));
    let first = s
        .complete_pull("p", vec![timeout.clone()], later, true)
        .await
        .unwrap();
    let second = s
        .complete_pull("p", vec![timeout], later, true)
        .await
        .unwrap();
    assert_eq!(
        (first[0], second[0]),
        (PullOutcome::Applied, PullOutcome::NotHeld)
    );
    assert!(s.expired_pulls("p", later, 100).await.unwrap().is_empty());
    let again = s
        .lease_pull("p", "pull:b", T0 + 2000, 10, 60_000, &lim)
        .await
        .unwrap()
        .items;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].retry_index, 1);
}

/// Pending counts follow appends and completions.
pub async fn pending_counts(s: &dyn Store) {
    s.append(msg("src", &["a", "b"], None)).await.unwrap();
    s.append(msg("src", &["a"], None)).await.unwrap();
    assert_eq!(s.pending_estimate(), 3);
    let stats = s.destination_stats().await.unwrap();
    assert_eq!(stats["a"].pending, 2);
    assert_eq!(stats["b"].pending, 1);
    assert_eq!(stats["a"].oldest_pending_at, Some(T0));
    for l in lease(s, "a", T0, 10).await {
        s.complete(vec![result(&l, Next::Delivered)]).await.unwrap();
    }
    assert_eq!(s.pending_estimate(), 1);
    let stats = s.destination_stats().await.unwrap();
    assert_eq!(stats.get("a").map_or(0, |x| x.pending), 0);
    assert_eq!(stats.get("a").and_then(|x| x.oldest_pending_at), None);
}

/// Replaying a message makes a new delivery per destination.
pub async fn replay_message_creates_deliveries(s: &dyn Store) {
    let m = msg("src", &["a", "b"], None);
    let id = m.id;
    s.append(m).await.unwrap();
    for d in ["a", "b"] {
        for l in lease(s, d, T0, 10).await {
            s.complete(vec![result(&l, Next::Delivered)]).await.unwrap();
        }
    }
    assert_eq!(s.message_destinations(id).await.unwrap(), vec!["a", "b"]);
    let ids = s
        .replay_message(id, &["b".to_string()], T0 + 5)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    let l = lease(s, "b", T0 + 5, 10).await;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].attempt, 1);
    assert_eq!(l[0].message.id, id);
    assert!(lease(s, "a", T0 + 5, 10).await.is_empty());
    assert_eq!(s.message(id).await.unwrap().deliveries.len(), 3);
    assert_eq!(
        s.replay_message(MessageId::new(), &["a".into()], T0)
            .await
            .unwrap_err(),
        StoreError::NotFound
    );
}

/// The deliveries of a status, at most 100.
async fn with_status(s: &dyn Store, status: DeliveryStatus) -> Vec<DeliveryInfo> {
    let q = DeliveryQuery {
        status: Some(status),
        limit: 100,
        ..Default::default()
    };
    s.deliveries(&q).await.unwrap().items
}

/// The message's derived status, in its detail and in the listing.
async fn status_of(s: &dyn Store, id: MessageId) -> MessageStatus {
    let detail = s.message(id).await.unwrap().summary.status;
    let q = MessageQuery {
        limit: 100,
        ..Default::default()
    };
    let listed = s.messages(&q).await.unwrap().items;
    let listed = listed.iter().find(|m| m.id == id).unwrap().status;
    assert_eq!(detail, listed, "the detail and the listing agree");
    detail
}

/// A transformation's outcomes are final states of their own: `dropped` (the
/// message counts as delivered) and `transform_failed` (it counts as dead, and
/// stays out of the dead-letter queue), each listed by its status, with the
/// error in the attempt; a delivery behind one with the same ordering key goes
/// next; a replay makes a new delivery that can succeed.
pub async fn transform_outcomes_are_final_states(s: &dyn Store) {
    let dropped = msg("src", &["a"], None);
    let failed = msg("src", &["a"], None);
    let (dropped_id, failed_id) = (dropped.id, failed.id);
    s.append(dropped).await.unwrap();
    s.append(failed).await.unwrap();
    let got = lease(s, "a", T0, 10).await;
    assert_eq!(got.len(), 2);
    let by_id = |id: MessageId| got.iter().find(|l| l.message.id == id).unwrap();
    let mut r1 = result(by_id(dropped_id), Next::Dropped);
    (r1.status, r1.response_body, r1.response_headers) = (None, None, None);
    r1.error = Some("dropped by transform `t`".into());
    let mut r2 = result(by_id(failed_id), Next::TransformFailed);
    (r2.status, r2.response_body, r2.response_headers) = (None, None, None);
    r2.error = Some("transform `t` threw Error: boom".into());
    s.complete(vec![r1, r2]).await.unwrap();
    // Final: nothing is due again.
    assert!(lease(s, "a", T0 + 3_600_000, 10).await.is_empty());
    let d = s.message(dropped_id).await.unwrap();
    assert_eq!(d.deliveries[0].status, DeliveryStatus::Dropped);
    assert_eq!(status_of(s, dropped_id).await, MessageStatus::Delivered);
    let d = s.message(failed_id).await.unwrap();
    assert_eq!(d.deliveries[0].status, DeliveryStatus::TransformFailed);
    let log = d.deliveries[0].attempt_log.as_ref().unwrap();
    assert_eq!(
        log[0].error.as_deref(),
        Some("transform `t` threw Error: boom")
    );
    assert_eq!(log[0].response_status, None);
    assert_eq!(status_of(s, failed_id).await, MessageStatus::Dead);
    assert_eq!(with_status(s, DeliveryStatus::Dropped).await.len(), 1);
    assert_eq!(
        with_status(s, DeliveryStatus::TransformFailed).await.len(),
        1
    );
    assert!(with_status(s, DeliveryStatus::Dead).await.is_empty());
    // A replay (after the script is fixed) makes a new delivery that succeeds.
    s.replay_message(failed_id, &["a".to_string()], T0 + 5)
        .await
        .unwrap();
    let again = lease(s, "a", T0 + 5, 10).await;
    assert_eq!(again.len(), 1);
    s.complete(vec![result(&again[0], Next::Delivered)])
        .await
        .unwrap();
    assert_eq!(status_of(s, failed_id).await, MessageStatus::Delivered);
    // Behind a failed head of an ordering key, the next one goes.
    let head = keyed("k", Some("key"), Priority::Normal, T0);
    let next = keyed("k", Some("key"), Priority::Normal, T0);
    let next_id = next.id;
    s.append(head).await.unwrap();
    s.append(next).await.unwrap();
    let l = lease(s, "k", T0, 10).await;
    assert_eq!(l.len(), 1);
    s.complete(vec![result(&l[0], Next::TransformFailed)])
        .await
        .unwrap();
    let l = lease(s, "k", T0, 10).await;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].message.id, next_id);
}

/// Replaying a dead message marks its dead delivery replayed (linked to the new
/// one): it leaves the dead listing, counts and bulk replay, and the message's
/// status follows its newest deliveries.
pub async fn replayed_dead_delivery_leaves_the_dead_letter_queue(s: &dyn Store) {
    let m = msg("src", &["a", "b"], None);
    let id = m.id;
    s.append(m).await.unwrap();
    for d in ["a", "b"] {
        for l in lease(s, d, T0, 10).await {
            s.complete(vec![result(&l, Next::Dead)]).await.unwrap();
        }
    }
    assert_eq!(status_of(s, id).await, MessageStatus::Dead);
    let old_a = with_status(s, DeliveryStatus::Dead)
        .await
        .into_iter()
        .find(|d| d.destination == "a")
        .unwrap()
        .id;

    let new_a = s.replay_message(id, &["a".into()], T0 + 5).await.unwrap()[0];
    let replayed = with_status(s, DeliveryStatus::Replayed).await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(
        (replayed[0].id, replayed[0].replayed_by),
        (old_a, Some(new_a))
    );
    let dead = with_status(s, DeliveryStatus::Dead).await;
    assert_eq!(
        dead.iter()
            .map(|d| d.destination.as_str())
            .collect::<Vec<_>>(),
        vec!["b"]
    );
    let only_a = ReplayFilter {
        destination: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(s.count_dead(&only_a).await.unwrap(), 0);
    assert_eq!(s.count_dead(&ReplayFilter::default()).await.unwrap(), 1);
    let stats = s.destination_stats().await.unwrap();
    assert_eq!(stats.get("a").map_or(0, |x| x.dead), 0);
    assert_eq!(stats["b"].dead, 1);
    assert_eq!(status_of(s, id).await, MessageStatus::Pending);
    let detail = s.message(id).await.unwrap();
    let old = detail.deliveries.iter().find(|d| d.id == old_a).unwrap();
    assert_eq!(old.status, DeliveryStatus::Replayed);
    assert_eq!(old.replayed_by, Some(new_a));

    let l = lease(s, "a", T0 + 5, 10).await;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].delivery_id, new_a);
    s.complete(vec![result(&l[0], Next::Delivered)])
        .await
        .unwrap();
    // `a` delivered at last; `b` is still dead.
    assert_eq!(status_of(s, id).await, MessageStatus::Dead);

    // Bulk replay revives b's dead delivery and never a's replayed one, however
    // often it runs.
    assert_eq!(
        s.replay_dead_batch(&ReplayFilter::default(), T0 + 10, 10)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.replay_dead_batch(&ReplayFilter::default(), T0 + 10, 10)
            .await
            .unwrap(),
        0
    );
    assert!(lease(s, "a", T0 + 10, 10).await.is_empty());
    let l = lease(s, "b", T0 + 10, 10).await;
    assert_eq!(l.len(), 1);
    s.complete(vec![result(&l[0], Next::Delivered)])
        .await
        .unwrap();
    assert_eq!(status_of(s, id).await, MessageStatus::Delivered);
    assert_eq!(s.pending_estimate(), 0);

    // A replay of a delivered message that dies makes the message dead again;
    // the delivered one stays delivered.
    let again = s.replay_message(id, &["a".into()], T0 + 20).await.unwrap()[0];
    let l = lease(s, "a", T0 + 20, 10).await;
    assert_eq!(l[0].delivery_id, again);
    s.complete(vec![result(&l[0], Next::Dead)]).await.unwrap();
    assert_eq!(status_of(s, id).await, MessageStatus::Dead);
    let dead = with_status(s, DeliveryStatus::Dead).await;
    assert_eq!(dead.iter().map(|d| d.id).collect::<Vec<_>>(), vec![again]);
    assert_eq!(
        with_status(s, DeliveryStatus::Delivered)
            .await
            .iter()
            .filter(|d| d.id == new_a)
            .count(),
        1
    );
}

/// A message replayed while its delivery is still in flight: when that
/// delivery dies afterwards, it is replayed (by the newer one), not dead, so it
/// never enters the dead-letter queue and a bulk replay cannot send it again.
pub async fn a_delivery_that_dies_after_its_replay_is_replayed(s: &dyn Store) {
    let m = msg("src", &["a"], None);
    let id = m.id;
    s.append(m).await.unwrap();
    let first = lease(s, "a", T0, 10).await;
    assert_eq!(first.len(), 1);
    let new_a = s.replay_message(id, &["a".into()], T0 + 5).await.unwrap()[0];
    s.complete(vec![result(&first[0], Next::Dead)])
        .await
        .unwrap();
    assert!(with_status(s, DeliveryStatus::Dead).await.is_empty());
    let replayed = with_status(s, DeliveryStatus::Replayed).await;
    assert_eq!(
        replayed
            .iter()
            .map(|d| (d.id, d.replayed_by))
            .collect::<Vec<_>>(),
        vec![(first[0].delivery_id, Some(new_a))]
    );
    assert_eq!(s.count_dead(&ReplayFilter::default()).await.unwrap(), 0);
    let stats = s.destination_stats().await.unwrap();
    assert_eq!(stats.get("a").map_or(0, |x| x.dead), 0);
    assert_eq!(status_of(s, id).await, MessageStatus::Pending);
    assert_eq!(
        s.replay_dead_batch(&ReplayFilter::default(), T0 + 10, 10)
            .await
            .unwrap(),
        0
    );
    let l = lease(s, "a", T0 + 10, 10).await;
    assert_eq!(
        l.iter().map(|l| l.delivery_id).collect::<Vec<_>>(),
        vec![new_a]
    );
    s.complete(vec![result(&l[0], Next::Delivered)])
        .await
        .unwrap();
    assert_eq!(status_of(s, id).await, MessageStatus::Delivered);
    assert_eq!(s.pending_estimate(), 0);
}

/// After an upgrade from before deliveries could be `replayed`, given a store
/// whose destination `a` had message `replayed` die (delivery 1) and be
/// replayed and delivered (delivery 2), and message `dead` die (delivery 3):
/// 1 is now replayed by 2 and out of the dead-letter queue, 3 is still dead.
pub async fn upgraded_replays_are_replayed(s: &dyn Store, replayed: MessageId, dead: MessageId) {
    let all = ReplayFilter::default();
    assert_eq!(s.count_dead(&all).await.unwrap(), 1);
    assert_eq!(s.destination_stats().await.unwrap()["a"].dead, 1);
    let listed: Vec<i64> = with_status(s, DeliveryStatus::Dead)
        .await
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, vec![3]);
    let m = s.message(replayed).await.unwrap();
    assert_eq!(m.summary.status, MessageStatus::Delivered);
    assert_eq!(m.deliveries[0].status, DeliveryStatus::Replayed);
    assert_eq!(m.deliveries[0].replayed_by, Some(2));
    assert_eq!(
        s.message(dead).await.unwrap().summary.status,
        MessageStatus::Dead
    );
    // Bulk replay revives the dead one only.
    assert_eq!(s.replay_dead_batch(&all, T0, 10).await.unwrap(), 1);
    assert_eq!(s.replay_dead_batch(&all, T0, 10).await.unwrap(), 0);
    let leased = lease(s, "a", T0, 10).await;
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].message.id, dead);
}

/// Every message a query lists, following its cursors with pages of `limit`,
/// and how many calls that took.
pub async fn list_all(s: &dyn Store, q: MessageQuery, limit: usize) -> (Vec<MessageId>, usize) {
    let mut got = Vec::new();
    let mut cursor = None;
    let mut calls = 0;
    loop {
        calls += 1;
        let page = s
            .messages(&MessageQuery {
                limit,
                cursor: cursor.clone(),
                ..q.clone()
            })
            .await
            .unwrap();
        got.extend(page.items.iter().map(|m| m.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return (got, calls),
        }
        assert!(calls < 1000, "the cursor does not move: {q:?}");
    }
}

/// Listings are newest first and paginate with a cursor; filters apply.
pub async fn message_listing_pages(s: &dyn Store) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let m = msg(if i % 2 == 0 { "even" } else { "odd" }, &["a"], None);
        ids.push(m.id);
        s.append(m).await.unwrap();
    }
    let (seen, _) = list_all(s, MessageQuery::default(), 3).await;
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every message once");
    let odd = s
        .messages(&MessageQuery {
            source: Some("odd".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(odd.items.len(), 3);
    assert!(odd.items.iter().all(|m| m.source == "odd"));
    // One delivered message; status filters.
    let l = lease(s, "a", T0, 1).await.remove(0);
    s.complete(vec![result(&l, Next::Delivered)]).await.unwrap();
    let delivered = s
        .messages(&MessageQuery {
            status: Some(MessageStatus::Delivered),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(delivered.items.len(), 1);
    assert_eq!(delivered.items[0].id, l.message.id);
    let pending = s
        .messages(&MessageQuery {
            status: Some(MessageStatus::Pending),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.items.len(), 6);
}

/// Listings filter by event type, a time range and a dedup key, each alone
/// and together, and a filter that matches nothing pages to an empty end.
pub async fn message_listing_filters(s: &dyn Store) {
    let mut ids = Vec::new();
    for i in 0..12i64 {
        let key = format!("key-{i}");
        let key = (i < 4).then_some(key.as_str());
        let mut m = msg(if i < 6 { "early" } else { "late" }, &["a"], key);
        m.event_type = Some(
            if i % 3 == 0 {
                "order.paid"
            } else {
                "order.created"
            }
            .into(),
        );
        m.received_at = T0 + i * 1000;
        ids.push(m.id);
        s.append(m).await.unwrap();
    }
    let list = |q: MessageQuery| async move { list_all(s, q, 2).await.0 };
    let pick = |f: &dyn Fn(usize) -> bool| -> Vec<MessageId> {
        (0..ids.len())
            .rev()
            .filter(|&i| f(i))
            .map(|i| ids[i])
            .collect()
    };
    let paid = list(MessageQuery {
        event_type: Some("order.paid".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(paid, pick(&|i| i % 3 == 0));
    let window = list(MessageQuery {
        since: Some(T0 + 3000),
        until: Some(T0 + 8000),
        ..Default::default()
    })
    .await;
    assert_eq!(
        window,
        pick(&|i| (3..8).contains(&i)),
        "since inclusive, until exclusive"
    );
    let keyed = list(MessageQuery {
        dedup_key: Some("key-1".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(keyed, vec![ids[1]]);
    let both = list(MessageQuery {
        dedup_key: Some("key-2".into()),
        source: Some("early".into()),
        event_type: Some("order.created".into()),
        since: Some(T0),
        ..Default::default()
    })
    .await;
    assert_eq!(both, vec![ids[2]]);
    for none in [
        MessageQuery {
            event_type: Some("no.such.type".into()),
            ..Default::default()
        },
        MessageQuery {
            since: Some(T0 + 60_000_000),
            ..Default::default()
        },
        MessageQuery {
            until: Some(T0 - 60_000_000),
            ..Default::default()
        },
        MessageQuery {
            dedup_key: Some("key-1".into()),
            source: Some("late".into()),
            ..Default::default()
        },
    ] {
        assert_eq!(
            list(none.clone()).await,
            Vec::<MessageId>::new(),
            "{none:?}"
        );
    }
}

/// Delivery listings filter by destination and status and paginate.
pub async fn delivery_listing_filters(s: &dyn Store) {
    for _ in 0..4 {
        s.append(msg("src", &["a", "b"], None)).await.unwrap();
    }
    let page = s
        .deliveries(&DeliveryQuery {
            destination: Some("a".into()),
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert!(page.items.iter().all(|d| d.destination == "a"));
    assert!(
        page.items.windows(2).all(|w| w[0].id > w[1].id),
        "newest first"
    );
    let rest = s
        .deliveries(&DeliveryQuery {
            destination: Some("a".into()),
            limit: 3,
            cursor: page.next_cursor.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    let dead = s
        .deliveries(&DeliveryQuery {
            status: Some(DeliveryStatus::Dead),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(dead.items.is_empty());
}

/// Destination state survives as written.
pub async fn destination_state_round_trip(s: &dyn Store) {
    assert!(s.destination_states().await.unwrap().is_empty());
    let st = DestinationState {
        paused: true,
        disabled_at: None,
        failing_since: Some(T0),
    };
    s.put_destination_state("a", &st).await.unwrap();
    assert_eq!(s.destination_states().await.unwrap()["a"], st);
    let st2 = DestinationState {
        paused: false,
        disabled_at: Some(T0 + 1),
        failing_since: Some(T0),
    };
    s.put_destination_state("a", &st2).await.unwrap();
    assert_eq!(s.destination_states().await.unwrap()["a"], st2);
}

/// Destinations made through the API: create, conflict, update, delete.
pub async fn tenant_records_crud(s: &dyn Store) {
    let rec = |tenant: &str, id: &str, uid: Option<&str>| TenantRecord {
        kind: "endpoint".into(),
        tenant: tenant.into(),
        id: id.into(),
        uid: uid.map(str::to_string),
        body: serde_json::json!({"description": id}),
        created_at: T0,
        updated_at: T0,
    };
    let a = rec("app_a", "ep_1", Some("shop"));
    s.put_tenant_record(&a, true).await.unwrap();
    // The same id, or the same uid in the same tenant, is taken.
    for taken in [
        rec("app_a", "ep_1", None),
        rec("app_a", "ep_2", Some("shop")),
    ] {
        assert_eq!(
            s.put_tenant_record(&taken, true).await.unwrap_err(),
            StoreError::Conflict
        );
    }
    // Another tenant may use both, and another kind too.
    s.put_tenant_record(&rec("app_b", "ep_1", Some("shop")), true)
        .await
        .unwrap();
    let mut other_kind = rec("app_a", "ep_1", Some("shop"));
    other_kind.kind = "token".into();
    s.put_tenant_record(&other_kind, true).await.unwrap();
    // Found by id and by uid, only in its own tenant.
    let by_uid = s.tenant_record("endpoint", "app_a", "shop").await.unwrap();
    assert_eq!(by_uid, Some(a.clone()));
    assert_eq!(
        s.tenant_record("endpoint", "app_a", "ep_1").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        s.tenant_record("endpoint", "app_c", "ep_1").await.unwrap(),
        None
    );
    // A replace keeps created_at; a uid taken by another record is a conflict.
    s.put_tenant_record(&rec("app_a", "ep_2", None), true)
        .await
        .unwrap();
    let mut changed = rec("app_a", "ep_1", Some("store"));
    changed.created_at = T0 + 50;
    changed.updated_at = T0 + 100;
    changed.body = serde_json::json!({"description": "changed"});
    s.put_tenant_record(&changed, false).await.unwrap();
    let got = s
        .tenant_record("endpoint", "app_a", "store")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.created_at, got.updated_at), (T0, T0 + 100));
    assert_eq!(got.body["description"], "changed");
    assert_eq!(
        s.tenant_record("endpoint", "app_a", "shop").await.unwrap(),
        None
    );
    let mut steal = rec("app_a", "ep_2", Some("store"));
    steal.updated_at = T0 + 1;
    assert_eq!(
        s.put_tenant_record(&steal, false).await.unwrap_err(),
        StoreError::Conflict
    );
    assert_eq!(
        s.put_tenant_record(&rec("app_a", "ep_9", None), false)
            .await
            .unwrap_err(),
        StoreError::NotFound
    );
    s.delete_tenant_record("endpoint", "app_a", "ep_1")
        .await
        .unwrap();
    assert_eq!(
        s.delete_tenant_record("endpoint", "app_a", "ep_1")
            .await
            .unwrap_err(),
        StoreError::NotFound
    );
    assert_eq!(
        s.tenant_record("endpoint", "app_a", "store").await.unwrap(),
        None
    );
    assert!(s
        .tenant_record("endpoint", "app_b", "ep_1")
        .await
        .unwrap()
        .is_some());
}

pub async fn tenant_records_page_both_ways(s: &dyn Store) {
    for i in 0..7 {
        let r = TenantRecord {
            kind: "app".into(),
            tenant: String::new(),
            id: format!("app_{i:02}"),
            uid: None,
            body: serde_json::json!({}),
            created_at: T0,
            updated_at: T0,
        };
        s.put_tenant_record(&r, true).await.unwrap();
    }
    let ids = |v: Vec<TenantRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let q = |after, before, limit| RecordQuery {
        kind: "app",
        tenant: "",
        after,
        before,
        limit,
    };
    let first = s.tenant_records(&q(None, None, 3)).await.unwrap();
    assert_eq!(ids(first), ["app_00", "app_01", "app_02"]);
    let next = s.tenant_records(&q(Some("app_02"), None, 3)).await.unwrap();
    assert_eq!(ids(next), ["app_03", "app_04", "app_05"]);
    let last = s.tenant_records(&q(Some("app_05"), None, 3)).await.unwrap();
    assert_eq!(ids(last), ["app_06"]);
    let back = s.tenant_records(&q(None, Some("app_05"), 3)).await.unwrap();
    assert_eq!(ids(back), ["app_02", "app_03", "app_04"]);
    let other = RecordQuery {
        tenant: "app_00",
        ..q(None, None, 10)
    };
    assert!(s.tenant_records(&other).await.unwrap().is_empty());
}

pub async fn stored_destinations_crud(s: &dyn Store) {
    let d = StoredDestination {
        name: "hook".into(),
        spec: serde_json::json!({"url": "https://example.com/h"}),
        created_at: T0,
        updated_at: T0,
    };
    s.put_stored_destination(&d, true).await.unwrap();
    assert_eq!(
        s.put_stored_destination(&d, true).await.unwrap_err(),
        StoreError::Conflict
    );
    let mut d2 = d.clone();
    d2.spec = serde_json::json!({"url": "https://example.com/other"});
    d2.updated_at = T0 + 1;
    s.put_stored_destination(&d2, false).await.unwrap();
    let all = s.stored_destinations().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].spec, d2.spec);
    assert_eq!(all[0].created_at, T0);
    assert_eq!(all[0].updated_at, T0 + 1);
    s.delete_stored_destination("hook").await.unwrap();
    assert_eq!(
        s.delete_stored_destination("hook").await.unwrap_err(),
        StoreError::NotFound
    );
    let mut missing = d.clone();
    missing.name = "nope".into();
    assert_eq!(
        s.put_stored_destination(&missing, false).await.unwrap_err(),
        StoreError::NotFound
    );
}

/// Transformations made through the API: created once, replaced, listed by
/// name apart from destinations, removed.
pub async fn stored_transforms_crud(s: &dyn Store) {
    let t = StoredTransform {
        name: "shape".into(),
        spec: serde_json::json!({"code": "function transform(r) { return r; }", "timeout_ms": 50}),
        created_at: T0,
        updated_at: T0,
    };
    s.put_stored_transform(&t, true).await.unwrap();
    assert_eq!(
        s.put_stored_transform(&t, true).await.unwrap_err(),
        StoreError::Conflict
    );
    assert!(s.stored_destinations().await.unwrap().is_empty());
    let mut t2 = t.clone();
    t2.spec = serde_json::json!({"code": "function transform(r) { return null; }"});
    t2.updated_at = T0 + 1;
    s.put_stored_transform(&t2, false).await.unwrap();
    let mut other = t.clone();
    other.name = "another".into();
    s.put_stored_transform(&other, true).await.unwrap();
    let all = s.stored_transforms().await.unwrap();
    let names: Vec<_> = all.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["another", "shape"]);
    assert_eq!(all[1].spec, t2.spec);
    assert_eq!(all[1].created_at, T0);
    assert_eq!(all[1].updated_at, T0 + 1);
    s.delete_stored_transform("shape").await.unwrap();
    assert_eq!(
        s.delete_stored_transform("shape").await.unwrap_err(),
        StoreError::NotFound
    );
    let mut missing = t.clone();
    missing.name = "nope".into();
    assert_eq!(
        s.put_stored_transform(&missing, false).await.unwrap_err(),
        StoreError::NotFound
    );
    assert_eq!(s.stored_transforms().await.unwrap().len(), 1);
}

/// Alert channels made through the API: a table of their own (neither the
/// destinations' nor the transformations'), each name once; and the one node
/// of a store leads (asked twice: a leader stays one).
pub async fn stored_alert_channels_crud(s: &dyn Store) {
    let row = |name: &str, at: Millis| StoredAlertChannel {
        name: name.into(),
        spec: serde_json::json!({"name": name, "format": "slack", "url": "https://hooks.example/T0"}),
        created_at: T0,
        updated_at: at,
    };
    s.put_stored_alert_channel(&row("ops", T0), true)
        .await
        .unwrap();
    let again = s.put_stored_alert_channel(&row("ops", T0), true).await;
    assert_eq!(again.unwrap_err(), StoreError::Conflict);
    assert!(s.stored_destinations().await.unwrap().is_empty());
    assert!(s.stored_transforms().await.unwrap().is_empty());
    s.put_stored_alert_channel(&row("ops", T0 + 5), false)
        .await
        .unwrap();
    let kept = s.stored_alert_channels().await.unwrap();
    assert_eq!(kept, [row("ops", T0 + 5)]);
    let gone = s.put_stored_alert_channel(&row("gone", T0), false).await;
    assert_eq!(gone.unwrap_err(), StoreError::NotFound);
    s.delete_stored_alert_channel("ops").await.unwrap();
    let twice = s.delete_stored_alert_channel("ops").await;
    assert_eq!(twice.unwrap_err(), StoreError::NotFound);
    assert!(s.stored_alert_channels().await.unwrap().is_empty());
    assert_eq!(s.lead().await, Ok(true));
    assert_eq!(s.lead().await, Ok(true));
}

/// Alerts come back newest first, as written; the same id twice is kept once.
pub async fn alerts_kept_newest_first(s: &dyn Store) {
    let alert = |i: i64, channel: &str| StoredAlert {
        id: format!("alert_{i}:{channel}"),
        at: T0 + i,
        channel: channel.into(),
        outcome: "queued".into(),
        record: serde_json::json!({"event": {"type": "destination.failing", "n": i}, "text": "a\u{e9}"}),
    };
    assert!(s.alert_history(10).await.unwrap().is_empty());
    for i in [2, 1, 3] {
        s.put_alert(&alert(i, "ops")).await.unwrap();
    }
    s.put_alert(&alert(3, "pager")).await.unwrap();
    s.put_alert(&alert(1, "ops")).await.unwrap();
    let got = s.alert_history(10).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(&ids[2..], ["alert_2:ops", "alert_1:ops"]);
    assert!(ids[..2].contains(&"alert_3:ops") && ids[..2].contains(&"alert_3:pager"));
    assert_eq!(got[3], alert(1, "ops"));
    assert_eq!(s.alert_history(1).await.unwrap().len(), 1);
}

/// Cleanup removes finished old messages and expired dedup keys, never pending work.
pub async fn cleanup_keeps_pending(s: &dyn Store) {
    let done = msg("src", &["a"], Some("d1"));
    let done_id = done.id;
    s.append(done).await.unwrap();
    let l = lease(s, "a", T0, 1).await.remove(0);
    s.complete(vec![result(&l, Next::Delivered)]).await.unwrap();
    let open = msg("src", &["a"], None);
    let open_id = open.id;
    s.append(open).await.unwrap();
    let mut removed = 0;
    loop {
        let n = s.cleanup(T0 + 1, T0 + 120_000, 1).await.unwrap();
        if n == 0 {
            break;
        }
        removed += n;
    }
    assert!(
        removed >= 2,
        "the finished message and the expired dedup key"
    );
    assert_eq!(s.message(done_id).await.unwrap_err(), StoreError::NotFound);
    assert!(s.message(open_id).await.is_ok());
    assert_eq!(lease(s, "a", T0, 10).await.len(), 1);
    // The expired key is gone: the same key stores a new message.
    let again = msg("src", &["a"], Some("d1"));
    let aid = again.id;
    assert_eq!(s.append(again).await.unwrap(), Appended::Stored(aid));
}

/// Many concurrent lease calls never hand out one delivery twice.
pub async fn lease_is_exclusive_under_concurrency(s: &dyn Store) {
    for _ in 0..200 {
        s.append(msg("src", &["a"], None)).await.unwrap();
    }
    let futs = (0..8).map(|_| s.lease("a", T0, 40, 30_000));
    let all: Vec<i64> = futures::future::join_all(futs)
        .await
        .into_iter()
        .flat_map(|b| b.unwrap().items)
        .map(|l| l.delivery_id)
        .collect();
    let uniq: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(uniq.len(), all.len(), "no delivery leased twice");
    assert_eq!(all.len(), 200);
}

/// Two messages for destination `a`, before the test corrupts the first one's
/// id in the database (the SQL is the backend's own): returns (bad, good).
pub async fn two_messages_to_corrupt(s: &dyn Store) -> (MessageId, MessageId) {
    let (bad, good) = (msg("src", &["a"], None), msg("src", &["a"], None));
    let ids = (bad.id, good.id);
    s.append(bad).await.unwrap();
    s.append(good).await.unwrap();
    ids
}

/// After the id of `bad` was made unreadable: it is never leased (under an
/// invented id or at all), the rest of the queue is still delivered, and the
/// reads that meet it report it instead of listing a made-up id.
pub async fn corrupt_message_is_reported_not_delivered(s: &dyn Store, good: MessageId) {
    let leased = lease(s, "a", T0, 10).await;
    assert_eq!(leased.len(), 1, "only the readable message is leased");
    assert_eq!(leased[0].message.id, good);
    s.complete(vec![result(&leased[0], Next::Delivered)])
        .await
        .unwrap();
    assert!(lease(s, "a", T0, 10).await.is_empty());
    let d = s.message(good).await.unwrap();
    assert_eq!(d.summary.status, MessageStatus::Delivered);
    let all = DeliveryQuery {
        limit: 100,
        ..Default::default()
    };
    let err = s.deliveries(&all).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("corrupt"), "{err}");
    let all = MessageQuery {
        limit: 100,
        ..Default::default()
    };
    let err = s.messages(&all).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("corrupt"), "{err}");
}

/// Unknown ids are `NotFound`.
pub async fn unknown_message_is_not_found(s: &dyn Store) {
    assert_eq!(
        s.message(MessageId::new()).await.unwrap_err(),
        StoreError::NotFound
    );
    assert_eq!(
        s.message_destinations(MessageId::new()).await.unwrap_err(),
        StoreError::NotFound
    );
}

/// A message routed nowhere is stored and counts as delivered.
pub async fn message_with_no_deliveries(s: &dyn Store) {
    let m = msg("src", &[], None);
    let id = m.id;
    s.append(m).await.unwrap();
    let d = s.message(id).await.unwrap();
    assert_eq!(d.summary.status, MessageStatus::Delivered);
    assert!(d.deliveries.is_empty());
    assert_eq!(s.pending_estimate(), 0);
}

/// Keeps a store alive with whatever it needs (used by the macro's callers).
pub type Guard = Box<dyn std::any::Any + Send>;

/// A fresh store of a backend plus its guard.
pub type Made = (Arc<dyn Store>, Guard);

/// What a suite's `$make` yields: a store, or `None` to skip the test.
pub trait MaybeMade {
    /// The store, if there is one.
    fn made(self) -> Option<Made>;
}

impl MaybeMade for Made {
    fn made(self) -> Option<Made> {
        Some(self)
    }
}

impl MaybeMade for Option<Made> {
    fn made(self) -> Option<Made> {
        self
    }
}

/// One step of a model check.
#[derive(Debug, Clone)]
pub enum ModelOp {
    /// Append a message with one delivery.
    Append {
        /// Destination index (0 or 1).
        dest: u8,
        /// Ordering key index, if any.
        key: Option<u8>,
        /// Priority rank (0 high, 1 normal, 2 low).
        prio: u8,
        /// Due this many ms after the current time.
        due_in: u16,
    },
    /// Lease up to `limit` deliveries of a destination.
    Lease {
        /// Destination index.
        dest: u8,
        /// How many at most.
        limit: u8,
    },
    /// Complete the n-th (mod count) leased delivery.
    Complete {
        /// Which leased delivery.
        pick: u8,
        /// 0 delivered, 1 dead, else retry after that many ms.
        outcome: u16,
    },
    /// Release the n-th (mod count) leased delivery.
    Release {
        /// Which leased delivery.
        pick: u8,
    },
    /// Advance time.
    Tick {
        /// By this many ms.
        ms: u16,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct ModelDelivery {
    msg: MessageId,
    seq: usize,
    dest: u8,
    key: Option<u8>,
    prio: u8,
    due: Millis,
    /// 0 pending, 1 queued, 2 delivered, 3 dead
    status: u8,
    leased: bool,
}

/// Runs `ops` against a fresh store and a plain in-memory model of the queue,
/// and checks after each lease that the store hands out exactly what the model
/// says, in the same order: due, unleased, key heads only, by priority, due
/// time and ingest order.
pub async fn model_check(s: &dyn Store, ops: &[ModelOp]) {
    let dests = ["m0", "m1"];
    let mut model: Vec<ModelDelivery> = Vec::new();
    let mut leased: Vec<Leased> = Vec::new();
    let mut now = T0;
    for op in ops {
        match *op {
            ModelOp::Append {
                dest,
                key,
                prio,
                due_in,
            } => {
                let dest = dest % 2;
                let mut m = keyed(
                    dests[dest as usize],
                    key.map(|k| format!("k{}", k % 3)).as_deref(),
                    Priority::from_rank((prio % 3) as i64).expect("0, 1 or 2"),
                    now + due_in as Millis,
                );
                m.received_at = now;
                let key = key.map(|k| k % 3);
                let busy = key.is_some()
                    && model
                        .iter()
                        .any(|d| d.dest == dest && d.key == key && d.status <= 1);
                model.push(ModelDelivery {
                    msg: m.id,
                    seq: model.len(),
                    dest,
                    key,
                    prio: prio % 3,
                    due: now + due_in as Millis,
                    status: if busy { 1 } else { 0 },
                    leased: false,
                });
                s.append(m).await.unwrap();
            }
            ModelOp::Lease { dest, limit } => {
                let dest = dest % 2;
                let limit = (limit % 8) as usize + 1;
                let batch = s
                    .lease(dests[dest as usize], now, limit, 60_000)
                    .await
                    .unwrap();
                let mut want: Vec<&mut ModelDelivery> = model
                    .iter_mut()
                    .filter(|d| d.dest == dest && d.status == 0 && !d.leased && d.due <= now)
                    .collect();
                want.sort_by_key(|d| (d.prio, d.due, d.seq));
                want.truncate(limit);
                let want_ids: Vec<MessageId> = want.iter().map(|d| d.msg).collect();
                let got_ids: Vec<MessageId> = batch.items.iter().map(|l| l.message.id).collect();
                assert_eq!(
                    got_ids,
                    want_ids,
                    "lease of {} at +{}ms",
                    dests[dest as usize],
                    now - T0
                );
                for d in want {
                    d.leased = true;
                }
                let next_due = model
                    .iter()
                    .filter(|d| d.dest == dest && d.status == 0 && d.due > now)
                    .map(|d| d.due)
                    .min();
                // A full batch may leave `next_due` out (the caller asks again).
                if batch.items.len() < limit {
                    assert_eq!(batch.next_due, next_due, "next_due");
                }
                leased.extend(batch.items);
            }
            ModelOp::Complete { pick, outcome } => {
                if leased.is_empty() {
                    continue;
                }
                let l = leased.remove(pick as usize % leased.len());
                let next = match outcome {
                    0 => Next::Delivered,
                    1 => Next::Dead,
                    ms => Next::Retry(now + ms as Millis),
                };
                s.complete(vec![result(&l, next)]).await.unwrap();
                let i = model.iter().position(|d| d.msg == l.message.id).unwrap();
                model[i].leased = false;
                match next {
                    Next::Retry(at) => model[i].due = at,
                    _ => {
                        model[i].status = if next == Next::Delivered { 2 } else { 3 };
                        let (dest, key) = (model[i].dest, model[i].key);
                        if key.is_some()
                            && !model
                                .iter()
                                .any(|d| d.dest == dest && d.key == key && d.status == 0)
                        {
                            if let Some(q) = model
                                .iter_mut()
                                .filter(|d| d.dest == dest && d.key == key && d.status == 1)
                                .min_by_key(|d| d.seq)
                            {
                                q.status = 0;
                            }
                        }
                    }
                }
            }
            ModelOp::Release { pick } => {
                if leased.is_empty() {
                    continue;
                }
                let l = leased.remove(pick as usize % leased.len());
                s.release(vec![l.delivery_id]).await.unwrap();
                model
                    .iter_mut()
                    .find(|d| d.msg == l.message.id)
                    .unwrap()
                    .leased = false;
            }
            ModelOp::Tick { ms } => now += ms as Millis,
        }
        let live = model.iter().filter(|d| d.status <= 1).count() as u64;
        assert_eq!(s.pending_estimate(), live, "pending count");
    }
}
