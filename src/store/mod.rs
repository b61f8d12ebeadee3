//! The store: messages, their deliveries (which *are* the queue), attempts, dedup
//! keys and destination state, behind one [`Store`] trait with two backends:
//! [`sqlite::SqliteStore`] (embedded, one process) and [`postgres::PgStore`]
//! (several nodes sharing one database). [`memory::MemoryStore`] keeps the same
//! semantics in memory for tests; it is not durable and no config selects it.
//!
//! Invariants every backend keeps (checked by [`conformance`]):
//! - `append` returns only after the message and all its deliveries are committed
//!   and synced, in one transaction, with the dedup check inside it.
//! - A delivery is handed out by `lease` to one holder at a time; a lease ends with
//!   a `complete` that succeeded (an attempt was recorded), `release` (none was made),
//!   or its expiry. A failed `complete` leaves the lease held.
//! - Of the pending deliveries of one (destination, ordering key), only the oldest
//!   can be leased, and not while it is leased.
//! - Time is passed in by the caller (`now`), so tests control it.

pub mod conformance;
pub mod corrupt;
pub mod memory;
pub mod postgres;
pub mod pull;
pub mod sqlite;
pub mod tenants;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;
use ulid::Ulid;

use crate::config::{Priority, RateLimitConfig};

pub use crate::clock::{now_millis, Millis};
pub use pull::{ExpiredPull, PullOutcome, PullRelease, PullResult};
pub use tenants::{RecordQuery, TenantRecord};

/// A message id, written `msg_<ULID>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub Ulid);

impl MessageId {
    /// A new id, unique and roughly time-ordered. There is deliberately no
    /// `Default`: an id is made for a new message, never filled in for one
    /// that could not be read.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        MessageId(Ulid::new())
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "msg_{}", self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MessageId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let u = s.strip_prefix("msg_").ok_or(())?;
        Ulid::from_string(u).map(MessageId).map_err(|_| ())
    }
}

impl Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A dedup key and how long it is remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dedup {
    /// The key (scoped to the message's source).
    pub key: String,
    /// Until when a second message with this key is a duplicate.
    pub until: Millis,
}

/// One delivery to create with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// Destination name.
    pub destination: String,
    /// Not before this time.
    pub due_at: Millis,
    /// Among due deliveries of a destination, higher priority goes first.
    pub priority: Priority,
    /// Deliveries with the same key go one at a time, in ingest order.
    pub ordering_key: Option<String>,
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Its id (kept unless it is a duplicate).
    pub id: MessageId,
    /// Source name (`api` for published events).
    pub source: String,
    /// Event type, when known.
    pub event_type: Option<String>,
    /// When it arrived.
    pub received_at: Millis,
    /// The request's Content-Type.
    pub content_type: Option<String>,
    /// The request's headers, encoded with [`encode_headers`].
    pub headers: Bytes,
    /// The body, byte-exact.
    pub body: Bytes,
    /// Deduplication, if the source has a key for this message.
    pub dedup: Option<Dedup>,
    /// Deliveries to create in the same transaction.
    pub deliveries: Vec<NewDelivery>,
}

/// What `append` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored as a new message.
    Stored(MessageId),
    /// A duplicate of this earlier message; nothing was stored.
    Duplicate(MessageId),
}

impl Appended {
    /// The id to answer with.
    pub fn id(&self) -> MessageId {
        match self {
            Appended::Stored(id) | Appended::Duplicate(id) => *id,
        }
    }
}

/// A stored message, as needed to deliver it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Its id.
    pub id: MessageId,
    /// Source name.
    pub source: String,
    /// Event type, when known.
    pub event_type: Option<String>,
    /// When it arrived.
    pub received_at: Millis,
    /// The original Content-Type.
    pub content_type: Option<String>,
    /// The original headers, encoded.
    pub headers: Bytes,
    /// The body.
    pub body: Bytes,
}

/// A delivery handed to one dispatcher until it completes or releases it.
#[derive(Debug, Clone)]
pub struct Leased {
    /// Delivery id.
    pub delivery_id: i64,
    /// The destination.
    pub destination: String,
    /// The number of this attempt (1-based, over the delivery's whole life).
    pub attempt: u32,
    /// Failed attempts since the delivery was created or last replayed
    /// (the position in the retry schedule).
    pub retry_index: u32,
    /// Priority.
    pub priority: Priority,
    /// Ordering key.
    pub ordering_key: Option<String>,
    /// When the delivery was created (for lag).
    pub created_at: Millis,
    /// The message.
    pub message: Arc<StoredMessage>,
}

