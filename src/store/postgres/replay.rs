//! Replays: a message's new deliveries, and dead deliveries brought back.
//!
//! Both hold the message row `FOR SHARE` while they add live work to it, so that
//! retention (which deletes a message only when it has no live delivery, taking
//! the row `FOR UPDATE SKIP LOCKED`) can never remove a message under a delivery
//! that is being created for it. Keys are locked as at ingest.

use std::collections::{BTreeSet, HashMap, HashSet};

use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use super::read::push_dead_filter;
use super::writer::busy_keys;
use super::{key_lock, lock_keys, text, xid};
use crate::config::Priority;
use crate::store::{MessageId, Millis, ReplayFilter};

/// What a replay changed, to account for after its commit.
#[derive(Default)]
pub(super) struct Replayed {
    pub(super) ids: Vec<i64>,
    pub(super) xid: Option<u64>,
    pub(super) deltas: HashMap<String, i64>,
    pub(super) wake: HashSet<String>,
    /// Destinations with new pending work, for the other nodes.
    pub(super) notify: HashSet<String>,
}

/// `None` if the message does not exist.
pub(super) async fn replay_message(
    tx: &mut PgConnection,
    id: MessageId,
    destinations: &[String],
    now: Millis,
) -> Result<Option<Replayed>, sqlx::Error> {
    let Some(seq) = sqlx::query("SELECT seq FROM messages WHERE id = $1 FOR SHARE")
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get::<i64, _>(0))
        .transpose()?
    else {
        return Ok(None);
    };
    let plan = replay_plan(tx, seq, destinations).await?;
    let locks: BTreeSet<i32> = plan
        .iter()
        .filter_map(|(d, _, k)| k.as_ref().map(|k| key_lock(d, k)))
        .collect();
    lock_keys(tx, &locks).await?;
    let mut out = Replayed::default();
    for (d, prio, key) in plan {
        // One at a time, so a later one sees the earlier one of the same key.
        let pairs: BTreeSet<(String, String)> =
            key.iter().map(|k| (d.clone(), k.clone())).collect();
        let status: i16 = if busy_keys(tx, &pairs).await?.is_empty() {
            0
        } else {
            1
        };
        let new_id: i64 = sqlx::query(
            "INSERT INTO deliveries (message_seq, destination, status, priority, due_at, ordering_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $5) RETURNING id",
        )
        .bind(seq)
        .bind(&d)
        .bind(status)
        .bind(prio)
        .bind(now)
        .bind(&key)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        // The dead ones it replaces leave the dead-letter queue. A bulk replay
        // revives a row only while it is dead (`DELETE … AND status = 3`), so
        // the two never both send the same one.
        sqlx::query(
            "UPDATE deliveries_done SET status = 4, replayed_by = $3
             WHERE message_seq = $1 AND destination = $2 AND status = 3",
        )
        .bind(seq)
        .bind(&d)
        .bind(new_id)
        .execute(&mut *tx)
        .await?;
        out.ids.push(new_id);
        *out.deltas.entry(d.clone()).or_default() += 1;
        if status == 0 {
            out.notify.insert(d.clone());
        }
        out.wake.insert(d);
    }
    out.xid = xid(tx).await?;
    Ok(Some(out))
}

/// Each destination with the priority and key of the message's last delivery
/// there.
async fn replay_plan(
    tx: &mut PgConnection,
    seq: i64,
    destinations: &[String],
) -> Result<Vec<(String, i16, Option<String>)>, sqlx::Error> {
    let mut plan = Vec::new();
    for d in destinations {
        let d = text(d);
        let prior = sqlx::query(
            "SELECT priority, ordering_key FROM (
                 SELECT id, priority, ordering_key FROM deliveries WHERE message_seq = $1 AND destination = $2
                 UNION ALL
                 SELECT id, priority, ordering_key FROM deliveries_done WHERE message_seq = $1 AND destination = $2
             ) x ORDER BY id DESC LIMIT 1",
        )
        .bind(seq)
        .bind(&d)
        .fetch_optional(&mut *tx)
        .await?;
        let (prio, key): (i16, Option<String>) = match prior {
            Some(r) => (r.try_get(0)?, r.try_get(1)?),
            None => (Priority::Normal.rank() as i16, None),
        };
        plan.push((d, prio, key));
    }
    Ok(plan)
}

