//! Reads for the admin API: one message with its deliveries and attempts,
//! listings, dead counts. A delivery lives in `deliveries` while it is pending
//! or queued and in `deliveries_done` once finished; reads that span both use
//! one statement, so a delivery moving between them is seen exactly once.

use std::collections::HashMap;

use bytes::Bytes;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use crate::store::{
    encode_cursor, page_bounds, AttemptInfo, DeliveryInfo, DeliveryQuery, DeliveryStatus,
    MessageDetail, MessageId, MessageQuery, MessageStatus, MessageSummary, Page, ReplayFilter,
    StoreError, StoreResult, StoredMessage,
};

use super::map_err;
use crate::store::corrupt;

/// Columns of both delivery tables, in the order [`delivery_info`] reads them
/// (the live table has no `finished_at` or `replayed_by`).
const LIVE_COLS: &str = "id, message_seq, destination, status, attempts, due_at, created_at, NULL::int8 AS finished_at, ordering_key, priority, NULL::int8 AS replayed_by";
const DONE_COLS: &str = "id, message_seq, destination, status, attempts, due_at, created_at, finished_at, ordering_key, priority, replayed_by";

fn delivery_info(r: &PgRow, message_id: MessageId) -> Result<DeliveryInfo, sqlx::Error> {
    let status = corrupt::delivery_status("deliveries", r.try_get::<i16, _>("status")? as i64)
        .map_err(super::corrupt)?;
    Ok(DeliveryInfo {
        id: r.try_get("id")?,
        message_id,
        destination: r.try_get("destination")?,
        status,
        attempts: r.try_get::<i32, _>("attempts")?.max(0) as u32,
        next_attempt_at: if status == DeliveryStatus::Pending {
            Some(r.try_get("due_at")?)
        } else {
            None
        },
        created_at: r.try_get("created_at")?,
        finished_at: r.try_get("finished_at")?,
        ordering_key: r.try_get("ordering_key")?,
        priority: corrupt::priority("deliveries", r.try_get::<i16, _>("priority")? as i64)
            .map_err(super::corrupt)?
            .as_str(),
        replayed_by: r.try_get("replayed_by")?,
        attempt_log: None,
    })
}

/// A message row (`seq, id, source, event_type, received_at, content_type,
/// headers, body`) of the message `id`.
fn stored_message(row: &PgRow, id: MessageId) -> Result<StoredMessage, sqlx::Error> {
    Ok(StoredMessage {
        id,
        source: row.try_get(2)?,
        event_type: row.try_get(3)?,
        received_at: row.try_get(4)?,
        content_type: row.try_get(5)?,
        headers: Bytes::from(row.try_get::<Vec<u8>, _>(6)?),
        body: Bytes::from(row.try_get::<Vec<u8>, _>(7)?),
    })
}

/// An attempt row and the id of its delivery.
fn attempt_info(r: &PgRow) -> Result<(i64, AttemptInfo), sqlx::Error> {
    let body: Option<Vec<u8>> = r.try_get(5)?;
    let attempt = AttemptInfo {
        attempt: r.try_get::<i32, _>(1)?.max(0) as u32,
        started_at: r.try_get(2)?,
        duration_ms: r.try_get::<i64, _>(3)? as f64 / 1000.0,
        response_status: r.try_get::<Option<i32>, _>(4)?.map(|s| s as u16),
        response_body: body.map(|b| String::from_utf8_lossy(&b).into_owned()),
        error: r.try_get(6)?,
        response_headers: crate::store::response_headers(
            r.try_get::<Option<Vec<u8>>, _>(7)?.as_deref(),
        ),
    };
    Ok((r.try_get(0)?, attempt))
}

/// A message id read from `column`.
fn message_id(r: &PgRow, column: &str) -> Result<MessageId, sqlx::Error> {
    let id: String = r.try_get(column)?;
    corrupt::message_id("messages", &id).map_err(super::corrupt)
}

/// One row of the message listing, with its derived status.
fn message_summary(r: &PgRow) -> Result<MessageSummary, sqlx::Error> {
    let (open, done, dead): (i64, i64, i64) = (r.try_get(5)?, r.try_get(6)?, r.try_get(7)?);
    Ok(MessageSummary {
        id: message_id(r, "id")?,
        source: r.try_get(2)?,
        event_type: r.try_get(3)?,
        received_at: r.try_get(4)?,
        status: MessageStatus::from_counts(open, dead),
        deliveries: open + done,
    })
}