/// A batch of leased deliveries and when the next one becomes due.
#[derive(Debug, Default)]
pub struct LeaseBatch {
    /// Deliveries leased now, in the order they should start.
    pub items: Vec<Leased>,
    /// The earliest due time of the destination's deliveries that are not due yet
    /// (and could be leased then), if any; a store may leave it out of a full
    /// batch, after which the caller leases again at once; with [`LeaseLimits`], also when a
    /// cluster-wide limit that held this lease back may allow more.
    pub next_due: Option<Millis>,
    /// The cluster-wide `max_in_flight` held this lease back: leases of this
    /// node's finished attempts count until their results are recorded, so the
    /// caller should lease again once it has recorded some.
    pub held_back: bool,
}

/// A destination's limits that a store shared by several nodes enforces across
/// all of them (see [`Store::lease_limited`]).
#[derive(Debug, Clone)]
pub struct LeaseLimits {
    /// Live leases of the destination on every node together, at most.
    pub max_in_flight: u32,
    /// Leases granted per second on every node together, at most.
    pub rate: Option<RateLimitConfig>,
    /// Deliveries this caller leased whose attempts have ended (their results
    /// wait to be written, or are being written): their leases, while still
    /// this caller's, do not count against `max_in_flight`, since nothing is
    /// in flight for them. An id whose lease ended, or went to another
    /// holder, changes nothing.
    pub settled: Vec<i64>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// It succeeded.
    Delivered,
    /// Try again at this time.
    Retry(Millis),
    /// No more attempts: dead-lettered.
    Dead,
    /// Its transformation returned `null`: not sent, on purpose (final).
    Dropped,
    /// Its transformation threw, timed out or returned something that is not
    /// a request: not sent (final; a replay runs the transformation again).
    TransformFailed,
}

impl Next {
    /// The status a delivery has after this, when it is final.
    pub fn final_status(self) -> Option<DeliveryStatus> {
        match self {
            Next::Delivered => Some(DeliveryStatus::Delivered),
            Next::Retry(_) => None,
            Next::Dead => Some(DeliveryStatus::Dead),
            Next::Dropped => Some(DeliveryStatus::Dropped),
            Next::TransformFailed => Some(DeliveryStatus::TransformFailed),
        }
    }
}

/// The record of one attempt, and what follows it.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    /// Delivery id.
    pub delivery_id: i64,
    /// The attempt's number (as leased).
    pub attempt: u32,
    /// When it started.
    pub started_at: Millis,
    /// How long it took, in microseconds.
    pub duration_us: i64,
    /// HTTP status, when a response came.
    pub status: Option<u16>,
    /// The first bytes (at most 4 KiB) of the response body.
    pub response_body: Option<Bytes>,
    /// The response's headers, encoded with [`encode_headers`] (at most
    /// [`RESPONSE_HEADERS_KEEP`] bytes of them).
    pub response_headers: Option<Bytes>,
    /// Why it failed, when it did without a status (timeout, connection error).
    pub error: Option<String>,
    /// What follows.
    pub next: Next,
}

/// Bytes of a response's encoded headers kept in the attempt log at most:
/// the headers past it are left out, whole.
pub const RESPONSE_HEADERS_KEEP: usize = 4096;

