//! The PostgreSQL store: several hookgate nodes share one database, and the
//! database is the only shared state — nodes stay stateless.
//!
//! Parts:
//! - [`writer`]: group commit of appends and attempt results (multi-row
//!   statements, one commit per batch, the answer after the commit).
//! - [`lease`]: claiming due work with `FOR UPDATE SKIP LOCKED`, leases that
//!   expire by the database clock, and the cluster-wide limits.
//! - [`listen`]: `LISTEN`/`NOTIFY` wake-ups between nodes.
//! - [`pending`]: the cheap pending estimate behind `max_pending`.
//! - [`health`]: whether the database is reachable; fail fast while it is not.
//! - [`read`], [`replay`]: the admin API's reads and replays.
//! - [`scratch`]: throwaway databases for tests and benchmarks.
//!
//! Invariants (beyond those of [`Store`]):
//! - The schema is migrated at connect under an advisory lock, so nodes that
//!   start together apply each migration once.
//! - Every lease names its node (`lease_owner`); `complete` and `release` act
//!   only on this node's leases, and `close` releases all of them. When the
//!   database is back after an outage, the leases in the node's name that it
//!   does not know it holds (their answers were lost) are handed back
//!   (`lease::reclaim`).
//! - Only a primary is written to: a read-only server (a standby, during a
//!   failover) counts as unreachable (see [`health`]).
//! - Per (destination, ordering key) at most one live delivery is pending, and
//!   only it can be leased; the key's advisory lock makes the check-and-insert
//!   at ingest and the promotion at completion atomic across nodes.
//! - Text the database cannot hold (NUL characters) is stored with U+FFFD in
//!   their place instead of failing the request.

mod health;
mod leader;
mod lease;
mod listen;
mod pending;
mod pull;
mod read;
mod replay;
pub mod scratch;
mod tenants;
mod writer;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::pending::{PendingCounts, Snapshot};
use self::writer::{Op, Shared};
use super::corrupt::CorruptRow;
use super::*;

/// The schema, one file per version. Never edit a released file: add one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "schema", include_str!("migrations/0001_schema.sql")),
    (2, "replayed", include_str!("migrations/0002_replayed.sql")),
    (
        3,
        "response headers",
        include_str!("migrations/0003_response_headers.sql"),
    ),
    (4, "tenants", include_str!("migrations/0004_tenants.sql")),
    (
        5,
        "transforms",
        include_str!("migrations/0005_transforms.sql"),
    ),
    (
        6,
        "lease waiters",
        include_str!("migrations/0006_lease_waiters.sql"),
    ),
    (7, "alerts", include_str!("migrations/0007_alerts.sql")),
    (
        8,
        "alert channels",
        include_str!("migrations/0008_alert_channels.sql"),
    ),
];

/// Advisory lock class of ordering keys (`pg_advisory_xact_lock(class, hash)`;
/// the two-key form keeps hookgate's locks apart from single-key users such as
/// the migrator).
pub(crate) const KEY_LOCK_CLASS: i32 = 0x6867_0001;
/// Advisory lock class of destinations (cluster-wide limits at lease).
pub(crate) const DEST_LOCK_CLASS: i32 = 0x6867_0002;

/// How often the pending count is refreshed at least (more rarely when the
/// count itself is slow: at most 2% of the time goes to it).
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Settings of [`PgStore::connect_with`].
#[derive(Clone)]
pub struct PgOptions {
    /// Most connections to PostgreSQL (the store also keeps one more for
    /// notifications).
    pub pool_size: u32,
    /// Writer tasks committing batches side by side.
    pub writers: usize,
    /// Observes each commit's duration and batch size.
    pub observer: CommitObserver,
    /// The longest wait for a connection, connecting included.
    pub connect_timeout: Duration,
    /// The longest a batch commit or a lease may take before the database is
    /// taken as unreachable.
    pub query_timeout: Duration,
    /// A store call longer than this is logged; zero: never.
    pub slow_query: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 16,
            writers: 2,
            observer: Arc::new(|_, _| {}),
            connect_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(5),
            slow_query: Duration::from_secs(1),
        }
    }
}

/// The writers' queues. Attempt results have their own writer: behind a
/// saturating ingest they waited for thousands of appends, and the leases they
/// end (which count against a destination's cluster-wide `max_in_flight`) stayed
/// taken meanwhile, so delivery fell to a fraction of ingest.
#[derive(Clone)]
struct Queues {
    appends: mpsc::Sender<Op>,
    results: mpsc::Sender<Op>,
}

struct Inner {
    pool: PgPool,
    node: String,
    tx: parking_lot::RwLock<Option<Queues>>,
    writers: Mutex<Vec<JoinHandle<()>>>,
    background: Mutex<Vec<JoinHandle<()>>>,
    stop: CancellationToken,
    closed: AtomicBool,
    pending: Arc<PendingCounts>,
    wakeups: Arc<Wakeups>,
    health: Arc<health::Health>,
    query_timeout: Duration,
    notifier: Arc<listen::Notifier>,
    others_queued: Arc<lease::OthersQueued>,
    leader: leader::Leader,
    held: Arc<lease::Held>,
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

/// The SQLSTATE of a database error.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// Maps a database error to a store error: a full disk is `Full`, a closed pool
/// `Closed`, the rest `Unavailable` (the call may succeed later).
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    if let Some(c) = corrupt_row(&e) {
        return StoreError::Corrupt(c.clone());
    }
    match (&e, sqlstate(&e).as_deref()) {
        (sqlx::Error::PoolClosed, _) => StoreError::Closed,
        (_, Some("53100")) => StoreError::Full,
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// A corrupt value as a database error, so that it leaves a row reader with
/// `?` (see [`is_corrupt`]).
pub(crate) fn corrupt(c: CorruptRow) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(c))
}

