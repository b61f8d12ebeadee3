//! The queue: appends with dedup, leases, attempt records and releases, and
//! the in-memory counters and lease set they keep up to date.
//!
//! Invariants: per (destination, ordering key) at most one delivery is pending
//! (later ones are queued and promoted in id order); a delivery id stays in the
//! lease set until the commit that records it is visible to the next lease.

use super::read::{corrupt_at, is_corrupt, stored_message, MSG_COLS};
use super::*;
use crate::store::corrupt;

/// Counters kept in memory and changed only after commits, so that gauges and
/// backpressure never scan the queue.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) total: AtomicI64,
    pub(super) by_destination: Mutex<HashMap<String, i64>>,
    pub(super) dead: Mutex<HashMap<String, i64>>,
}

pub(super) fn bump(map: &Mutex<HashMap<String, i64>>, destination: &str, n: i64) {
    let mut m = map.lock();
    match m.get_mut(destination) {
        Some(v) => *v += n,
        None => {
            m.insert(destination.to_string(), n);
        }
    }
}

impl Pending {
    pub(super) fn add_dead(&self, destination: &str, n: i64) {
        bump(&self.dead, destination, n);
    }

    pub(super) fn add(&self, destination: &str, n: i64) {
        self.total.fetch_add(n, Ordering::Relaxed);
        bump(&self.by_destination, destination, n);
    }
}

/// Leases: the ids handed out, and ids whose lease ended in a commit that every
/// later lease query will see.
#[derive(Default)]
pub(super) struct Leases {
    pub(super) held: Mutex<HashSet<i64>>,
    pub(super) ended: Mutex<Vec<i64>>,
}

pub(super) fn status_of(p: Priority) -> i64 {
    p.rank()
}

/// Inserts one message and its deliveries; returns the new deliveries' (destination, status).
pub(super) fn insert_message(
    c: &Connection,
    m: &NewMessage,
) -> rusqlite::Result<Vec<(String, i64)>> {
    let id = m.id.to_string();
    c.prepare_cached(
        "INSERT INTO messages (id, source, event_type, received_at, content_type, headers, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id,
        m.source,
        m.event_type,
        m.received_at,
        m.content_type,
        &m.headers[..],
        &m.body[..]
    ])?;
    let seq = c.last_insert_rowid();
    let mut out = Vec::with_capacity(m.deliveries.len());
    for d in &m.deliveries {
        let status = key_status(c, &d.destination, d.ordering_key.as_deref())?;
        c.prepare_cached(
            "INSERT INTO deliveries (message_seq, destination, status, priority, due_at, ordering_key, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            seq,
            d.destination,
            status,
            status_of(d.priority),
            d.due_at,
            d.ordering_key,
            m.received_at
        ])?;
        out.push((d.destination.clone(), status));
    }
    Ok(out)
}

/// 0 (pending) when the key has no live delivery at this destination, else 1 (queued).
pub(super) fn key_status(
    c: &Connection,
    destination: &str,
    key: Option<&str>,
) -> rusqlite::Result<i64> {
    let Some(key) = key else { return Ok(0) };
    let busy: Option<i64> = c
        .prepare_cached(
            "SELECT 1 FROM deliveries WHERE destination = ?1 AND ordering_key = ?2 AND status IN (0, 1) LIMIT 1",
        )?
        .query_row(params![destination, key], |r| r.get(0))
        .optional()?;
    Ok(if busy.is_some() { 1 } else { 0 })
}

/// Makes the oldest queued delivery of a key pending, if the key has no pending one.
pub(super) fn promote(c: &Connection, destination: &str, key: &str) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "UPDATE deliveries SET status = 0 WHERE id = (
                 SELECT id FROM deliveries
                 WHERE destination = ?1 AND ordering_key = ?2 AND status IN (0, 1) AND status = 1
                   AND NOT EXISTS (SELECT 1 FROM deliveries WHERE destination = ?1 AND ordering_key = ?2
                                   AND status IN (0, 1) AND status = 0)
                 ORDER BY id LIMIT 1)",
        )?
        .execute(params![destination, key])?;
    Ok(n > 0)
}

