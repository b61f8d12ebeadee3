//! The group-commit writer of the PostgreSQL store: appends (messages, their
//! deliveries, the dedup check) and attempt results go through a queue; a few
//! writer tasks each take everything waiting (up to a cap), write it in one
//! transaction with multi-row statements, commit once, and only then answer.
//! Under load batches grow by themselves; at low load a batch is one request and
//! the ack costs one commit.
//!
//! Invariants:
//! - An answer (and its wake-ups) follows the commit that made its writes
//!   durable, or reports why there was none. A commit whose outcome is unknown
//!   (the connection died during COMMIT) is reported as a failure: the caller
//!   answers 503 and the sender retries, which is at-least-once, never a loss.
//! - Locks are taken in one global order — dedup rows by (source, key), then
//!   ordering-key advisory locks by key hash — so batches on several nodes
//!   cannot deadlock on each other; a deadlock with other work is retried.
//! - Per (destination, ordering key) at most one live delivery is pending; the
//!   advisory lock of the key is held from the busy check to the commit, so the
//!   check and the insert (or the promotion) are atomic across nodes, and ids
//!   of one key grow in commit order.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex};
use tokio::task::JoinHandle;

use super::pending::PendingCounts;
use super::{key_lock, lock_keys, map_err, sqlstate, text, xid};
use crate::store::corrupt;
use crate::store::{
    Appended, AttemptResult, CommitObserver, NewMessage, Next, StoreResult, Wakeups,
};

/// Most requests in one transaction.
const MAX_BATCH: usize = 1024;
/// A batch stops growing once its bodies pass this many bytes.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// Deadlocks and serialization failures are retried this many times.
const RETRIES: usize = 3;

/// A request to the writer.
pub(super) enum Op {
    Append(NewMessage, oneshot::Sender<StoreResult<Appended>>),
    Complete(Vec<AttemptResult>, oneshot::Sender<StoreResult<()>>),
}

impl Op {
    fn bytes(&self) -> usize {
        match self {
            Op::Append(m, _) => m.body.len() + m.headers.len(),
            Op::Complete(r, _) => r
                .iter()
                .map(|r| r.response_body.as_ref().map_or(0, |b| b.len()))
                .sum(),
        }
    }
}

/// What the writer tasks share.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) pool: PgPool,
    pub(super) node: String,
    pub(super) pending: Arc<PendingCounts>,
    pub(super) wakeups: Arc<Wakeups>,
    pub(super) observer: CommitObserver,
    pub(super) health: Arc<super::health::Health>,
    /// The longest one commit may take (`storage.query_timeout`).
    pub(super) query_timeout: std::time::Duration,
    /// Sends the other nodes' wake-ups after each commit.
    pub(super) notifier: Arc<super::listen::Notifier>,
    /// Destinations other nodes queue for places of: results that end
    /// attempts there wake them.
    pub(super) others_queued: Arc<super::lease::OthersQueued>,
    /// Whether a commit waits for its WAL flush before it answers. Appends
    /// do: their answer is the acknowledgement. Attempt results need not: a
    /// result lost in a crash of the database leaves its delivery leased, so
    /// it is attempted again when the lease ends (at-least-once), and a later
    /// synchronous commit that saw its effects flushes it too (WAL is
    /// written in order).
    pub(super) synchronous: bool,
}

/// Starts `writers` tasks that serve `rx` until every sender is gone and the
/// queue is empty.
pub(super) fn spawn(
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Op>,
    writers: usize,
) -> Vec<JoinHandle<()>> {
    let rx = Arc::new(AsyncMutex::new(rx));
    (0..writers.max(1))
        .map(|_| tokio::spawn(run(shared.clone(), rx.clone())))
        .collect()
}