/// Whether a row failed because a value in it is corrupt.
pub(crate) fn is_corrupt(e: &sqlx::Error) -> bool {
    corrupt_row(e).is_some()
}

/// The corrupt row a read failed on, if that is why it failed.
fn corrupt_row(e: &sqlx::Error) -> Option<&CorruptRow> {
    match e {
        sqlx::Error::Decode(c) => c.downcast_ref::<CorruptRow>(),
        _ => None,
    }
}

/// Text as the database can hold it (no NUL characters).
pub(crate) fn text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

fn hash32(parts: &[&str]) -> i32 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    i32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// The advisory lock of an ordering key (stable across nodes and versions; a
/// collision only makes two keys wait for each other).
pub(crate) fn key_lock(destination: &str, key: &str) -> i32 {
    hash32(&[&text(destination), &text(key)])
}

/// The advisory lock of a destination.
pub(crate) fn dest_lock(destination: &str) -> i32 {
    hash32(&[&text(destination)])
}

/// Takes the ordering-key locks, in ascending order (the global lock order).
pub(crate) async fn lock_keys(
    c: &mut PgConnection,
    locks: &BTreeSet<i32>,
) -> Result<(), sqlx::Error> {
    if locks.is_empty() {
        return Ok(());
    }
    let v: Vec<i32> = locks.iter().copied().collect();
    // unnest yields in array order, so the locks are taken in that order.
    sqlx::query("SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int4[]) AS k")
        .bind(KEY_LOCK_CLASS)
        .bind(&v)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// The transaction's id, or `None` if it wrote nothing.
pub(crate) async fn xid(c: &mut PgConnection) -> Result<Option<u64>, sqlx::Error> {
    let xid: Option<String> = sqlx::query("SELECT pg_current_xact_id_if_assigned()::text")
        .fetch_one(&mut *c)
        .await?
        .try_get(0)?;
    Ok(xid.and_then(|x| x.parse().ok()))
}

fn migrator() -> Migrator {
    Migrator {
        migrations: MIGRATIONS
            .iter()
            .map(|(v, d, sql)| {
                Migration::new(*v, (*d).into(), MigrationType::Simple, (*sql).into(), false)
            })
            .collect::<Vec<_>>()
            .into(),
        ..Migrator::DEFAULT
    }
}

/// `storage.url` as the driver takes it. sqlx connects to one host, and it
/// would take libpq's list of hosts for one odd name and ignore
/// `target_session_attrs`; so a list is refused, naming what to do instead,
/// and `target_session_attrs` is taken out when it asks for what hookgate
/// does by itself (write to a primary only, see [`health`]) and refused
/// otherwise. Errors never contain the URL (it may hold a password).
fn supported_url(url: &str) -> Result<String, StoreError> {
    // The hosts: after the scheme and the last '@', before the path or query
    // (a password may hold a comma; a list of `host:port` is no valid URL).
    let authority = url
        .split_once("://")
        .map_or("", |(_, r)| r)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let parsed = url::Url::parse(url).ok();
    let pairs: Vec<(String, String)> = parsed
        .iter()
        .flat_map(|u| u.query_pairs().into_owned())
        .collect();
    if hosts.contains(',') || pairs.iter().any(|(k, v)| k == "host" && v.contains(',')) {
        return Err(StoreError::Unavailable(
            "storage.url names several hosts, which is not supported: give one name \
             (resolved again at every connection) that leads to the primary, such as a DNS \
             name, a virtual IP or a proxy that your failover moves (see docs/multi-node.md)"
                .into(),
        ));
    }
    let (Some(mut parsed), true) = (
        parsed,
        pairs.iter().any(|(k, _)| k == "target_session_attrs"),
    ) else {
        return Ok(url.to_string());
    };
    if let Some((_, v)) = pairs.iter().find(|(k, v)| {
        k == "target_session_attrs" && !matches!(v.as_str(), "read-write" | "primary" | "any")
    }) {
        return Err(StoreError::Unavailable(format!(
            "storage.url: target_session_attrs={v} is not supported: hookgate writes, so it \
             connects to a primary only (read-write, primary and any are accepted)"
        )));
    }
    let kept: Vec<&(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "target_session_attrs")
        .collect();
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok(parsed.to_string())
}

/// The connection settings from `storage.url`.
fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    let url = supported_url(url)?;
    let opts = PgConnectOptions::from_str(&url)
        .map_err(|_| {
            StoreError::Unavailable(
                "storage.url is not a valid PostgreSQL URL (postgres://user:password@host:port/database)"
                    .into(),
            )
        })?
        .application_name("hookgate")
        // Every query here is an index lookup on tables with heavy churn. A
        // bitmap scan never marks dead index entries, and with statistics
        // that lag a queue's swings the planner kept choosing bitmap scans
        // that walked every dead entry of a drained backlog (80k entries,
        // 4-36 ms per lease and per record); a plain index scan marks them
        // and the next one skips them (0.05 ms).
        .options([("enable_bitmapscan", "off")]);
    Ok(opts)
}

