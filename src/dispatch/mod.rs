//! Dispatch: one worker task per destination leases due deliveries from the
//! store and sends them, within the destination's limits (`max_in_flight`,
//! `rate_limit`, circuit breaker, pause, endpoint health). Attempts run as tasks,
//! at most `max_in_flight` of them; pending work stays in the store, so a backlog
//! of millions costs disk, not memory.
//!
//! Invariants:
//! - A worker leases only as many deliveries as it can start at once, so limits
//!   are exact, and priorities are decided by the store at the last moment. A
//!   store shared by several nodes also holds `max_in_flight` and `rate_limit`
//!   across all of them (`Store::lease_limited`).
//! - While the circuit is open, paused or disabled, nothing is leased, and so
//!   nothing is attempted or counted.
//! - An attempt's result is kept until the store has recorded it. A failed
//!   write (e.g. a full disk) is retried *as a record*, with exponential
//!   backoff ([`RECORD_RETRY_FIRST`] doubling to [`RECORD_RETRY_MAX`]), or as
//!   soon as a store that was out of reach says it is back (a PostgreSQL
//!   store wakes every worker then); the
//!   delivery stays leased meanwhile, so it is neither re-sent nor is its
//!   ordering key freed, and the worker starts no new attempt until the store
//!   takes results again. After a restart such a delivery is due again
//!   (at-least-once).
//! - Shutdown: stop leasing, let attempts in flight finish within the grace
//!   period, release the leases of the rest.

pub mod breaker;
pub mod bucket;
pub mod client;
pub mod destination;
pub mod http;
pub mod pull;
pub mod retry;
pub mod ssrf;
pub mod transform;
mod worker;

#[cfg(test)]
mod paused_time_tests;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::breaker::{Breaker, Permit};
use self::bucket::TokenBucket;
use self::destination::DestinationSpec;
use self::http::Class;
use self::worker::Worker;
use crate::clock::{instant_in, SharedClock};
use crate::store::{AttemptResult, DestinationState, LeaseLimits, Leased, Next, Store, StoreError};
use crate::telemetry::events::{
    CircuitChanged, DeliveryAttempted, DestinationHealthChanged, DestinationMetrics,
    ResultsUnrecorded, StoreWriteHealthChanged,
};

/// Most deliveries leased in one call.
const LEASE_BATCH: usize = 256;
/// Attempt results waiting to be recorded, at most; past it the worker starts
/// no new attempt until the store has caught up (memory stays bounded when the
/// store writes slower than the destination answers).
const MAX_UNRECORDED: usize = 4096;
/// Attempt results are written together: once this many wait, or the oldest
/// has waited `RECORD_DELAY`, or one ends a delivery with an ordering key
/// (whose successor waits for that write). At a steady trickle this turns a
/// store write per delivery into one per few milliseconds, so ingest's synced
/// writes rarely queue behind them.
const RECORD_BATCH: usize = 64;
const RECORD_DELAY: Duration = Duration::from_millis(5);
/// After a failed write of results, the first retry waits this long; each
/// further failure doubles the wait, up to [`RECORD_RETRY_MAX`].
pub const RECORD_RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between retries of a failed write of results.
pub const RECORD_RETRY_MAX: Duration = Duration::from_secs(5);
/// A worker re-checks the store at least this often (work created by other
/// nodes, leases expired elsewhere).
const IDLE_TICK: Duration = Duration::from_secs(2);

/// How long, after the shutdown grace, cut-off attempts get to be recorded and
/// their leases released before the workers are stopped regardless. A shutdown
/// of the dispatcher takes at most `shutdown_grace` plus this.
pub const SHUTDOWN_WRAP_UP: Duration = Duration::from_millis(250);

/// What follows an attempt of `class` for a delivery that has failed
/// `retry_index` times before: delivered, dead, or a retry after the
/// schedule's next delay (or the answer's `Retry-After`), dead once the
/// schedule is used up. One rule for push attempts and pull results.
fn next_after(spec: &DestinationSpec, class: Class, retry_index: u32, now_ms: i64) -> Next {
    match class {
        Class::Success => Next::Delivered,
        Class::Stop => Next::Dead,
        Class::Retry(retry_after) => {
            match spec
                .retry
                .next_delay(retry_index + 1, rand::random::<f64>())
            {
                Some(d) => Next::Retry(now_ms + retry_after.unwrap_or(d).as_millis() as i64),
                None => Next::Dead,
            }
        }
    }
}

