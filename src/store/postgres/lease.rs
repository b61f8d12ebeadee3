//! Leasing due deliveries from the shared queue.
//!
//! A lease is `lease_owner = <node>, lease_until = <database now> + lease_ms` on
//! the live row, claimed with `FOR UPDATE SKIP LOCKED` so that nodes leasing at
//! once take different rows without waiting for each other. An expired lease is
//! leasable again: a node that dies holds nothing for longer than its leases.
//!
//! Cluster-wide limits: with [`LeaseLimits`] the lease runs under the
//! destination's advisory lock and grants at most `max_in_flight` minus the live
//! leases of the destination on every node, and at most the whole tokens of the
//! destination's shared bucket in `rate_buckets`. The caller's settled attempts
//! (ended, results not yet recorded: `LeaseLimits::settled`) do not count: a
//! lease counts while its attempt runs, not while its result waits for a
//! commit. The lock serializes the leases
//! of one destination across nodes (a few short statements each); it never
//! blocks ingest or attempt results.
//!
//! Leases lost in an outage: a lease whose commit went through while its
//! answer was lost (the connection broke, or the primary died after the
//! commit reached its synchronous replica) is held by this node without its
//! knowing. [`Held`] keeps the leases the node does know of, from the lease's
//! answer to the record of its result, and when the database is back
//! [`reclaim`] hands back every other lease in this node's name, so that work
//! is delivered now rather than when those leases expire.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{RwLock, RwLockReadGuard};

use super::{dest_lock, is_corrupt, text, DEST_LOCK_CLASS};
use crate::store::corrupt;
use crate::store::{LeaseBatch, LeaseLimits, Leased, Millis, StoredMessage};

/// The leases in this node's name that it knows it holds (its attempts in
/// flight, results not yet recorded, pull results being applied).
#[derive(Default)]
pub(super) struct Held {
    /// Read by every call that takes leases in this node's name, from before
    /// its transaction until its leases are entered; written by [`reclaim`],
    /// which so never takes a lease that is being entered.
    gate: RwLock<()>,
    ids: Mutex<HashSet<i64>>,
}

impl Held {
    /// Held while leases are taken and entered.
    pub(super) async fn taking(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// Enters leases this node now holds.
    pub(super) fn add(&self, ids: impl IntoIterator<Item = i64>) {
        self.ids.lock().extend(ids);
    }

    /// Forgets leases whose results are recorded or that were handed back.
    pub(super) fn remove(&self, ids: impl IntoIterator<Item = i64>) {
        let mut held = self.ids.lock();
        for id in ids {
            held.remove(&id);
        }
    }
}

/// Hands back the leases in `node`'s name that it does not know it holds
/// (see the module's header); returns the destinations of those deliveries,
/// which are due again, and wakes them on every node.
pub(super) async fn reclaim(
    pool: &PgPool,
    node: &str,
    held: &Held,
) -> Result<Vec<String>, sqlx::Error> {
    let _no_lease_meanwhile = held.gate.write().await;
    let known: Vec<i64> = held.ids.lock().iter().copied().collect();
    sqlx::query_scalar(
        "WITH r AS (
             UPDATE deliveries SET lease_until = NULL, lease_owner = NULL
             WHERE lease_owner = $1 AND NOT (id = ANY($2))
             RETURNING destination)
         SELECT d FROM (SELECT DISTINCT destination AS d FROM r) x, pg_notify($3, d) n",
    )
    .bind(node)
    .bind(&known)
    .bind(super::listen::CHANNEL)
    .fetch_all(pool)
    .await
}

/// How soon to look again when the cluster-wide `max_in_flight` is used up
/// (another node's attempt ending frees a place without waking this one).
const FULL_RECHECK_MS: i64 = 10;
/// How long a node that found every place taken stays in the queue for the
/// next free ones without looking again (several of its looks).
const WAIT_TTL_MS: i64 = 200;

/// The destinations for which other nodes were queued for places at this
/// node's last lease: the results this node records for them wake the other
/// nodes, whose next look then finds the places the results freed (instead of
/// up to [`FULL_RECHECK_MS`] later).
#[derive(Default)]
pub(super) struct OthersQueued(
    parking_lot::Mutex<std::collections::HashMap<String, std::time::Instant>>,
);

impl OthersQueued {
    /// What the last lease of `destination` found.
    pub(super) fn set(&self, destination: &str, queued: bool) {
        let mut m = self.0.lock();
        if queued {
            let until =
                std::time::Instant::now() + std::time::Duration::from_millis(WAIT_TTL_MS as u64);
            m.insert(destination.to_string(), until);
        } else {
            m.remove(destination);
        }
    }