/// The connection pool: connections from before an outage are dropped, not
/// used (see [`health`]).
async fn open_pool(
    opts: &PgOptions,
    conn_opts: &PgConnectOptions,
    health: &Arc<health::Health>,
) -> Result<PgPool, StoreError> {
    let (h_acquire, h_release) = (health.clone(), health.clone());
    PgPoolOptions::new()
        .max_connections(opts.pool_size)
        .min_connections(1.min(opts.pool_size))
        .acquire_timeout(opts.connect_timeout)
        // Connections are checked when they come back to the pool; checking
        // again on the way out would cost a round trip per request.
        .test_before_acquire(false)
        // A connection from before an outage may be a dead socket that a
        // silent network never closes: it is dropped, not used or pinged.
        .before_acquire(move |_, meta| {
            let fresh = !h_acquire.predates_outage(meta.age);
            Box::pin(async move { Ok(fresh) })
        })
        .after_release(move |_, meta| {
            let keep = h_release.is_up() && !h_release.predates_outage(meta.age);
            Box::pin(async move { Ok(keep) })
        })
        .connect_with(conn_opts.clone())
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))
}

/// Applies the migrations; nodes that start together apply each once.
async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    migrator().run(pool).await.map_err(|e| {
        StoreError::Unavailable(match e {
            sqlx::migrate::MigrateError::VersionMissing(v) => format!(
                "the database has schema version {v}, unknown to this hookgate (it was migrated by a newer version)"
            ),
            e => format!("cannot migrate the database: {e}"),
        })
    })
}

impl PgStore {
    /// Connects with a pool of `pool_size` connections and default settings.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        Self::connect_with(
            url,
            PgOptions {
                pool_size,
                ..Default::default()
            },
        )
        .await
    }

    /// Connects, applies pending migrations (safe when several nodes start at
    /// once: the migrator holds an advisory lock), subscribes to wake-ups and
    /// starts the writers.
    ///
    /// Errors never contain the URL (it may hold a password).
    pub async fn connect_with(url: &str, opts: PgOptions) -> Result<Self, StoreError> {
        if opts.pool_size == 0 {
            return Err(StoreError::Unavailable(
                "storage.pool_size must be at least 1".into(),
            ));
        }
        let conn_opts = connect_options(url)?;
        let wakeups = Arc::new(Wakeups::default());
        let health = Arc::new(
            health::Health::new()
                .with_slow_query(opts.slow_query)
                .with_wakeups(wakeups.clone()),
        );
        let pool = open_pool(&opts, &conn_opts, &health).await?;
        migrate(&pool).await?;
        let node = Ulid::new().to_string();
        let pending = Arc::new(PendingCounts::default());
        refresh_pending(&pool, &pending).await.map_err(map_err)?;
        let listener = listen::subscribe(&conn_opts).await.map_err(|e| {
            StoreError::Unavailable(format!("cannot listen for notifications: {e}"))
        })?;

        let stop = CancellationToken::new();
        let (appends, appends_rx) = mpsc::channel(16 * 1024);
        let (results, results_rx) = mpsc::channel(1024);
        let notifier = Arc::new(listen::Notifier::default());
        let others_queued = Arc::new(lease::OthersQueued::default());
        let shared = Shared {
            pool: pool.clone(),
            node: node.clone(),
            pending: pending.clone(),
            wakeups: wakeups.clone(),
            observer: opts.observer.clone(),
            health: health.clone(),
            query_timeout: opts.query_timeout,
            notifier: notifier.clone(),
            others_queued: others_queued.clone(),
            synchronous: true,
        };
        let results_shared = Arc::new(Shared {
            synchronous: false,
            ..shared.clone()
        });
        let mut writers = writer::spawn(
            Arc::new(shared),
            appends_rx,
            opts.writers.clamp(1, opts.pool_size as usize),
        );
        writers.extend(writer::spawn(results_shared, results_rx, 1));
        let tx = Queues { appends, results };
        let held = Arc::new(lease::Held::default());
        let background = vec![
            listen::spawn(listener, conn_opts.clone(), wakeups.clone(), stop.clone()),
            notifier.clone().spawn(
                pool.clone(),
                health.clone(),
                opts.query_timeout,
                stop.clone(),
            ),
            spawn_refresher(
                pool.clone(),
                pending.clone(),
                health.clone(),
                opts.query_timeout,
                stop.clone(),
            ),
            health::spawn_probe(
                health.clone(),
                conn_opts.clone(),
                opts.connect_timeout,
                stop.clone(),
            ),
            spawn_reclaimer(
                Reclaimer {
                    pool: pool.clone(),
                    node: node.clone(),
                    held: held.clone(),
                    health: health.clone(),
                    wakeups: wakeups.clone(),
                    query_timeout: opts.query_timeout,
                },
                stop.clone(),
            ),
        ];
        tracing::info!(node = %node, pool_size = opts.pool_size, "PostgreSQL store ready");
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                node,
                tx: parking_lot::RwLock::new(Some(tx)),
                writers: Mutex::new(writers),
                background: Mutex::new(background),
                stop,
                closed: AtomicBool::new(false),
                pending,
                wakeups,
                health,
                query_timeout: opts.query_timeout,
                notifier,
                others_queued,
                leader: leader::Leader::new(conn_opts, opts.connect_timeout + opts.query_timeout),
                held,
            }),
        })
    }

    /// This node's id, as written in `lease_owner`.
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    fn pool(&self) -> StoreResult<&PgPool> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(&self.inner.pool)
        }
    }

    async fn send(&self, op: Op) -> StoreResult<()> {
        let queues = self.inner.tx.read().clone().ok_or(StoreError::Closed)?;
        let tx = match op {
            Op::Append(..) => queues.appends,
            Op::Complete(..) => queues.results,
        };
        tx.send(op).await.map_err(|_| StoreError::Closed)
    }

    /// Accounts for a committed replay.
    fn replayed(&self, r: &replay::Replayed) {
        if let Some(xid) = r.xid {
            self.inner.pending.record(xid, r.deltas.clone());
        }
        for d in &r.wake {
            self.inner.wakeups.wake(d);
        }
        self.inner.notifier.send(&r.notify);
    }

    /// One outcome per lease: applied if its id is in `applied` (the first
    /// time only: a second result for one delivery in the same call did not
    /// apply), else as [`pull::classify`] finds it.
    async fn pull_outcomes(
        &self,
        destination: &str,
        leases: &[(i64, String)],
        applied: &HashSet<i64>,
    ) -> StoreResult<Vec<PullOutcome>> {
        let rest: Vec<(i64, String)> = leases
            .iter()
            .filter(|(id, _)| !applied.contains(id))
            .cloned()
            .collect();
        let other = if rest.is_empty() {
            HashMap::new()
        } else {
            pull::classify(self.pool()?, destination, &rest)
                .await
                .map_err(map_err)?
        };
        let mut seen = HashSet::new();
        Ok(leases
            .iter()
            .map(|(id, _)| {
                if applied.contains(id) {
                    if seen.insert(*id) {
                        PullOutcome::Applied
                    } else {
                        PullOutcome::NotHeld
                    }
                } else {
                    other.get(id).copied().unwrap_or(PullOutcome::NotHeld)
                }
            })
            .collect())
    }

    async fn lease_inner(
        &self,
        owner: &str,
        destination: &str,
        now: Millis,
        limit: usize,
        lease_ms: i64,
        limits: Option<&LeaseLimits>,
    ) -> StoreResult<LeaseBatch> {
        self.inner.health.check()?;
        let pool = self.pool()?;
        let work = async {
            let mut tx = pool.begin().await?;
            let (batch, others_queued) =
                lease::lease(&mut tx, owner, destination, now, limit, lease_ms, limits).await?;
            tx.commit().await?;
            if limits.is_some() {
                self.inner.others_queued.set(destination, others_queued);
            }
            Ok(batch)
        };
        let _entering = self.inner.held.taking().await;
        let batch = self
            .inner
            .health
            .guard(self.inner.query_timeout, "lease", work)
            .await
            .map_err(map_err)?;
        if owner == self.inner.node {
            self.inner
                .held
                .add(batch.items.iter().map(|l| l.delivery_id));
        }
        Ok(batch)
    }
}