async fn run(shared: Arc<Shared>, rx: Arc<AsyncMutex<mpsc::Receiver<Op>>>) {
    loop {
        // One writer collects while the others commit: batches overlap.
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut bytes = first.bytes();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(op) => {
                        bytes += op.bytes();
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        commit_batch(&shared, batch).await;
    }
}

/// What a committed transaction did.
#[derive(Default)]
struct Outcome {
    /// One per append, in order.
    appended: Vec<Appended>,
    /// The transaction id, if it wrote anything.
    xid: Option<u64>,
    /// Change of live deliveries per destination.
    deltas: HashMap<String, i64>,
    /// Destinations whose dispatchers should look again.
    wake: HashSet<String>,
    /// Destinations whose dispatchers on other nodes should look again.
    notify: HashSet<String>,
}

async fn commit_batch(shared: &Shared, ops: Vec<Op>) {
    // Queued before the database was known down: answered now, not after a
    // connection wait each.
    if let Err(e) = shared.health.check() {
        fail(ops, e);
        return;
    }
    let started = Instant::now();
    match commit_with_retries(shared, &ops).await {
        Ok(out) => {
            (shared.observer)(started.elapsed(), ops.len());
            finish(shared, ops, out);
        }
        // One bad request (say, a value the database refuses) must not fail the
        // others: write them one by one.
        Err(e) if ops.len() > 1 && is_data_error(&e) => {
            tracing::warn!(error = %e, batch = ops.len(), "store batch refused; writing its requests one by one");
            for op in ops {
                let started = Instant::now();
                let one = std::slice::from_ref(&op);
                match commit_with_retries(shared, one).await {
                    Ok(out) => {
                        (shared.observer)(started.elapsed(), 1);
                        finish(shared, vec![op], out);
                    }
                    Err(e) => fail(vec![op], map_err(e)),
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, batch = ops.len(), "store commit failed; the batch is not acknowledged");
            fail(ops, map_err(e));
        }
    }
}

fn finish(shared: &Shared, ops: Vec<Op>, out: Outcome) {
    if let Some(xid) = out.xid {
        shared.pending.record(xid, out.deltas);
    }
    for d in &out.wake {
        shared.wakeups.wake(d);
    }
    shared.notifier.send(&out.notify);
    shared.notifier.send(&shared.others_queued.of(&out.wake));
    let mut appended = out.appended.into_iter();
    for op in ops {
        match op {
            Op::Append(m, reply) => {
                let _ = reply.send(Ok(appended.next().unwrap_or(Appended::Stored(m.id))));
            }
            Op::Complete(_, reply) => {
                let _ = reply.send(Ok(()));
            }
        }
    }
}

fn fail(ops: Vec<Op>, e: crate::store::StoreError) {
    for op in ops {
        match op {
            Op::Append(_, reply) => {
                let _ = reply.send(Err(e.clone()));
            }
            Op::Complete(_, reply) => {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// A value or constraint the database refused (SQLSTATE classes 22 and 23).
fn is_data_error(e: &sqlx::Error) -> bool {
    sqlstate(e).is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
}

/// A deadlock or serialization failure: the transaction was rolled back and can
/// simply run again.
fn is_retryable(e: &sqlx::Error) -> bool {
    sqlstate(e).is_some_and(|c| c == "40P01" || c == "40001")
}

async fn commit_with_retries(shared: &Shared, ops: &[Op]) -> Result<Outcome, sqlx::Error> {
    let mut tries = 0;
    loop {
        match shared
            .health
            .guard(shared.query_timeout, "commit", commit(shared, ops))
            .await
        {
            Err(e) if is_retryable(&e) && tries < RETRIES => {
                tries += 1;
                tracing::debug!(error = %e, tries, "store batch retried");
            }
            r => return r,
        }
    }
}

/// Writes one batch in one transaction.
async fn commit(shared: &Shared, ops: &[Op]) -> Result<Outcome, sqlx::Error> {
    let msgs: Vec<&NewMessage> = ops
        .iter()
        .filter_map(|o| match o {
            Op::Append(m, _) => Some(m),
            _ => None,
        })
        .collect();
    let results = latest_results(ops.iter().flat_map(|o| match o {
        Op::Complete(r, _) => r.as_slice(),
        _ => &[],
    }));

    let mut tx = shared.pool.begin().await?;
    if !shared.synchronous {
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
    }
    let mut out = Outcome::default();

    // 1. Dedup: which appends are new.
    let appended = dedup(&mut tx, &msgs).await?;

    // 2. The live rows the results finish or reschedule (ours only).
    let owned = owned_rows(&mut tx, &shared.node, &results).await?;

    // 3. Ordering-key locks, all at once and in order.
    let mut locks = BTreeSet::new();
    for (m, a) in msgs.iter().zip(&appended) {
        if matches!(a, Appended::Stored(_)) {
            for d in &m.deliveries {
                if let Some(k) = &d.ordering_key {
                    locks.insert(key_lock(&d.destination, k));
                }
            }
        }
    }
    for r in &results {
        if let (Some((dest, Some(key))), false) =
            (owned.get(&r.delivery_id), matches!(r.next, Next::Retry(_)))
        {
            locks.insert(key_lock(dest, key));
        }
    }
    lock_keys(&mut tx, &locks).await?;

    // 4. Attempt results, then 5. new messages: the busy check of a new
    // delivery then sees the keys the results just freed.
    let mut notify = HashSet::new();
    record_results(
        &mut tx,
        &shared.node,
        &results,
        &owned,
        &mut out,
        &mut notify,
    )
    .await?;
    insert_messages(&mut tx, &msgs, &appended, &mut out, &mut notify).await?;

    // 6. The transaction id (for the pending counts), then the commit; the
    // other nodes are woken after it (see `listen::Notifier`).
    out.xid = xid(&mut tx).await?;
    tx.commit().await.map_err(|e| {
        tracing::error!(error = %e, "COMMIT failed; its outcome is unknown");
        e
    })?;
    out.wake.extend(notify.iter().cloned());
    out.notify = notify;
    out.appended = appended;
    Ok(out)
}

/// The result with the highest attempt per delivery (one row is updated once).
fn latest_results<'a>(all: impl Iterator<Item = &'a AttemptResult>) -> Vec<&'a AttemptResult> {
    let mut by_id: HashMap<i64, &AttemptResult> = HashMap::new();
    for r in all {
        match by_id.get(&r.delivery_id) {
            Some(prev) if prev.attempt >= r.attempt => {}
            _ => {
                by_id.insert(r.delivery_id, r);
            }
        }
    }
    let mut v: Vec<_> = by_id.into_values().collect();
    v.sort_by_key(|r| r.delivery_id);
    v
}

/// Which appends of a batch are new: the first of each (source, key) in the
/// batch is upserted into `dedup`, later ones in the batch are its duplicates.
pub(super) struct DedupPlan {
    /// Append indices whose key is upserted, sorted by (source, key).
    pub(super) upsert: Vec<usize>,
    /// For each append, the earlier append in the batch with the same key.
    pub(super) first: Vec<Option<usize>>,
}

pub(super) fn plan_dedup(msgs: &[&NewMessage]) -> DedupPlan {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut first = vec![None; msgs.len()];
    let mut upsert = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        if let Some(d) = &m.dedup {
            let k = (text(&m.source), text(&d.key));
            match seen.get(&k) {
                Some(&j) => first[i] = Some(j),
                None => {
                    seen.insert(k, i);
                    upsert.push(i);
                }
            }
        }
    }
    upsert.sort_by_cached_key(|&i| (text(&msgs[i].source), text(&dedup_key(msgs[i]).key)));
    DedupPlan { upsert, first }
}

async fn dedup(tx: &mut PgConnection, msgs: &[&NewMessage]) -> Result<Vec<Appended>, sqlx::Error> {
    let plan = plan_dedup(msgs);
    let mut res: Vec<Option<Appended>> = vec![None; msgs.len()];
    let mut todo = plan.upsert.clone();
    // A key found held and then gone before it could be read (expired and
    // removed by retention in between) is simply tried again.
    while !todo.is_empty() {
        let sources: Vec<String> = todo.iter().map(|&i| text(&msgs[i].source)).collect();
        let keys: Vec<String> = todo
            .iter()
            .map(|&i| text(&dedup_key(msgs[i]).key))
            .collect();
        let ids: Vec<String> = todo.iter().map(|&i| msgs[i].id.to_string()).collect();
        let created: Vec<i64> = todo.iter().map(|&i| msgs[i].received_at).collect();
        let expires: Vec<i64> = todo.iter().map(|&i| dedup_key(msgs[i]).until).collect();
        // A row comes back when this batch set the key: it was new, or the
        // previous holder's window had ended by this message's arrival. A key
        // another transaction is inserting makes this wait for its outcome.
        let stored = upsert_keys(tx, &sources, &keys, &ids, &created, &expires).await?;
        let mut held = Vec::new();
        for (n, &i) in todo.iter().enumerate() {
            if stored.contains(&ids[n]) {
                res[i] = Some(Appended::Stored(msgs[i].id));
            } else {
                held.push(n);
            }
        }
        if held.is_empty() {
            break;
        }
        let hs: Vec<String> = held.iter().map(|&n| sources[n].clone()).collect();
        let hk: Vec<String> = held.iter().map(|&n| keys[n].clone()).collect();
        let holders = read_holders(tx, &hs, &hk).await?;
        let mut again = Vec::new();
        for &n in &held {
            let i = todo[n];
            // A holder that is not a message id is an error: tried again, it
            // would be found again, forever.
            match holders.get(&(sources[n].clone(), keys[n].clone())) {
                Some(h) => {
                    let p = corrupt::message_id("dedup", h).map_err(super::corrupt)?;
                    res[i] = Some(Appended::Duplicate(p));
                }
                None => again.push(i),
            }
        }
        todo = again;
    }
    let mut out: Vec<Appended> = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let a = match (plan.first[i], res[i]) {
            (Some(j), _) => Appended::Duplicate(out[j].id()),
            (None, Some(a)) => a,
            (None, None) => Appended::Stored(m.id),
        };
        out.push(a);
    }
    Ok(out)
}

/// Sets each key whose window is free (new, or the holder's ended by this
/// message's arrival); returns the message ids that now hold their key. A key
/// another transaction is inserting makes this wait for its outcome.
async fn upsert_keys(
    tx: &mut PgConnection,
    sources: &[String],
    keys: &[String],
    ids: &[String],
    created: &[i64],
    expires: &[i64],
) -> Result<HashSet<String>, sqlx::Error> {
    sqlx::query(
        "INSERT INTO dedup (source, key, message_id, created_at, expires_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[])
         ON CONFLICT (source, key) DO UPDATE
             SET message_id = excluded.message_id, created_at = excluded.created_at,
                 expires_at = excluded.expires_at
             WHERE dedup.expires_at <= excluded.created_at
         RETURNING message_id",
    )
    .bind(sources)
    .bind(keys)
    .bind(ids)
    .bind(created)
    .bind(expires)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| r.try_get::<String, _>(0))
    .collect()
}

/// The message ids holding these (source, key) pairs.
async fn read_holders(
    tx: &mut PgConnection,
    sources: &[String],
    keys: &[String],
) -> Result<HashMap<(String, String), String>, sqlx::Error> {
    sqlx::query(
        "SELECT source, key, message_id FROM dedup
         WHERE (source, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
    )
    .bind(sources)
    .bind(keys)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?)))
    .collect()
}

