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

use self::writer::{map_err, Writer};
use super::*;
use crate::config::Priority;

const SCHEMA: &str = include_str!("schema.sql");
const SCHEMA_VERSION: i64 = 2;
/// `PRAGMA application_id` of hookgate's databases ("hgat"): what tells our
/// file from another program's.
const APPLICATION_ID: i64 = 0x6867_6174;
/// The tables of [`SCHEMA`]: a database with only these (and no
/// `application_id`) was made by an earlier hookgate.
const TABLES: &[&str] = &[
    "messages",
    "deliveries",
    "attempts",
    "dedup",
    "destination_state",
    "api_destinations",
];
const READERS: usize = 3;
/// Messages a filtered listing looks at per call at most.
const SCAN_BUDGET: usize = 10_000;

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Counters kept in memory and changed only after commits, so that gauges and
/// backpressure never scan the queue.
#[derive(Default)]
struct Pending {
    total: AtomicI64,
    by_destination: Mutex<HashMap<String, i64>>,
    dead: Mutex<HashMap<String, i64>>,
}

fn bump(map: &Mutex<HashMap<String, i64>>, destination: &str, n: i64) {
    let mut m = map.lock();
    match m.get_mut(destination) {
        Some(v) => *v += n,
        None => {
            m.insert(destination.to_string(), n);
        }
    }
}

impl Pending {
    fn add_dead(&self, destination: &str, n: i64) {
        bump(&self.dead, destination, n);
    }

    fn add(&self, destination: &str, n: i64) {
        self.total.fetch_add(n, Ordering::Relaxed);
        bump(&self.by_destination, destination, n);
    }
}

/// Leases: the ids handed out, and ids whose lease ended in a commit that every
/// later lease query will see.
#[derive(Default)]
struct Leases {
    held: Mutex<HashSet<i64>>,
    ended: Mutex<Vec<i64>>,
}

