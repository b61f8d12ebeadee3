//! Reads for the admin API and the gauges: one message with its deliveries and
//! attempts, listings (bounded scans with cursors), per-destination stats.

use super::*;
use crate::store::corrupt::{self, CorruptRow};

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
                    "SELECT attempt, started_at, duration_us, status, response_body, error, response_headers
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
                            response_headers: crate::store::response_headers(
                                r.get::<_, Option<Vec<u8>>>(6)?.as_deref(),
                            ),
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
            let (limit, before) = page_bounds(q.limit, q.cursor.as_deref())?;
            let mut scan = Scan::new(c, &q, before).map_err(map_err)?;
            let mut items = Vec::new();
            // A status is derived per message (a query each): bounded too.
            let mut derived = 0usize;
            'outer: while items.len() < limit {
                let Some(rows) = scan.next_rows(c, &q).map_err(map_err)? else {
                    break;
                };
                for (seq, id, source, event_type, received_at) in rows {
                    if derived >= STATUS_BUDGET {
                        scan.truncated = true;
                        break 'outer;
                    }
                    derived += 1;
                    scan.before = seq;
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
            let next_cursor =
                (items.len() >= limit || scan.truncated).then(|| encode_cursor(scan.before));
            Ok(Page { items, next_cursor })
        })
        .await
}

/// Messages whose status one listing call derives at most.
const STATUS_BUDGET: usize = 10_000;
/// Message seqs a listing reads per step: a filter that matches rarely moves
/// down the table a window at a time (each an index range) rather than
/// scanning it whole in one statement.
const SEQ_WINDOW: i64 = 4096;
/// Message seqs one listing call passes over at most; then it hands back a
/// cursor (a rare filter never makes one call slow).
const SEQ_BUDGET: i64 = 25 * SEQ_WINDOW;
/// How far back in time a clock step may put a later message: a time range
/// stops the scan only this far past its bound.
const SKEW_MS: Millis = 60_000;

/// A listing's walk down the messages table, newest first.
struct Scan {
    /// Below this seq (exclusive) is still to be read.
    before: i64,
    /// The scan stops at or below this seq.
    floor: i64,
    /// Seqs passed over so far.
    covered: i64,
    /// Whether the budget ran out before the table did.
    truncated: bool,
    /// With a dedup key: the only seqs that may match.
    keyed: Option<Vec<i64>>,
}

type SummaryRow = (i64, MessageId, String, Option<String>, Millis);

impl Scan {
    fn new(c: &Connection, q: &MessageQuery, before: i64) -> rusqlite::Result<Scan> {
        let (lo, hi): (Option<i64>, Option<i64>) =
            // Two subqueries: SQLite reads min() and max() of the key from the
            // index ends only when each is alone in its query (together they
            // would scan the table).
            c.query_row(
                "SELECT (SELECT min(seq) FROM messages), (SELECT max(seq) FROM messages)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        let mut scan = Scan {
            before: before.min(hi.map_or(0, |h| h + 1)),
            floor: lo.map_or(0, |l| l - 1),
            covered: 0,
            truncated: false,
            keyed: None,
        };
        // Seqs follow arrival, so a time range bounds them (within SKEW_MS).
        if let Some(until) = q.until {
            if let Some(s) = first_seq_received_from(c, until.saturating_add(SKEW_MS))? {
                scan.before = scan.before.min(s);
            }
        }
        if let Some(since) = q.since {
            if let Some(s) = first_seq_received_from(c, since.saturating_sub(SKEW_MS))? {
                scan.floor = scan.floor.max(s - 1);
            } else {
                scan.floor = scan.before;
            }
        }
        if let Some(key) = &q.dedup_key {
            // The key is looked up per source on the (source, key) primary key;
            // the sources come from the same index, one step per source (a
            // loose index scan), so no call reads the whole dedup table.
            let mut stmt = c.prepare_cached(
                "WITH RECURSIVE s(source) AS (
                     SELECT coalesce(?2, (SELECT min(source) FROM dedup))
                     UNION ALL
                     SELECT (SELECT min(source) FROM dedup WHERE source > s.source)
                     FROM s WHERE ?2 IS NULL AND s.source IS NOT NULL)
                 SELECT m.seq FROM s
                 JOIN dedup d ON d.source = s.source AND d.key = ?1
                 JOIN messages m ON m.id = d.message_id
                 ORDER BY m.seq DESC",
            )?;
            let seqs = stmt
                .query_map(params![key, q.source], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            scan.keyed = Some(seqs);
        }
        Ok(scan)
    }

