//! Reads for the admin API and the gauges: one message with its deliveries and
//! attempts, listings (bounded scans with cursors), per-destination stats.

use super::*;
use crate::store::corrupt::{self, CorruptRow};

/// Messages a filtered listing looks at per call at most.
pub(super) const SCAN_BUDGET: usize = 10_000;

/// A corrupt value as the error of a row closure, at its column `index`;
/// [`is_corrupt`] tells it from the database's own errors.
pub(super) fn corrupt_at(index: usize, c: CorruptRow) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(c))
}

/// Whether a row failed because a value in it is corrupt (see [`corrupt_at`]).
pub(super) fn is_corrupt(e: &rusqlite::Error) -> bool {
    corrupt_row(e).is_some()
}

/// The corrupt row a read failed on, if that is why it failed.
pub(super) fn corrupt_row(e: &rusqlite::Error) -> Option<&CorruptRow> {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, c) => c.downcast_ref::<CorruptRow>(),
        _ => None,
    }
}

/// A message id read from column `index`.
fn message_id_at(r: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<MessageId> {
    let id: String = r.get(index)?;
    corrupt::message_id("messages", &id).map_err(|e| corrupt_at(index, e))
}

/// A message read from [`MSG_COLS`] starting at column `base`.
pub(super) fn stored_message(
    r: &rusqlite::Row<'_>,
    base: usize,
) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        id: message_id_at(r, base)?,
        source: r.get(base + 1)?,
        event_type: r.get(base + 2)?,
        received_at: r.get(base + 3)?,
        content_type: r.get(base + 4)?,
        headers: Bytes::from(r.get::<_, Vec<u8>>(base + 5)?),
        body: Bytes::from(r.get::<_, Vec<u8>>(base + 6)?),
    })
}

pub(super) const MSG_COLS: &str =
    "m.id, m.source, m.event_type, m.received_at, m.content_type, m.headers, m.body";

/// A message's delivery count and derived status ([`MessageStatus::derive`]).
pub(super) fn message_summary(c: &Connection, seq: i64) -> rusqlite::Result<(i64, MessageStatus)> {
    let rows: Vec<(i64, String, i64)> = c
        .prepare_cached("SELECT id, destination, status FROM deliveries WHERE message_seq = ?1")?
        .query_map([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let statuses = rows
        .iter()
        .map(|(_, _, s)| corrupt::delivery_status("deliveries", *s).map_err(|e| corrupt_at(2, e)))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let status = MessageStatus::derive(
        rows.iter()
            .zip(statuses)
            .map(|((id, d, _), s)| (*id, d.as_str(), s)),
    );
    Ok((rows.len() as i64, status))
}

pub(super) fn delivery_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryInfo> {
    let status = corrupt::delivery_status("deliveries", r.get(3)?).map_err(|e| corrupt_at(3, e))?;
    Ok(DeliveryInfo {
        id: r.get(0)?,
        message_id: message_id_at(r, 1)?,
        destination: r.get(2)?,
        status,
        attempts: r.get(4)?,
        next_attempt_at: if status == DeliveryStatus::Pending {
            Some(r.get(5)?)
        } else {
            None
        },
        created_at: r.get(6)?,
        finished_at: r.get(7)?,
        ordering_key: r.get(8)?,
        priority: corrupt::priority("deliveries", r.get(9)?)
            .map_err(|e| corrupt_at(9, e))?
            .as_str(),
        replayed_by: r.get(10)?,
        attempt_log: None,
    })
}

pub(super) const DELIVERY_COLS: &str = "d.id, m.id, d.destination, d.status, d.attempts, d.due_at, d.created_at, d.finished_at, d.ordering_key, d.priority, d.replayed_by";

pub(super) async fn message(store: &SqliteStore, id: MessageId) -> StoreResult<MessageDetail> {
    store
        .read(move |c| {
            let sql = format!("SELECT m.seq, {MSG_COLS} FROM messages m WHERE m.id = ?1");
            let row = c
                .prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_row([id.to_string()], |r| {
                        Ok((r.get::<_, i64>(0)?, stored_message(r, 1)?))
                    })
                    .optional()
                })
                .map_err(map_err)?;
            let (seq, message) = row.ok_or(StoreError::NotFound)?;
            let (n, status) = message_summary(c, seq).map_err(map_err)?;
            let sql = format!(
                "SELECT {DELIVERY_COLS} FROM deliveries d JOIN messages m ON m.seq = d.message_seq
             WHERE d.message_seq = ?1 ORDER BY d.id"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(map_err)?;
            let mut deliveries: Vec<DeliveryInfo> = stmt
                .query_map([seq], delivery_info)
                .and_then(|rows| rows.collect())
                .map_err(map_err)?;
            let mut astmt = c
                .prepare_cached(
                    "SELECT attempt, started_at, duration_us, status, response_body, error
                 FROM attempts WHERE delivery_id = ?1 ORDER BY attempt",
                )
                .map_err(map_err)?;
            for d in &mut deliveries {
                let log: Vec<AttemptInfo> = astmt
                    .query_map([d.id], |r| {
                        let body: Option<Vec<u8>> = r.get(4)?;
                        Ok(AttemptInfo {
                            attempt: r.get(0)?,
                            started_at: r.get(1)?,
                            duration_ms: r.get::<_, i64>(2)? as f64 / 1000.0,
                            response_status: r.get(3)?,
                            response_body: body.map(|b| String::from_utf8_lossy(&b).into_owned()),
                            error: r.get(5)?,
                        })
                    })
                    .and_then(|rows| rows.collect())
                    .map_err(map_err)?;
                d.attempt_log = Some(log);
            }
            Ok(MessageDetail {
                summary: MessageSummary {
                    id: message.id,
                    source: message.source.clone(),
                    event_type: message.event_type.clone(),
                    received_at: message.received_at,
                    status,
                    deliveries: n,
                },
                message,
                deliveries,
            })
        })
        .await
}

pub(super) async fn messages(
    store: &SqliteStore,
    q: &MessageQuery,
) -> StoreResult<Page<MessageSummary>> {
    let q = q.clone();
    store
        .read(move |c| {
            let (limit, mut before) = page_bounds(q.limit, q.cursor.as_deref())?;
            let mut items = Vec::new();
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, id, source, event_type, received_at FROM messages
                 WHERE seq < ?1 AND (?2 IS NULL OR source = ?2) ORDER BY seq DESC LIMIT 256",
                )
                .map_err(map_err)?;
            // Scan backwards in chunks; the status is derived per message. A
            // filtered listing scans a bounded number of messages per call and
            // hands back a cursor, so a rare status never makes one call slow.
            let mut scanned = 0usize;
            let mut truncated = false;
            'outer: loop {
                if scanned >= SCAN_BUDGET {
                    truncated = true;
                    break;
                }
                let rows: Vec<(i64, MessageId, String, Option<String>, i64)> = stmt
                    .query_map(params![before, q.source], |r| {
                        Ok((
                            r.get(0)?,
                            message_id_at(r, 1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                        ))
                    })
                    .and_then(|rows| rows.collect())
                    .map_err(map_err)?;
                if rows.is_empty() {
                    break;
                }
                for (seq, id, source, event_type, received_at) in rows {
                    before = seq;
                    scanned += 1;
                    let (n, status) = message_summary(c, seq).map_err(map_err)?;
                    if q.status.is_some_and(|s| s != status) {
                        continue;
                    }
                    items.push(MessageSummary {
                        id,
                        source,
                        event_type,
                        received_at,
                        status,
                        deliveries: n,
                    });
                    if items.len() >= limit {
                        break 'outer;
                    }
                }
            }
            let next_cursor = (items.len() >= limit || truncated).then(|| encode_cursor(before));
            Ok(Page { items, next_cursor })
        })
        .await
}