struct Inner {
    writer: Writer,
    readers: crossbeam_channel::Sender<ReadJob>,
    leases: Leases,
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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let lock_path = path.with_extension("lock");
        let lock = File::create(&lock_path).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", lock_path.display()))
        })?;
        lock.try_lock().map_err(|_| {
            StoreError::Unavailable(format!(
                "{} is in use by another hookgate process",
                path.display()
            ))
        })?;

        let conn = open_conn(path, false, WRITER_CACHE_KIB).map_err(map_err)?;
        // Nothing is written (not even the journal mode) before we know the file
        // is ours, empty, or adopted on purpose.
        let owner = ownership(&conn).map_err(map_err)?;
        if let Ownership::Foreign(why) = &owner {
            if !adopt {
                return Err(StoreError::Refused(format!(
                    "{} is not a hookgate database ({why}); point storage.path at a new file, \
                     or start with `hookgate serve --adopt` to add hookgate's tables to it",
                    path.display(),
                )));
            }
            tracing::warn!(path = %path.display(), "adopting a database of another program (--adopt)");
        }
        let marker = clean_marker(path);
        let clean = marker.exists();
        if owner != Ownership::Empty && !clean {
            check_integrity(&conn, path)?;
        }
        // WAL with a sync at every commit. Checkpoints run on their own thread
        // (see `checkpointer`), never inside a commit that an ack waits for.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;
             PRAGMA wal_autocheckpoint = 0;",
        )
        .map_err(map_err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(map_err)?;
        if version > SCHEMA_VERSION && owner == Ownership::Ours {
            return Err(StoreError::Unavailable(format!(
                "{} was written by a newer hookgate (schema {version})",
                path.display()
            )));
        }
        migrate(&conn).map_err(map_err)?;
        // From here on writes happen: until the next clean close, a crash is an
        // unclean shutdown.
        if clean {
            std::fs::remove_file(&marker)
                .and_then(|()| sync_dir(path))
                .map_err(|e| {
                    StoreError::Unavailable(format!("cannot remove {}: {e}", marker.display()))
                })?;
        }

        let pending = Pending::default();
        for (d, n) in count_by_destination(&conn, "status IN (0, 1)").map_err(map_err)? {
            pending.add(&d, n);
        }
        for (d, n) in count_by_destination(&conn, "status = 3").map_err(map_err)? {
            pending.add_dead(&d, n);
        }

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

/// Whose database a file is, as found at open.
#[derive(Debug, PartialEq, Eq)]
enum Ownership {
    /// No tables: a new file.
    Empty,
    /// hookgate's (by `application_id`, or only hookgate's tables).
    Ours,
    /// Another program's: what shows it.
    Foreign(String),
}

fn ownership(c: &Connection) -> rusqlite::Result<Ownership> {
    let app: i64 = c.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if app == APPLICATION_ID {
        return Ok(Ownership::Ours);
    }
    let tables: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view')
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(if app != 0 {
        Ownership::Foreign(format!("its application_id is {app:#x}, not hookgate's"))
    } else if tables.is_empty() {
        Ownership::Empty
    } else if tables.iter().all(|t| TABLES.contains(&t.as_str())) {
        Ownership::Ours
    } else {
        Ownership::Foreign(format!(
            "it holds tables that are not hookgate's: {}",
            tables
                .iter()
                .filter(|t| !TABLES.contains(&t.as_str()))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Creates or upgrades the schema, all in one transaction, and marks the file
/// as hookgate's.
fn migrate(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch("BEGIN IMMEDIATE")?;
    let r = (|| {
        let has_deliveries: bool = c.query_row(
            "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'deliveries'",
            [],
            |r| r.get(0),
        )?;
        let has_replayed_by: bool = c.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('deliveries') WHERE name = 'replayed_by'",
            [],
            |r| r.get(0),
        )?;
        if has_deliveries && !has_replayed_by {
            // Schema 2. A dead delivery with a later delivery of its message to
            // the same destination was replayed already: mark it so, so that a
            // bulk replay does not send it again.
            c.execute_batch(
                "ALTER TABLE deliveries ADD COLUMN replayed_by INTEGER;
                 UPDATE deliveries SET status = 4, replayed_by = (
                     SELECT min(n.id) FROM deliveries n WHERE n.message_seq = deliveries.message_seq
                         AND n.destination = deliveries.destination AND n.id > deliveries.id)
                 WHERE status = 3 AND EXISTS (
                     SELECT 1 FROM deliveries n WHERE n.message_seq = deliveries.message_seq
                         AND n.destination = deliveries.destination AND n.id > deliveries.id);",
            )?;
        }
        c.execute_batch(SCHEMA)?;
        c.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
        ))
    })();
    match r {
        Ok(()) => c.execute_batch("COMMIT"),
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The file whose presence says the last close was clean.
fn clean_marker(db: &Path) -> std::path::PathBuf {
    db.with_extension("clean")
}

/// Syncs the directory of `db`, so that a file created or removed there stays so.
fn sync_dir(db: &Path) -> std::io::Result<()> {
    let dir = match db.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// `PRAGMA quick_check` after an unclean shutdown: a damaged database is refused
/// before anything is written to it or delivered from it.
fn check_integrity(c: &Connection, path: &Path) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let problems: Vec<String> = c
        .prepare("PRAGMA quick_check(20)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| {
            StoreError::Refused(format!(
                "{} failed its integrity check after an unclean shutdown: {e}",
                path.display()
            ))
        })?;
    tracing::info!(
        path = %path.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "the last shutdown was not clean: checked the database (PRAGMA quick_check)"
    );
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Refused(format!(
        "{} failed its integrity check after an unclean shutdown ({}); \
         restore it from a backup or recover it with `sqlite3 {} .recover`",
        path.display(),
        problems.join("; "),
        path.display()
    )))
}

/// Deliveries per destination that match a condition (run once, at start).
fn count_by_destination(c: &Connection, cond: &str) -> rusqlite::Result<Vec<(String, i64)>> {
    c.prepare(&format!(
        "SELECT destination, count(*) FROM deliveries WHERE {cond} GROUP BY destination"
    ))?
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

fn status_of(p: Priority) -> i64 {
    p.rank()
}

/// Inserts one message and its deliveries; returns the new deliveries' (destination, status).
fn insert_message(c: &Connection, m: &NewMessage) -> rusqlite::Result<Vec<(String, i64)>> {
    let id = m.id.to_string();
    c.prepare_cached(
        "INSERT INTO messages (id, source, event_type, received_at, content_type, headers, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id,
        m.source,
        m.event_type,
        m.received_at,
        m.content_type,
        &m.headers[..],
        &m.body[..]
    ])?;
    let seq = c.last_insert_rowid();
    let mut out = Vec::with_capacity(m.deliveries.len());
    for d in &m.deliveries {
        let status = key_status(c, &d.destination, d.ordering_key.as_deref())?;
        c.prepare_cached(
            "INSERT INTO deliveries (message_seq, destination, status, priority, due_at, ordering_key, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            seq,
            d.destination,
            status,
            status_of(d.priority),
            d.due_at,
            d.ordering_key,
            m.received_at
        ])?;
        out.push((d.destination.clone(), status));
    }
    Ok(out)
}

/// 0 (pending) when the key has no live delivery at this destination, else 1 (queued).
fn key_status(c: &Connection, destination: &str, key: Option<&str>) -> rusqlite::Result<i64> {
    let Some(key) = key else { return Ok(0) };
    let busy: Option<i64> = c
        .prepare_cached(
            "SELECT 1 FROM deliveries WHERE destination = ?1 AND ordering_key = ?2 AND status IN (0, 1) LIMIT 1",
        )?
        .query_row(params![destination, key], |r| r.get(0))
        .optional()?;
    Ok(if busy.is_some() { 1 } else { 0 })
}

/// Makes the oldest queued delivery of a key pending, if the key has no pending one.
fn promote(c: &Connection, destination: &str, key: &str) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "UPDATE deliveries SET status = 0 WHERE id = (
                 SELECT id FROM deliveries
                 WHERE destination = ?1 AND ordering_key = ?2 AND status IN (0, 1) AND status = 1
                   AND NOT EXISTS (SELECT 1 FROM deliveries WHERE destination = ?1 AND ordering_key = ?2
                                   AND status IN (0, 1) AND status = 0)
                 ORDER BY id LIMIT 1)",
        )?
        .execute(params![destination, key])?;
    Ok(n > 0)
}