    /// Of `destinations`, those other nodes were recently queued for.
    pub(super) fn of<'a>(&self, destinations: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        let m = self.0.lock();
        let now = std::time::Instant::now();
        destinations
            .into_iter()
            .filter(|d| m.get(*d).is_some_and(|until| *until > now))
            .cloned()
            .collect()
    }
}

/// The destination's state as the lease sees it.
struct State {
    db_now: i64,
    leased: i64,
    tokens: Option<f64>,
    tokens_at: Option<i64>,
    next_due: Option<Millis>,
    /// Other nodes queued for a place of `max_in_flight` before this one.
    ahead: i64,
    /// This node has a row in `lease_waiters` (current or expired).
    queued: bool,
    /// Other nodes are queued for places (before or after this one).
    others_queued: bool,
}

async fn state(
    c: &mut PgConnection,
    destination: &str,
    now: Millis,
    limits: Option<(&str, &[i64])>,
) -> Result<State, sqlx::Error> {
    let (node, settled) = limits.unwrap_or_default();
    // Live leases, but not those of this node's settled attempts ($3, $4);
    // the nodes queued for a place before this one (all of them if it is not
    // queued).
    let r = sqlx::query(if limits.is_some() {
        "WITH t AS (SELECT hookgate_now_ms() AS ms),
         me AS (SELECT since, until FROM lease_waiters WHERE destination = $1 AND node = $3)
         SELECT t.ms,
             (SELECT count(*) FROM deliveries
              WHERE destination = $1 AND lease_owner IS NOT NULL AND lease_until > t.ms
                AND NOT (lease_owner = $3 AND id = ANY($4))),
             b.tokens, b.at_ms,
             least(
                 (SELECT min(due_at) FROM deliveries WHERE destination = $1 AND status = 0 AND priority = 0 AND due_at > $2),
                 (SELECT min(due_at) FROM deliveries WHERE destination = $1 AND status = 0 AND priority = 1 AND due_at > $2),
                 (SELECT min(due_at) FROM deliveries WHERE destination = $1 AND status = 0 AND priority = 2 AND due_at > $2)),
             (SELECT count(*) FROM lease_waiters w
              WHERE w.destination = $1 AND w.node <> $3 AND w.until > t.ms
                AND w.since < coalesce((SELECT since FROM me WHERE me.until > t.ms), 9223372036854775807)),
             EXISTS (SELECT 1 FROM me),
             EXISTS (SELECT 1 FROM lease_waiters w
                     WHERE w.destination = $1 AND w.node <> $3 AND w.until > t.ms)
         FROM t LEFT JOIN rate_buckets b ON b.destination = $1"
    } else {
        "SELECT hookgate_now_ms(), 0::int8, NULL::float8, NULL::int8,
             least(
                 (SELECT min(due_at) FROM deliveries WHERE destination = $1 AND status = 0 AND priority = 0 AND due_at > $2),
                 (SELECT min(due_at) FROM deliveries WHERE destination = $1 AND status = 0 AND priority = 1 AND due_at > $2),
                 (SELECT min(due_at) FROM deliveries WHERE destination = $1 AND status = 0 AND priority = 2 AND due_at > $2)),
             0::int8, false, false"
    })
    .bind(destination)
    .bind(now)
    .bind(node)
    .bind(settled)
    .fetch_one(&mut *c)
    .await?;
    Ok(State {
        db_now: r.try_get(0)?,
        leased: r.try_get(1)?,
        tokens: r.try_get(2)?,
        tokens_at: r.try_get(3)?,
        next_due: r.try_get(4)?,
        ahead: r.try_get(5)?,
        queued: r.try_get(6)?,
        others_queued: r.try_get(7)?,
    })
}

