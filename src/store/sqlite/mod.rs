//! The embedded store on SQLite (WAL, `synchronous = FULL`).
//!
//! One writer thread owns the writable connection and commits in groups
//! ([`writer`]); a small pool of reader threads serves leases and queries.
//! Leases live in memory: one process owns the database (an exclusive lock file
//! makes sure), so after a crash every pending delivery is simply due again.
//!
//! Invariants:
//! - Per (destination, ordering key) at most one delivery has status pending;
//!   later ones are queued (status 1) and promoted in id order when it finishes.
//! - A delivery id is in the lease set from `lease` until the commit that records
//!   its attempt (or its `release`) has been observed by the next lease call.
//! - A database is ours (`application_id`) or empty before anything is written
//!   to it; someone else's is opened only when asked (`--adopt`).
//! - A file beside the database (`<name>.clean`) exists only between a clean
//!   close and the next open; without it the database is checked
//!   (`PRAGMA quick_check`) before it is used.
//!
//! Parts, like the PostgreSQL store's:
//! - [`writer`]: the writer thread, group commit, WAL checkpoints, room left.
//! - [`open`]: ownership of the file, schema and upgrades, integrity check.
//! - [`queue`]: append, lease, record attempts, release; in-memory counters.
//! - [`read`]: the admin API's reads and the per-destination stats.
//! - [`replay`]: replays of one message and of dead deliveries.
//! - [`control`]: destination state and API-created destinations.
//! - [`retention`]: removal of old messages and expired dedup keys.

mod control;
mod open;
mod queue;
mod read;
mod replay;
mod retention;
mod tenants;
mod writer;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;

use self::open::{clean_marker, count_pending, lock_file, prepare, sync_dir};
use self::queue::{lease_query, Leases, Pending};
use self::writer::{map_err, Writer};
use super::*;
use crate::config::Priority;

const READERS: usize = 3;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

struct Inner {
    writer: Writer,
    readers: crossbeam_channel::Sender<ReadJob>,
    leases: Leases,
    /// Leases held by pull consumers (over `leases`).
    pulls: pull::LocalPulls,
    pending: Pending,
    wakeups: Arc<Wakeups>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop_checkpointer: Arc<std::sync::atomic::AtomicBool>,
    /// Where the retention walk continues (a message sequence number).
    cleanup_from: Arc<AtomicI64>,
    /// Room for new messages (`storage.max_size`, free space on the filesystem).
    room: Arc<writer::Room>,
    /// Why the last append failed in the database (a corrupt page, a table of
    /// another shape, a full disk), until an append succeeds again: readiness
    /// says so instead of answering ready while every write fails.
    write_error: Mutex<Option<String>>,
    /// The database file.
    path: std::path::PathBuf,
    _lock: File,
}

/// The embedded SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

/// Options of the embedded store.
#[derive(Clone)]
pub struct SqliteOptions {
    /// Observes each commit (for metrics).
    pub observer: CommitObserver,
    /// The bound in bytes of the database and its WAL together: new messages
    /// are refused (503) once less than a tenth of it is left (see
    /// `writer::Room` for the exact rule).
    pub max_size: Option<u64>,
    /// Add hookgate's tables to a database that holds another program's
    /// (`serve --adopt`); without it such a database is refused untouched.
    pub adopt: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            observer: Arc::new(|_, _| {}),
            max_size: None,
            adopt: false,
        }
    }
}

/// Page cache per connection, in KiB. The recent end of the tables and indexes
/// is what every connection touches; the OS page cache holds the rest, so a
/// backlog of millions does not grow the process.
const WRITER_CACHE_KIB: i64 = 16 * 1024;
const READER_CACHE_KIB: i64 = 4 * 1024;
const COPIER_CACHE_KIB: i64 = 256;