/// Counts the live deliveries per destination in one snapshot.
async fn refresh_pending(pool: &PgPool, pending: &PendingCounts) -> Result<(), sqlx::Error> {
    let r = sqlx::query(
        "SELECT pg_current_snapshot()::text,
             coalesce(array_agg(c.destination), '{}'), coalesce(array_agg(c.n), '{}')
         FROM (SELECT destination, count(*) AS n FROM deliveries GROUP BY destination) c",
    )
    .fetch_one(pool)
    .await?;
    let snap: String = r.try_get(0)?;
    let dests: Vec<String> = r.try_get(1)?;
    let counts: Vec<i64> = r.try_get(2)?;
    let snapshot = Snapshot::parse(&snap)
        .ok_or_else(|| sqlx::Error::Protocol(format!("unexpected snapshot {snap:?}")))?;
    pending.refresh(snapshot, dests.into_iter().zip(counts).collect());
    Ok(())
}

/// What the reclaim after an outage needs (see `lease::reclaim`).
struct Reclaimer {
    pool: PgPool,
    node: String,
    held: Arc<lease::Held>,
    health: Arc<health::Health>,
    wakeups: Arc<Wakeups>,
    query_timeout: Duration,
}

/// Each time the database is back after an outage, hands back the leases in
/// this node's name that it does not know it holds.
fn spawn_reclaimer(r: Reclaimer, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = r.health.back() => {}
                _ = stop.cancelled() => return,
            }
            let reclaimed = r.health.guard(
                r.query_timeout,
                "reclaim leases",
                lease::reclaim(&r.pool, &r.node, &r.held),
            );
            match reclaimed.await {
                Ok(destinations) if destinations.is_empty() => {}
                Ok(destinations) => {
                    tracing::info!(
                        ?destinations,
                        "leases taken while PostgreSQL went away, whose answers were lost, handed back"
                    );
                    for d in &destinations {
                        r.wakeups.wake(d);
                    }
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "could not hand back the leases lost in the outage; they end at their expiry"
                ),
            }
        }
    })
}