pub(super) async fn deliveries(
    store: &SqliteStore,
    q: &DeliveryQuery,
) -> StoreResult<Page<DeliveryInfo>> {
    let q = q.clone();
    store
        .read(move |c| {
            let (limit, before) = page_bounds(q.limit, q.cursor.as_deref())?;
            // The status is written as a literal matching a partial index
            // (dead, live), so a listing of the dead-letter queue is a seek.
            let status = match q.status {
                None => "",
                Some(DeliveryStatus::Dead) => "AND d.status = 3",
                Some(DeliveryStatus::Pending) => "AND d.status IN (0, 1) AND d.status = 0",
                Some(DeliveryStatus::Queued) => "AND d.status IN (0, 1) AND d.status = 1",
                Some(DeliveryStatus::Delivered) => "AND d.status = 2",
                Some(DeliveryStatus::Replayed) => "AND d.status = 4",
            };
            let dest = if q.destination.is_some() {
                "AND d.destination = ?2"
            } else {
                "AND ?2 IS NULL"
            };
            let sql = format!(
                "SELECT {DELIVERY_COLS} FROM deliveries d JOIN messages m ON m.seq = d.message_seq
             WHERE d.id < ?1 {dest} {status}
             ORDER BY d.id DESC LIMIT ?3"
            );
            let items: Vec<DeliveryInfo> = c
                .prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_map(params![before, q.destination, limit as i64], delivery_info)?
                        .collect()
                })
                .map_err(map_err)?;
            let next_cursor = (items.len() >= limit)
                .then(|| items.last().map(|d| encode_cursor(d.id)))
                .flatten();
            Ok(Page { items, next_cursor })
        })
        .await
}

pub(super) async fn message_destinations(
    store: &SqliteStore,
    id: MessageId,
) -> StoreResult<Vec<String>> {
    store.read(move |c| {
        let seq: i64 = c
            .prepare_cached("SELECT seq FROM messages WHERE id = ?1")
            .and_then(|mut s| s.query_row([id.to_string()], |r| r.get(0)).optional())
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        c.prepare_cached(
            "SELECT destination FROM deliveries WHERE message_seq = ?1 GROUP BY destination ORDER BY min(id)",
        )
        .and_then(|mut s| s.query_map([seq], |r| r.get(0))?.collect())
        .map_err(map_err)
    })
    .await
}

pub(super) async fn destination_stats(
    store: &SqliteStore,
) -> StoreResult<HashMap<String, DestinationStats>> {
    let counts = store.pending_by_destination();
    let dead = store.inner.pending.dead.lock().clone();
    store
        .read(move |c| {
            let mut out: HashMap<String, DestinationStats> = HashMap::new();
            // The lowest live id is the oldest live delivery (ids grow with time):
            // one seek in `deliveries_live` per destination.
            let mut oldest = c
                .prepare_cached(
                    "SELECT created_at FROM deliveries WHERE destination = ?1 AND status IN (0, 1)
                 ORDER BY id LIMIT 1",
                )
                .map_err(map_err)?;
            for (d, n) in &counts {
                let at: Option<Millis> = if *n > 0 {
                    oldest
                        .query_row([d], |r| r.get(0))
                        .optional()
                        .map_err(map_err)?
                } else {
                    None
                };
                let e = out.entry(d.clone()).or_default();
                e.pending = (*n).max(0) as u64;
                e.oldest_pending_at = at;
            }
            for (d, n) in dead {
                out.entry(d).or_default().dead = n.max(0) as u64;
            }
            Ok(out)
        })
        .await
}
