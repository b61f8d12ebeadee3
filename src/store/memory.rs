//! An in-memory store for tests: the same queue semantics as
//! [`SqliteStore`](super::sqlite::SqliteStore), held in plain collections behind
//! one lock, so dispatcher tests run on paused tokio time without a database
//! thread in the way.
//!
//! **Not durable.** Everything is lost when the value is dropped, and nothing is
//! ever synced anywhere: it exists for tests and is deliberately not a
//! `storage.backend` the config can select.
//!
//! Invariants (the same as the embedded store's, checked by the
//! [`conformance`](super::conformance) suite and the model check):
//! - Every call runs under one lock, so each is atomic: `append`'s dedup check
//!   and insert, a lease's pick and mark, a completion and the promotion it causes.
//! - Per (destination, ordering key) at most one live delivery is pending; later
//!   ones are queued and promoted in id order when it finishes.
//! - A lease lasts until `complete`, `release`, or the caller's `now` passing
//!   its end (`now + lease_ms` at lease time).
//! - Lookups scan: the store is sized for tests, not for backlogs.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, MutexGuard};

use super::*;
use crate::config::Priority;

/// One delivery row: the queue entry and its attempt log.
#[derive(Debug, Clone)]
struct Delivery {
    id: i64,
    /// Sequence number of its message.
    seq: i64,
    destination: String,
    status: DeliveryStatus,
    priority: Priority,
    due_at: Millis,
    ordering_key: Option<String>,
    attempts: u32,
    /// `attempts` when the delivery was last replayed (the retry schedule restarts there).
    retry_base: u32,
    created_at: Millis,
    finished_at: Option<Millis>,
    /// The delivery a replay made in place of this dead one.
    replayed_by: Option<i64>,
    /// When the current lease ends, while leased.
    lease_until: Option<Millis>,
    /// Recorded attempts by number (a number recorded twice keeps the last).
    log: BTreeMap<u32, AttemptInfo>,
}

impl Delivery {
    fn is_live(&self) -> bool {
        matches!(
            self.status,
            DeliveryStatus::Pending | DeliveryStatus::Queued
        )
    }

    fn leased_at(&self, now: Millis) -> bool {
        self.lease_until.is_some_and(|until| now < until)
    }

    fn info(&self, message_id: MessageId, with_log: bool) -> DeliveryInfo {
        DeliveryInfo {
            id: self.id,
            message_id,
            destination: self.destination.clone(),
            status: self.status,
            attempts: self.attempts,
            next_attempt_at: (self.status == DeliveryStatus::Pending).then_some(self.due_at),
            created_at: self.created_at,
            finished_at: self.finished_at,
            ordering_key: self.ordering_key.clone(),
            priority: self.priority.as_str(),
            replayed_by: self.replayed_by,
            attempt_log: with_log.then(|| self.log.values().cloned().collect()),
        }
    }
}

/// Everything the store holds.
#[derive(Default)]
struct Tables {
    /// Messages by sequence number (ingest order).
    messages: BTreeMap<i64, Arc<StoredMessage>>,
    /// Message id to sequence number.
    seq_of: HashMap<MessageId, i64>,
    /// Deliveries by id (creation order).
    deliveries: BTreeMap<i64, Delivery>,
    /// (source, key) to the first message's id and when the key expires.
    dedup: HashMap<(String, String), (MessageId, Millis)>,
    states: HashMap<String, DestinationState>,
    stored: BTreeMap<String, StoredDestination>,
    /// Transformations made through the API.
    transforms: BTreeMap<String, StoredTransform>,
    /// Alert channels made through the API.
    channels: BTreeMap<String, StoredAlertChannel>,
    /// Alerts, oldest first.
    alerts: VecDeque<StoredAlert>,
    /// Records of the tenants' API by (kind, tenant, id).
    records: BTreeMap<(String, String, String), TenantRecord>,
    next_seq: i64,
    next_delivery: i64,
}