/// A dead delivery on its way back to the queue.
struct Revived {
    id: i64,
    seq: i64,
    dest: String,
    prio: i16,
    key: Option<String>,
    attempts: i32,
    created: i64,
}

/// Takes up to `limit` matching dead deliveries out of the history, in id
/// order, holding their messages `FOR SHARE`; `None` when none matched.
async fn take_dead(
    tx: &mut PgConnection,
    f: &ReplayFilter,
    limit: usize,
) -> Result<Option<Vec<Revived>>, sqlx::Error> {
    let mut b: QueryBuilder<Postgres> =
        QueryBuilder::new("SELECT id, message_seq FROM deliveries_done WHERE ");
    push_dead_filter(&mut b, f);
    b.push(" ORDER BY id LIMIT ").push_bind(limit as i64);
    let picked: Vec<(i64, i64)> = b
        .build()
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    if picked.is_empty() {
        return Ok(None);
    }
    // Messages first (the order retention locks in), then the rows.
    let seqs: Vec<i64> = picked.iter().map(|p| p.1).collect();
    let live: Vec<i64> =
        sqlx::query("SELECT seq FROM messages WHERE seq = ANY($1) ORDER BY seq FOR SHARE")
            .bind(&seqs)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
    let ids: Vec<i64> = picked.iter().map(|p| p.0).collect();
    // Taken out of the history; another node replaying the same rows at once
    // finds them gone and skips them.
    let rows = sqlx::query(
        "DELETE FROM deliveries_done WHERE id = ANY($1) AND message_seq = ANY($2) AND status = 3
         RETURNING id, message_seq, destination, priority, ordering_key, attempts, created_at",
    )
    .bind(&ids)
    .bind(&live)
    .fetch_all(&mut *tx)
    .await?;
    let mut rows: Vec<Revived> = rows
        .into_iter()
        .map(|r| {
            Ok(Revived {
                id: r.try_get(0)?,
                seq: r.try_get(1)?,
                dest: r.try_get(2)?,
                prio: r.try_get(3)?,
                key: r.try_get(4)?,
                attempts: r.try_get(5)?,
                created: r.try_get(6)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    rows.sort_by_key(|r| r.id);
    Ok(Some(rows))
}

/// Moves up to `limit` matching dead deliveries back to the queue: due now,
/// retry schedule restarted, queued behind a busy key.
pub(super) async fn replay_dead_batch(
    tx: &mut PgConnection,
    f: &ReplayFilter,
    now: Millis,
    limit: usize,
) -> Result<Replayed, sqlx::Error> {
    let mut out = Replayed::default();
    let Some(rows) = take_dead(tx, f, limit).await? else {
        return Ok(out);
    };
    let locks: BTreeSet<i32> = rows
        .iter()
        .filter_map(|r| r.key.as_ref().map(|k| key_lock(&r.dest, k)))
        .collect();
    lock_keys(tx, &locks).await?;
    let pairs: BTreeSet<(String, String)> = rows
        .iter()
        .filter_map(|r| r.key.clone().map(|k| (r.dest.clone(), k)))
        .collect();
    let busy = busy_keys(tx, &pairs).await?;
    let statuses = super::writer::assign_statuses(
        rows.iter()
            .map(|r| r.key.as_deref().map(|k| (r.dest.as_str(), k))),
        &busy,
    );
    sqlx::query(
        "INSERT INTO deliveries (id, message_seq, destination, status, priority, due_at, ordering_key,
             attempts, retry_base, created_at)
         SELECT u.id, u.seq, u.dest, u.status, u.prio, $8, u.key, u.attempts, u.attempts, u.created
         FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int2[], $5::int2[], $6::text[], $7::int4[], $9::int8[])
             AS u(id, seq, dest, status, prio, key, attempts, created)",
    )
    .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.dest.clone()).collect::<Vec<_>>())
    .bind(&statuses)
    .bind(rows.iter().map(|r| r.prio).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.attempts).collect::<Vec<_>>())
    .bind(now)
    .bind(rows.iter().map(|r| r.created).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    for (r, s) in rows.iter().zip(&statuses) {
        out.ids.push(r.id);
        *out.deltas.entry(r.dest.clone()).or_default() += 1;
        if *s == 0 {
            out.notify.insert(r.dest.clone());
        }
        out.wake.insert(r.dest.clone());
    }
    out.xid = xid(tx).await?;
    Ok(out)
}