/// Shared parts of every worker.
struct Ctx {
    store: Arc<dyn Store>,
    clock: SharedClock,
    trusted: client::DeliveryClient,
    guarded: client::DeliveryClient,
    /// Whether API destinations must point at public addresses.
    guard: bool,
    /// How much longer than a destination's timeout its leases last.
    lease_margin: Duration,
    stop: CancellationToken,
    /// Workers whose last write of results failed.
    write_failing: AtomicUsize,
    /// Fired when the shutdown grace has elapsed: attempts still in flight are
    /// cut off and their leases released.
    cut_off: CancellationToken,
    /// The tracer, set once at start while tracing is on.
    traces: std::sync::OnceLock<crate::telemetry::trace::Traces>,
    /// Told of every delivery an attempt or a pulled result dead-letters (alerts), set once at start.
    on_dead: std::sync::OnceLock<DeadHook>,
    /// The transformations, set once at start.
    transforms: std::sync::OnceLock<transform::Transforming>,
}

/// A delivery that an attempt has just dead-lettered.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The destination.
    pub destination: String,
    /// The message.
    pub message_id: crate::store::MessageId,
    /// Its source.
    pub source: String,
    /// Its event type, when known.
    pub event_type: Option<String>,
    /// The delivery's priority (its route's).
    pub priority: crate::config::Priority,
    /// The delivery.
    pub delivery_id: i64,
    /// Attempts made, this last one included.
    pub attempts: u32,
    /// The last answer's status, if one came.
    pub status: Option<u16>,
    /// The last error, if no answer came.
    pub error: Option<String>,
}

/// What the dispatcher calls with each dead-lettered delivery; it must not block.
pub type DeadHook = Arc<dyn Fn(DeadLetter) + Send + Sync>;

impl Ctx {
    /// A worker's results could (`ok`) or could not be written, after the
    /// opposite before: keeps the shared count and the gauge.
    fn write_health_changed(&self, ok: bool) {
        let before = if ok {
            self.write_failing.fetch_sub(1, Ordering::Relaxed)
        } else {
            self.write_failing.fetch_add(1, Ordering::Relaxed)
        };
        // The gauge changes only when the first worker starts failing or the
        // last one recovers.
        if (ok && before == 1) || (!ok && before == 0) {
            StoreWriteHealthChanged { failing: !ok }.emit();
        }
    }
}

/// A destination's live state, shared by its worker and the admin API.
pub struct DestinationHandle {
    spec: RwLock<Arc<DestinationSpec>>,
    state: Mutex<DestinationState>,
    /// When this node last changed `state` itself: a copy read from the shared
    /// store before then is older than what this node holds (see `adopt_state`).
    changed_here: Mutex<Option<Instant>>,
    circuit_open: AtomicBool,
    in_flight: AtomicU32,
    metrics: DestinationMetrics,
    removed: CancellationToken,
    wake: Arc<Notify>,
    /// A pull destination's rate-limit bucket.
    pull_bucket: Mutex<pull::PullBucket>,
    /// Attempts that delivered, since start (read by the alerts' evaluator).
    succeeded: AtomicU64,
    /// Attempts that did not, since start.
    failed: AtomicU64,
}