fn spawn_refresher(
    pool: PgPool,
    pending: Arc<PendingCounts>,
    health: Arc<health::Health>,
    query_timeout: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut pause = REFRESH_EVERY;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => return,
            }
            if !health.is_up() {
                continue;
            }
            let t = Instant::now();
            match health
                .guard(
                    query_timeout,
                    "pending count",
                    refresh_pending(&pool, &pending),
                )
                .await
            {
                Ok(()) => {
                    pause = REFRESH_EVERY
                        .max(t.elapsed() * 50)
                        .min(Duration::from_secs(60))
                }
                Err(e) => tracing::warn!(error = %e, "could not count pending deliveries"),
            }
        }
    })
}

#[async_trait]
impl Store for PgStore {
    async fn append(&self, msg: NewMessage) -> StoreResult<Appended> {
        // Known down: answer now rather than wait for a connection.
        self.inner.health.check()?;
        let (reply, rx) = oneshot::channel();
        self.send(Op::Append(msg, reply)).await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn lease(
        &self,
        destination: &str,
        now: Millis,
        limit: usize,
        lease_ms: i64,
    ) -> StoreResult<LeaseBatch> {
        self.lease_inner(&self.inner.node, destination, now, limit, lease_ms, None)
            .await
    }

    async fn lease_limited(
        &self,
        destination: &str,
        now: Millis,
        limit: usize,
        lease_ms: i64,
        limits: &LeaseLimits,
    ) -> StoreResult<LeaseBatch> {
        self.lease_inner(
            &self.inner.node,
            destination,
            now,
            limit,
            lease_ms,
            Some(limits),
        )
        .await
    }

    async fn complete(&self, results: Vec<AttemptResult>) -> StoreResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = results.iter().map(|r| r.delivery_id).collect();
        let (reply, rx) = oneshot::channel();
        // On failure the leases stay held (until their expiry): the caller
        // records the results again rather than having the deliveries re-sent.
        match self.send(Op::Complete(results, reply)).await {
            Ok(()) => rx.await.map_err(|_| StoreError::Closed)??,
            Err(e) => return Err(e),
        }
        self.inner.held.remove(ids);
        Ok(())
    }