impl Tables {
    /// The message of a sequence number (present while any of its deliveries
    /// is); a delivery without its message is a corrupt row, never given an
    /// invented id.
    fn message_id(&self, seq: i64) -> StoreResult<MessageId> {
        self.messages.get(&seq).map(|m| m.id).ok_or_else(|| {
            StoreError::Corrupt(
                super::corrupt::CorruptRow {
                    table: "deliveries",
                    column: "message",
                    value: seq.to_string(),
                }
                .emit(),
            )
        })
    }

    /// Pending when the key has no live delivery at this destination, else queued.
    fn key_status(&self, destination: &str, key: Option<&str>) -> DeliveryStatus {
        let busy = key.is_some_and(|k| {
            self.deliveries.values().any(|d| {
                d.is_live() && d.destination == destination && d.ordering_key.as_deref() == Some(k)
            })
        });
        if busy {
            DeliveryStatus::Queued
        } else {
            DeliveryStatus::Pending
        }
    }

    /// Makes the oldest queued delivery of a key pending, if the key has no
    /// pending one; true if it did.
    fn promote(&mut self, destination: &str, key: &str) -> bool {
        let of_key = |d: &&mut Delivery| {
            d.destination == destination && d.ordering_key.as_deref() == Some(key)
        };
        if self
            .deliveries
            .values_mut()
            .filter(of_key)
            .any(|d| d.status == DeliveryStatus::Pending)
        {
            return false;
        }
        match self
            .deliveries
            .values_mut()
            .filter(of_key)
            .find(|d| d.status == DeliveryStatus::Queued)
        {
            Some(next) => {
                next.status = DeliveryStatus::Pending;
                true
            }
            None => false,
        }
    }

    /// Adds a live delivery of message `seq`; returns its id and status.
    fn insert_delivery(
        &mut self,
        seq: i64,
        d: &NewDelivery,
        created_at: Millis,
    ) -> (i64, DeliveryStatus) {
        self.next_delivery += 1;
        let id = self.next_delivery;
        let status = self.key_status(&d.destination, d.ordering_key.as_deref());
        self.deliveries.insert(
            id,
            Delivery {
                id,
                seq,
                destination: d.destination.clone(),
                status,
                priority: d.priority,
                due_at: d.due_at,
                ordering_key: d.ordering_key.clone(),
                attempts: 0,
                retry_base: 0,
                created_at,
                finished_at: None,
                replayed_by: None,
                lease_until: None,
                log: BTreeMap::new(),
            },
        );
        (id, status)
    }

    /// Count and derived status ([`MessageStatus::derive`]) of a message's deliveries.
    fn message_summary(&self, seq: i64) -> (i64, MessageStatus) {
        let mine: Vec<&Delivery> = self.deliveries.values().filter(|d| d.seq == seq).collect();
        let status = MessageStatus::derive(
            mine.iter()
                .map(|d| (d.id, d.destination.as_str(), d.status)),
        );
        (mine.len() as i64, status)
    }

    fn summary(&self, m: &StoredMessage, seq: i64) -> MessageSummary {
        let (deliveries, status) = self.message_summary(seq);
        MessageSummary {
            id: m.id,
            source: m.source.clone(),
            event_type: m.event_type.clone(),
            received_at: m.received_at,
            status,
            deliveries,
        }
    }

    /// Dead deliveries a replay filter matches, in id order.
    fn dead_matching<'a>(&'a self, f: &'a ReplayFilter) -> impl Iterator<Item = &'a Delivery> {
        self.deliveries.values().filter(move |d| {
            d.status == DeliveryStatus::Dead
                && f.destination.as_ref().is_none_or(|x| *x == d.destination)
                && f.since
                    .is_none_or(|s| d.finished_at.is_some_and(|t| t >= s))
                && f.until
                    .is_none_or(|u| d.finished_at.is_some_and(|t| t <= u))
        })
    }
}

