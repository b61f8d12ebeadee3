//! Pull leases: deliveries of a pull destination leased by a consumer over the
//! admin API rather than sent by a dispatcher.
//!
//! A pull lease names its *owner* (a random `pull:…` string handed to the
//! consumer inside its lease token) and ends at a time. The consumer's result
//! applies only while the lease is held by that owner, so a result cannot land
//! twice, nor on a lease that ran out and went to someone else. On PostgreSQL
//! the owner is the row's `lease_owner`, so any node can take the result; the
//! single-process stores keep the holds in memory ([`LocalPulls`]), which end
//! with the process like their other leases.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::{AttemptResult, LeaseBatch, LeaseLimits, Millis, Store, StoreResult};

/// The owner strings of pull leases start with this (a node's id never does).
pub const OWNER_PREFIX: &str = "pull:";

/// A consumer's result for one leased delivery.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// The lease's owner, from the token.
    pub owner: String,
    /// The attempt as the consumer reported it.
    pub result: AttemptResult,
}

/// A consumer's release of one lease: the delivery is due again, no attempt recorded.
#[derive(Debug, Clone)]
pub struct PullRelease {
    /// The lease's owner, from the token.
    pub owner: String,
    /// The delivery.
    pub delivery_id: i64,
}

/// What became of one result or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullOutcome {
    /// Recorded (or released).
    Applied,
    /// The lease is held by the owner but ran out; nothing applied.
    Expired,
    /// The delivery belongs to another destination; nothing applied.
    OtherDestination,
    /// The owner does not hold the delivery (its lease ended: acknowledged,
    /// released, expired and swept, or the gateway restarted); nothing applied.
    NotHeld,
}

/// A pull lease that ran out without a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredPull {
    /// The delivery.
    pub delivery_id: i64,
    /// Who held it.
    pub owner: String,
    /// The number of the attempt the lease was for.
    pub attempt: u32,
    /// Its position in the retry schedule.
    pub retry_index: u32,
    /// When the delivery was created (for lag).
    pub created_at: Millis,
    /// Its message.
    pub message_id: super::MessageId,
}

/// How long the inner store's lease of a pull delivery lasts: the holds here
/// end it (a store that expires leases by itself must not do it first).
const INNER_LEASE_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// What a consumer's pull asks a [`LocalPulls`] for (the arguments of
/// [`Store::lease_pull`]).
pub struct PullAsk<'a> {
    /// The destination.
    pub destination: &'a str,
    /// The lease's owner.
    pub owner: &'a str,
    /// The caller's now.
    pub now: Millis,
    /// Deliveries at most.
    pub limit: usize,
    /// How long the leases last.
    pub lease_ms: i64,
    /// The destination's limits.
    pub limits: &'a LeaseLimits,
}

/// One delivery held by a pull consumer.
#[derive(Debug, Clone)]
struct Hold {
    owner: String,
    destination: String,
    until: Millis,
    attempt: u32,
    retry_index: u32,
    created_at: Millis,
    message_id: super::MessageId,
}

/// The pull leases of a store owned by one process, held in memory over the
/// store's own leases (which never end by themselves there).
#[derive(Default)]
pub struct LocalPulls {
    holds: Mutex<HashMap<i64, Hold>>,
    /// One lease at a time, so two consumers cannot both take the last free
    /// slot of `max_in_flight`.
    leasing: tokio::sync::Mutex<()>,
}

impl LocalPulls {
    /// Leases up to `limit` due deliveries of `destination` for `owner` until
    /// `now + lease_ms`, with at most `limits.max_in_flight` held at once.
    /// The rate limit is the caller's (one process: its bucket is exact).
    pub async fn lease(
        &self,
        store: &(impl Store + ?Sized),
        ask: PullAsk<'_>,
    ) -> StoreResult<LeaseBatch> {
        let PullAsk {
            destination,
            owner,
            now,
            limit,
            lease_ms,
            limits,
        } = ask;
        let _one = self.leasing.lock().await;
        let held = self
            .holds
            .lock()
            .values()
            .filter(|h| h.destination == destination)
            .count();
        let free = (limits.max_in_flight as usize).saturating_sub(held);
        let grant = limit.min(free);
        if grant == 0 {
            return Ok(LeaseBatch {
                items: Vec::new(),
                next_due: None,
                held_back: limit > 0,
            });
        }
        let mut batch = store.lease(destination, now, grant, INNER_LEASE_MS).await?;
        batch.held_back = grant < limit;
        let mut holds = self.holds.lock();
        for l in &batch.items {
            holds.insert(
                l.delivery_id,
                Hold {
                    owner: owner.to_string(),
                    destination: destination.to_string(),
                    until: now.saturating_add(lease_ms),
                    attempt: l.attempt,
                    retry_index: l.retry_index,
                    created_at: l.created_at,
                    message_id: l.message.id,
                },
            );
        }
        Ok(batch)
    }