/// Response headers as an attempt log shows them, from their stored encoding.
pub fn response_headers(encoded: Option<&[u8]>) -> Vec<(String, String)> {
    encoded
        .map(|b| {
            decode_headers(b)
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Status of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// Waiting behind an earlier delivery with the same ordering key.
    Queued,
    /// Succeeded.
    Delivered,
    /// Dead-lettered.
    Dead,
    /// Was dead, and a replay of its message made a new delivery in its place
    /// (`replayed_by`): out of the dead-letter queue, never revived again.
    Replayed,
    /// Its transformation returned `null`: not sent, on purpose.
    Dropped,
    /// Its transformation failed (the error is in its attempt): not sent.
    #[serde(rename = "transform_failed")]
    TransformFailed,
}

impl DeliveryStatus {
    /// The stored code.
    pub fn code(self) -> i64 {
        match self {
            DeliveryStatus::Pending => 0,
            DeliveryStatus::Queued => 1,
            DeliveryStatus::Delivered => 2,
            DeliveryStatus::Dead => 3,
            DeliveryStatus::Replayed => 4,
            DeliveryStatus::Dropped => 5,
            DeliveryStatus::TransformFailed => 6,
        }
    }
    /// Inverse of [`DeliveryStatus::code`]; `None` for a code no hookgate
    /// writes (see [`corrupt::delivery_status`]).
    pub fn from_code(c: i64) -> Option<Self> {
        Some(match c {
            0 => DeliveryStatus::Pending,
            1 => DeliveryStatus::Queued,
            2 => DeliveryStatus::Delivered,
            3 => DeliveryStatus::Dead,
            4 => DeliveryStatus::Replayed,
            5 => DeliveryStatus::Dropped,
            6 => DeliveryStatus::TransformFailed,
            _ => return None,
        })
    }
    /// The name used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Replayed => "replayed",
            DeliveryStatus::Dropped => "dropped",
            DeliveryStatus::TransformFailed => "transform_failed",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "pending" => DeliveryStatus::Pending,
            "queued" => DeliveryStatus::Queued,
            "delivered" => DeliveryStatus::Delivered,
            "dead" => DeliveryStatus::Dead,
            "replayed" => DeliveryStatus::Replayed,
            "dropped" => DeliveryStatus::Dropped,
            "transform_failed" => DeliveryStatus::TransformFailed,
            _ => return Err(()),
        })
    }
}

/// Status of a message, derived from its deliveries: a replay supersedes what
/// went before, so only the newest delivery to each destination decides between
/// delivered and dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Some delivery is still pending or queued.
    Pending,
    /// The newest delivery to every destination succeeded (or there were none).
    Delivered,
    /// None pending, and the newest delivery to some destination is dead.
    Dead,
}

impl MessageStatus {
    /// A message's status from counts of its deliveries: any open (pending or
    /// queued) → pending; else any dead that is the newest delivery to its
    /// destination → dead; else delivered (also with none). The listings' form
    /// of [`MessageStatus::derive`].
    pub fn from_counts(open: i64, dead: i64) -> Self {
        if open > 0 {
            MessageStatus::Pending
        } else if dead > 0 {
            MessageStatus::Dead
        } else {
            MessageStatus::Delivered
        }
    }

    /// Derives the status from a message's deliveries as `(id, destination,
    /// status)`, in any order.
    pub fn derive<'a>(
        deliveries: impl IntoIterator<Item = (i64, &'a str, DeliveryStatus)>,
    ) -> Self {
        let mut newest: HashMap<&str, (i64, DeliveryStatus)> = HashMap::new();
        for (id, dest, status) in deliveries {
            if matches!(status, DeliveryStatus::Pending | DeliveryStatus::Queued) {
                return MessageStatus::Pending;
            }
            let e = newest.entry(dest).or_insert((id, status));
            if id > e.0 {
                *e = (id, status);
            }
        }
        if newest
            .values()
            .any(|(_, s)| matches!(s, DeliveryStatus::Dead | DeliveryStatus::TransformFailed))
        {
            MessageStatus::Dead
        } else {
            MessageStatus::Delivered
        }
    }
}

impl FromStr for MessageStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "pending" => MessageStatus::Pending,
            "delivered" => MessageStatus::Delivered,
            "dead" => MessageStatus::Dead,
            _ => return Err(()),
        })
    }
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass this as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A message in a listing.
#[derive(Debug, Clone)]
pub struct MessageSummary {
    /// Its id.
    pub id: MessageId,
    /// Source name.
    pub source: String,
    /// Event type.
    pub event_type: Option<String>,
    /// Arrival time (ms).
    pub received_at: Millis,
    /// Derived status.
    pub status: MessageStatus,
    /// Number of deliveries.
    pub deliveries: i64,
}

/// One attempt of a delivery (the API shows it through `admin::views`).
#[derive(Debug, Clone)]
pub struct AttemptInfo {
    /// 1-based number.
    pub attempt: u32,
    /// When it started (ms).
    pub started_at: Millis,
    /// Duration in milliseconds.
    pub duration_ms: f64,
    /// HTTP status, if any.
    pub response_status: Option<u16>,
    /// First 4 KiB of the response body (lossy UTF-8).
    pub response_body: Option<String>,
    /// The response's headers, as received (names lower-case; values lossy
    /// UTF-8); empty when none were kept.
    pub response_headers: Vec<(String, String)>,
    /// Error text, if any.
    pub error: Option<String>,
}