fn dedup_key(m: &NewMessage) -> &crate::store::Dedup {
    m.dedup.as_ref().expect("planned appends have a dedup key")
}

/// `delivery id → (destination, ordering key)` of the results' rows that are
/// live, pending and leased by this node.
async fn owned_rows(
    tx: &mut PgConnection,
    node: &str,
    results: &[&AttemptResult],
) -> Result<HashMap<i64, (String, Option<String>)>, sqlx::Error> {
    if results.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<i64> = results.iter().map(|r| r.delivery_id).collect();
    // By primary key only: with `status = 0` in the WHERE clause the planner
    // could (and under load did) walk the partial queue index instead, every
    // pending delivery of the destination, for each batch of results.
    let rows = sqlx::query(
        "SELECT id, destination, ordering_key, status, lease_owner FROM deliveries
         WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut owned = HashMap::new();
    for r in rows {
        if r.try_get::<i16, _>(3)? == 0 && r.try_get::<Option<&str>, _>(4)? == Some(node) {
            owned.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
        }
    }
    Ok(owned)
}

/// Records the results of this node's leases, in phases: retries, finished
/// deliveries (moved to the history table), the attempt log of every result
/// that applied, and the promotion of the keys whose head finished.
async fn record_results(
    tx: &mut PgConnection,
    node: &str,
    results: &[&AttemptResult],
    owned: &HashMap<i64, (String, Option<String>)>,
    out: &mut Outcome,
    notify: &mut HashSet<String>,
) -> Result<(), sqlx::Error> {
    let mine: Vec<&AttemptResult> = results
        .iter()
        .copied()
        .filter(|r| owned.contains_key(&r.delivery_id))
        .collect();
    if mine.is_empty() {
        return Ok(());
    }
    let mut applied: HashSet<i64> = HashSet::new();
    record_retries(tx, node, &mine, out, &mut applied).await?;
    let freed = record_finished(tx, node, &mine, out, &mut applied).await?;
    supersede_replayed(tx, &mine, &applied).await?;
    let recorded: Vec<&AttemptResult> = mine
        .into_iter()
        .filter(|r| applied.contains(&r.delivery_id))
        .collect();
    record_attempts(tx, &recorded).await?;
    // Keys whose head finished: the oldest queued delivery becomes pending.
    if !freed.is_empty() {
        let (dests, keys): (Vec<String>, Vec<String>) = freed.into_iter().unzip();
        for d in promote(tx, &dests, &keys).await? {
            notify.insert(d);
        }
    }
    Ok(())
}

/// Dead, but replayed while in flight: the replay stands for it, and it never
/// enters the dead-letter queue (it becomes `replayed` by the newest delivery
/// of its message to that destination).
async fn supersede_replayed(
    tx: &mut PgConnection,
    mine: &[&AttemptResult],
    applied: &HashSet<i64>,
) -> Result<(), sqlx::Error> {
    let dead: Vec<i64> = mine
        .iter()
        .filter(|r| r.next == Next::Dead && applied.contains(&r.delivery_id))
        .map(|r| r.delivery_id)
        .collect();
    if dead.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH newer AS (
             SELECT o.id, greatest(
                 (SELECT max(n.id) FROM deliveries n
                  WHERE n.message_seq = o.message_seq AND n.destination = o.destination AND n.id > o.id),
                 (SELECT max(n.id) FROM deliveries_done n
                  WHERE n.message_seq = o.message_seq AND n.destination = o.destination AND n.id > o.id)
             ) AS by
             FROM deliveries_done o WHERE o.id = ANY($1) AND o.status = 3)
         UPDATE deliveries_done o SET status = 4, replayed_by = newer.by
         FROM newer WHERE o.id = newer.id AND newer.by IS NOT NULL",
    )
    .bind(&dead)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Retries: still live, due again later, lease ended.
async fn record_retries(
    tx: &mut PgConnection,
    node: &str,
    mine: &[&AttemptResult],
    out: &mut Outcome,
    applied: &mut HashSet<i64>,
) -> Result<(), sqlx::Error> {
    let (mut ids, mut attempts, mut dues) = (Vec::new(), Vec::new(), Vec::new());
    for r in mine {
        if let Next::Retry(at) = r.next {
            ids.push(r.delivery_id);
            attempts.push(r.attempt as i32);
            dues.push(at);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let rows = sqlx::query(
        "UPDATE deliveries d SET attempts = greatest(d.attempts, u.attempt), due_at = u.due,
             lease_until = NULL, lease_owner = NULL
         FROM unnest($1::int8[], $2::int4[], $3::int8[]) AS u(id, attempt, due)
         WHERE d.id = u.id AND d.status = 0 AND d.lease_owner = $4
         RETURNING d.id, d.destination",
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(&dues)
    .bind(node)
    .fetch_all(&mut *tx)
    .await?;
    for r in rows {
        applied.insert(r.try_get(0)?);
        out.wake.insert(r.try_get(1)?);
    }
    Ok(())
}

/// Delivered or dead: the row moves to the history table. Returns the
/// (destination, ordering key) pairs whose head finished.
async fn record_finished(
    tx: &mut PgConnection,
    node: &str,
    mine: &[&AttemptResult],
    out: &mut Outcome,
    applied: &mut HashSet<i64>,
) -> Result<BTreeSet<(String, String)>, sqlx::Error> {
    let (mut ids, mut statuses, mut attempts, mut fins) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in mine {
        let Some(status) = r.next.final_status() else {
            continue;
        };
        let status = status.code() as i16;
        ids.push(r.delivery_id);
        statuses.push(status);
        attempts.push(r.attempt as i32);
        fins.push(r.started_at);
    }
    let mut freed: BTreeSet<(String, String)> = BTreeSet::new();
    if ids.is_empty() {
        return Ok(freed);
    }
    let rows: Vec<PgRow> = sqlx::query(
        "WITH u AS (
             SELECT * FROM unnest($1::int8[], $2::int2[], $3::int4[], $4::int8[])
                 AS u(id, status, attempt, fin)),
         gone AS (
             DELETE FROM deliveries d USING u
             WHERE d.id = u.id AND d.status = 0 AND d.lease_owner = $5
             RETURNING d.id, d.message_seq, d.destination, u.status AS new_status,
                 d.priority, d.due_at, d.ordering_key,
                 greatest(d.attempts, u.attempt) AS attempts, d.retry_base,
                 d.created_at, u.fin)
         INSERT INTO deliveries_done (id, message_seq, destination, status, priority, due_at,
             ordering_key, attempts, retry_base, created_at, finished_at)
         SELECT id, message_seq, destination, new_status, priority, due_at, ordering_key,
             attempts, retry_base, created_at, fin FROM gone
         RETURNING id, destination, ordering_key",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&attempts)
    .bind(&fins)
    .bind(node)
    .fetch_all(&mut *tx)
    .await?;
    for r in rows {
        let dest: String = r.try_get(1)?;
        applied.insert(r.try_get(0)?);
        *out.deltas.entry(dest.clone()).or_default() -= 1;
        out.wake.insert(dest.clone());
        if let Some(k) = r.try_get::<Option<String>, _>(2)? {
            freed.insert((dest, k));
        }
    }
    Ok(freed)
}

/// The attempt log of every result that applied.
async fn record_attempts(
    tx: &mut PgConnection,
    recorded: &[&AttemptResult],
) -> Result<(), sqlx::Error> {
    if recorded.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = recorded.iter().map(|r| r.delivery_id).collect();
    let attempts: Vec<i32> = recorded.iter().map(|r| r.attempt as i32).collect();
    let started: Vec<i64> = recorded.iter().map(|r| r.started_at).collect();
    let durations: Vec<i64> = recorded.iter().map(|r| r.duration_us).collect();
    let statuses: Vec<Option<i32>> = recorded.iter().map(|r| r.status.map(i32::from)).collect();
    let bodies: Vec<Option<Vec<u8>>> = recorded
        .iter()
        .map(|r| r.response_body.as_ref().map(|b| b.to_vec()))
        .collect();
    let errors: Vec<Option<String>> = recorded
        .iter()
        .map(|r| r.error.as_deref().map(text))
        .collect();
    let headers: Vec<Option<Vec<u8>>> = recorded
        .iter()
        .map(|r| r.response_headers.as_ref().map(|b| b.to_vec()))
        .collect();
    sqlx::query(
        "INSERT INTO attempts (delivery_id, attempt, started_at, duration_us, status, response_body, error, response_headers)
         SELECT * FROM unnest($1::int8[], $2::int4[], $3::int8[], $4::int8[], $5::int4[], $6::bytea[], $7::text[], $8::bytea[])
         ON CONFLICT (delivery_id, attempt) DO UPDATE SET
             started_at = excluded.started_at, duration_us = excluded.duration_us,
             status = excluded.status, response_body = excluded.response_body,
             error = excluded.error, response_headers = excluded.response_headers",
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(&started)
    .bind(&durations)
    .bind(&statuses)
    .bind(&bodies)
    .bind(&errors)
    .bind(&headers)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Makes the oldest queued delivery of each key pending, where the key has no
/// pending one. The caller holds the keys' advisory locks. Returns the
/// destinations that got work.
pub(super) async fn promote(
    tx: &mut PgConnection,
    dests: &[String],
    keys: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "UPDATE deliveries d SET status = 0
         FROM (
             SELECT (SELECT q.id FROM deliveries q
                     WHERE q.destination = k.dest AND q.ordering_key = k.key AND q.status = 1
                     ORDER BY q.id LIMIT 1) AS id
             FROM unnest($1::text[], $2::text[]) AS k(dest, key)
             WHERE NOT EXISTS (SELECT 1 FROM deliveries p
                               WHERE p.destination = k.dest AND p.ordering_key = k.key
                                 AND p.status = 0)
         ) n
         WHERE d.id = n.id
         RETURNING d.destination",
    )
    .bind(dests)
    .bind(keys)
    .fetch_all(&mut *tx)
    .await?;
    rows.into_iter().map(|r| r.try_get(0)).collect()
}

/// Of these (destination, key) pairs, those with a live delivery.
pub(super) async fn busy_keys(
    tx: &mut PgConnection,
    pairs: &BTreeSet<(String, String)>,
) -> Result<HashSet<(String, String)>, sqlx::Error> {
    if pairs.is_empty() {
        return Ok(HashSet::new());
    }
    let (dests, keys): (Vec<String>, Vec<String>) = pairs.iter().cloned().unzip();
    let rows = sqlx::query(
        "SELECT k.dest, k.key FROM unnest($1::text[], $2::text[]) AS k(dest, key)
         WHERE EXISTS (SELECT 1 FROM deliveries d
                       WHERE d.destination = k.dest AND d.ordering_key = k.key)",
    )
    .bind(&dests)
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await?;
    rows.into_iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Statuses of new deliveries in order: the first of a key that is not busy is
/// pending (0), every later one of that key is queued (1).
pub(super) fn assign_statuses<'a>(
    keys: impl Iterator<Item = Option<(&'a str, &'a str)>>,
    busy: &HashSet<(String, String)>,
) -> Vec<i16> {
    let mut taken: HashSet<(String, String)> = HashSet::new();
    keys.map(|k| match k {
        None => 0,
        Some((d, k)) => {
            let pair = (d.to_string(), k.to_string());
            if busy.contains(&pair) || !taken.insert(pair) {
                1
            } else {
                0
            }
        }
    })
    .collect()
}

/// A delivery row to insert.
struct DeliveryRow {
    mid: String,
    dest: String,
    prio: i16,
    due: i64,
    key: Option<String>,
    created: i64,
}

/// The deliveries of new messages, in batch order.
fn delivery_rows(new: &[&NewMessage]) -> Vec<DeliveryRow> {
    let mut rows = Vec::new();
    for m in new {
        for d in &m.deliveries {
            rows.push(DeliveryRow {
                mid: m.id.to_string(),
                dest: text(&d.destination),
                prio: d.priority.rank() as i16,
                due: d.due_at,
                key: d.ordering_key.as_deref().map(text),
                created: m.received_at,
            });
        }
    }
    rows
}

async fn insert_messages(
    tx: &mut PgConnection,
    msgs: &[&NewMessage],
    appended: &[Appended],
    out: &mut Outcome,
    notify: &mut HashSet<String>,
) -> Result<(), sqlx::Error> {
    let new: Vec<&NewMessage> = msgs
        .iter()
        .zip(appended)
        .filter(|(_, a)| matches!(a, Appended::Stored(_)))
        .map(|(m, _)| *m)
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    // Deliveries, in batch order (their ids follow it).
    let rows = delivery_rows(&new);
    let pairs: BTreeSet<(String, String)> = rows
        .iter()
        .filter_map(|r| r.key.clone().map(|k| (r.dest.clone(), k)))
        .collect();
    let busy = busy_keys(tx, &pairs).await?;
    let statuses = assign_statuses(
        rows.iter()
            .map(|r| r.key.as_deref().map(|k| (r.dest.as_str(), k))),
        &busy,
    );
    // Messages and deliveries in one statement. Sorting by position before
    // the insert makes the identity values follow batch order.
    sqlx::query(
        "WITH m AS (
             INSERT INTO messages (id, source, event_type, received_at, content_type, headers, body)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::bytea[], $7::bytea[])
             RETURNING id, seq)
         INSERT INTO deliveries (message_seq, destination, status, priority, due_at, ordering_key, created_at)
         SELECT m.seq, u.dest, u.status, u.prio, u.due, u.key, u.created
         FROM unnest($8::text[], $9::text[], $10::int2[], $11::int2[], $12::int8[], $13::text[], $14::int8[])
             WITH ORDINALITY AS u(mid, dest, status, prio, due, key, created, pos)
         JOIN m ON m.id = u.mid
         ORDER BY u.pos",
    )
    .bind(new.iter().map(|m| m.id.to_string()).collect::<Vec<_>>())
    .bind(new.iter().map(|m| text(&m.source)).collect::<Vec<_>>())
    .bind(
        new.iter()
            .map(|m| m.event_type.as_deref().map(text))
            .collect::<Vec<_>>(),
    )
    .bind(new.iter().map(|m| m.received_at).collect::<Vec<_>>())
    .bind(
        new.iter()
            .map(|m| m.content_type.as_deref().map(text))
            .collect::<Vec<_>>(),
    )
    .bind(new.iter().map(|m| &m.headers[..]).collect::<Vec<_>>())
    .bind(new.iter().map(|m| &m.body[..]).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.mid.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.dest.clone()).collect::<Vec<_>>())
    .bind(&statuses)
    .bind(rows.iter().map(|r| r.prio).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.due).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.created).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    for (r, s) in rows.iter().zip(&statuses) {
        *out.deltas.entry(r.dest.clone()).or_default() += 1;
        if *s == 0 {
            notify.insert(r.dest.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::msg;

    #[test]
    fn in_batch_duplicates_point_at_the_first() {
        let a = msg("s", &["d"], Some("k2"));
        let b = msg("s", &["d"], Some("k1"));
        let c = msg("s", &["d"], Some("k2"));
        let d = msg("t", &["d"], Some("k2"));
        let e = msg("s", &["d"], None);
        let plan = plan_dedup(&[&a, &b, &c, &d, &e]);
        assert_eq!(plan.first, vec![None, None, Some(0), None, None]);
        // Sorted by (source, key): s/k1, s/k2, t/k2.
        assert_eq!(plan.upsert, vec![1, 0, 3]);
    }

    #[test]
    fn the_first_free_delivery_of_a_key_is_pending_the_rest_queue() {
        let busy: HashSet<(String, String)> = [("d".to_string(), "busy".to_string())].into();
        let keys = [
            Some(("d", "k")),
            None,
            Some(("d", "k")),
            Some(("e", "k")),
            Some(("d", "busy")),
            None,
        ];
        let s = assign_statuses(keys.into_iter(), &busy);
        assert_eq!(s, vec![0, 0, 1, 0, 1, 0]);
    }

    #[test]
    fn only_the_latest_result_per_delivery_counts() {
        let mk = |id, attempt| AttemptResult {
            delivery_id: id,
            attempt,
            started_at: 0,
            duration_us: 0,
            status: None,
            response_body: None,
            response_headers: None,
            error: None,
            next: Next::Delivered,
        };
        let all = [mk(2, 1), mk(1, 1), mk(2, 3), mk(2, 2)];
        let l = latest_results(all.iter());
        assert_eq!(
            l.iter()
                .map(|r| (r.delivery_id, r.attempt))
                .collect::<Vec<_>>(),
            vec![(1, 1), (2, 3)]
        );
    }
}
