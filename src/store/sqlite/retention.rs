//! Retention: removes finished messages older than the cutoff and expired
//! dedup keys, a bounded number per call.

use super::*;

pub(super) async fn cleanup(
    store: &SqliteStore,
    cutoff: Millis,
    now: Millis,
    limit: usize,
) -> StoreResult<usize> {
    let inner = store.inner.clone();
    let cursor = store.inner.cleanup_from.clone();
    let (removed, _) = store
        .inner
        .writer
        .exec_then(
            move |c| {
                let seqs = pick(c, &cursor, cutoff, limit)?;
                let (mut removed, dead_gone) = remove_messages(c, &seqs)?;
                removed += c
                    .prepare_cached(
                        "DELETE FROM dedup WHERE (source, key) IN
                     (SELECT source, key FROM dedup WHERE expires_at <= ?1 LIMIT ?2)",
                    )
                    .and_then(|mut s| s.execute(params![now, limit as i64]))
                    .map_err(map_err)?;
                Ok((removed, dead_gone))
            },
            move |(_, dead_gone)| {
                for d in dead_gone {
                    inner.pending.add_dead(d, -1);
                }
            },
        )
        .await?;
    Ok(removed)
}

/// Up to `limit` messages received before `cutoff` with no live delivery.
///
/// Walks the oldest messages in ingest order from where the last call
/// stopped (`cursor`), looking at a bounded number per call, so that a call
/// never scans the table (messages still waiting are passed over and looked
/// at again on the next round).
fn pick(c: &Connection, cursor: &AtomicI64, cutoff: Millis, limit: usize) -> StoreResult<Vec<i64>> {
    let from = cursor.load(Ordering::Relaxed);
    let rows: Vec<(i64, Millis, bool)> = c
        .prepare_cached(
            "SELECT seq, received_at,
                EXISTS (SELECT 1 FROM deliveries d WHERE d.message_seq = m.seq AND d.status IN (0, 1))
             FROM messages m WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![from, (limit * 4) as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect()
        })
        .map_err(map_err)?;
    let mut seqs = Vec::new();
    let mut next_from = 0;
    let mut reached_recent = rows.len() < limit * 4;
    for (seq, received_at, live) in &rows {
        if *received_at >= cutoff {
            reached_recent = true;
            break;
        }
        next_from = *seq;
        if !live {
            seqs.push(*seq);
            if seqs.len() >= limit {
                break;
            }
        }
    }
    cursor.store(
        if reached_recent { 0 } else { next_from },
        Ordering::Relaxed,
    );
    Ok(seqs)
}

/// Removes the messages with their deliveries and attempts; returns how many
/// messages went and the destination of each dead delivery that went.
fn remove_messages(c: &Connection, seqs: &[i64]) -> StoreResult<(usize, Vec<String>)> {
    let mut removed = 0;
    let mut dead_gone: Vec<String> = Vec::new();
    for seq in seqs {
        c.prepare_cached(
            "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE message_seq = ?1)",
        )
        .and_then(|mut s| s.execute([seq]))
        .map_err(map_err)?;
        let gone: Vec<(String, i64)> = c
            .prepare_cached(
                "DELETE FROM deliveries WHERE message_seq = ?1 RETURNING destination, status",
            )
            .and_then(|mut s| {
                s.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(map_err)?;
        dead_gone.extend(gone.into_iter().filter(|g| g.1 == 3).map(|g| g.0));
        removed += c
            .prepare_cached("DELETE FROM messages WHERE seq = ?1")
            .and_then(|mut s| s.execute([seq]))
            .map_err(map_err)?;
    }
    Ok((removed, dead_gone))
}