fn open_conn(path: &Path, read_only: bool, cache_kib: i64) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(&format!(
        "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{cache_kib};"
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Starts the reader threads, each with its own read-only connection.
fn spawn_readers(
    path: &Path,
) -> Result<(crossbeam_channel::Sender<ReadJob>, Vec<JoinHandle<()>>), StoreError> {
    let (rtx, rrx) = crossbeam_channel::unbounded::<ReadJob>();
    let mut threads = Vec::new();
    for i in 0..READERS {
        let rc = open_conn(path, true, READER_CACHE_KIB).map_err(map_err)?;
        let rrx = rrx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("hookgate-reader-{i}"))
                .spawn(move || {
                    while let Ok(job) = rrx.recv() {
                        job(&rc);
                    }
                })
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        );
    }
    Ok((rtx, threads))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Arc::new(|_, _| {}))
    }

    /// Opens the database, reporting each commit to `observer`.
    pub fn open_with(path: impl AsRef<Path>, observer: CommitObserver) -> Result<Self, StoreError> {
        Self::open_opts(
            path,
            SqliteOptions {
                observer,
                ..Default::default()
            },
        )
    }

    /// Opens the database with options.
    pub fn open_opts(path: impl AsRef<Path>, opts: SqliteOptions) -> Result<Self, StoreError> {
        let SqliteOptions {
            observer,
            max_size,
            adopt,
        } = opts;
        let path = path.as_ref();
        let lock = lock_file(path)?;
        let conn = open_conn(path, false, WRITER_CACHE_KIB).map_err(map_err)?;
        prepare(&conn, path, adopt)?;
        let pending = count_pending(&conn)?;
        let (rtx, mut threads) = spawn_readers(path)?;
        let room = Arc::new(writer::Room::apply(&conn, path, max_size).map_err(map_err)?);
        let wal = writer::Wal::new(room.wal_restart_frames());
        let cp = open_conn(path, false, COPIER_CACHE_KIB).map_err(map_err)?;
        threads.push(
            wal.spawn_copier(cp)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        );
        let stop_checkpointer = wal.stop_handle();
        let (writer, wh) = Writer::start(conn, Some(wal), Some(room.clone()), move |d, n| {
            observer(d, n)
        });
        threads.push(wh);
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer,
                readers: rtx,
                leases: Leases::default(),
                pulls: Default::default(),
                pending,
                wakeups: Arc::new(Wakeups::default()),
                threads: Mutex::new(threads),
                stop_checkpointer,
                cleanup_from: Arc::new(AtomicI64::new(0)),
                room,
                write_error: Mutex::new(None),
                path: path.to_path_buf(),
                _lock: lock,
            }),
        })
    }

    /// Keeps the outcome of an append for [`Store::writable`]: a failure of the
    /// database (not a refusal by `max_size`, nor a shutdown) is remembered until
    /// the next append succeeds.
    fn note_write<T>(&self, res: &StoreResult<T>) {
        match res {
            Ok(_) => {
                if self.inner.write_error.lock().is_some() {
                    *self.inner.write_error.lock() = None;
                }
            }
            Err(StoreError::Unavailable(why)) => {
                *self.inner.write_error.lock() = Some(why.clone());
            }
            Err(StoreError::Full) => {
                *self.inner.write_error.lock() = Some("the disk is full".into());
            }
            Err(_) => {}
        }
    }

    /// Runs a read on the reader pool.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.inner
            .readers
            .send(Box::new(move |c| {
                let _ = tx.send(f(c));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Pending deliveries per destination, as counted in memory.
    pub fn pending_by_destination(&self) -> HashMap<String, i64> {
        self.inner.pending.by_destination.lock().clone()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(&self, msg: NewMessage) -> StoreResult<Appended> {
        queue::append(self, msg).await
    }

    async fn lease(
        &self,
        destination: &str,
        now: Millis,
        limit: usize,
        _lease_ms: i64,
    ) -> StoreResult<LeaseBatch> {
        let inner = self.inner.clone();
        let dest = destination.to_string();
        self.read(move |c| lease_query(c, &inner.leases, &dest, now, limit).map_err(map_err))
            .await
    }

    async fn complete(&self, results: Vec<AttemptResult>) -> StoreResult<()> {
        queue::complete(self, results).await
    }

    async fn release(&self, delivery_ids: Vec<i64>) -> StoreResult<()> {
        queue::release(self, delivery_ids).await
    }

    fn local_pulls(&self) -> Option<&pull::LocalPulls> {
        Some(&self.inner.pulls)
    }

    async fn delivery_destination(&self, delivery_id: i64) -> StoreResult<Option<String>> {
        self.read(move |c| {
            c.prepare_cached("SELECT destination FROM deliveries WHERE id = ?1")
                .and_then(|mut s| s.query_row([delivery_id], |r| r.get(0)).optional())
                .map_err(map_err)
        })
        .await
    }

    fn pending_estimate(&self) -> u64 {
        self.inner.pending.total.load(Ordering::Relaxed).max(0) as u64
    }

    fn wakeups(&self) -> Arc<Wakeups> {
        self.inner.wakeups.clone()
    }

    fn is_full(&self) -> bool {
        self.inner.room.refuses_appends()
    }

    fn writable(&self) -> StoreResult<()> {
        if self.is_full() {
            return Err(StoreError::Full);
        }
        match self.inner.write_error.lock().as_ref() {
            Some(why) => Err(StoreError::Unavailable(format!(
                "the last write failed: {why}"
            ))),
            None => Ok(()),
        }
    }

    async fn message(&self, id: MessageId) -> StoreResult<MessageDetail> {
        read::message(self, id).await
    }

    async fn messages(&self, q: &MessageQuery) -> StoreResult<Page<MessageSummary>> {
        read::messages(self, q).await
    }

    async fn deliveries(&self, q: &DeliveryQuery) -> StoreResult<Page<DeliveryInfo>> {
        read::deliveries(self, q).await
    }

    async fn replay_message(
        &self,
        id: MessageId,
        destinations: &[String],
        now: Millis,
    ) -> StoreResult<Vec<i64>> {
        replay::replay_message(self, id, destinations, now).await
    }

    async fn message_destinations(&self, id: MessageId) -> StoreResult<Vec<String>> {
        read::message_destinations(self, id).await
    }

    async fn count_dead(&self, f: &ReplayFilter) -> StoreResult<u64> {
        replay::count_dead(self, f).await
    }

    async fn replay_dead_batch(
        &self,
        f: &ReplayFilter,
        now: Millis,
        limit: usize,
    ) -> StoreResult<usize> {
        replay::replay_dead_batch(self, f, now, limit).await
    }

    async fn destination_stats(&self) -> StoreResult<HashMap<String, DestinationStats>> {
        read::destination_stats(self).await
    }

    async fn destination_states(&self) -> StoreResult<HashMap<String, DestinationState>> {
        control::destination_states(self).await
    }

    async fn put_destination_state(&self, name: &str, state: &DestinationState) -> StoreResult<()> {
        control::put_destination_state(self, name, state).await
    }

    async fn stored_destinations(&self) -> StoreResult<Vec<StoredDestination>> {
        control::stored_rows(self, control::DESTINATIONS).await
    }

    async fn put_stored_destination(&self, d: &StoredDestination, create: bool) -> StoreResult<()> {
        control::put_stored_row(self, control::DESTINATIONS, d, create).await
    }

    async fn delete_stored_destination(&self, name: &str) -> StoreResult<()> {
        control::delete_stored_row(self, control::DESTINATIONS, name).await
    }

    async fn stored_transforms(&self) -> StoreResult<Vec<StoredTransform>> {
        control::stored_rows(self, control::TRANSFORMS).await
    }

    async fn put_stored_transform(&self, t: &StoredTransform, create: bool) -> StoreResult<()> {
        control::put_stored_row(self, control::TRANSFORMS, t, create).await
    }

    async fn delete_stored_transform(&self, name: &str) -> StoreResult<()> {
        control::delete_stored_row(self, control::TRANSFORMS, name).await
    }

    async fn stored_alert_channels(&self) -> StoreResult<Vec<StoredAlertChannel>> {
        control::stored_rows(self, control::CHANNELS).await
    }

    async fn put_stored_alert_channel(
        &self,
        c: &StoredAlertChannel,
        create: bool,
    ) -> StoreResult<()> {
        control::put_stored_row(self, control::CHANNELS, c, create).await
    }

    async fn delete_stored_alert_channel(&self, name: &str) -> StoreResult<()> {
        control::delete_stored_row(self, control::CHANNELS, name).await
    }

    async fn put_alert(&self, alert: &StoredAlert) -> StoreResult<()> {
        control::put_alert(self, alert).await
    }

    async fn alert_history(&self, limit: usize) -> StoreResult<Vec<StoredAlert>> {
        control::alert_history(self, limit).await
    }

    async fn tenant_record(
        &self,
        kind: &str,
        tenant: &str,
        key: &str,
    ) -> StoreResult<Option<TenantRecord>> {
        tenants::record(self, kind, tenant, key).await
    }

    async fn tenant_records(&self, q: &RecordQuery<'_>) -> StoreResult<Vec<TenantRecord>> {
        tenants::records(self, q).await
    }

    async fn put_tenant_record(&self, r: &TenantRecord, create: bool) -> StoreResult<()> {
        tenants::put(self, r, create).await
    }

    async fn delete_tenant_record(&self, kind: &str, tenant: &str, id: &str) -> StoreResult<()> {
        tenants::delete(self, kind, tenant, id).await
    }

    async fn cleanup(&self, cutoff: Millis, now: Millis, limit: usize) -> StoreResult<usize> {
        retention::cleanup(self, cutoff, now, limit).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err))
            .await
    }

    async fn close(&self) {
        self.inner.stop_checkpointer.store(true, Ordering::Relaxed);
        if self.inner.writer.close().await {
            // Everything is committed and checkpointed: the next open need not
            // check the file.
            let marker = clean_marker(&self.inner.path);
            let marked = File::create(&marker)
                .and_then(|f| f.sync_all())
                .and_then(|()| sync_dir(&self.inner.path));
            if let Err(e) = marked {
                tracing::warn!(error = %e, "cannot mark the database as closed cleanly; the next start checks it");
            }
        }
        // Reader threads end when the store (and its channel) is dropped.
        let threads: Vec<_> = self.inner.threads.lock().drain(..).collect();
        drop(threads);
    }
}