    /// Takes the holds the items name (held by their owner, at `destination`,
    /// not expired unless `expired_ok`), returning each item's outcome.
    fn take<T>(
        &self,
        destination: &str,
        items: &[T],
        key: impl Fn(&T) -> (&str, i64),
        now: Millis,
        expired_ok: bool,
    ) -> (Vec<PullOutcome>, Vec<(i64, Hold)>) {
        let mut holds = self.holds.lock();
        let mut taken = Vec::new();
        let outcomes = items
            .iter()
            .map(|item| {
                let (owner, id) = key(item);
                let outcome = match holds.get(&id) {
                    None => PullOutcome::NotHeld,
                    Some(h) if h.owner != owner => PullOutcome::NotHeld,
                    Some(h) if h.destination != destination => PullOutcome::OtherDestination,
                    Some(h) if h.until <= now && !expired_ok => PullOutcome::Expired,
                    Some(_) => PullOutcome::Applied,
                };
                if outcome == PullOutcome::Applied {
                    taken.push((id, holds.remove(&id).expect("checked above")));
                }
                outcome
            })
            .collect();
        (outcomes, taken)
    }

    /// Puts back holds taken for a write that failed.
    fn restore(&self, taken: Vec<(i64, Hold)>) {
        let mut holds = self.holds.lock();
        for (id, h) in taken {
            holds.insert(id, h);
        }
    }

    /// Records the results whose leases their owners still hold.
    pub async fn complete(
        &self,
        store: &(impl Store + ?Sized),
        destination: &str,
        results: Vec<PullResult>,
        now: Millis,
        expired_ok: bool,
    ) -> StoreResult<Vec<PullOutcome>> {
        let (outcomes, taken) = self.take(
            destination,
            &results,
            |r| (r.owner.as_str(), r.result.delivery_id),
            now,
            expired_ok,
        );
        let apply: Vec<AttemptResult> = results
            .into_iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == PullOutcome::Applied)
            .map(|(r, _)| r.result)
            .collect();
        if let Err(e) = store.complete(apply).await {
            // Nothing was recorded: the consumer may send the results again.
            self.restore(taken);
            return Err(e);
        }
        Ok(outcomes)
    }

    /// Ends the leases the releases name without an attempt.
    pub async fn release(
        &self,
        store: &(impl Store + ?Sized),
        destination: &str,
        releases: Vec<PullRelease>,
        now: Millis,
    ) -> StoreResult<Vec<PullOutcome>> {
        let (outcomes, taken) = self.take(
            destination,
            &releases,
            |r| (r.owner.as_str(), r.delivery_id),
            now,
            true,
        );
        let ids: Vec<i64> = taken.iter().map(|(id, _)| *id).collect();
        if let Err(e) = store.release(ids).await {
            self.restore(taken);
            return Err(e);
        }
        Ok(outcomes)
    }

    /// Up to `limit` leases of `destination` that ran out by `now`.
    pub fn expired(&self, destination: &str, now: Millis, limit: usize) -> Vec<ExpiredPull> {
        let holds = self.holds.lock();
        let mut out: Vec<ExpiredPull> = holds
            .iter()
            .filter(|(_, h)| h.destination == destination && h.until <= now)
            .map(|(id, h)| ExpiredPull {
                delivery_id: *id,
                owner: h.owner.clone(),
                attempt: h.attempt,
                retry_index: h.retry_index,
                created_at: h.created_at,
                message_id: h.message_id,
            })
            .collect();
        out.sort_by_key(|e| e.delivery_id);
        out.truncate(limit);
        out
    }
}
