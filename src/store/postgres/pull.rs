//! Pull leases on the shared queue: the lease's owner is the row's
//! `lease_owner` (`pull:…`, never a node's id), so a consumer may send its
//! results to any node.
//!
//! A result is recorded in two steps: the node *adopts* the lease (one
//! statement: the owner still holds it, at this destination, and it has not
//! run out), which makes it an ordinary lease of this node, then records it
//! through the writer like its own attempts. If the write fails the lease is
//! handed back to its owner, so the consumer can send the result again.

use std::collections::{HashMap, HashSet};

use sqlx::{PgPool, Row};

use super::listen::CHANNEL;
use super::text;
use crate::store::corrupt;
use crate::store::pull::OWNER_PREFIX;
use crate::store::{ExpiredPull, Millis, PullOutcome};

/// How long an adopted lease is kept at least, so that it cannot run out and
/// go to another consumer between the adoption and the write of its result.
const ADOPTED_FOR_MS: i64 = 60_000;

/// Makes the held leases among `(id, owner)` this node's; returns each
/// adopted lease with the end it had before, which `disown` puts back.
pub(super) async fn adopt(
    pool: &PgPool,
    node: &str,
    destination: &str,
    leases: &[(i64, String)],
    expired_ok: bool,
) -> Result<HashMap<i64, Option<i64>>, sqlx::Error> {
    let (ids, owners): (Vec<i64>, Vec<String>) = leases.iter().cloned().unzip();
    // `o` locks each row and reads its end before the update changes it.
    let rows = sqlx::query(
        "WITH o AS (SELECT id, lease_until FROM deliveries WHERE id = ANY($1) FOR UPDATE)
         UPDATE deliveries d
         SET lease_owner = $3, lease_until = greatest(d.lease_until, hookgate_now_ms() + $6)
         FROM unnest($1::int8[], $2::text[]) AS u(id, owner), o
         WHERE d.id = u.id AND o.id = u.id AND d.status = 0 AND d.lease_owner = u.owner
           AND d.destination = $4 AND ($5 OR d.lease_until > hookgate_now_ms())
         RETURNING d.id, o.lease_until",
    )
    .bind(&ids)
    .bind(&owners)
    .bind(node)
    .bind(text(destination))
    .bind(expired_ok)
    .bind(ADOPTED_FOR_MS)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Gives adopted leases back to their owners with the ends they had (their
/// results were not written): `(id, owner, lease_until before the adoption)`.
pub(super) async fn disown(
    pool: &PgPool,
    node: &str,
    leases: &[(i64, String, Option<i64>)],
) -> Result<(), sqlx::Error> {
    let ids: Vec<i64> = leases.iter().map(|l| l.0).collect();
    let owners: Vec<String> = leases.iter().map(|l| l.1.clone()).collect();
    let ends: Vec<Option<i64>> = leases.iter().map(|l| l.2).collect();
    sqlx::query(
        "UPDATE deliveries d SET lease_owner = u.owner, lease_until = u.until
         FROM unnest($1::int8[], $2::text[], $4::int8[]) AS u(id, owner, until)
         WHERE d.id = u.id AND d.lease_owner = $3",
    )
    .bind(&ids)
    .bind(&owners)
    .bind(node)
    .bind(&ends)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends the held leases among `(id, owner)` without an attempt; returns the
/// ids released (and wakes the destination's consumers on every node).
pub(super) async fn release(
    pool: &PgPool,
    destination: &str,
    leases: &[(i64, String)],
) -> Result<HashSet<i64>, sqlx::Error> {
    let (ids, owners): (Vec<i64>, Vec<String>) = leases.iter().cloned().unzip();
    let rows = sqlx::query(
        "WITH r AS (
             UPDATE deliveries d SET lease_until = NULL, lease_owner = NULL
             FROM unnest($1::int8[], $2::text[]) AS u(id, owner)
             WHERE d.id = u.id AND d.status = 0 AND d.lease_owner = u.owner AND d.destination = $3
             RETURNING d.id),
         n AS (SELECT pg_notify($4, $3) FROM (SELECT 1 FROM r LIMIT 1) x)
         SELECT id FROM r, (SELECT count(*) FROM n) c",
    )
    .bind(&ids)
    .bind(&owners)
    .bind(text(destination))
    .bind(CHANNEL)
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// The outcome of each of `leases` that was not applied: another
/// destination's delivery, an expired lease its owner still holds, or a
/// lease no longer held.
pub(super) async fn classify(
    pool: &PgPool,
    destination: &str,
    leases: &[(i64, String)],
) -> Result<HashMap<i64, PullOutcome>, sqlx::Error> {
    let ids: Vec<i64> = leases.iter().map(|(id, _)| *id).collect();
    let rows = sqlx::query(
        "SELECT id, destination, lease_owner FROM deliveries WHERE id = ANY($1)
         UNION ALL
         SELECT id, destination, NULL FROM deliveries_done WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut found: HashMap<i64, (String, Option<String>)> = HashMap::new();
    for r in rows {
        found.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
    }
    let dest = text(destination);
    Ok(leases
        .iter()
        .map(|(id, owner)| {
            let outcome = match found.get(id) {
                Some((d, _)) if *d != dest => PullOutcome::OtherDestination,
                Some((_, Some(held_by))) if held_by == owner => PullOutcome::Expired,
                _ => PullOutcome::NotHeld,
            };
            (*id, outcome)
        })
        .collect())
}

/// Up to `limit` pull leases of `destination` that ran out by the database's clock.
pub(super) async fn expired(
    pool: &PgPool,
    destination: &str,
    limit: usize,
) -> Result<Vec<ExpiredPull>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT d.id, d.lease_owner, d.attempts, d.retry_base, d.created_at, m.id
         FROM deliveries d JOIN messages m ON m.seq = d.message_seq
         WHERE d.destination = $1 AND d.status = 0 AND d.lease_owner LIKE $2
           AND d.lease_until <= hookgate_now_ms()
         ORDER BY d.id LIMIT $3",
    )
    .bind(text(destination))
    .bind(format!("{OWNER_PREFIX}%"))
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let attempts: i32 = r.try_get(2)?;
            let base: i32 = r.try_get(3)?;
            let message_id: String = r.try_get(5)?;
            Ok(ExpiredPull {
                message_id: corrupt::message_id("messages", &message_id).map_err(super::corrupt)?,
                delivery_id: r.try_get(0)?,
                owner: r.try_get(1)?,
                attempt: attempts as u32 + 1,
                retry_index: attempts.saturating_sub(base).max(0) as u32,
                created_at: r.try_get::<Millis, _>(4)?,
            })
        })
        .collect()
}

/// The destination of a delivery, live or finished.
pub(super) async fn destination_of(
    pool: &PgPool,
    delivery_id: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT destination FROM deliveries WHERE id = $1
         UNION ALL
         SELECT destination FROM deliveries_done WHERE id = $1
         LIMIT 1",
    )
    .bind(delivery_id)
    .fetch_optional(pool)
    .await
}