/// The in-memory store. Cloning shares it.
#[derive(Clone, Default)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
    wakeups: Arc<Wakeups>,
    closed: Arc<AtomicBool>,
    /// Leases held by pull consumers (over the rows' own leases).
    pulls: Arc<pull::LocalPulls>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tables, unless the store is closed.
    fn open(&self) -> StoreResult<MutexGuard<'_, Tables>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        Ok(self.tables.lock())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn append(&self, msg: NewMessage) -> StoreResult<Appended> {
        let mut t = self.open()?;
        if let Some(d) = &msg.dedup {
            let k = (msg.source.clone(), d.key.clone());
            if let Some((first, expires)) = t.dedup.get(&k) {
                if *expires > msg.received_at {
                    return Ok(Appended::Duplicate(*first));
                }
            }
            t.dedup.insert(k, (msg.id, d.until));
        }
        t.next_seq += 1;
        let seq = t.next_seq;
        t.seq_of.insert(msg.id, seq);
        let mut due_now = Vec::new();
        for d in &msg.deliveries {
            if t.insert_delivery(seq, d, msg.received_at).1 == DeliveryStatus::Pending {
                due_now.push(d.destination.clone());
            }
        }
        t.messages.insert(
            seq,
            Arc::new(StoredMessage {
                id: msg.id,
                source: msg.source,
                event_type: msg.event_type,
                received_at: msg.received_at,
                content_type: msg.content_type,
                headers: msg.headers,
                body: msg.body,
            }),
        );
        drop(t);
        for d in due_now {
            self.wakeups.wake(&d);
        }
        Ok(Appended::Stored(msg.id))
    }

    async fn lease(
        &self,
        destination: &str,
        now: Millis,
        limit: usize,
        lease_ms: i64,
    ) -> StoreResult<LeaseBatch> {
        let mut t = self.open()?;
        let mut due: Vec<&Delivery> = t
            .deliveries
            .values()
            .filter(|d| {
                d.destination == destination
                    && d.status == DeliveryStatus::Pending
                    && d.due_at <= now
                    && !d.leased_at(now)
            })
            .collect();
        due.sort_by_key(|d| (d.priority.rank(), d.due_at, d.id));
        let ids: Vec<i64> = due.iter().take(limit).map(|d| d.id).collect();
        // Like the embedded store, `next_due` looks at every pending delivery
        // not due yet, leased or not.
        let next_due = t
            .deliveries
            .values()
            .filter(|d| {
                d.destination == destination
                    && d.status == DeliveryStatus::Pending
                    && d.due_at > now
            })
            .map(|d| d.due_at)
            .min();
        let mut items = Vec::with_capacity(ids.len());
        for id in &ids {
            let message = {
                let d = &t.deliveries[id];
                t.messages[&d.seq].clone()
            };
            let d = t.deliveries.get_mut(id).expect("picked above");
            d.lease_until = Some(now + lease_ms);
            items.push(Leased {
                delivery_id: d.id,
                destination: d.destination.clone(),
                attempt: d.attempts + 1,
                retry_index: d.attempts.saturating_sub(d.retry_base),
                priority: d.priority,
                ordering_key: d.ordering_key.clone(),
                created_at: d.created_at,
                message,
            });
        }
        Ok(LeaseBatch {
            items,
            next_due,
            held_back: false,
        })
    }

    async fn complete(&self, results: Vec<AttemptResult>) -> StoreResult<()> {
        let mut t = self.open()?;
        let mut woken = HashSet::new();
        for r in results {
            // As in the embedded store: only a pending delivery takes a result
            // (a second result for one that finished changes nothing).
            let Some(d) = t
                .deliveries
                .get_mut(&r.delivery_id)
                .filter(|d| d.status == DeliveryStatus::Pending)
            else {
                continue;
            };
            d.attempts = d.attempts.max(r.attempt);
            d.lease_until = None;
            d.log.insert(
                r.attempt,
                AttemptInfo {
                    attempt: r.attempt,
                    started_at: r.started_at,
                    duration_ms: r.duration_us as f64 / 1000.0,
                    response_status: r.status,
                    response_body: r
                        .response_body
                        .map(|b| String::from_utf8_lossy(&b).into_owned()),
                    error: r.error,
                    response_headers: crate::store::response_headers(r.response_headers.as_deref()),
                },
            );
            match r.next {
                Next::Retry(at) => {
                    d.due_at = at;
                    woken.insert(d.destination.clone());
                }
                Next::Delivered | Next::Dead | Next::Dropped | Next::TransformFailed => {
                    d.status = r.next.final_status().expect("a final outcome");
                    d.finished_at = Some(r.started_at);
                    let (dest, key, seq) = (d.destination.clone(), d.ordering_key.clone(), d.seq);
                    if r.next == Next::Dead {
                        // Replayed while in flight: the replay stands for it.
                        let newest = t
                            .deliveries
                            .range(r.delivery_id + 1..)
                            .rev()
                            .find(|(_, n)| n.seq == seq && n.destination == dest)
                            .map(|(id, _)| *id);
                        if let Some(newer) = newest {
                            let d = t.deliveries.get_mut(&r.delivery_id).expect("just read");
                            d.status = DeliveryStatus::Replayed;
                            d.replayed_by = Some(newer);
                        }
                    }
                    if let Some(k) = key {
                        if t.promote(&dest, &k) {
                            woken.insert(dest);
                        }
                    }
                }
            }
        }
        drop(t);
        for d in woken {
            self.wakeups.wake(&d);
        }
        Ok(())
    }

    async fn release(&self, delivery_ids: Vec<i64>) -> StoreResult<()> {
        let mut t = self.open()?;
        for id in delivery_ids {
            if let Some(d) = t.deliveries.get_mut(&id) {
                d.lease_until = None;
            }
        }
        drop(t);
        self.wakeups.wake_all();
        Ok(())
    }

    fn local_pulls(&self) -> Option<&pull::LocalPulls> {
        Some(&self.pulls)
    }

    async fn delivery_destination(&self, delivery_id: i64) -> StoreResult<Option<String>> {
        let t = self.open()?;
        Ok(t.deliveries
            .get(&delivery_id)
            .map(|d| d.destination.clone()))
    }

    fn pending_estimate(&self) -> u64 {
        let t = self.tables.lock();
        t.deliveries.values().filter(|d| d.is_live()).count() as u64
    }

    fn wakeups(&self) -> Arc<Wakeups> {
        self.wakeups.clone()
    }

    async fn message(&self, id: MessageId) -> StoreResult<MessageDetail> {
        let t = self.open()?;
        let seq = *t.seq_of.get(&id).ok_or(StoreError::NotFound)?;
        let message = t.messages[&seq].clone();
        let deliveries = t
            .deliveries
            .values()
            .filter(|d| d.seq == seq)
            .map(|d| d.info(id, true))
            .collect();
        Ok(MessageDetail {
            summary: t.summary(&message, seq),
            message: (*message).clone(),
            deliveries,
        })
    }

    async fn messages(&self, q: &MessageQuery) -> StoreResult<Page<MessageSummary>> {
        let t = self.open()?;
        let (limit, before) = page_bounds(q.limit, q.cursor.as_deref())?;
        let mut items = Vec::new();
        let mut last = before;
        let keyed: Option<Vec<i64>> = q.dedup_key.as_ref().map(|key| {
            t.dedup
                .iter()
                .filter(|((_, k), _)| k == key)
                .filter_map(|(_, (id, _))| t.seq_of.get(id).copied())
                .collect()
        });
        for (seq, m) in t.messages.range(..before).rev() {
            if keyed.as_ref().is_some_and(|k| !k.contains(seq))
                || !q.admits(&m.source, m.event_type.as_deref(), m.received_at)
            {
                continue;
            }
            let summary = t.summary(m, *seq);
            if q.status.is_some_and(|s| s != summary.status) {
                continue;
            }
            items.push(summary);
            last = *seq;
            if items.len() >= limit {
                break;
            }
        }
        let next_cursor = (items.len() >= limit).then(|| encode_cursor(last));
        Ok(Page { items, next_cursor })
    }

    async fn deliveries(&self, q: &DeliveryQuery) -> StoreResult<Page<DeliveryInfo>> {
        let t = self.open()?;
        let (limit, before) = page_bounds(q.limit, q.cursor.as_deref())?;
        let items: Vec<DeliveryInfo> = t
            .deliveries
            .range(..before)
            .rev()
            .map(|(_, d)| d)
            .filter(|d| q.destination.as_ref().is_none_or(|x| *x == d.destination))
            .filter(|d| q.status.is_none_or(|s| s == d.status))
            .take(limit)
            .map(|d| Ok(d.info(t.message_id(d.seq)?, false)))
            .collect::<StoreResult<_>>()?;
        let next_cursor = (items.len() >= limit)
            .then(|| items.last().map(|d| encode_cursor(d.id)))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    async fn replay_message(
        &self,
        id: MessageId,
        destinations: &[String],
        now: Millis,
    ) -> StoreResult<Vec<i64>> {
        let mut t = self.open()?;
        let seq = *t.seq_of.get(&id).ok_or(StoreError::NotFound)?;
        let mut ids = Vec::with_capacity(destinations.len());
        for dest in destinations {
            // The key and priority of the message's latest delivery there, if any.
            let prior = t
                .deliveries
                .values()
                .rev()
                .find(|d| d.seq == seq && d.destination == *dest);
            let new = NewDelivery {
                destination: dest.clone(),
                due_at: now,
                priority: prior.map_or(Priority::Normal, |d| d.priority),
                ordering_key: prior.and_then(|d| d.ordering_key.clone()),
            };
            let new_id = t.insert_delivery(seq, &new, now).0;
            // The dead ones it replaces leave the dead-letter queue.
            for d in t.deliveries.values_mut() {
                if d.seq == seq && d.destination == *dest && d.status == DeliveryStatus::Dead {
                    d.status = DeliveryStatus::Replayed;
                    d.replayed_by = Some(new_id);
                }
            }
            ids.push(new_id);
        }
        drop(t);
        for dest in destinations {
            self.wakeups.wake(dest);
        }
        Ok(ids)
    }

    async fn message_destinations(&self, id: MessageId) -> StoreResult<Vec<String>> {
        let t = self.open()?;
        let seq = *t.seq_of.get(&id).ok_or(StoreError::NotFound)?;
        let mut out: Vec<String> = Vec::new();
        // Deliveries iterate in id order, so each destination comes at its first.
        for d in t.deliveries.values().filter(|d| d.seq == seq) {
            if !out.contains(&d.destination) {
                out.push(d.destination.clone());
            }
        }
        Ok(out)
    }

    async fn count_dead(&self, f: &ReplayFilter) -> StoreResult<u64> {
        let t = self.open()?;
        Ok(t.dead_matching(f).count() as u64)
    }

    async fn replay_dead_batch(
        &self,
        f: &ReplayFilter,
        now: Millis,
        limit: usize,
    ) -> StoreResult<usize> {
        let mut t = self.open()?;
        let ids: Vec<i64> = t.dead_matching(f).take(limit).map(|d| d.id).collect();
        let mut revived = Vec::with_capacity(ids.len());
        // One at a time: a revived delivery makes its key busy for the next.
        for id in ids {
            let d = &t.deliveries[&id];
            let status = t.key_status(&d.destination, d.ordering_key.as_deref());
            let d = t.deliveries.get_mut(&id).expect("listed above");
            d.status = status;
            d.due_at = now;
            d.retry_base = d.attempts;
            d.finished_at = None;
            revived.push(d.destination.clone());
        }
        drop(t);
        for d in &revived {
            self.wakeups.wake(d);
        }
        Ok(revived.len())
    }

    async fn destination_stats(&self) -> StoreResult<HashMap<String, DestinationStats>> {
        let t = self.open()?;
        let mut out: HashMap<String, DestinationStats> = HashMap::new();
        for d in t.deliveries.values() {
            let s = out.entry(d.destination.clone()).or_default();
            if d.is_live() {
                s.pending += 1;
                // Ids grow with time: the first live one seen is the oldest.
                s.oldest_pending_at.get_or_insert(d.created_at);
            } else if d.status == DeliveryStatus::Dead {
                s.dead += 1;
            }
        }
        Ok(out)
    }

    async fn destination_states(&self) -> StoreResult<HashMap<String, DestinationState>> {
        Ok(self.open()?.states.clone())
    }

    async fn put_destination_state(&self, name: &str, state: &DestinationState) -> StoreResult<()> {
        self.open()?.states.insert(name.to_string(), state.clone());
        self.wakeups.wake(name);
        Ok(())
    }

    async fn stored_destinations(&self) -> StoreResult<Vec<StoredDestination>> {
        Ok(self.open()?.stored.values().cloned().collect())
    }

    async fn put_stored_destination(&self, d: &StoredDestination, create: bool) -> StoreResult<()> {
        put_row(&mut self.open()?.stored, d, create)
    }

    async fn delete_stored_destination(&self, name: &str) -> StoreResult<()> {
        delete_row(&mut self.open()?.stored, name)
    }

    async fn stored_transforms(&self) -> StoreResult<Vec<StoredTransform>> {
        Ok(self.open()?.transforms.values().cloned().collect())
    }

    async fn put_stored_transform(&self, t: &StoredTransform, create: bool) -> StoreResult<()> {
        put_row(&mut self.open()?.transforms, t, create)
    }

    async fn delete_stored_transform(&self, name: &str) -> StoreResult<()> {
        delete_row(&mut self.open()?.transforms, name)
    }

    async fn stored_alert_channels(&self) -> StoreResult<Vec<StoredAlertChannel>> {
        Ok(self.open()?.channels.values().cloned().collect())
    }

    async fn put_stored_alert_channel(
        &self,
        c: &StoredAlertChannel,
        create: bool,
    ) -> StoreResult<()> {
        put_row(&mut self.open()?.channels, c, create)
    }

    async fn delete_stored_alert_channel(&self, name: &str) -> StoreResult<()> {
        delete_row(&mut self.open()?.channels, name)
    }

    async fn put_alert(&self, alert: &StoredAlert) -> StoreResult<()> {
        let mut t = self.open()?;
        if t.alerts.iter().any(|a| a.id == alert.id) {
            return Ok(());
        }
        t.alerts.push_back(alert.clone());
        t.alerts.make_contiguous().sort_by_key(|a| a.at);
        while t.alerts.len() > ALERTS_KEPT {
            t.alerts.pop_front();
        }
        Ok(())
    }

    async fn alert_history(&self, limit: usize) -> StoreResult<Vec<StoredAlert>> {
        Ok(self
            .open()?
            .alerts
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn tenant_record(
        &self,
        kind: &str,
        tenant: &str,
        key: &str,
    ) -> StoreResult<Option<TenantRecord>> {
        let t = self.open()?;
        let by_id = t
            .records
            .get(&(kind.to_string(), tenant.to_string(), key.to_string()));
        Ok(by_id
            .or_else(|| {
                t.records
                    .values()
                    .find(|r| r.kind == kind && r.tenant == tenant && r.uid.as_deref() == Some(key))
            })
            .cloned())
    }

    async fn tenant_records(&self, q: &RecordQuery<'_>) -> StoreResult<Vec<TenantRecord>> {
        let t = self.open()?;
        let mine = t
            .records
            .values()
            .filter(|r| r.kind == q.kind && r.tenant == q.tenant);
        let limit = q.limit.clamp(1, 1000);
        Ok(match q.before {
            Some(b) => {
                let mut v: Vec<_> = mine.filter(|r| r.id.as_str() < b).collect();
                let skip = v.len().saturating_sub(limit);
                v.drain(..skip);
                v.into_iter().cloned().collect()
            }
            None => mine
                .filter(|r| q.after.is_none_or(|a| r.id.as_str() > a))
                .take(limit)
                .cloned()
                .collect(),
        })
    }

    async fn put_tenant_record(&self, r: &TenantRecord, create: bool) -> StoreResult<()> {
        let mut t = self.open()?;
        let key = (r.kind.clone(), r.tenant.clone(), r.id.clone());
        let uid_taken = r.uid.is_some()
            && t.records.values().any(|o| {
                o.kind == r.kind && o.tenant == r.tenant && o.uid == r.uid && o.id != r.id
            });
        match (t.records.get_mut(&key), create) {
            (Some(_), true) => Err(StoreError::Conflict),
            (None, false) => Err(StoreError::NotFound),
            _ if uid_taken => Err(StoreError::Conflict),
            (Some(old), false) => {
                let created_at = old.created_at;
                *old = r.clone();
                old.created_at = created_at;
                Ok(())
            }
            (None, true) => {
                t.records.insert(key, r.clone());
                Ok(())
            }
        }
    }

    async fn delete_tenant_record(&self, kind: &str, tenant: &str, id: &str) -> StoreResult<()> {
        let key = (kind.to_string(), tenant.to_string(), id.to_string());
        match self.open()?.records.remove(&key) {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound),
        }
    }

    async fn cleanup(&self, cutoff: Millis, now: Millis, limit: usize) -> StoreResult<usize> {
        let mut t = self.open()?;
        let live: HashSet<i64> = t
            .deliveries
            .values()
            .filter(|d| d.is_live())
            .map(|d| d.seq)
            .collect();
        let gone: Vec<(i64, MessageId)> = t
            .messages
            .iter()
            .take_while(|(_, m)| m.received_at < cutoff)
            .filter(|(seq, _)| !live.contains(seq))
            .take(limit)
            .map(|(seq, m)| (*seq, m.id))
            .collect();
        let gone_seqs: HashSet<i64> = gone.iter().map(|g| g.0).collect();
        t.deliveries.retain(|_, d| !gone_seqs.contains(&d.seq));
        for (seq, id) in &gone {
            t.messages.remove(seq);
            t.seq_of.remove(id);
        }
        let expired: Vec<(String, String)> = t
            .dedup
            .iter()
            .filter(|(_, (_, expires))| *expires <= now)
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            t.dedup.remove(k);
        }
        Ok(gone.len() + expired.len())
    }

    async fn ping(&self) -> StoreResult<()> {
        self.open().map(|_| ())
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Creates (`Conflict` if it exists) or replaces (`NotFound` if missing) a
/// stored API destination or transformation.
fn put_row(
    rows: &mut BTreeMap<String, StoredDestination>,
    d: &StoredDestination,
    create: bool,
) -> StoreResult<()> {
    match (rows.get_mut(&d.name), create) {
        (Some(_), true) => Err(StoreError::Conflict),
        (None, false) => Err(StoreError::NotFound),
        (Some(old), false) => {
            old.spec = d.spec.clone();
            old.updated_at = d.updated_at;
            Ok(())
        }
        (None, true) => {
            rows.insert(d.name.clone(), d.clone());
            Ok(())
        }
    }
}

/// Removes a stored API destination or transformation (`NotFound` if missing).
fn delete_row(rows: &mut BTreeMap<String, StoredDestination>, name: &str) -> StoreResult<()> {
    match rows.remove(name) {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_delivery_without_its_message_is_a_corrupt_row_not_a_new_id() {
        let store = MemoryStore::new();
        store
            .append(conformance::msg("s", &["d"], None))
            .await
            .unwrap();
        // What a damaged table would hold: the delivery, but not its message.
        store.tables.lock().messages.clear();
        let q = DeliveryQuery {
            destination: None,
            status: None,
            limit: 10,
            cursor: None,
        };
        match store.deliveries(&q).await {
            Err(StoreError::Corrupt(row)) => assert_eq!(row.table, "deliveries"),
            other => panic!("expected a corrupt row, got {other:?}"),
        }
    }
}