pub(super) async fn message(pool: &PgPool, id: MessageId) -> StoreResult<MessageDetail> {
    let mut c = pool.acquire().await.map_err(map_err)?;
    let row = sqlx::query(
        "SELECT seq, id, source, event_type, received_at, content_type, headers, body
         FROM messages WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await
    .map_err(map_err)?
    .ok_or(StoreError::NotFound)?;
    let seq: i64 = row.try_get(0).map_err(map_err)?;
    let message = stored_message(&row, id).map_err(map_err)?;
    let rows = sqlx::query(&format!(
        "SELECT {LIVE_COLS} FROM deliveries WHERE message_seq = $1
         UNION ALL SELECT {DONE_COLS} FROM deliveries_done WHERE message_seq = $1
         ORDER BY id"
    ))
    .bind(seq)
    .fetch_all(&mut *c)
    .await
    .map_err(map_err)?;
    let mut deliveries = rows
        .iter()
        .map(|r| delivery_info(r, id))
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err)?;
    let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
    let mut logs: HashMap<i64, Vec<AttemptInfo>> = HashMap::new();
    if !ids.is_empty() {
        let rows = sqlx::query(
            "SELECT delivery_id, attempt, started_at, duration_us, status, response_body, error, response_headers
             FROM attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
        )
        .bind(&ids)
        .fetch_all(&mut *c)
        .await
        .map_err(map_err)?;
        for r in rows {
            let (delivery, attempt) = attempt_info(&r).map_err(map_err)?;
            logs.entry(delivery).or_default().push(attempt);
        }
    }
    for d in &mut deliveries {
        d.attempt_log = Some(logs.remove(&d.id).unwrap_or_default());
    }
    let status = MessageStatus::derive(
        deliveries
            .iter()
            .map(|d| (d.id, d.destination.as_str(), d.status)),
    );
    Ok(MessageDetail {
        summary: MessageSummary {
            id,
            source: message.source.clone(),
            event_type: message.event_type.clone(),
            received_at: message.received_at,
            status,
            deliveries: deliveries.len() as i64,
        },
        message,
        deliveries,
    })
}

pub(super) async fn messages(pool: &PgPool, q: &MessageQuery) -> StoreResult<Page<MessageSummary>> {
    let (limit, mut before) = page_bounds(q.limit, q.cursor.as_deref())?;
    let mut items = Vec::new();
    // Scan backwards in chunks; the status is derived per message.
    'outer: loop {
        let rows = sqlx::query(
            "SELECT m.seq, m.id, m.source, m.event_type, m.received_at,
                 (SELECT count(*) FROM deliveries d WHERE d.message_seq = m.seq),
                 (SELECT count(*) FROM deliveries_done d WHERE d.message_seq = m.seq),
                 (SELECT count(*) FROM deliveries_done d WHERE d.message_seq = m.seq AND d.status IN (3, 6)
                      AND NOT EXISTS (SELECT 1 FROM deliveries_done n WHERE n.message_seq = m.seq
                                      AND n.destination = d.destination AND n.id > d.id))
             FROM messages m
             WHERE m.seq < $1 AND ($2::text IS NULL OR m.source = $2)
               AND ($3::text IS NULL OR m.event_type = $3)
               AND ($4::bigint IS NULL OR m.received_at >= $4)
               AND ($5::bigint IS NULL OR m.received_at < $5)
               AND ($6::text IS NULL OR m.id IN
                    (SELECT message_id FROM dedup
                     WHERE key = $6 AND ($2::text IS NULL OR source = $2)))
             ORDER BY m.seq DESC LIMIT 256",
        )
        .bind(before)
        .bind(q.source.as_deref())
        .bind(q.event_type.as_deref())
        .bind(q.since)
        .bind(q.until)
        .bind(q.dedup_key.as_deref())
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            before = r.try_get(0).map_err(map_err)?;
            let summary = message_summary(&r).map_err(map_err)?;
            if q.status.is_some_and(|s| s != summary.status) {
                continue;
            }
            items.push(summary);
            if items.len() >= limit {
                break 'outer;
            }
        }
    }
    let next_cursor = (items.len() >= limit).then(|| encode_cursor(before));
    Ok(Page { items, next_cursor })
}