pub(super) fn lease_query(
    c: &Connection,
    leases: &Leases,
    destination: &str,
    now: Millis,
    limit: usize,
) -> rusqlite::Result<LeaseBatch> {
    let mut held = leases.held.lock();
    // Leases that ended in a commit visible to this query's snapshot.
    for id in leases.ended.lock().drain(..) {
        held.remove(&id);
    }
    let mut items = Vec::new();
    let sql = format!(
        "SELECT d.id, d.attempts, d.retry_base, d.priority, d.ordering_key, d.created_at, {MSG_COLS}
         FROM deliveries d JOIN messages m ON m.seq = d.message_seq
         WHERE d.destination = ?1 AND d.status = 0 AND d.priority = ?2 AND d.due_at <= ?3
         ORDER BY d.due_at, d.id LIMIT ?4"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    for prio in 0..3i64 {
        if items.len() >= limit {
            break;
        }
        let want = (limit - items.len() + held.len()) as i64;
        let mut rows = stmt.query(params![destination, prio, now, want])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            if held.contains(&id) {
                continue;
            }
            let message = match stored_message(r, 6) {
                Ok(m) => m,
                // Never delivered under an invented id: the row was logged and
                // counted, and is passed over (held) until a restart while the
                // rest of the queue goes on.
                Err(e) if is_corrupt(&e) => {
                    held.insert(id);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let attempts: u32 = r.get(1)?;
            let base: u32 = r.get(2)?;
            items.push(Leased {
                delivery_id: id,
                destination: destination.to_string(),
                attempt: attempts + 1,
                retry_index: attempts.saturating_sub(base),
                priority: corrupt::priority("deliveries", r.get(3)?)
                    .map_err(|e| corrupt_at(3, e))?,
                ordering_key: r.get(4)?,
                created_at: r.get(5)?,
                message: Arc::new(message),
            });
            if items.len() >= limit {
                break;
            }
        }
    }
    for l in &items {
        held.insert(l.delivery_id);
    }
    drop(held);
    // A full batch means the caller comes back at once; only a short one needs
    // to know when more becomes due.
    if items.len() >= limit {
        return Ok(LeaseBatch {
            items,
            next_due: None,
            held_back: false,
        });
    }
    let next_due = next_due(c, destination, now)?;
    Ok(LeaseBatch {
        items,
        next_due,
        held_back: false,
    })
}

/// When the next pending delivery of `destination` becomes due, if any.
fn next_due(c: &Connection, destination: &str, now: Millis) -> rusqlite::Result<Option<Millis>> {
    // One index seek per priority: `deliveries_due` is ordered by (destination,
    // priority, due_at), so a min over all priorities at once would walk every
    // pending delivery of the destination.
    let mut next_due: Option<Millis> = None;
    let mut stmt = c.prepare_cached(
        "SELECT min(due_at) FROM deliveries
         WHERE destination = ?1 AND status = 0 AND priority = ?2 AND due_at > ?3",
    )?;
    for prio in 0..3i64 {
        let t: Option<Millis> = stmt.query_row(params![destination, prio, now], |r| r.get(0))?;
        next_due = match (next_due, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next_due)
}

pub(super) async fn append(store: &SqliteStore, msg: NewMessage) -> StoreResult<Appended> {
    if store.inner.room.refuses_appends() {
        return Err(StoreError::Full);
    }
    let inner = store.inner.clone();
    let res = store
        .inner
        .writer
        .exec_then(
            move |c| {
                if let Some(d) = &msg.dedup {
                    let prior: Option<String> = c
                        .prepare_cached(
                            "SELECT message_id FROM dedup WHERE source = ?1 AND key = ?2 AND expires_at > ?3",
                        )
                        .and_then(|mut s| {
                            s.query_row(params![msg.source, d.key, msg.received_at], |r| r.get(0))
                                .optional()
                        })
                        .map_err(map_err)?;
                    if let Some(p) = prior {
                        let prior = corrupt::message_id("dedup", &p).map_err(|e| map_err(corrupt_at(0, e)))?;
                        return Ok((Appended::Duplicate(prior), Vec::new()));
                    }
                    c.prepare_cached(
                        "INSERT OR REPLACE INTO dedup (source, key, message_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![msg.source, d.key, msg.id.to_string(), d.until])
                    })
                    .map_err(map_err)?;
                }
                let created = insert_message(c, &msg).map_err(map_err)?;
                Ok((Appended::Stored(msg.id), created))
            },
            move |(_, created)| {
                for (dest, status) in created {
                    inner.pending.add(dest, 1);
                    if *status == 0 {
                        inner.wakeups.wake(dest);
                    }
                }
            },
        )
        .await;
    store.note_write(&res);
    Ok(res?.0)
}

pub(super) async fn complete(store: &SqliteStore, results: Vec<AttemptResult>) -> StoreResult<()> {
    let inner = store.inner.clone();
    let ended: Vec<i64> = results.iter().map(|r| r.delivery_id).collect();
    let r = store
        .inner
        .writer
        .exec_then_unsynced(
            move |c| record(c, &results),
            move |(finished, woken)| {
                for (d, dead) in finished {
                    inner.pending.add(d, -1);
                    if *dead {
                        inner.pending.add_dead(d, 1);
                    }
                }
                inner.leases.ended.lock().extend(ended);
                for d in woken {
                    inner.wakeups.wake(d);
                }
            },
        )
        .await;
    // On failure nothing was recorded, and the leases stay held: the caller
    // records the results again later. Releasing them would hand the
    // deliveries out again at once, ignoring the retry schedule and answers
    // already received (a full disk would turn into a storm of re-sends).
    r.map(|_| ())
}

/// Records attempt results in one transaction: a retry stays pending with a
/// new due time, a finished delivery frees its key for the next one.
fn record(c: &Connection, results: &[AttemptResult]) -> StoreResult<Recorded> {
    let mut finished = Vec::new();
    let mut woken = HashSet::new();
    for r in results {
        let (status, due, fin) = match (r.next, r.next.final_status()) {
            (Next::Retry(at), _) => (0, Some(at), None),
            (_, Some(s)) => (s.code(), None, Some(r.started_at)),
            (_, None) => unreachable!("only a retry is not final"),
        };
        let row: Option<(String, Option<String>)> = c
            .prepare_cached(
                "UPDATE deliveries SET status = ?2, attempts = max(attempts, ?3),
                     due_at = coalesce(?4, due_at), finished_at = ?5
                 WHERE id = ?1 AND status = 0
                 RETURNING destination, ordering_key",
            )
            .and_then(|mut s| {
                s.query_row(params![r.delivery_id, status, r.attempt, due, fin], |x| {
                    Ok((x.get(0)?, x.get(1)?))
                })
                .optional()
            })
            .map_err(map_err)?;
        let Some((dest, key)) = row else { continue };
        let status = if status == 3 && superseded_by_replay(c, r.delivery_id)? {
            4
        } else {
            status
        };
        c.prepare_cached(
            "INSERT OR REPLACE INTO attempts (delivery_id, attempt, started_at, duration_us, status, response_body, error, response_headers)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut s| {
            s.execute(params![
                r.delivery_id,
                r.attempt,
                r.started_at,
                r.duration_us,
                r.status,
                r.response_body.as_deref(),
                r.error,
                r.response_headers.as_deref()
            ])
        })
        .map_err(map_err)?;
        // Wake the dispatcher only when this makes work due that it
        // cannot know of: a retry (a new due time) or the next
        // delivery of an ordering key.
        if status != 0 {
            finished.push((dest.clone(), status == 3));
            if let Some(k) = key {
                if promote(c, &dest, &k).map_err(map_err)? {
                    woken.insert(dest);
                }
            }
        } else {
            woken.insert(dest);
        }
    }
    Ok((finished, woken))
}