    /// The next rows that pass the column filters, or `None` at the end of
    /// the range or of the budget.
    fn next_rows(
        &mut self,
        c: &Connection,
        q: &MessageQuery,
    ) -> rusqlite::Result<Option<Vec<SummaryRow>>> {
        if let Some(keyed) = &mut self.keyed {
            // A dedup key names a message or two: read them one by one.
            let before = self.before;
            keyed.retain(|&s| s < before);
            let Some(seq) = keyed.first().copied() else {
                return Ok(None);
            };
            keyed.remove(0);
            let rows = self.read(c, q, seq + 1, seq - 1)?;
            self.before = seq;
            return Ok(Some(rows));
        }
        while self.before > self.floor {
            if self.covered >= SEQ_BUDGET {
                self.truncated = true;
                return Ok(None);
            }
            let low = (self.before - SEQ_WINDOW).max(self.floor);
            let rows = self.read(c, q, self.before, low)?;
            if rows.len() < 256 {
                // The window is exhausted: the next one starts below it.
                self.covered += self.before - low;
                self.before = low;
            }
            if !rows.is_empty() {
                return Ok(Some(rows));
            }
        }
        Ok(None)
    }

    /// Up to 256 rows with `low < seq < before` that pass the column filters.
    fn read(
        &self,
        c: &Connection,
        q: &MessageQuery,
        before: i64,
        low: i64,
    ) -> rusqlite::Result<Vec<SummaryRow>> {
        let mut stmt = c.prepare_cached(
            "SELECT seq, id, source, event_type, received_at FROM messages
             WHERE seq < ?1 AND seq > ?2 AND (?3 IS NULL OR source = ?3)
               AND (?4 IS NULL OR event_type = ?4)
               AND (?5 IS NULL OR received_at >= ?5) AND (?6 IS NULL OR received_at < ?6)
             ORDER BY seq DESC LIMIT 256",
        )?;
        let rows = stmt.query_map(
            params![before, low, q.source, q.event_type, q.since, q.until],
            |r| {
                Ok((
                    r.get(0)?,
                    message_id_at(r, 1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            },
        )?;
        rows.collect()
    }
}

/// The first message (by seq) received at or after `t`, taking receive times
/// as rising with seq (they do, but for clock steps): a binary search over
/// primary-key lookups.
fn first_seq_received_from(c: &Connection, t: Millis) -> rusqlite::Result<Option<i64>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, received_at FROM messages WHERE seq >= ?1 ORDER BY seq LIMIT 1",
    )?;
    let mut at = |s: i64| -> rusqlite::Result<Option<(i64, Millis)>> {
        stmt.query_row([s], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    };
    // Seqs start at 1.
    let (mut lo, mut hi) = (0, i64::MAX);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match at(mid)? {
            Some((_, received)) if received >= t => hi = mid,
            Some((seq, _)) => lo = seq.saturating_add(1).max(mid.saturating_add(1)),
            None => hi = mid,
        }
    }
    Ok(at(lo)?.filter(|&(_, r)| r >= t).map(|(s, _)| s))
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
                Some(DeliveryStatus::Dropped) => "AND d.status = 5",
                Some(DeliveryStatus::TransformFailed) => "AND d.status = 6",
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
