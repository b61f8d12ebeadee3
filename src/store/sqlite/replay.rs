//! Replays: new deliveries of one message, and dead deliveries brought back.
//! A replayed dead delivery leaves the dead-letter queue in the same commit.

use super::queue::key_status;
use super::*;

pub(super) fn replay_filter_sql(f: &ReplayFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut sql = String::from("status = 3");
    let mut args = Vec::new();
    if let Some(d) = &f.destination {
        args.push(Value::Text(d.clone()));
        sql.push_str(&format!(" AND destination = ?{}", args.len()));
    }
    if let Some(s) = f.since {
        args.push(Value::Integer(s));
        sql.push_str(&format!(" AND finished_at >= ?{}", args.len()));
    }
    if let Some(u) = f.until {
        args.push(Value::Integer(u));
        sql.push_str(&format!(" AND finished_at <= ?{}", args.len()));
    }
    (sql, args)
}

pub(super) async fn count_dead(store: &SqliteStore, f: &ReplayFilter) -> StoreResult<u64> {
    let f = f.clone();
    store
        .read(move |c| {
            let (cond, args) = replay_filter_sql(&f);
            c.query_row(
                &format!("SELECT count(*) FROM deliveries WHERE {cond}"),
                rusqlite::params_from_iter(args),
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(map_err)
        })
        .await
}

pub(super) async fn replay_message(
    store: &SqliteStore,
    id: MessageId,
    destinations: &[String],
    now: Millis,
) -> StoreResult<Vec<i64>> {
    let dests = destinations.to_vec();
    let inner = store.inner.clone();
    let (ids, created) = store
        .inner
        .writer
        .exec_then(
            move |c| {
                let seq: i64 = c
                    .prepare_cached("SELECT seq FROM messages WHERE id = ?1")
                    .and_then(|mut s| s.query_row([id.to_string()], |r| r.get(0)).optional())
                    .map_err(map_err)?
                    .ok_or(StoreError::NotFound)?;
                let mut ids = Vec::new();
                let mut created = Vec::new();
                for d in &dests {
                    let prior: Option<(i64, Option<String>)> = c
                        .prepare_cached(
                            "SELECT priority, ordering_key FROM deliveries WHERE message_seq = ?1 AND destination = ?2
                             ORDER BY id DESC LIMIT 1",
                        )
                        .and_then(|mut s| {
                            s.query_row(params![seq, d], |r| Ok((r.get(0)?, r.get(1)?))).optional()
                        })
                        .map_err(map_err)?;
                    let (prio, key) = prior.unwrap_or((Priority::Normal.rank(), None));
                    let status = key_status(c, d, key.as_deref()).map_err(map_err)?;
                    c.prepare_cached(
                        "INSERT INTO deliveries (message_seq, destination, status, priority, due_at, ordering_key, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5)",
                    )
                    .and_then(|mut s| s.execute(params![seq, d, status, prio, now, key]))
                    .map_err(map_err)?;
                    let new_id = c.last_insert_rowid();
                    // The dead ones it replaces leave the dead-letter queue.
                    let superseded = c
                        .prepare_cached(
                            "UPDATE deliveries SET status = 4, replayed_by = ?3
                             WHERE message_seq = ?1 AND destination = ?2 AND status = 3",
                        )
                        .and_then(|mut s| s.execute(params![seq, d, new_id]))
                        .map_err(map_err)?;
                    ids.push(new_id);
                    created.push((d.clone(), superseded as i64));
                }
                Ok((ids, created))
            },
            move |(_, created)| {
                for (d, superseded) in created {
                    inner.pending.add(d, 1);
                    inner.pending.add_dead(d, -superseded);
                    inner.wakeups.wake(d);
                }
            },
        )
        .await?;
    drop(created);
    Ok(ids)
}

pub(super) async fn replay_dead_batch(
    store: &SqliteStore,
    f: &ReplayFilter,
    now: Millis,
    limit: usize,
) -> StoreResult<usize> {
    let f = f.clone();
    let inner = store.inner.clone();
    let revived = store
        .inner
        .writer
        .exec_then(
            move |c| {
                let (cond, args) = replay_filter_sql(&f);
                let rows: Vec<(i64, String, Option<String>)> = c
                    .prepare(&format!(
                        "SELECT id, destination, ordering_key FROM deliveries WHERE {cond} ORDER BY id LIMIT {limit}"
                    ))
                    .and_then(|mut s| {
                        s.query_map(rusqlite::params_from_iter(args), |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })?
                        .collect()
                    })
                    .map_err(map_err)?;
                let mut revived = Vec::with_capacity(rows.len());
                for (id, dest, key) in rows {
                    let status = key_status(c, &dest, key.as_deref()).map_err(map_err)?;
                    c.prepare_cached(
                        "UPDATE deliveries SET status = ?2, due_at = ?3, retry_base = attempts, finished_at = NULL
                         WHERE id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![id, status, now]))
                    .map_err(map_err)?;
                    revived.push(dest);
                }
                Ok(revived)
            },
            move |revived| {
                for d in revived {
                    inner.pending.add(d, 1);
                    inner.pending.add_dead(d, -1);
                    inner.wakeups.wake(d);
                }
            },
        )
        .await?;
    Ok(revived.len())
}