impl AttemptInfo {
    /// `succeeded` for a 2xx answer (or, from a pull consumer, a success it
    /// reported without a status: no status and no error), else `failed`.
    pub fn status(&self) -> &'static str {
        match (self.response_status, &self.error) {
            (Some(200..=299), _) | (None, None) => "succeeded",
            _ => "failed",
        }
    }
}

/// A delivery (the API shows it through `admin::views`).
#[derive(Debug, Clone)]
pub struct DeliveryInfo {
    /// Delivery id.
    pub id: i64,
    /// Its message.
    pub message_id: MessageId,
    /// Destination name.
    pub destination: String,
    /// Status.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<Millis>,
    /// Created (ms).
    pub created_at: Millis,
    /// Delivered or dead-lettered (ms).
    pub finished_at: Option<Millis>,
    /// Ordering key.
    pub ordering_key: Option<String>,
    /// Priority.
    pub priority: &'static str,
    /// The delivery a replay made in place of this dead one (status `replayed`).
    pub replayed_by: Option<i64>,
    /// Each attempt (only in message detail).
    pub attempt_log: Option<Vec<AttemptInfo>>,
}

/// A message with its deliveries and attempts.
#[derive(Debug, Clone)]
pub struct MessageDetail {
    /// The summary fields.
    pub summary: MessageSummary,
    /// The stored message (body and headers).
    pub message: StoredMessage,
    /// Every delivery, with `attempt_log` filled.
    pub deliveries: Vec<DeliveryInfo>,
}

/// Filter of a message listing.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    /// Only this source.
    pub source: Option<String>,
    /// Only this derived status.
    pub status: Option<MessageStatus>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only messages received at or after this time (ms since the epoch).
    pub since: Option<Millis>,
    /// Only messages received before this time (ms since the epoch).
    pub until: Option<Millis>,
    /// Only the message its source remembers under this dedup key (of
    /// `source`, or of any source), while the key is remembered.
    pub dedup_key: Option<String>,
    /// Page size.
    pub limit: usize,
    /// From the cursor of the previous page.
    pub cursor: Option<String>,
}

impl MessageQuery {
    /// Whether a message passes the filters on its own columns (not the
    /// status, which is derived from its deliveries, nor the dedup key).
    pub fn admits(&self, source: &str, event_type: Option<&str>, received_at: Millis) -> bool {
        self.source.as_deref().is_none_or(|s| s == source)
            && self
                .event_type
                .as_deref()
                .is_none_or(|t| Some(t) == event_type)
            && self.since.is_none_or(|t| received_at >= t)
            && self.until.is_none_or(|t| received_at < t)
    }
}

/// Filter of a delivery listing.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    /// Only this destination.
    pub destination: Option<String>,
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Page size.
    pub limit: usize,
    /// From the cursor of the previous page.
    pub cursor: Option<String>,
}

/// Which dead deliveries a bulk replay revives.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    /// Only this destination.
    pub destination: Option<String>,
    /// Only those that died at or after this time.
    pub since: Option<Millis>,
    /// Only those that died at or before this time.
    pub until: Option<Millis>,
}

/// Counts of a destination's undelivered work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationStats {
    /// Pending and queued deliveries.
    pub pending: u64,
    /// Creation time of the oldest of them.
    pub oldest_pending_at: Option<Millis>,
    /// Dead deliveries (the dead-letter queue; replayed ones are not counted).
    pub dead: u64,
}

/// State of a destination that outlives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationState {
    /// Attempts stopped by an operator.
    pub paused: bool,
    /// Disabled by endpoint health (every attempt failing for `disable_after`), since then.
    pub disabled_at: Option<Millis>,
    /// Time of the first failure since the last success.
    pub failing_since: Option<Millis>,
}

/// A destination created through the API, as stored (its spec is the API's JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDestination {
    /// Unique name.
    pub name: String,
    /// The destination's fields as JSON.
    pub spec: serde_json::Value,
    /// Created (ms).
    pub created_at: Millis,
    /// Last changed (ms).
    pub updated_at: Millis,
}

/// A transformation created through the API, as stored: the same shape as a
/// stored destination, its spec `{"code", "timeout_ms", "memory_limit"}`.
pub type StoredTransform = StoredDestination;

/// An alert channel created through the API, as stored: the same shape as a
/// stored destination, its spec the channel's JSON (secrets included).
pub type StoredAlertChannel = StoredDestination;