    async fn release(&self, delivery_ids: Vec<i64>) -> StoreResult<()> {
        if delivery_ids.is_empty() {
            return Ok(());
        }
        self.inner.health.check()?;
        // Not held any more, whatever comes of this: if the release fails, the
        // next recovery hands them back (see `lease::reclaim`).
        self.inner.held.remove(delivery_ids.iter().copied());
        sqlx::query(
            "WITH r AS (
                 UPDATE deliveries SET lease_until = NULL, lease_owner = NULL
                 WHERE id = ANY($1) AND lease_owner = $2
                 RETURNING destination)
             SELECT pg_notify($3, d) FROM (SELECT DISTINCT destination AS d FROM r) x",
        )
        .bind(&delivery_ids)
        .bind(&self.inner.node)
        .bind(listen::CHANNEL)
        .execute(self.pool()?)
        .await
        .map_err(map_err)?;
        self.inner.wakeups.wake_all();
        Ok(())
    }

    async fn lease_pull(
        &self,
        destination: &str,
        owner: &str,
        now: Millis,
        limit: usize,
        lease_ms: i64,
        limits: &LeaseLimits,
    ) -> StoreResult<LeaseBatch> {
        self.lease_inner(owner, destination, now, limit, lease_ms, Some(limits))
            .await
    }

    async fn complete_pull(
        &self,
        destination: &str,
        results: Vec<PullResult>,
        _now: Millis,
        expired_ok: bool,
    ) -> StoreResult<Vec<PullOutcome>> {
        self.inner.health.check()?;
        let pool = self.pool()?;
        let node = &self.inner.node;
        // Adopted leases are in this node's name until recorded or disowned.
        let _adopting = self.inner.held.taking().await;
        let leases: Vec<(i64, String)> = results
            .iter()
            .map(|r| (r.result.delivery_id, r.owner.clone()))
            .collect();
        let adopted = pull::adopt(pool, node, destination, &leases, expired_ok)
            .await
            .map_err(map_err)?;
        let adopted_ids: HashSet<i64> = adopted.keys().copied().collect();
        let outcomes = self
            .pull_outcomes(destination, &leases, &adopted_ids)
            .await?;
        let mine: Vec<(i64, String, Option<i64>)> = leases
            .into_iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == PullOutcome::Applied)
            .map(|((id, owner), _)| (id, owner, adopted.get(&id).copied().flatten()))
            .collect();
        let apply: Vec<AttemptResult> = results
            .into_iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == PullOutcome::Applied)
            .map(|(r, _)| r.result)
            .collect();
        if let Err(e) = self.complete(apply).await {
            // Nothing was recorded: the leases go back to their owners, who
            // may send the results again.
            if let Err(e) = pull::disown(pool, node, &mine).await {
                tracing::warn!(error = %e, "could not hand pull leases back; they end at their expiry");
            }
            return Err(e);
        }
        Ok(outcomes)
    }

    async fn release_pull(
        &self,
        destination: &str,
        releases: Vec<PullRelease>,
        _now: Millis,
    ) -> StoreResult<Vec<PullOutcome>> {
        self.inner.health.check()?;
        let pool = self.pool()?;
        let leases: Vec<(i64, String)> = releases
            .into_iter()
            .map(|r| (r.delivery_id, r.owner))
            .collect();
        let released = pull::release(pool, destination, &leases)
            .await
            .map_err(map_err)?;
        if !released.is_empty() {
            self.inner.wakeups.wake(destination);
        }
        self.pull_outcomes(destination, &leases, &released).await
    }

    async fn expired_pulls(
        &self,
        destination: &str,
        _now: Millis,
        limit: usize,
    ) -> StoreResult<Vec<ExpiredPull>> {
        self.inner.health.check()?;
        pull::expired(self.pool()?, destination, limit)
            .await
            .map_err(map_err)
    }

    async fn delivery_destination(&self, delivery_id: i64) -> StoreResult<Option<String>> {
        pull::destination_of(self.pool()?, delivery_id)
            .await
            .map_err(map_err)
    }

    fn pending_estimate(&self) -> u64 {
        self.inner.pending.total()
    }

    fn wakeups(&self) -> Arc<Wakeups> {
        self.inner.wakeups.clone()
    }

    async fn message(&self, id: MessageId) -> StoreResult<MessageDetail> {
        read::message(self.pool()?, id).await
    }

    async fn messages(&self, q: &MessageQuery) -> StoreResult<Page<MessageSummary>> {
        read::messages(self.pool()?, q).await
    }

    async fn deliveries(&self, q: &DeliveryQuery) -> StoreResult<Page<DeliveryInfo>> {
        read::deliveries(self.pool()?, q).await
    }

    async fn replay_message(
        &self,
        id: MessageId,
        destinations: &[String],
        now: Millis,
    ) -> StoreResult<Vec<i64>> {
        let mut tx = self.pool()?.begin().await.map_err(map_err)?;
        let r = replay::replay_message(&mut tx, id, destinations, now)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(map_err)?;
        self.replayed(&r);
        Ok(r.ids)
    }

    async fn message_destinations(&self, id: MessageId) -> StoreResult<Vec<String>> {
        let pool = self.pool()?;
        let seq: i64 = sqlx::query("SELECT seq FROM messages WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?
            .try_get(0)
            .map_err(map_err)?;
        let rows = sqlx::query(
            "SELECT destination FROM (
                 SELECT id, destination FROM deliveries WHERE message_seq = $1
                 UNION ALL SELECT id, destination FROM deliveries_done WHERE message_seq = $1
             ) x GROUP BY destination ORDER BY min(id)",
        )
        .bind(seq)
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
        rows.into_iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn count_dead(&self, f: &ReplayFilter) -> StoreResult<u64> {
        read::count_dead(self.pool()?, f).await
    }

    async fn replay_dead_batch(
        &self,
        f: &ReplayFilter,
        now: Millis,
        limit: usize,
    ) -> StoreResult<usize> {
        let mut tx = self.pool()?.begin().await.map_err(map_err)?;
        let r = replay::replay_dead_batch(&mut tx, f, now, limit)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        self.replayed(&r);
        Ok(r.ids.len())
    }

    async fn destination_stats(&self) -> StoreResult<HashMap<String, DestinationStats>> {
        let pending = self.inner.pending.by_destination();
        let names: Vec<String> = pending.keys().cloned().collect();
        let (oldest, dead) = read::oldest_and_dead(self.pool()?, &names).await?;
        let mut out: HashMap<String, DestinationStats> = HashMap::new();
        for (d, n) in pending {
            let e = out.entry(d.clone()).or_default();
            e.pending = n;
            e.oldest_pending_at = oldest.get(&d).copied();
        }
        for (d, n) in dead {
            out.entry(d).or_default().dead = n;
        }
        Ok(out)
    }

    async fn destination_states(&self) -> StoreResult<HashMap<String, DestinationState>> {
        let rows =
            sqlx::query("SELECT name, paused, disabled_at, failing_since FROM destination_state")
                .fetch_all(self.pool()?)
                .await
                .map_err(map_err)?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    DestinationState {
                        paused: r.try_get(1)?,
                        disabled_at: r.try_get(2)?,
                        failing_since: r.try_get(3)?,
                    },
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    async fn put_destination_state(&self, name: &str, state: &DestinationState) -> StoreResult<()> {
        let name = text(name);
        sqlx::query(
            "WITH s AS (
                 INSERT INTO destination_state (name, paused, disabled_at, failing_since)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                     disabled_at = excluded.disabled_at, failing_since = excluded.failing_since)
             SELECT pg_notify($5, $1)",
        )
        .bind(&name)
        .bind(state.paused)
        .bind(state.disabled_at)
        .bind(state.failing_since)
        .bind(listen::CHANNEL)
        .execute(self.pool()?)
        .await
        .map_err(map_err)?;
        self.inner.wakeups.wake(&name);
        Ok(())
    }

    async fn stored_destinations(&self) -> StoreResult<Vec<StoredDestination>> {
        stored_rows(self.pool()?, DESTINATIONS).await
    }

    async fn stored_transforms(&self) -> StoreResult<Vec<StoredTransform>> {
        stored_rows(self.pool()?, TRANSFORMS).await
    }

    async fn put_stored_transform(&self, t: &StoredTransform, create: bool) -> StoreResult<()> {
        put_stored_row(self.pool()?, TRANSFORMS, t, create).await
    }

    async fn delete_stored_transform(&self, name: &str) -> StoreResult<()> {
        delete_stored_row(self.pool()?, TRANSFORMS, name).await
    }

    async fn stored_alert_channels(&self) -> StoreResult<Vec<StoredAlertChannel>> {
        stored_rows(self.pool()?, CHANNELS).await
    }

    async fn put_stored_alert_channel(
        &self,
        c: &StoredAlertChannel,
        create: bool,
    ) -> StoreResult<()> {
        put_stored_row(self.pool()?, CHANNELS, c, create).await
    }

    async fn delete_stored_alert_channel(&self, name: &str) -> StoreResult<()> {
        delete_stored_row(self.pool()?, CHANNELS, name).await
    }

    async fn lead(&self) -> StoreResult<bool> {
        self.pool()?;
        self.inner.leader.lead().await
    }

    async fn put_alert(&self, a: &StoredAlert) -> StoreResult<()> {
        let pool = self.pool()?;
        sqlx::query(
            "INSERT INTO alerts (id, at, channel, outcome, record) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(text(&a.id))
        .bind(a.at)
        .bind(text(&a.channel))
        .bind(text(&a.outcome))
        .bind(text(&a.record.to_string()))
        .execute(pool)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "DELETE FROM alerts WHERE id IN
               (SELECT id FROM alerts ORDER BY at DESC, id DESC OFFSET $1)",
        )
        .bind(ALERTS_KEPT as i64)
        .execute(pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn alert_history(&self, limit: usize) -> StoreResult<Vec<StoredAlert>> {
        let rows = sqlx::query(
            "SELECT id, at, channel, outcome, record FROM alerts ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(self.pool()?)
        .await
        .map_err(map_err)?;
        rows.into_iter()
            .map(|r| {
                Ok(StoredAlert {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    channel: r.try_get(2)?,
                    outcome: r.try_get(3)?,
                    record: serde_json::from_str(r.try_get::<&str, _>(4)?)
                        .unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    async fn put_stored_destination(&self, d: &StoredDestination, create: bool) -> StoreResult<()> {
        put_stored_row(self.pool()?, DESTINATIONS, d, create).await
    }

    async fn tenant_record(
        &self,
        kind: &str,
        tenant: &str,
        key: &str,
    ) -> StoreResult<Option<TenantRecord>> {
        tenants::record(self.pool()?, kind, tenant, key).await
    }

    async fn tenant_records(&self, q: &RecordQuery<'_>) -> StoreResult<Vec<TenantRecord>> {
        tenants::records(self.pool()?, q).await
    }

    async fn put_tenant_record(&self, r: &TenantRecord, create: bool) -> StoreResult<()> {
        tenants::put(self.pool()?, r, create).await
    }

    async fn delete_tenant_record(&self, kind: &str, tenant: &str, id: &str) -> StoreResult<()> {
        tenants::delete(self.pool()?, kind, tenant, id).await
    }

    async fn delete_stored_destination(&self, name: &str) -> StoreResult<()> {
        delete_stored_row(self.pool()?, DESTINATIONS, name).await
    }

    async fn cleanup(&self, cutoff: Millis, now: Millis, limit: usize) -> StoreResult<usize> {
        let pool = self.pool()?;
        // Finished messages: those with no live delivery. Rows another node is
        // cleaning (or a replay is adding to) are skipped, never waited for, and
        // ingest never touches old rows, so this never holds ingest up.
        let messages: i64 = sqlx::query(
            "WITH gone AS (
                 DELETE FROM messages WHERE seq IN (
                     SELECT seq FROM messages m
                     WHERE received_at < $1
                       AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_seq = m.seq)
                     ORDER BY received_at LIMIT $2
                     FOR UPDATE SKIP LOCKED)
                 RETURNING seq),
             done AS (
                 DELETE FROM deliveries_done WHERE message_seq IN (SELECT seq FROM gone)
                 RETURNING id),
             tried AS (
                 DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM done))
             SELECT count(*) FROM gone",
        )
        .bind(cutoff)
        .bind(limit as i64)
        .fetch_one(pool)
        .await
        .map_err(map_err)?
        .try_get(0)
        .map_err(map_err)?;
        let keys: i64 = sqlx::query(
            "WITH gone AS (
                 DELETE FROM dedup WHERE (source, key) IN (
                     SELECT source, key FROM dedup WHERE expires_at <= $1
                     ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING 1)
             SELECT count(*) FROM gone",
        )
        .bind(now)
        .bind(limit as i64)
        .fetch_one(pool)
        .await
        .map_err(map_err)?
        .try_get(0)
        .map_err(map_err)?;
        // Nodes that left the queue for places long ago (a node that dies
        // while queued leaves its row behind; it counts for nothing once
        // expired, and is removed here).
        sqlx::query("DELETE FROM lease_waiters WHERE until < hookgate_now_ms() - 60000")
            .execute(pool)
            .await
            .map_err(map_err)?;
        Ok((messages + keys) as usize)
    }

    fn writable(&self) -> StoreResult<()> {
        self.inner.health.check()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.health.check()?;
        let pool = self.pool()?;
        self.inner
            .health
            .guard(self.inner.query_timeout, "ping", async {
                sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
            })
            .await
            .map_err(map_err)
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Writers finish what is queued, then stop.
        self.inner.tx.write().take();
        let writers: Vec<_> = self.inner.writers.lock().drain(..).collect();
        for w in writers {
            let _ = w.await;
        }
        // Leases still held go back at once instead of at their expiry.
        let released = sqlx::query(
            "WITH r AS (
                 UPDATE deliveries SET lease_until = NULL, lease_owner = NULL
                 WHERE lease_owner = $1 RETURNING destination)
             SELECT pg_notify($2, d) FROM (SELECT DISTINCT destination AS d FROM r) x",
        )
        .bind(&self.inner.node)
        .bind(listen::CHANNEL)
        .execute(&self.inner.pool)
        .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "could not release this node's leases; they end at their expiry");
        }
        self.inner.leader.release().await;
        self.inner.stop.cancel();
        let background: Vec<_> = self.inner.background.lock().drain(..).collect();
        for b in background {
            let _ = b.await;
        }
        self.inner.pool.close().await;
    }
}

/// The table of destinations made through the API.
const DESTINATIONS: &str = "api_destinations";
/// The table of transformations made through the API (the same columns).
const TRANSFORMS: &str = "api_transforms";
/// The table of alert channels made through the API (the same columns).
const CHANNELS: &str = "api_alert_channels";

/// The rows of `table` (API destinations or transformations), by name.
async fn stored_rows(pool: &PgPool, table: &str) -> StoreResult<Vec<StoredDestination>> {
    let rows = sqlx::query(&format!(
        "SELECT name, spec, created_at, updated_at FROM {table} ORDER BY name"
    ))
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.into_iter()
        .map(|r| {
            Ok(StoredDestination {
                name: r.try_get(0)?,
                spec: serde_json::from_str(r.try_get::<&str, _>(1)?)
                    .unwrap_or(serde_json::Value::Null),
                created_at: r.try_get(2)?,
                updated_at: r.try_get(3)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(map_err)
}

/// Creates (`Conflict` if it exists) or replaces (`NotFound` if missing) a
/// row of `table` (API destinations or transformations).
async fn put_stored_row(
    pool: &PgPool,
    table: &str,
    d: &StoredDestination,
    create: bool,
) -> StoreResult<()> {
    let spec = text(&d.spec.to_string());
    let n = if create {
        sqlx::query(&format!(
            "INSERT INTO {table} (name, spec, created_at, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING"
        ))
        .bind(text(&d.name))
        .bind(spec)
        .bind(d.created_at)
        .bind(d.updated_at)
        .execute(pool)
        .await
    } else {
        sqlx::query(&format!(
            "UPDATE {table} SET spec = $2, updated_at = $3 WHERE name = $1"
        ))
        .bind(text(&d.name))
        .bind(spec)
        .bind(d.updated_at)
        .execute(pool)
        .await
    }
    .map_err(map_err)?
    .rows_affected();
    crate::store::put_outcome(n, create)
}

/// Removes a row of `table` (`NotFound` if missing).
async fn delete_stored_row(pool: &PgPool, table: &str, name: &str) -> StoreResult<()> {
    let n = sqlx::query(&format!("DELETE FROM {table} WHERE name = $1"))
        .bind(text(name))
        .execute(pool)
        .await
        .map_err(map_err)?
        .rows_affected();
    if n == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_replaced() {
        assert_eq!(text("a\0b"), "a\u{FFFD}b");
        assert_eq!(text("plain"), "plain");
    }

    #[test]
    fn lock_hashes_are_stable_and_separate_parts() {
        // Stable: nodes of different builds must agree.
        assert_eq!(key_lock("dest", "key"), key_lock("dest", "key"));
        assert_ne!(key_lock("ab", "c"), key_lock("a", "bc"));
        assert_eq!(key_lock("dest", "key"), -1_989_012_925);
    }

    #[test]
    fn several_hosts_are_refused_without_showing_the_url() {
        for url in [
            "postgres://hookgate:s3cr%2Ct@a:5432,b:5432/hookgate",
            "postgres://hookgate:s3cr%2Ct@a,b/hookgate",
            "postgres:///hookgate?user=hookgate&password=s3cr%2Ct&host=a,b",
        ] {
            let e = connect_options(url).unwrap_err().to_string();
            assert!(e.contains("several hosts"), "{url}: {e}");
            assert!(!e.contains("s3cr"), "{e}");
        }
        // A comma in the password is not a second host.
        assert!(connect_options("postgres://u:a,b@db:5432/hookgate").is_ok());
    }

    #[test]
    fn target_session_attrs_for_a_primary_is_taken_out() {
        assert_eq!(
            supported_url("postgres://u@db/h?target_session_attrs=read-write").unwrap(),
            "postgres://u@db/h"
        );
        assert_eq!(
            supported_url("postgres://u@db/h?sslmode=require&target_session_attrs=primary")
                .unwrap(),
            "postgres://u@db/h?sslmode=require"
        );
        let e = supported_url("postgres://u@db/h?target_session_attrs=standby").unwrap_err();
        assert!(
            e.to_string().contains("target_session_attrs=standby"),
            "{e}"
        );
        // Nothing to change: the URL as given.
        let plain = "postgres://u:p@db:5432/h?sslmode=disable";
        assert_eq!(supported_url(plain).unwrap(), plain);
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        let m = migrator();
        let versions: Vec<i64> = m.iter().map(|m| m.version).collect();
        let mut sorted = versions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(versions, sorted);
        assert_eq!(versions[0], 1);
    }
}