/// Queues this node for the destination's next free places (or keeps its
/// place in the queue, renewing it), or takes it out of the queue.
async fn queue_for_places(
    c: &mut PgConnection,
    node: &str,
    destination: &str,
    db_now: i64,
    queue: bool,
) -> Result<(), sqlx::Error> {
    if queue {
        sqlx::query(
            "INSERT INTO lease_waiters (destination, node, since, until) VALUES ($1, $2, $3, $4)
             ON CONFLICT (destination, node) DO UPDATE
                 SET until = excluded.until,
                     since = CASE WHEN lease_waiters.until > $3 THEN lease_waiters.since
                                  ELSE excluded.since END",
        )
        .bind(destination)
        .bind(node)
        .bind(db_now)
        .bind(db_now + WAIT_TTL_MS)
        .execute(&mut *c)
        .await?;
    } else {
        sqlx::query("DELETE FROM lease_waiters WHERE destination = $1 AND node = $2")
            .bind(destination)
            .bind(node)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// Tokens in a bucket at `now` after refilling since `at`.
pub(super) fn refill(
    tokens: Option<f64>,
    at: Option<i64>,
    now: i64,
    per_second: f64,
    burst: u32,
) -> f64 {
    let burst = burst as f64;
    match (tokens, at) {
        (Some(t), Some(at)) => {
            let dt = (now - at).max(0) as f64 / 1000.0;
            (t + dt * per_second).min(burst)
        }
        _ => burst,
    }
}

/// Leases up to `limit` due deliveries of `destination` for `lease_ms`; the
/// flag says whether other nodes are queued for the destination's places (the
/// results that free places should wake them).
pub(super) async fn lease(
    c: &mut PgConnection,
    node: &str,
    destination: &str,
    now: Millis,
    limit: usize,
    lease_ms: i64,
    limits: Option<&LeaseLimits>,
) -> Result<(LeaseBatch, bool), sqlx::Error> {
    let destination = text(destination);
    // The lease's commit does not wait for its WAL flush: a lease lost in a
    // crash of the database was never there, its row is leasable again and
    // the attempt is made again (at-least-once), and a result for it finds no
    // lease of this node and changes nothing.
    if limits.is_some() {
        sqlx::query(
            "SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock($1, $2)",
        )
        .bind(DEST_LOCK_CLASS)
        .bind(dest_lock(&destination))
        .execute(&mut *c)
        .await?;
    } else {
        sqlx::query("SELECT set_config('synchronous_commit', 'off', true)")
            .execute(&mut *c)
            .await?;
    }
    let st = state(
        c,
        &destination,
        now,
        limits.map(|l| (node, l.settled.as_slice())),
    )
    .await?;
    let mut grant = limit as i64;
    let mut next_due = st.next_due;
    let mut hint = |at: Millis| next_due = Some(next_due.map_or(at, |n| n.min(at)));
    let mut tokens = None;
    let mut held_back = false;
    if let Some(l) = limits {
        // The free places, less one for each node queued before this one:
        // a node whose attempts end and lease again at once would otherwise
        // take every place before another node's next look.
        let free = (l.max_in_flight as i64 - st.leased - st.ahead).max(0);
        if free == 0 {
            hint(now + FULL_RECHECK_MS);
        }
        if free == 0 && grant > 0 {
            queue_for_places(c, node, &destination, st.db_now, true).await?;
        } else if st.queued {
            queue_for_places(c, node, &destination, st.db_now, false).await?;
        }
        held_back = free < grant;
        grant = grant.min(free);
        if let Some(r) = &l.rate {
            let t = refill(st.tokens, st.tokens_at, st.db_now, r.per_second, r.burst());
            let whole = (t + 1e-9).floor().max(0.0) as i64;
            if whole == 0 && r.per_second > 0.0 {
                let wait = ((1.0 - t) / r.per_second * 1000.0).ceil().max(1.0) as i64;
                hint(now + wait);
            }
            grant = grant.min(whole);
            tokens = Some(t);
        }
    }
    let mut items = Vec::new();
    if grant > 0 {
        let at = Claim {
            now,
            db_now: st.db_now,
            grant,
            lease_until: st.db_now + lease_ms,
            bucket: tokens,
        };
        let rows = claim(c, node, &destination, at).await?;
        for r in rows {
            match leased(&r, &destination) {
                Ok(l) => items.push(l),
                // Never delivered under an invented id: the row was logged and
                // counted; its lease runs out unused, and the rest goes on.
                Err(e) if is_corrupt(&e) => {}
                Err(e) => return Err(e),
            }
        }
        items.sort_by_key(|(l, due)| (l.priority.rank(), *due, l.delivery_id));
    }
    let batch = LeaseBatch {
        items: items.into_iter().map(|(l, _)| l).collect(),
        next_due,
        held_back,
    };
    Ok((batch, st.others_queued))
}

/// What a claim takes.
struct Claim {
    /// The caller's now (due times).
    now: Millis,
    /// The database's now (leases, tokens).
    db_now: i64,
    /// Rows at most.
    grant: i64,
    /// The new leases' end.
    lease_until: i64,
    /// Tokens in the destination's bucket, if it has one.
    bucket: Option<f64>,
}

/// Claims the rows: the oldest due pending rows of each priority in turn, not
/// leased, skipping rows another node is claiming this instant. With a bucket,
/// takes one token per row claimed.
async fn claim(
    c: &mut PgConnection,
    node: &str,
    destination: &str,
    at: Claim,
) -> Result<Vec<PgRow>, sqlx::Error> {
    let Claim {
        now,
        db_now,
        grant,
        lease_until,
        bucket,
    } = at;
    const PICK: &str = "
        p0 AS (
            SELECT id FROM deliveries
            WHERE destination = $1 AND status = 0 AND priority = 0 AND due_at <= $2
              AND (lease_until IS NULL OR lease_until <= $3)
            ORDER BY due_at, id LIMIT $4 FOR UPDATE SKIP LOCKED),
        p1 AS (
            SELECT id FROM deliveries
            WHERE destination = $1 AND status = 0 AND priority = 1 AND due_at <= $2
              AND (lease_until IS NULL OR lease_until <= $3)
            ORDER BY due_at, id LIMIT $4 - (SELECT count(*) FROM p0) FOR UPDATE SKIP LOCKED),
        p2 AS (
            SELECT id FROM deliveries
            WHERE destination = $1 AND status = 0 AND priority = 2 AND due_at <= $2
              AND (lease_until IS NULL OR lease_until <= $3)
            ORDER BY due_at, id LIMIT $4 - (SELECT count(*) FROM p0) - (SELECT count(*) FROM p1)
            FOR UPDATE SKIP LOCKED),
        picked AS (SELECT id FROM p0 UNION ALL SELECT id FROM p1 UNION ALL SELECT id FROM p2),
        leased AS (
            UPDATE deliveries d SET lease_until = $5, lease_owner = $6
            FROM picked WHERE d.id = picked.id
            RETURNING d.id, d.attempts, d.retry_base, d.priority, d.ordering_key, d.created_at,
                d.due_at, d.message_seq)";
    const OUT: &str = "
        SELECT l.id, l.attempts, l.retry_base, l.priority, l.ordering_key, l.created_at, l.due_at,
            m.id, m.source, m.event_type, m.received_at, m.content_type, m.headers, m.body
        FROM leased l JOIN messages m ON m.seq = l.message_seq";
    let sql = match bucket {
        None => format!("WITH {PICK} {OUT}"),
        Some(_) => format!(
            "WITH {PICK},
             bucket AS (
                 INSERT INTO rate_buckets (destination, tokens, at_ms)
                 VALUES ($1, $7::float8 - (SELECT count(*) FROM leased), $8)
                 ON CONFLICT (destination) DO UPDATE
                     SET tokens = excluded.tokens, at_ms = excluded.at_ms)
             {OUT}"
        ),
    };
    // $3 is the database's now: a lease is free once it ended by that clock.
    let q = sqlx::query(&sql)
        .bind(destination)
        .bind(now)
        .bind(db_now)
        .bind(grant)
        .bind(lease_until)
        .bind(node);
    let q = match bucket {
        Some(tokens) => q.bind(tokens).bind(db_now),
        None => q,
    };
    q.fetch_all(&mut *c).await
}

fn leased(r: &PgRow, destination: &str) -> Result<(Leased, Millis), sqlx::Error> {
    let attempts: i32 = r.try_get(1)?;
    let base: i32 = r.try_get(2)?;
    let id: String = r.try_get(7)?;
    let message = StoredMessage {
        id: corrupt::message_id("messages", &id).map_err(super::corrupt)?,
        source: r.try_get(8)?,
        event_type: r.try_get(9)?,
        received_at: r.try_get(10)?,
        content_type: r.try_get(11)?,
        headers: Bytes::from(r.try_get::<Vec<u8>, _>(12)?),
        body: Bytes::from(r.try_get::<Vec<u8>, _>(13)?),
    };
    Ok((
        Leased {
            delivery_id: r.try_get(0)?,
            destination: destination.to_string(),
            attempt: attempts as u32 + 1,
            retry_index: attempts.saturating_sub(base).max(0) as u32,
            priority: corrupt::priority("deliveries", r.try_get::<i16, _>(3)? as i64)
                .map_err(super::corrupt)?,
            ordering_key: r.try_get(4)?,
            created_at: r.try_get(5)?,
            message: Arc::new(message),
        },
        r.try_get(6)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_up_to_the_burst() {
        assert_eq!(refill(None, None, 1000, 10.0, 5), 5.0);
        assert_eq!(refill(Some(0.0), Some(1000), 1100, 10.0, 5), 1.0);
        assert_eq!(refill(Some(2.0), Some(1000), 10_000, 10.0, 5), 5.0);
        // A clock that went back refills nothing.
        assert_eq!(refill(Some(2.0), Some(1000), 900, 10.0, 5), 2.0);
    }
}