/// An alert raised for one channel, as kept (the console's and the API's
/// past alerts outlive a restart).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlert {
    /// Unique: the event's id and the channel.
    pub id: String,
    /// When it was raised (ms).
    pub at: Millis,
    /// The channel.
    pub channel: String,
    /// What became of it (`queued`, `sent_directly`, `suppressed`, `failed`).
    pub outcome: String,
    /// The alert record as JSON.
    pub record: serde_json::Value,
}

/// Alerts a store keeps, the newest; older ones go as new ones come.
pub const ALERTS_KEPT: usize = 10_000;

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The disk or database is full.
    #[error("the store is full")]
    Full,
    /// The store cannot be reached or has failed; the call may succeed later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The thing asked for does not exist.
    #[error("not found")]
    NotFound,
    /// It exists already.
    #[error("already exists")]
    Conflict,
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    /// The store will not open the database as it is (someone else's, or
    /// damaged); trying again will not help.
    #[error("{0}")]
    Refused(String),
    /// A stored row holds a value hookgate cannot have written (logged and
    /// counted where it was found); the rest of the store is fine.
    #[error(transparent)]
    Corrupt(#[from] corrupt::CorruptRow),
}

/// The error of a store that keeps no pull leases (a bug: every backend does).
fn no_pulls() -> StoreError {
    StoreError::Refused("this store cannot lease to pull consumers".into())
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// The answer to a create (`create`: insert only if absent) or a replace of
/// one stored row that changed `rows` rows: none means the row was there
/// already (a create) or was not (a replace).
pub(crate) fn put_outcome(rows: u64, create: bool) -> StoreResult<()> {
    match (rows, create) {
        (0, true) => Err(StoreError::Conflict),
        (0, false) => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

/// Observes each commit of a store: its duration and how many jobs it held
/// (for metrics). Both backends take one, so it lives here, not in either.
pub type CommitObserver = Arc<dyn Fn(std::time::Duration, usize) + Send + Sync>;

/// Wakes dispatchers when work becomes due: one [`Notify`] per destination.
#[derive(Default)]
pub struct Wakeups {
    map: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakeups {
    /// The notifier of one destination.
    pub fn get(&self, destination: &str) -> Arc<Notify> {
        let mut m = self.map.lock();
        if let Some(n) = m.get(destination) {
            return n.clone();
        }
        let n = Arc::new(Notify::new());
        m.insert(destination.to_string(), n.clone());
        n
    }

    /// Wakes the dispatcher of a destination (a wake-up is never lost: if it is not
    /// waiting, its next wait returns at once).
    pub fn wake(&self, destination: &str) {
        if let Some(n) = self.map.lock().get(destination) {
            n.notify_one();
        }
    }

    /// Wakes every dispatcher.
    pub fn wake_all(&self) {
        for n in self.map.lock().values() {
            n.notify_one();
        }
    }
}

/// The storage engine of messages and deliveries. See the module docs for the invariants.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a message and its deliveries durably, unless its dedup key is known.
    async fn append(&self, msg: NewMessage) -> StoreResult<Appended>;

    /// Leases up to `limit` due deliveries of a destination for `lease_ms`.
    async fn lease(
        &self,
        destination: &str,
        now: Millis,
        limit: usize,
        lease_ms: i64,
    ) -> StoreResult<LeaseBatch>;

    /// Like [`Store::lease`], and within limits that hold across every node
    /// sharing the store. The default (a store owned by one process) ignores
    /// them: the caller's own counts are the whole truth there.
    async fn lease_limited(
        &self,
        destination: &str,
        now: Millis,
        limit: usize,
        lease_ms: i64,
        limits: &LeaseLimits,
    ) -> StoreResult<LeaseBatch> {
        let _ = limits;
        self.lease(destination, now, limit, lease_ms).await
    }

    /// Records attempts and ends their leases. On an error nothing is recorded
    /// and the leases stay held (until they expire, in a shared store): the
    /// caller keeps the results and records them again, so an attempt whose
    /// result could not be written is not made again before its time.
    async fn complete(&self, results: Vec<AttemptResult>) -> StoreResult<()>;

    /// Ends leases without an attempt; the deliveries are due again as they were.
    async fn release(&self, delivery_ids: Vec<i64>) -> StoreResult<()>;

    /// The pull leases of a store owned by one process, kept in memory; a
    /// store shared by several nodes keeps them in its tables instead and
    /// implements the pull methods itself.
    fn local_pulls(&self) -> Option<&pull::LocalPulls> {
        None
    }

    /// Leases up to `limit` due deliveries of a pull destination for a
    /// consumer: each held by `owner` until `now + lease_ms`, within `limits`
    /// (leases held by every consumer on every node count against
    /// `max_in_flight`). See [`pull`].
    async fn lease_pull(
        &self,
        destination: &str,
        owner: &str,
        now: Millis,
        limit: usize,
        lease_ms: i64,
        limits: &LeaseLimits,
    ) -> StoreResult<LeaseBatch> {
        let pulls = self.local_pulls().ok_or_else(no_pulls)?;
        let ask = pull::PullAsk {
            destination,
            owner,
            now,
            limit,
            lease_ms,
            limits,
        };
        pulls.lease(self, ask).await
    }

    /// Records consumers' results: each applies only if its owner still holds
    /// the delivery's lease at `destination`, and (unless `expired_ok`) the
    /// lease has not run out by `now`. One outcome per result, in order. On an
    /// error nothing is recorded and the leases stay held.
    async fn complete_pull(
        &self,
        destination: &str,
        results: Vec<PullResult>,
        now: Millis,
        expired_ok: bool,
    ) -> StoreResult<Vec<PullOutcome>> {
        let pulls = self.local_pulls().ok_or_else(no_pulls)?;
        pulls
            .complete(self, destination, results, now, expired_ok)
            .await
    }

    /// Ends consumers' leases without an attempt (held by their owners at
    /// `destination`, expired or not). One outcome per release, in order.
    async fn release_pull(
        &self,
        destination: &str,
        releases: Vec<PullRelease>,
        now: Millis,
    ) -> StoreResult<Vec<PullOutcome>> {
        let pulls = self.local_pulls().ok_or_else(no_pulls)?;
        pulls.release(self, destination, releases, now).await
    }

    /// Up to `limit` pull leases of `destination` that ran out by `now` with no result.
    async fn expired_pulls(
        &self,
        destination: &str,
        now: Millis,
        limit: usize,
    ) -> StoreResult<Vec<ExpiredPull>> {
        let pulls = self.local_pulls().ok_or_else(no_pulls)?;
        Ok(pulls.expired(destination, now, limit))
    }

    /// The destination of a delivery, live or finished; `None` if there is no
    /// such delivery.
    async fn delivery_destination(&self, delivery_id: i64) -> StoreResult<Option<String>>;

    /// Pending and queued deliveries in all (exact for one node, an estimate across nodes).
    fn pending_estimate(&self) -> u64;

    /// The notifiers the store pokes when a destination has new due work.
    fn wakeups(&self) -> Arc<Wakeups>;

    /// Whether the store refuses new messages for lack of room (`storage.max_size`).
    fn is_full(&self) -> bool {
        false
    }

    /// Whether a write would succeed now, as far as the store knows without
    /// asking the disk or the network (readiness asks this on every probe, so it
    /// must be cheap): `Full` when out of room, `Unavailable` with the reason
    /// when the last write failed or the database is unreachable.
    fn writable(&self) -> StoreResult<()> {
        if self.is_full() {
            Err(StoreError::Full)
        } else {
            Ok(())
        }
    }

    /// One message with its deliveries and attempts.
    async fn message(&self, id: MessageId) -> StoreResult<MessageDetail>;

    /// Messages, newest first.
    async fn messages(&self, q: &MessageQuery) -> StoreResult<Page<MessageSummary>>;

    /// Deliveries, newest first.
    async fn deliveries(&self, q: &DeliveryQuery) -> StoreResult<Page<DeliveryInfo>>;

    /// New deliveries of a message to these destinations (each with the ordering key
    /// and priority of the message's earlier delivery there, if any). The message's
    /// dead deliveries to those destinations become `replayed`, linked to the new
    /// one, and leave the dead-letter queue. Returns the new ids.
    async fn replay_message(
        &self,
        id: MessageId,
        destinations: &[String],
        now: Millis,
    ) -> StoreResult<Vec<i64>>;

    /// The destinations a message had deliveries to.
    async fn message_destinations(&self, id: MessageId) -> StoreResult<Vec<String>>;

    /// How many dead deliveries match (replayed ones are not dead).
    async fn count_dead(&self, f: &ReplayFilter) -> StoreResult<u64>;

    /// Revives up to `limit` matching dead deliveries (pending, due now, schedule
    /// restarted; never a `replayed` one, which was sent again already); returns
    /// how many. Call until it returns 0.
    async fn replay_dead_batch(
        &self,
        f: &ReplayFilter,
        now: Millis,
        limit: usize,
    ) -> StoreResult<usize>;

    /// Pending counts per destination.
    async fn destination_stats(&self) -> StoreResult<HashMap<String, DestinationStats>>;

    /// Persistent state of every destination that has any.
    async fn destination_states(&self) -> StoreResult<HashMap<String, DestinationState>>;

    /// Saves a destination's state.
    async fn put_destination_state(&self, name: &str, state: &DestinationState) -> StoreResult<()>;

    /// Destinations created through the API.
    async fn stored_destinations(&self) -> StoreResult<Vec<StoredDestination>>;

    /// Creates (`create = true`, `Conflict` if it exists) or replaces (`NotFound` if
    /// missing) a destination made through the API.
    async fn put_stored_destination(&self, d: &StoredDestination, create: bool) -> StoreResult<()>;

    /// Removes a destination made through the API (`NotFound` if missing).
    async fn delete_stored_destination(&self, name: &str) -> StoreResult<()>;

    /// Transformations created through the API, by name.
    async fn stored_transforms(&self) -> StoreResult<Vec<StoredTransform>>;

    /// Creates (`create = true`, `Conflict` if it exists) or replaces (`NotFound` if
    /// missing) a transformation made through the API.
    async fn put_stored_transform(&self, t: &StoredTransform, create: bool) -> StoreResult<()>;

    /// Removes a transformation made through the API (`NotFound` if missing).
    async fn delete_stored_transform(&self, name: &str) -> StoreResult<()>;

    /// Alert channels made through the API, by name.
    async fn stored_alert_channels(&self) -> StoreResult<Vec<StoredAlertChannel>>;

    /// Creates (`create = true`, `Conflict` if it exists) or replaces (`NotFound` if
    /// missing) an alert channel made through the API.
    async fn put_stored_alert_channel(
        &self,
        c: &StoredAlertChannel,
        create: bool,
    ) -> StoreResult<()>;

    /// Removes an alert channel made through the API (`NotFound` if missing).
    async fn delete_stored_alert_channel(&self, name: &str) -> StoreResult<()>;

    /// Whether this node leads the work that one node does for all (the
    /// alerts' evaluator), asked again before each round of it: always for a
    /// store of one process; on PostgreSQL, the node that holds the leader's
    /// advisory lock on a connection of its own (released when the node stops
    /// or its connection dies, so another node takes over).
    async fn lead(&self) -> StoreResult<bool> {
        Ok(true)
    }

    /// Keeps an alert (one with the id of a kept one changes nothing); at most
    /// the newest [`ALERTS_KEPT`] stay.
    async fn put_alert(&self, alert: &StoredAlert) -> StoreResult<()>;

    /// The newest `limit` alerts kept, newest first.
    async fn alert_history(&self, limit: usize) -> StoreResult<Vec<StoredAlert>>;

    /// A record of the tenants' API by its id or its uid; `None` if neither names one.
    async fn tenant_record(
        &self,
        kind: &str,
        tenant: &str,
        key: &str,
    ) -> StoreResult<Option<TenantRecord>>;

    /// Records of one kind and tenant, in id order (see [`RecordQuery`]); a
    /// backwards page (`before`) is returned in ascending order too.
    async fn tenant_records(&self, q: &RecordQuery<'_>) -> StoreResult<Vec<TenantRecord>>;

    /// Creates (`create = true`: `Conflict` if the id or the uid is taken) or
    /// replaces (`NotFound` if missing; `Conflict` if the new uid is another's)
    /// a record; a replace keeps `created_at`.
    async fn put_tenant_record(&self, r: &TenantRecord, create: bool) -> StoreResult<()>;

    /// Removes a record (`NotFound` if missing).
    async fn delete_tenant_record(&self, kind: &str, tenant: &str, id: &str) -> StoreResult<()>;

    /// Removes up to `limit` finished messages received before `cutoff`, and dedup
    /// keys expired at `now`. Returns how many rows went.
    async fn cleanup(&self, cutoff: Millis, now: Millis, limit: usize) -> StoreResult<usize>;

    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    /// Flushes and closes. Later calls fail with `Closed`.
    async fn close(&self);
}

/// Encodes headers as `u32 name length, name, u32 value length, value` repeated.
pub fn encode_headers<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Bytes {
    let mut out = Vec::with_capacity(256);
    for (k, v) in headers {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    Bytes::from(out)
}

/// Decodes what [`encode_headers`] wrote; stops quietly at a truncated entry.
pub fn decode_headers(mut b: &[u8]) -> Vec<(String, Vec<u8>)> {
    fn take<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
        if b.len() < 4 {
            return None;
        }
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let rest = &b[4..];
        if rest.len() < n {
            return None;
        }
        let (v, tail) = rest.split_at(n);
        *b = tail;
        Some(v)
    }
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (take(&mut b), take(&mut b)) {
        out.push((String::from_utf8_lossy(k).into_owned(), v.to_vec()));
    }
    out
}

/// Encodes a listing cursor (an opaque string holding a sequence number).
pub fn encode_cursor(seq: i64) -> String {
    format!("c{seq}")
}

/// Decodes a listing cursor.
pub fn decode_cursor(c: &str) -> Option<i64> {
    c.strip_prefix('c')?.parse().ok()
}

/// A listing's page size (1 to 1000) and the sequence number its items lie
/// below (from the cursor; unbounded without one). A cursor that does not
/// decode is `NotFound`.
pub fn page_bounds(limit: usize, cursor: Option<&str>) -> StoreResult<(usize, i64)> {
    let before = match cursor {
        Some(c) => decode_cursor(c).ok_or(StoreError::NotFound)?,
        None => i64::MAX,
    };
    Ok((limit.clamp(1, 1000), before))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn message_ids_round_trip() {
        let id = MessageId::new();
        let s = id.to_string();
        assert!(s.starts_with("msg_"));
        assert_eq!(s.parse::<MessageId>().unwrap(), id);
        assert!("msg_nope".parse::<MessageId>().is_err());
        assert!("01ARZ3NDEKTSV4RRFFQ69G5FAV".parse::<MessageId>().is_err());
    }

    #[test]
    fn message_status_follows_the_newest_delivery_per_destination() {
        use DeliveryStatus::*;
        let derive =
            |d: &[(i64, &'static str, DeliveryStatus)]| MessageStatus::derive(d.iter().copied());
        assert_eq!(derive(&[]), MessageStatus::Delivered);
        // Dead, then replayed and delivered.
        assert_eq!(
            derive(&[(2, "a", Delivered), (1, "a", Replayed)]),
            MessageStatus::Delivered
        );
        // A dead delivery not (yet) marked, with a newer one delivered.
        assert_eq!(
            derive(&[(1, "a", Dead), (2, "a", Delivered)]),
            MessageStatus::Delivered
        );
        // Delivered, then a replay that died.
        assert_eq!(
            derive(&[(1, "a", Delivered), (2, "a", Dead)]),
            MessageStatus::Dead
        );
        // Another destination still dead.
        assert_eq!(
            derive(&[(1, "a", Delivered), (2, "b", Dead)]),
            MessageStatus::Dead
        );
        // Anything live keeps the message pending.
        assert_eq!(
            derive(&[(1, "a", Queued), (2, "a", Dead)]),
            MessageStatus::Pending
        );
        assert_eq!(
            derive(&[(1, "a", Replayed), (2, "a", Pending)]),
            MessageStatus::Pending
        );
    }

    #[test]
    fn delivery_statuses_round_trip() {
        for s in [
            DeliveryStatus::Pending,
            DeliveryStatus::Queued,
            DeliveryStatus::Delivered,
            DeliveryStatus::Dead,
            DeliveryStatus::Replayed,
            DeliveryStatus::Dropped,
            DeliveryStatus::TransformFailed,
        ] {
            assert_eq!(DeliveryStatus::from_code(s.code()), Some(s));
            assert_eq!(s.as_str().parse::<DeliveryStatus>(), Ok(s));
            // The API's name is the serialized one.
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    proptest! {
        #[test]
        fn headers_round_trip(h in proptest::collection::vec(("[a-z-]{1,20}", proptest::collection::vec(any::<u8>(), 0..40)), 0..10)) {
            let enc = encode_headers(h.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
            prop_assert_eq!(decode_headers(&enc), h);
        }

        #[test]
        fn decoding_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_headers(&b);
        }
    }
}