/// Marks a delivery that just died `replayed` if its message was replayed to
/// that destination while it was in flight (the replay stands for it, and it
/// never enters the dead-letter queue); true if it was.
fn superseded_by_replay(c: &Connection, delivery_id: i64) -> StoreResult<bool> {
    c.prepare_cached(
        "UPDATE deliveries SET status = 4, replayed_by = (
             SELECT max(n.id) FROM deliveries n
             WHERE n.message_seq = deliveries.message_seq
                 AND n.destination = deliveries.destination AND n.id > deliveries.id)
         WHERE id = ?1 AND EXISTS (
             SELECT 1 FROM deliveries n
             WHERE n.message_seq = deliveries.message_seq
                 AND n.destination = deliveries.destination AND n.id > deliveries.id)",
    )
    .and_then(|mut s| s.execute([delivery_id]))
    .map(|n| n > 0)
    .map_err(map_err)
}

/// What [`record`] changed: (destination, dead?) per finished delivery, and
/// the destinations with new work due.
type Recorded = (Vec<(String, bool)>, HashSet<String>);

pub(super) async fn release(store: &SqliteStore, delivery_ids: Vec<i64>) -> StoreResult<()> {
    // Nothing was written since the lease, so no commit needs to be observed.
    let mut held = store.inner.leases.held.lock();
    for id in delivery_ids {
        held.remove(&id);
    }
    drop(held);
    store.inner.wakeups.wake_all();
    Ok(())
}