pub(super) async fn deliveries(
    pool: &PgPool,
    q: &DeliveryQuery,
) -> StoreResult<Page<DeliveryInfo>> {
    let (limit, before) = page_bounds(q.limit, q.cursor.as_deref())?;
    let limit = limit as i64;
    let tables: &[(&str, &str)] = match q.status {
        Some(DeliveryStatus::Pending | DeliveryStatus::Queued) => &[("deliveries", LIVE_COLS)],
        Some(
            DeliveryStatus::Delivered
            | DeliveryStatus::Dead
            | DeliveryStatus::Replayed
            | DeliveryStatus::Dropped
            | DeliveryStatus::TransformFailed,
        ) => &[("deliveries_done", DONE_COLS)],
        None => &[("deliveries", LIVE_COLS), ("deliveries_done", DONE_COLS)],
    };
    let mut b: QueryBuilder<Postgres> = QueryBuilder::new("SELECT x.*, m.id AS message_id FROM (");
    for (i, (table, cols)) in tables.iter().enumerate() {
        if i > 0 {
            b.push(" UNION ALL ");
        }
        b.push(format!("(SELECT {cols} FROM {table} WHERE id < "));
        b.push_bind(before);
        if let Some(d) = &q.destination {
            b.push(" AND destination = ").push_bind(d.clone());
        }
        if let Some(s) = q.status {
            b.push(" AND status = ").push_bind(s.code() as i16);
        }
        b.push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit)
            .push(")");
    }
    b.push(") x JOIN messages m ON m.seq = x.message_seq ORDER BY x.id DESC LIMIT ")
        .push_bind(limit);
    let rows = b.build().fetch_all(pool).await.map_err(map_err)?;
    let items = rows
        .iter()
        .map(|r| delivery_info(r, message_id(r, "message_id")?))
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(map_err)?;
    let next_cursor = (items.len() as i64 >= limit)
        .then(|| items.last().map(|d| encode_cursor(d.id)))
        .flatten();
    Ok(Page { items, next_cursor })
}

/// `status = 3` and the filter's conditions on `deliveries_done`, for a builder
/// that has just pushed `WHERE `.
pub(super) fn push_dead_filter(b: &mut QueryBuilder<'_, Postgres>, f: &ReplayFilter) {
    b.push("status = 3");
    if let Some(d) = &f.destination {
        b.push(" AND destination = ").push_bind(d.clone());
    }
    if let Some(s) = f.since {
        b.push(" AND finished_at >= ").push_bind(s);
    }
    if let Some(u) = f.until {
        b.push(" AND finished_at <= ").push_bind(u);
    }
}

pub(super) async fn count_dead(pool: &PgPool, f: &ReplayFilter) -> StoreResult<u64> {
    let mut b: QueryBuilder<Postgres> =
        QueryBuilder::new("SELECT count(*) FROM deliveries_done WHERE ");
    push_dead_filter(&mut b, f);
    let n: i64 = b
        .build()
        .fetch_one(pool)
        .await
        .map_err(map_err)?
        .try_get(0)
        .map_err(map_err)?;
    Ok(n as u64)
}

/// Oldest open delivery per destination and dead counts.
pub(super) async fn oldest_and_dead(
    pool: &PgPool,
    destinations: &[String],
) -> StoreResult<(HashMap<String, i64>, HashMap<String, u64>)> {
    let oldest: HashMap<String, i64> = sqlx::query(
        "SELECT d.name, (SELECT created_at FROM deliveries WHERE destination = d.name ORDER BY id LIMIT 1)
         FROM unnest($1::text[]) AS d(name)",
    )
    .bind(destinations)
    .fetch_all(pool)
    .await
    .map_err(map_err)?
    .into_iter()
    .filter_map(|r| match r.try_get::<Option<i64>, _>(1) {
        Ok(t) => t.map(|t| r.try_get(0).map(|d| (d, t))),
        Err(e) => Some(Err(e)),
    })
    .collect::<Result<_, _>>()
    .map_err(map_err)?;
    let dead: HashMap<String, u64> = sqlx::query(
        "SELECT destination, count(*) FROM deliveries_done WHERE status = 3 GROUP BY destination",
    )
    .fetch_all(pool)
    .await
    .map_err(map_err)?
    .into_iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64)))
    .collect::<Result<_, sqlx::Error>>()
    .map_err(map_err)?;
    Ok((oldest, dead))
}