fn stored_message(r: &rusqlite::Row<'_>, base: usize) -> rusqlite::Result<StoredMessage> {
    let id: String = r.get(base)?;
    Ok(StoredMessage {
        id: id.parse().unwrap_or_default(),
        source: r.get(base + 1)?,
        event_type: r.get(base + 2)?,
        received_at: r.get(base + 3)?,
        content_type: r.get(base + 4)?,
        headers: Bytes::from(r.get::<_, Vec<u8>>(base + 5)?),
        body: Bytes::from(r.get::<_, Vec<u8>>(base + 6)?),
    })
}

const MSG_COLS: &str =
    "m.id, m.source, m.event_type, m.received_at, m.content_type, m.headers, m.body";

fn lease_query(
    c: &Connection,
    leases: &Leases,
    destination: &str,
    now: Millis,
    limit: usize,
) -> rusqlite::Result<LeaseBatch> {
    let mut held = leases.held.lock();
    // Leases that ended in a commit visible to this query's snapshot.
    for id in leases.ended.lock().drain(..) {
        held.remove(&id);
    }
    let mut items = Vec::new();
    let sql = format!(
        "SELECT d.id, d.attempts, d.retry_base, d.priority, d.ordering_key, d.created_at, {MSG_COLS}
         FROM deliveries d JOIN messages m ON m.seq = d.message_seq
         WHERE d.destination = ?1 AND d.status = 0 AND d.priority = ?2 AND d.due_at <= ?3
         ORDER BY d.due_at, d.id LIMIT ?4"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    for prio in 0..3i64 {
        if items.len() >= limit {
            break;
        }
        let want = (limit - items.len() + held.len()) as i64;
        let mut rows = stmt.query(params![destination, prio, now, want])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            if held.contains(&id) {
                continue;
            }
            let attempts: u32 = r.get(1)?;
            let base: u32 = r.get(2)?;
            items.push(Leased {
                delivery_id: id,
                destination: destination.to_string(),
                attempt: attempts + 1,
                retry_index: attempts.saturating_sub(base),
                priority: Priority::from_rank(r.get(3)?),
                ordering_key: r.get(4)?,
                created_at: r.get(5)?,
                message: Arc::new(stored_message(r, 6)?),
            });
            if items.len() >= limit {
                break;
            }
        }
    }
    for l in &items {
        held.insert(l.delivery_id);
    }
    drop(held);
    // A full batch means the caller comes back at once; only a short one needs
    // to know when more becomes due.
    if items.len() >= limit {
        return Ok(LeaseBatch {
            items,
            next_due: None,
            held_back: false,
        });
    }
    // One index seek per priority: `deliveries_due` is ordered by (destination,
    // priority, due_at), so a min over all priorities at once would walk every
    // pending delivery of the destination.
    let mut next_due: Option<Millis> = None;
    let mut stmt = c.prepare_cached(
        "SELECT min(due_at) FROM deliveries
         WHERE destination = ?1 AND status = 0 AND priority = ?2 AND due_at > ?3",
    )?;
    for prio in 0..3i64 {
        let t: Option<Millis> = stmt.query_row(params![destination, prio, now], |r| r.get(0))?;
        next_due = match (next_due, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(LeaseBatch {
        items,
        next_due,
        held_back: false,
    })
}

/// A message's delivery count and derived status ([`MessageStatus::derive`]).
fn message_summary(c: &Connection, seq: i64) -> rusqlite::Result<(i64, MessageStatus)> {
    let rows: Vec<(i64, String, i64)> = c
        .prepare_cached("SELECT id, destination, status FROM deliveries WHERE message_seq = ?1")?
        .query_map([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let status = MessageStatus::derive(
        rows.iter()
            .map(|(id, d, s)| (*id, d.as_str(), DeliveryStatus::from_code(*s))),
    );
    Ok((rows.len() as i64, status))
}

fn delivery_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryInfo> {
    let status = DeliveryStatus::from_code(r.get(3)?);
    let msg: String = r.get(1)?;
    Ok(DeliveryInfo {
        id: r.get(0)?,
        message_id: msg.parse().unwrap_or_default(),
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
        priority: Priority::from_rank(r.get(9)?).as_str(),
        replayed_by: r.get(10)?,
        attempt_log: None,
    })
}

const DELIVERY_COLS: &str = "d.id, m.id, d.destination, d.status, d.attempts, d.due_at, d.created_at, d.finished_at, d.ordering_key, d.priority, d.replayed_by";

fn replay_filter_sql(f: &ReplayFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut sql = String::from("status = 3");
    let mut args = Vec::new();
    if let Some(d) = &f.destination {
        args.push(Value::Text(d.clone()));
        sql.push_str(&format!(" AND destination = ?{}", args.len()));
    }
    if let Some(s) = f.since {
        args.push(Value::Integer(s));
        sql.push_str(&format!(" AND finished_at >= ?{}", args.len()));
    }
    if let Some(u) = f.until {
        args.push(Value::Integer(u));
        sql.push_str(&format!(" AND finished_at <= ?{}", args.len()));
    }
    (sql, args)
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(&self, msg: NewMessage) -> StoreResult<Appended> {
        if self.inner.room.refuses_appends() {
            return Err(StoreError::Full);
        }
        let inner = self.inner.clone();
        let res = self
            .inner
            .writer
            .exec_then(
                move |c| {
                    if let Some(d) = &msg.dedup {
                        let prior: Option<String> = c
                            .prepare_cached(
                                "SELECT message_id FROM dedup WHERE source = ?1 AND key = ?2 AND expires_at > ?3",
                            )
                            .and_then(|mut s| {
                                s.query_row(params![msg.source, d.key, msg.received_at], |r| r.get(0))
                                    .optional()
                            })
                            .map_err(map_err)?;
                        if let Some(p) = prior {
                            return Ok((Appended::Duplicate(p.parse().unwrap_or(msg.id)), Vec::new()));
                        }
                        c.prepare_cached(
                            "INSERT OR REPLACE INTO dedup (source, key, message_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
                        )
                        .and_then(|mut s| {
                            s.execute(params![msg.source, d.key, msg.id.to_string(), d.until])
                        })
                        .map_err(map_err)?;
                    }
                    let created = insert_message(c, &msg).map_err(map_err)?;
                    Ok((Appended::Stored(msg.id), created))
                },
                move |(_, created)| {
                    for (dest, status) in created {
                        inner.pending.add(dest, 1);
                        if *status == 0 {
                            inner.wakeups.wake(dest);
                        }
                    }
                },
            )
            .await;
        self.note_write(&res);
        Ok(res?.0)
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
        let inner = self.inner.clone();
        let ended: Vec<i64> = results.iter().map(|r| r.delivery_id).collect();
        let r = self
            .inner
            .writer
            .exec_then_unsynced(
                move |c| {
                    let mut finished = Vec::new();
                    let mut woken = HashSet::new();
                    for r in &results {
                        let (status, due, fin) = match r.next {
                            Next::Delivered => (2, None, Some(r.started_at)),
                            Next::Dead => (3, None, Some(r.started_at)),
                            Next::Retry(at) => (0, Some(at), None),
                        };
                        let row: Option<(String, Option<String>)> = c
                            .prepare_cached(
                                "UPDATE deliveries SET status = ?2, attempts = max(attempts, ?3),
                                     due_at = coalesce(?4, due_at), finished_at = ?5
                                 WHERE id = ?1 AND status = 0
                                 RETURNING destination, ordering_key",
                            )
                            .and_then(|mut s| {
                                s.query_row(params![r.delivery_id, status, r.attempt, due, fin], |x| {
                                    Ok((x.get(0)?, x.get(1)?))
                                })
                                .optional()
                            })
                            .map_err(map_err)?;
                        let Some((dest, key)) = row else { continue };
                        c.prepare_cached(
                            "INSERT OR REPLACE INTO attempts (delivery_id, attempt, started_at, duration_us, status, response_body, error)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        )
                        .and_then(|mut s| {
                            s.execute(params![
                                r.delivery_id,
                                r.attempt,
                                r.started_at,
                                r.duration_us,
                                r.status,
                                r.response_body.as_deref(),
                                r.error
                            ])
                        })
                        .map_err(map_err)?;
                        // Wake the dispatcher only when this makes work due that it
                        // cannot know of: a retry (a new due time) or the next
                        // delivery of an ordering key.
                        if status != 0 {
                            finished.push((dest.clone(), status == 3));
                            if let Some(k) = key {
                                if promote(c, &dest, &k).map_err(map_err)? {
                                    woken.insert(dest);
                                }
                            }
                        } else {
                            woken.insert(dest);
                        }
                    }
                    Ok((finished, woken))
                },
                move |(finished, woken)| {
                    for (d, dead) in finished {
                        inner.pending.add(d, -1);
                        if *dead {
                            inner.pending.add_dead(d, 1);
                        }
                    }
                    inner.leases.ended.lock().extend(ended);
                    for d in woken {
                        inner.wakeups.wake(d);
                    }
                },
            )
            .await;
        // On failure nothing was recorded, and the leases stay held: the caller
        // records the results again later. Releasing them would hand the
        // deliveries out again at once, ignoring the retry schedule and answers
        // already received (a full disk would turn into a storm of re-sends).
        r.map(|_| ())
    }

    async fn release(&self, delivery_ids: Vec<i64>) -> StoreResult<()> {
        // Nothing was written since the lease, so no commit needs to be observed.
        let mut held = self.inner.leases.held.lock();
        for id in delivery_ids {
            held.remove(&id);
        }
        drop(held);
        self.inner.wakeups.wake_all();
        Ok(())
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
        self.read(move |c| {
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

    async fn messages(&self, q: &MessageQuery) -> StoreResult<Page<MessageSummary>> {
        let q = q.clone();
        self.read(move |c| {
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
                let rows: Vec<(i64, String, String, Option<String>, i64)> = stmt
                    .query_map(params![before, q.source], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
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
                        id: id.parse().unwrap_or_default(),
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

    async fn deliveries(&self, q: &DeliveryQuery) -> StoreResult<Page<DeliveryInfo>> {
        let q = q.clone();
        self.read(move |c| {
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

    async fn replay_message(
        &self,
        id: MessageId,
        destinations: &[String],
        now: Millis,
    ) -> StoreResult<Vec<i64>> {
        let dests = destinations.to_vec();
        let inner = self.inner.clone();
        let (ids, created) = self
            .inner
            .writer
            .exec_then(
                move |c| {
                    let seq: i64 = c
                        .prepare_cached("SELECT seq FROM messages WHERE id = ?1")
                        .and_then(|mut s| s.query_row([id.to_string()], |r| r.get(0)).optional())
                        .map_err(map_err)?
                        .ok_or(StoreError::NotFound)?;
                    let mut ids = Vec::new();
                    let mut created = Vec::new();
                    for d in &dests {
                        let prior: Option<(i64, Option<String>)> = c
                            .prepare_cached(
                                "SELECT priority, ordering_key FROM deliveries WHERE message_seq = ?1 AND destination = ?2
                                 ORDER BY id DESC LIMIT 1",
                            )
                            .and_then(|mut s| {
                                s.query_row(params![seq, d], |r| Ok((r.get(0)?, r.get(1)?))).optional()
                            })
                            .map_err(map_err)?;
                        let (prio, key) = prior.unwrap_or((Priority::Normal.rank(), None));
                        let status = key_status(c, d, key.as_deref()).map_err(map_err)?;
                        c.prepare_cached(
                            "INSERT INTO deliveries (message_seq, destination, status, priority, due_at, ordering_key, created_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5)",
                        )
                        .and_then(|mut s| s.execute(params![seq, d, status, prio, now, key]))
                        .map_err(map_err)?;
                        let new_id = c.last_insert_rowid();
                        // The dead ones it replaces leave the dead-letter queue.
                        let superseded = c
                            .prepare_cached(
                                "UPDATE deliveries SET status = 4, replayed_by = ?3
                                 WHERE message_seq = ?1 AND destination = ?2 AND status = 3",
                            )
                            .and_then(|mut s| s.execute(params![seq, d, new_id]))
                            .map_err(map_err)?;
                        ids.push(new_id);
                        created.push((d.clone(), superseded as i64));
                    }
                    Ok((ids, created))
                },
                move |(_, created)| {
                    for (d, superseded) in created {
                        inner.pending.add(d, 1);
                        inner.pending.add_dead(d, -superseded);
                        inner.wakeups.wake(d);
                    }
                },
            )
            .await?;
        drop(created);
        Ok(ids)
    }

    async fn message_destinations(&self, id: MessageId) -> StoreResult<Vec<String>> {
        self.read(move |c| {
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

    async fn count_dead(&self, f: &ReplayFilter) -> StoreResult<u64> {
        let f = f.clone();
        self.read(move |c| {
            let (cond, args) = replay_filter_sql(&f);
            c.query_row(
                &format!("SELECT count(*) FROM deliveries WHERE {cond}"),
                rusqlite::params_from_iter(args),
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(map_err)
        })
        .await
    }

    async fn replay_dead_batch(
        &self,
        f: &ReplayFilter,
        now: Millis,
        limit: usize,
    ) -> StoreResult<usize> {
        let f = f.clone();
        let inner = self.inner.clone();
        let revived = self
            .inner
            .writer
            .exec_then(
                move |c| {
                    let (cond, args) = replay_filter_sql(&f);
                    let rows: Vec<(i64, String, Option<String>)> = c
                        .prepare(&format!(
                            "SELECT id, destination, ordering_key FROM deliveries WHERE {cond} ORDER BY id LIMIT {limit}"
                        ))
                        .and_then(|mut s| {
                            s.query_map(rusqlite::params_from_iter(args), |r| {
                                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                            })?
                            .collect()
                        })
                        .map_err(map_err)?;
                    let mut revived = Vec::with_capacity(rows.len());
                    for (id, dest, key) in rows {
                        let status = key_status(c, &dest, key.as_deref()).map_err(map_err)?;
                        c.prepare_cached(
                            "UPDATE deliveries SET status = ?2, due_at = ?3, retry_base = attempts, finished_at = NULL
                             WHERE id = ?1",
                        )
                        .and_then(|mut s| s.execute(params![id, status, now]))
                        .map_err(map_err)?;
                        revived.push(dest);
                    }
                    Ok(revived)
                },
                move |revived| {
                    for d in revived {
                        inner.pending.add(d, 1);
                        inner.pending.add_dead(d, -1);
                        inner.wakeups.wake(d);
                    }
                },
            )
            .await?;
        Ok(revived.len())
    }

    async fn destination_stats(&self) -> StoreResult<HashMap<String, DestinationStats>> {
        let counts = self.pending_by_destination();
        let dead = self.inner.pending.dead.lock().clone();
        self.read(move |c| {
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

    async fn destination_states(&self) -> StoreResult<HashMap<String, DestinationState>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT name, paused, disabled_at, failing_since FROM destination_state",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        DestinationState {
                            paused: r.get::<_, i64>(1)? != 0,
                            disabled_at: r.get(2)?,
                            failing_since: r.get(3)?,
                        },
                    ))
                })?
                .collect()
            })
            .map_err(map_err)
        })
        .await
    }

    async fn put_destination_state(&self, name: &str, state: &DestinationState) -> StoreResult<()> {
        let name = name.to_string();
        let st = state.clone();
        let inner = self.inner.clone();
        let n2 = name.clone();
        self.inner
            .writer
            .exec_then(
                move |c| {
                    c.prepare_cached(
                        "INSERT INTO destination_state (name, paused, disabled_at, failing_since) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                             disabled_at = excluded.disabled_at, failing_since = excluded.failing_since",
                    )
                    .and_then(|mut s| s.execute(params![name, st.paused as i64, st.disabled_at, st.failing_since]))
                    .map(|_| ())
                    .map_err(map_err)
                },
                move |_| inner.wakeups.wake(&n2),
            )
            .await
    }

    async fn stored_destinations(&self) -> StoreResult<Vec<StoredDestination>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT name, spec, created_at, updated_at FROM api_destinations ORDER BY name",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    let spec: String = r.get(1)?;
                    Ok(StoredDestination {
                        name: r.get(0)?,
                        spec: serde_json::from_str(&spec).unwrap_or(serde_json::Value::Null),
                        created_at: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                })?
                .collect()
            })
            .map_err(map_err)
        })
        .await
    }

    async fn put_stored_destination(&self, d: &StoredDestination, create: bool) -> StoreResult<()> {
        let d = d.clone();
        self.inner
            .writer
            .exec(move |c| {
                let spec = d.spec.to_string();
                let n = if create {
                    c.prepare_cached(
                        "INSERT INTO api_destinations (name, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (name) DO NOTHING",
                    )
                    .and_then(|mut s| s.execute(params![d.name, spec, d.created_at, d.updated_at]))
                } else {
                    c.prepare_cached("UPDATE api_destinations SET spec = ?2, updated_at = ?3 WHERE name = ?1")
                        .and_then(|mut s| s.execute(params![d.name, spec, d.updated_at]))
                }
                .map_err(map_err)?;
                match (n, create) {
                    (0, true) => Err(StoreError::Conflict),
                    (0, false) => Err(StoreError::NotFound),
                    _ => Ok(()),
                }
            })
            .await
    }

    async fn delete_stored_destination(&self, name: &str) -> StoreResult<()> {
        let name = name.to_string();
        self.inner
            .writer
            .exec(move |c| {
                let n = c
                    .prepare_cached("DELETE FROM api_destinations WHERE name = ?1")
                    .and_then(|mut s| s.execute([&name]))
                    .map_err(map_err)?;
                if n == 0 {
                    Err(StoreError::NotFound)
                } else {
                    Ok(())
                }
            })
            .await
    }

    async fn cleanup(&self, cutoff: Millis, now: Millis, limit: usize) -> StoreResult<usize> {
        let inner = self.inner.clone();
        let cursor = self.inner.cleanup_from.clone();
        let (removed, _) = self
            .inner
            .writer
            .exec_then(move |c| {
                // Walk the oldest messages in ingest order from where the last call
                // stopped, looking at a bounded number per call, so that a call
                // never scans the table (messages still waiting are passed over
                // and looked at again on the next round).
                let from = cursor.load(Ordering::Relaxed);
                let rows: Vec<(i64, Millis, bool)> = c
                    .prepare_cached(
                        "SELECT seq, received_at,
                            EXISTS (SELECT 1 FROM deliveries d WHERE d.message_seq = m.seq AND d.status IN (0, 1))
                         FROM messages m WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![from, (limit * 4) as i64], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })?
                        .collect()
                    })
                    .map_err(map_err)?;
                let mut seqs = Vec::new();
                let mut next_from = 0;
                let mut reached_recent = rows.len() < limit * 4;
                for (seq, received_at, live) in &rows {
                    if *received_at >= cutoff {
                        reached_recent = true;
                        break;
                    }
                    next_from = *seq;
                    if !live {
                        seqs.push(*seq);
                        if seqs.len() >= limit {
                            break;
                        }
                    }
                }
                cursor.store(if reached_recent { 0 } else { next_from }, Ordering::Relaxed);
                let mut removed = 0;
                let mut dead_gone: Vec<String> = Vec::new();
                for seq in &seqs {
                    c.prepare_cached(
                        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE message_seq = ?1)",
                    )
                    .and_then(|mut s| s.execute([seq]))
                    .map_err(map_err)?;
                    let gone: Vec<(String, i64)> = c
                        .prepare_cached(
                            "DELETE FROM deliveries WHERE message_seq = ?1 RETURNING destination, status",
                        )
                        .and_then(|mut s| {
                            s.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
                        })
                        .map_err(map_err)?;
                    dead_gone.extend(gone.into_iter().filter(|g| g.1 == 3).map(|g| g.0));
                    removed += c
                        .prepare_cached("DELETE FROM messages WHERE seq = ?1")
                        .and_then(|mut s| s.execute([seq]))
                        .map_err(map_err)?;
                }
                removed += c
                    .prepare_cached(
                        "DELETE FROM dedup WHERE (source, key) IN
                         (SELECT source, key FROM dedup WHERE expires_at <= ?1 LIMIT ?2)",
                    )
                    .and_then(|mut s| s.execute(params![now, limit as i64]))
                    .map_err(map_err)?;
                Ok((removed, dead_gone))
            }, move |(_, dead_gone)| {
                for d in dead_gone {
                    inner.pending.add_dead(d, -1);
                }
            })
            .await?;
        Ok(removed)
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