impl DestinationHandle {
    /// The current settings.
    pub fn spec(&self) -> Arc<DestinationSpec> {
        self.spec.read().clone()
    }
    /// Persistent state (paused, disabled, failing since).
    pub fn state(&self) -> DestinationState {
        self.state.lock().clone()
    }
    /// Whether the circuit is open or half-open.
    pub fn circuit_open(&self) -> bool {
        self.circuit_open.load(Ordering::Acquire)
    }
    /// Attempts in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
    /// The metric handles.
    pub fn metrics(&self) -> &DestinationMetrics {
        &self.metrics
    }
    /// Attempts that delivered and that did not, since this node started
    /// (cumulative; a reader takes differences).
    pub fn attempt_counts(&self) -> (u64, u64) {
        (
            self.succeeded.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Opens or closes the circuit as the API and metrics see it. The gauge is
    /// set first, so once the API reports a state a scrape reports it too.
    fn set_circuit_open(&self, open: bool) {
        self.set_state_gauges(open);
        self.circuit_open.store(open, Ordering::Release);
    }

    /// Sets the state gauges (circuit, paused, disabled) from the current state.
    /// Called on every change of either, never on a timer.
    fn mirror_state(&self) {
        self.set_state_gauges(self.circuit_open());
    }

    fn set_state_gauges(&self, circuit_open: bool) {
        let st = self.state.lock();
        self.metrics
            .set_state(circuit_open, st.paused, st.disabled_at.is_some());
    }
}

/// Runs the workers of all destinations.
pub struct Dispatcher {
    ctx: Arc<Ctx>,
    handles: RwLock<HashMap<String, Arc<DestinationHandle>>>,
    tasks: Mutex<JoinSet<()>>,
}

/// An attempt's HTTP exchange ended.
struct Done {
    /// How the endpoint answered; `None` when no request was made (a
    /// transformation dropped the message or failed), which says nothing of
    /// the endpoint.
    class: Option<Class>,
    delivery_id: i64,
    result: AttemptResult,
    /// A delivery with an ordering key finished: record it at once.
    urgent: bool,
}

impl Dispatcher {
    /// A dispatcher with no destinations yet. `trusted` sends to config-file
    /// destinations, `guarded` to API-made ones; with `guard`, API destinations
    /// whose URL is a non-public address literal are refused at every attempt
    /// (`guarded` must then resolve names to public addresses only). Leases last
    /// a destination's timeout plus `lease_margin`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        trusted: client::DeliveryClient,
        guarded: client::DeliveryClient,
        guard: bool,
        lease_margin: Duration,
    ) -> Arc<Self> {
        Arc::new(Dispatcher {
            ctx: Arc::new(Ctx {
                store,
                clock,
                trusted,
                guarded,
                guard,
                lease_margin,
                stop: CancellationToken::new(),
                write_failing: AtomicUsize::new(0),
                cut_off: CancellationToken::new(),
                traces: std::sync::OnceLock::new(),
                on_dead: std::sync::OnceLock::new(),
                transforms: std::sync::OnceLock::new(),
            }),
            handles: RwLock::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
        })
    }

    /// Traces attempts and leases from now on (set once, at start, before
    /// any destination is added; a second call changes nothing).
    pub fn set_traces(&self, traces: crate::telemetry::trace::Traces) {
        let _ = self.ctx.traces.set(traces);
    }

    /// Calls `hook` with every delivery a push attempt or a pull result dead-letters from now on
    /// (set once, at start; a second call changes nothing).
    pub fn on_dead(&self, hook: DeadHook) {
        let _ = self.ctx.on_dead.set(hook);
    }

    /// Sends one JSON message to a destination at once, outside the store (the
    /// way out for an alert the store refused): its settings, signing and HTTP
    /// client, one attempt. `None` when there is no such destination, else
    /// whether it was delivered.
    pub async fn send_now(
        &self,
        name: &str,
        id: crate::store::MessageId,
        body: bytes::Bytes,
        now_ms: i64,
    ) -> Option<bool> {
        let spec = self.get(name)?.spec();
        let item = Leased {
            delivery_id: 0,
            destination: name.to_string(),
            attempt: 1,
            retry_index: 0,
            priority: crate::config::Priority::High,
            ordering_key: None,
            created_at: now_ms,
            message: Arc::new(crate::store::StoredMessage {
                id,
                source: String::new(),
                event_type: None,
                received_at: now_ms,
                content_type: Some("application/json".into()),
                headers: bytes::Bytes::new(),
                body,
            }),
        };
        let client = match spec.origin.guarded() {
            false => &self.ctx.trusted,
            true => &self.ctx.guarded,
        };
        let outcome = self::http::send(client, &spec, &item, now_ms, None, None).await;
        Some(matches!(
            self::http::classify(&outcome, spec.retry_4xx),
            Class::Success
        ))
    }

    /// Runs each delivery through its transformation (set once, at start).
    pub fn set_transforms(&self, t: transform::Transforming) {
        let _ = self.ctx.transforms.set(t);
    }

    /// A dispatcher for unit tests: unguarded clients, a 30 s lease margin.
    #[cfg(test)]
    pub(crate) fn for_tests(store: Arc<dyn Store>, clock: SharedClock) -> Arc<Self> {
        Self::new(
            store,
            clock,
            client::DeliveryClient::new(false),
            client::DeliveryClient::new(false),
            false,
            Duration::from_secs(30),
        )
    }

    /// Starts delivering to a destination with its saved state.
    pub fn add(&self, spec: DestinationSpec, state: DestinationState) -> Arc<DestinationHandle> {
        let name = spec.name.clone();
        let handle = Arc::new(DestinationHandle {
            metrics: match spec
                .source
                .strip_prefix(crate::config::TENANT_SOURCE_PREFIX)
            {
                Some(app) if !crate::telemetry::events::has_own_series(app) => {
                    DestinationMetrics::for_tenant_endpoint(&name)
                }
                _ => DestinationMetrics::new(&name),
            },
            spec: RwLock::new(Arc::new(spec)),
            state: Mutex::new(state),
            changed_here: Mutex::new(None),
            circuit_open: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            removed: CancellationToken::new(),
            wake: self.ctx.store.wakeups().get(&name),
            pull_bucket: Mutex::default(),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        handle.mirror_state();
        if let Some(old) = self.handles.write().insert(name, handle.clone()) {
            old.removed.cancel();
        }
        if handle.spec().is_pull() {
            // Nothing is sent: consumers lease through `pull`; expired leases
            // are recorded by the sweeper.
            self.tasks
                .lock()
                .spawn(pull::sweep(self.ctx.clone(), handle.clone()));
        } else {
            let worker = Worker::new(self.ctx.clone(), handle.clone());
            self.tasks.lock().spawn(worker.run());
        }
        handle
    }

    /// Replaces a destination's settings; its worker picks them up at once.
    pub fn update(&self, spec: DestinationSpec) -> bool {
        match self.get(&spec.name) {
            Some(h) if h.spec().kind != spec.kind => {
                // Another kind of task serves it: start over with its state.
                let st = h.state();
                self.add(spec, st);
                true
            }
            Some(h) => {
                *h.spec.write() = Arc::new(spec);
                h.wake.notify_one();
                true
            }
            None => false,
        }
    }

    /// Stops delivering to a destination (attempts in flight finish).
    pub fn remove(&self, name: &str) -> bool {
        match self.handles.write().remove(name) {
            Some(h) => {
                h.removed.cancel();
                true
            }
            None => false,
        }
    }

    /// A destination's handle.
    pub fn get(&self, name: &str) -> Option<Arc<DestinationHandle>> {
        self.handles.read().get(name).cloned()
    }

    /// Every destination, by name.
    pub fn all(&self) -> Vec<Arc<DestinationHandle>> {
        let mut v: Vec<_> = self.handles.read().values().cloned().collect();
        v.sort_by_key(|h| h.spec().name.clone());
        v
    }

    /// Takes over the pause and disable state another node saved in the shared
    /// store (the failure clock stays this node's own), read from it at `read_at`.
    /// A copy read before this node's own last change is stale and ignored, so a
    /// resume through this node's API is not undone by a read that raced it.
    /// True if anything changed.
    pub fn adopt_state(&self, name: &str, saved: &DestinationState, read_at: Instant) -> bool {
        let Some(h) = self.get(name) else {
            return false;
        };
        if h.changed_here.lock().is_some_and(|t| t >= read_at) {
            return false;
        }
        let changed = {
            let mut s = h.state.lock();
            let changed = s.paused != saved.paused || s.disabled_at != saved.disabled_at;
            s.paused = saved.paused;
            s.disabled_at = saved.disabled_at;
            changed
        };
        if changed {
            h.mirror_state();
            h.wake.notify_one();
        }
        changed
    }

    /// Pauses or resumes a destination (resuming also re-enables a disabled one).
    /// The state is saved in the store.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Option<DestinationState> {
        let h = self.get(name)?;
        let st = {
            let mut s = h.state.lock();
            *h.changed_here.lock() = Some(Instant::now());
            s.paused = paused;
            if !paused {
                if s.disabled_at.take().is_some() {
                    DestinationHealthChanged {
                        destination: name,
                        disabled: false,
                    }
                    .emit();
                }
                s.failing_since = None;
            }
            s.clone()
        };
        h.mirror_state();
        if let Err(e) = self.ctx.store.put_destination_state(name, &st).await {
            tracing::error!(destination = name, error = %e, "could not save the destination state");
        }
        h.wake.notify_one();
        Some(st)
    }

    /// Stops leasing, waits up to `grace` for attempts in flight, then cuts off
    /// those still running and releases their leases (so they are due again at
    /// once on the next start). Returns within `grace` + [`SHUTDOWN_WRAP_UP`].
    pub async fn shutdown(&self, grace: Duration) {
        self.ctx.stop.cancel();
        let mut tasks = std::mem::take(&mut *self.tasks.lock());
        let cut_at = Instant::now() + grace;
        let give_up_at = cut_at + SHUTDOWN_WRAP_UP;
        while !tasks.is_empty() {
            tokio::select! {
                r = tasks.join_next() => if r.is_none() { break },
                _ = tokio::time::sleep_until(cut_at), if !self.ctx.cut_off.is_cancelled() => {
                    tracing::warn!("shutdown grace elapsed; cutting off the attempts still in flight");
                    self.ctx.cut_off.cancel();
                }
                _ = tokio::time::sleep_until(give_up_at) => {
                    tracing::warn!("attempts could not be recorded in time; their leases expire by themselves");
                    tasks.shutdown().await;
                    break;
                }
            }
        }
    }

    /// Whether the store currently refuses to record delivery results (for
    /// `/readyz`): true from a failed write until a later one succeeds.
    pub fn store_write_failing(&self) -> bool {
        self.ctx.write_failing.load(Ordering::Relaxed) > 0
    }

    /// Refreshes the backlog gauges of every destination (the state gauges
    /// change with the state itself).
    pub async fn refresh_gauges(&self) {
        let stats = self.ctx.store.destination_stats().await.unwrap_or_default();
        let now = self.ctx.clock.now_millis();
        for h in self.all() {
            let name = h.spec().name.clone();
            let s = stats.get(&name).cloned().unwrap_or_default();
            // Pending and the oldest age may come from different reads (the
            // count from memory, the age from a table on PostgreSQL): with
            // nothing pending there is no oldest.
            let age = s
                .oldest_pending_at
                .filter(|_| s.pending > 0)
                .map(|t| Duration::from_millis((now - t).max(0) as u64));
            h.metrics.set_backlog(s.pending, age, s.dead);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::destination::Origin;
    use super::worker::record_backoff;
    use super::*;
    use crate::clock::SystemClock;
    use crate::store::sqlite::SqliteStore;

    fn dispatcher(dir: &std::path::Path) -> (Arc<Dispatcher>, Arc<dyn Store>) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.join("db")).unwrap());
        let d = Dispatcher::new(
            store.clone(),
            Arc::new(SystemClock),
            client::DeliveryClient::new(false),
            client::DeliveryClient::new(false),
            false,
            Duration::from_secs(30),
        );
        let cfg = crate::config::parse(
            "[[destinations]]\nname = \"d\"\nurl = \"http://127.0.0.1:9/\"\n",
            "t.toml",
            &|_| None,
        )
        .unwrap();
        let spec =
            crate::control::compile::destination(&cfg.destinations[0], Origin::Config).unwrap();
        let paused = DestinationState {
            paused: true,
            ..Default::default()
        };
        d.add(spec, paused);
        (d, store)
    }

    /// A store whose `complete` fails while `fail` is set (like a full disk;
    /// with `outage`, like a database out of reach, which `writable` tells),
    /// counting its calls; everything else goes to a real embedded store.
    struct FailingRecords {
        inner: SqliteStore,
        fail: AtomicBool,
        outage: bool,
        calls: AtomicU32,
        first_failure: Mutex<Option<std::time::Instant>>,
    }

    #[async_trait::async_trait]
    impl Store for FailingRecords {
        async fn append(
            &self,
            m: crate::store::NewMessage,
        ) -> crate::store::StoreResult<crate::store::Appended> {
            self.inner.append(m).await
        }
        async fn lease(
            &self,
            d: &str,
            now: i64,
            limit: usize,
            ms: i64,
        ) -> crate::store::StoreResult<crate::store::LeaseBatch> {
            self.inner.lease(d, now, limit, ms).await
        }
        async fn complete(&self, results: Vec<AttemptResult>) -> crate::store::StoreResult<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                self.first_failure
                    .lock()
                    .get_or_insert_with(std::time::Instant::now);
                return Err(if self.outage {
                    StoreError::Unavailable("out of reach".into())
                } else {
                    StoreError::Full
                });
            }
            self.inner.complete(results).await
        }
        fn writable(&self) -> crate::store::StoreResult<()> {
            if self.outage && self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("out of reach".into()));
            }
            self.inner.writable()
        }
        async fn release(&self, ids: Vec<i64>) -> crate::store::StoreResult<()> {
            self.inner.release(ids).await
        }
        fn local_pulls(&self) -> Option<&crate::store::pull::LocalPulls> {
            self.inner.local_pulls()
        }
        async fn delivery_destination(&self, id: i64) -> crate::store::StoreResult<Option<String>> {
            self.inner.delivery_destination(id).await
        }
        fn pending_estimate(&self) -> u64 {
            self.inner.pending_estimate()
        }
        fn wakeups(&self) -> Arc<crate::store::Wakeups> {
            self.inner.wakeups()
        }
        async fn message(
            &self,
            id: crate::store::MessageId,
        ) -> crate::store::StoreResult<crate::store::MessageDetail> {
            self.inner.message(id).await
        }
        async fn messages(
            &self,
            q: &crate::store::MessageQuery,
        ) -> crate::store::StoreResult<crate::store::Page<crate::store::MessageSummary>> {
            self.inner.messages(q).await
        }
        async fn deliveries(
            &self,
            q: &crate::store::DeliveryQuery,
        ) -> crate::store::StoreResult<crate::store::Page<crate::store::DeliveryInfo>> {
            self.inner.deliveries(q).await
        }
        async fn replay_message(
            &self,
            id: crate::store::MessageId,
            d: &[String],
            now: i64,
        ) -> crate::store::StoreResult<Vec<i64>> {
            self.inner.replay_message(id, d, now).await
        }
        async fn message_destinations(
            &self,
            id: crate::store::MessageId,
        ) -> crate::store::StoreResult<Vec<String>> {
            self.inner.message_destinations(id).await
        }
        async fn count_dead(
            &self,
            f: &crate::store::ReplayFilter,
        ) -> crate::store::StoreResult<u64> {
            self.inner.count_dead(f).await
        }
        async fn replay_dead_batch(
            &self,
            f: &crate::store::ReplayFilter,
            now: i64,
            limit: usize,
        ) -> crate::store::StoreResult<usize> {
            self.inner.replay_dead_batch(f, now, limit).await
        }
        async fn destination_stats(
            &self,
        ) -> crate::store::StoreResult<HashMap<String, crate::store::DestinationStats>> {
            self.inner.destination_stats().await
        }
        async fn destination_states(
            &self,
        ) -> crate::store::StoreResult<HashMap<String, DestinationState>> {
            self.inner.destination_states().await
        }
        async fn put_destination_state(
            &self,
            n: &str,
            st: &DestinationState,
        ) -> crate::store::StoreResult<()> {
            self.inner.put_destination_state(n, st).await
        }
        async fn stored_destinations(
            &self,
        ) -> crate::store::StoreResult<Vec<crate::store::StoredDestination>> {
            self.inner.stored_destinations().await
        }
        async fn put_stored_destination(
            &self,
            d: &crate::store::StoredDestination,
            create: bool,
        ) -> crate::store::StoreResult<()> {
            self.inner.put_stored_destination(d, create).await
        }
        async fn delete_stored_destination(&self, n: &str) -> crate::store::StoreResult<()> {
            self.inner.delete_stored_destination(n).await
        }
        async fn stored_transforms(
            &self,
        ) -> crate::store::StoreResult<Vec<crate::store::StoredTransform>> {
            self.inner.stored_transforms().await
        }
        async fn put_stored_transform(
            &self,
            t: &crate::store::StoredTransform,
            create: bool,
        ) -> crate::store::StoreResult<()> {
            self.inner.put_stored_transform(t, create).await
        }
        async fn delete_stored_transform(&self, n: &str) -> crate::store::StoreResult<()> {
            self.inner.delete_stored_transform(n).await
        }
        async fn stored_alert_channels(
            &self,
        ) -> crate::store::StoreResult<Vec<crate::store::StoredAlertChannel>> {
            self.inner.stored_alert_channels().await
        }
        async fn put_stored_alert_channel(
            &self,
            c: &crate::store::StoredAlertChannel,
            create: bool,
        ) -> crate::store::StoreResult<()> {
            self.inner.put_stored_alert_channel(c, create).await
        }
        async fn delete_stored_alert_channel(&self, n: &str) -> crate::store::StoreResult<()> {
            self.inner.delete_stored_alert_channel(n).await
        }
        async fn put_alert(&self, a: &crate::store::StoredAlert) -> crate::store::StoreResult<()> {
            self.inner.put_alert(a).await
        }
        async fn alert_history(
            &self,
            limit: usize,
        ) -> crate::store::StoreResult<Vec<crate::store::StoredAlert>> {
            self.inner.alert_history(limit).await
        }
        async fn tenant_record(
            &self,
            kind: &str,
            tenant: &str,
            key: &str,
        ) -> crate::store::StoreResult<Option<crate::store::TenantRecord>> {
            self.inner.tenant_record(kind, tenant, key).await
        }
        async fn tenant_records(
            &self,
            q: &crate::store::RecordQuery<'_>,
        ) -> crate::store::StoreResult<Vec<crate::store::TenantRecord>> {
            self.inner.tenant_records(q).await
        }
        async fn put_tenant_record(
            &self,
            r: &crate::store::TenantRecord,
            create: bool,
        ) -> crate::store::StoreResult<()> {
            self.inner.put_tenant_record(r, create).await
        }
        async fn delete_tenant_record(
            &self,
            kind: &str,
            tenant: &str,
            id: &str,
        ) -> crate::store::StoreResult<()> {
            self.inner.delete_tenant_record(kind, tenant, id).await
        }
        async fn cleanup(
            &self,
            cutoff: i64,
            now: i64,
            limit: usize,
        ) -> crate::store::StoreResult<usize> {
            self.inner.cleanup(cutoff, now, limit).await
        }
        async fn ping(&self) -> crate::store::StoreResult<()> {
            self.inner.ping().await
        }
        async fn close(&self) {
            self.inner.close().await
        }
    }

    /// A receiver on loopback that answers 200 and counts requests.
    async fn counting_receiver() -> (String, Arc<AtomicU32>) {
        let hits = Arc::new(AtomicU32::new(0));
        let h = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        (url, hits)
    }

    /// Polls `f` until it holds, failing after a generous deadline.
    async fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn record_backoff_doubles_and_is_bounded() {
        assert_eq!(record_backoff(1), RECORD_RETRY_FIRST);
        assert_eq!(record_backoff(2), RECORD_RETRY_FIRST * 2);
        assert_eq!(record_backoff(4), RECORD_RETRY_FIRST * 8);
        assert_eq!(record_backoff(30), RECORD_RETRY_MAX);
        assert_eq!(record_backoff(u32::MAX), RECORD_RETRY_MAX);
    }

    /// A dispatcher delivering to a counting receiver over a store whose
    /// writes of results fail from the start (see [`FailingRecords`]), and the
    /// id of the one message it was given.
    async fn failing_records(
        dir: &std::path::Path,
        outage: bool,
    ) -> (
        Arc<FailingRecords>,
        Arc<Dispatcher>,
        Arc<AtomicU32>,
        crate::store::MessageId,
    ) {
        let store = Arc::new(FailingRecords {
            inner: SqliteStore::open(dir.join("db")).unwrap(),
            fail: AtomicBool::new(true),
            outage,
            calls: AtomicU32::new(0),
            first_failure: Mutex::new(None),
        });
        let (url, hits) = counting_receiver().await;
        let d = Dispatcher::new(
            store.clone(),
            Arc::new(SystemClock),
            client::DeliveryClient::new(false),
            client::DeliveryClient::new(false),
            false,
            Duration::from_secs(30),
        );
        let cfg = crate::config::parse(
            &format!("[[destinations]]\nname = \"d\"\nurl = \"{url}\"\n"),
            "t.toml",
            &|_| None,
        )
        .unwrap();
        d.add(
            crate::control::compile::destination(&cfg.destinations[0], Origin::Config).unwrap(),
            DestinationState::default(),
        );
        let now = crate::store::now_millis();
        let id = store
            .append(crate::store::NewMessage {
                id: crate::store::MessageId::new(),
                source: "s".into(),
                event_type: None,
                received_at: now,
                content_type: None,
                headers: bytes::Bytes::new(),
                body: bytes::Bytes::from_static(b"{}"),
                dedup: None,
                deliveries: vec![crate::store::NewDelivery {
                    destination: "d".into(),
                    due_at: now,
                    priority: crate::config::Priority::Normal,
                    ordering_key: None,
                }],
            })
            .await
            .unwrap()
            .id();
        (store, d, hits, id)
    }

    /// Waits until the store holds `id`'s delivery as delivered.
    async fn wait_delivered(store: &FailingRecords, id: crate::store::MessageId) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let m = store.message(id).await.unwrap();
            if m.deliveries[0].status == crate::store::DeliveryStatus::Delivered {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the result was never recorded"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The receiver answered 200 but the store could not record it: the result
    /// is written again (with backoff) until it lands, and the message is not
    /// sent a second time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_result_that_fails_to_record_is_recorded_again_not_resent() {
        let dir = tempfile::tempdir().unwrap();
        let (store, d, hits, id) = failing_records(dir.path(), false).await;

        // Four failed writes: after the first, waits of 50, 100 and 200 ms.
        wait_until("four failed writes", || {
            store.calls.load(Ordering::SeqCst) >= 4
        })
        .await;
        let first = store.first_failure.lock().unwrap();
        assert!(
            first.elapsed() >= RECORD_RETRY_FIRST * 7,
            "writes were retried without backoff: {} in {:?}",
            store.calls.load(Ordering::SeqCst),
            first.elapsed()
        );
        assert!(d.store_write_failing());
        assert_eq!(hits.load(Ordering::SeqCst), 1, "the message was sent again");

        // The store takes writes again: the held result lands.
        store.fail.store(false, Ordering::SeqCst);
        wait_delivered(&store, id).await;
        let m = store.message(id).await.unwrap();
        assert_eq!(m.deliveries[0].attempts, 1);
        assert_eq!(hits.load(Ordering::SeqCst), 1, "the message was sent again");
        wait_until("the failing state to clear", || !d.store_write_failing()).await;
        d.shutdown(Duration::from_millis(100)).await;
    }

    /// A result held through a database outage is written as soon as the
    /// store is back (it says so through `writable` and wakes the
    /// dispatchers), not at the end of a backoff that grew meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_result_held_through_an_outage_is_recorded_once_the_store_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, d, hits, id) = failing_records(dir.path(), true).await;
        // Six failed writes: the next waits 1.6 s (50 ms doubled five times).
        wait_until("six failed writes", || {
            store.calls.load(Ordering::SeqCst) >= 6
        })
        .await;
        assert_eq!(record_backoff(6), RECORD_RETRY_FIRST * 32);
        store.fail.store(false, Ordering::SeqCst);
        let back = std::time::Instant::now();
        store.wakeups().wake_all();
        wait_delivered(&store, id).await;
        assert!(
            back.elapsed() < RECORD_RETRY_FIRST * 16,
            "the result waited {:?} for the end of the backoff",
            back.elapsed()
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1, "the message was sent again");
        d.shutdown(Duration::from_millis(100)).await;
    }

    #[tokio::test]
    async fn a_shared_state_read_before_a_local_change_does_not_undo_it() {
        let dir = tempfile::tempdir().unwrap();
        let (d, _store) = dispatcher(dir.path());
        let stale = DestinationState {
            paused: true,
            ..Default::default()
        };
        // Another task read "paused" from the store, then this node resumed.
        let read_before = tokio::time::Instant::now();
        d.set_paused("d", false).await.unwrap();
        assert!(!d.adopt_state("d", &stale, read_before));
        assert!(!d.get("d").unwrap().state().paused);
        // A read made after the local change is newer: another node paused it.
        let read_after = tokio::time::Instant::now();
        assert!(d.adopt_state("d", &stale, read_after));
        assert!(d.get("d").unwrap().state().paused);
        d.shutdown(Duration::from_millis(100)).await;
    }
}
