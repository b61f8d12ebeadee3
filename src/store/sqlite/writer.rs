//! The group-commit writer: one thread owns the writable SQLite connection and
//! runs every write job. It takes all jobs waiting (up to a cap), runs them in
//! one transaction, commits and syncs once, and only then lets each job answer.
//! Under load batches grow by themselves; at low load a batch is one job and
//! costs one sync.
//!
//! Jobs run without a savepoint each (a savepoint makes SQLite copy every page
//! a job touches into a statement journal; measured, that was a tenth of the
//! writer's time). Instead, when a job fails, the whole transaction is rolled
//! back and run again without it: jobs are re-runnable, and failures are rare.
//!
//! Invariants: a job's answer (and its side effects, such as waking dispatchers)
//! happens after the commit that made its writes durable, or reports the error
//! that prevented it; a failed job leaves no write behind.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::store::{StoreError, StoreResult};
use crate::throttle::{Throttle, LOG_EVERY};

/// One write job of a batch.
pub(super) trait Job: Send {
    /// Runs the job's writes in the open transaction; false if it failed (its
    /// error is kept for `finish`). May run again after a rollback.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers after the commit: `None` if it succeeded, else the commit's error.
    fn finish(self: Box<Self>, commit_err: Option<StoreError>);
    /// Whether its commit must be synced before it answers.
    fn durable(&self) -> bool;
}

/// A job from a closure, its result, and a side effect that follows the commit.
struct ClosureJob<T, F, A> {
    f: F,
    durable: bool,
    after: Option<A>,
    result: Option<StoreResult<T>>,
    reply: Option<oneshot::Sender<StoreResult<T>>>,
}

impl<T, F, A> Job for ClosureJob<T, F, A>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> StoreResult<T> + Send + 'static,
    A: FnOnce(&T) + Send + 'static,
{
    fn durable(&self) -> bool {
        self.durable
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let r = (self.f)(conn);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(mut self: Box<Self>, commit_err: Option<StoreError>) {
        let result = match (commit_err, self.result.take()) {
            (_, Some(Err(e))) => Err(e),
            (Some(e), _) => Err(e),
            (None, Some(ok)) => ok,
            (None, None) => Err(StoreError::Closed),
        };
        if let (Ok(v), Some(after)) = (&result, self.after.take()) {
            after(v);
        }
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }
}

/// Most jobs in one transaction.
const MAX_BATCH: usize = 2048;

/// The WAL's share of `storage.max_size`: a quarter of it, at most 16 MiB.
/// The log restarts from its beginning once it holds half of this, and is
/// truncated back to half of it after a restart (`journal_size_limit`).
pub(super) fn wal_budget(max_bytes: u64) -> u64 {
    (max_bytes / 4).min(16 << 20)
}

/// The part of `storage.max_size` kept free for result records and retention
/// deletes: new messages are refused once less than this is left.
pub(super) fn reserve(max_bytes: u64) -> u64 {
    max_bytes / 10
}

/// Free space kept on the database's filesystem (with or without
/// `storage.max_size`): new messages are refused while less is free. A twentieth
/// of the filesystem, at least 1 MiB and at most 64 MiB.
pub(super) fn fs_reserve(fs_total: u64) -> u64 {
    (fs_total / 20).clamp(1 << 20, 64 << 20)
}

/// How often the filesystem's free space is read at most.
const FS_CHECK_EVERY: Duration = Duration::from_millis(250);

/// Room for new messages, so that results can still be recorded and old rows
/// deleted once ingest is refused (refusing at the last byte would leave the
/// dispatcher unable to record anything).
///
/// - With `storage.max_size` = M: the database file is bounded at
///   M − [`wal_budget`] by SQLite itself (`max_page_count`), the WAL by its
///   restart point and `journal_size_limit`; new messages are refused when
///   pages in use plus the WAL file come within [`reserve`] of M, or pages in
///   use within it of the database's own bound.
/// - Always: new messages are refused while the filesystem's free space, less
///   what the store may still claim without any new message, is below
///   [`fs_reserve`]. The claims are the growth of the WAL file up to its bound
///   and the growth of the database file that the WAL's pages will cause when
///   they are checkpointed: a checkpoint that cannot extend the database file
///   can never restart the log, and the store would stay full for good.
/// - The WAL's bound follows the filesystem: its restart point is at most a
///   sixteenth of the filesystem, so a small volume is not mostly log.
pub(super) struct Room {
    max_bytes: Option<u64>,
    page: u64,
    db_path: std::path::PathBuf,
    wal_path: std::path::PathBuf,
    dir: std::path::PathBuf,
    /// WAL frames after which the writer restarts the log.
    restart_frames: i64,
    /// WAL file length past which the writer truncates the log at once.
    wal_cap: u64,
    /// Bytes of database pages in use (allocated minus free).
    used_db: AtomicI64,
    /// Bytes the database file will grow by when the WAL is checkpointed.
    db_growth: AtomicI64,
    /// Bytes of the WAL file.
    wal_len: AtomicI64,
    /// Whether the filesystem is below its reserve.
    fs_low: AtomicBool,
    last_fs_check: parking_lot::Mutex<Option<Instant>>,
}

impl Room {
    /// Applies `max_bytes` (if any) to the writer's connection, for the
    /// database at `path`.
    pub(super) fn apply(
        conn: &Connection,
        path: &std::path::Path,
        max_bytes: Option<u64>,
    ) -> rusqlite::Result<Self> {
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let page = page.max(512) as u64;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let fs_total = rustix::fs::statvfs(&dir)
            .map(|st| st.f_blocks.saturating_mul(st.f_frsize))
            .unwrap_or(0);
        let frame = page + 24;
        // The restart point: the default, within a sixteenth of the filesystem
        // and (with `storage.max_size`) half of the WAL's budget.
        let mut restart = WAL_RESTART_FRAMES as u64 * frame;
        if fs_total > 0 {
            restart = restart.min(fs_total / 16);
        }
        if let Some(max) = max_bytes {
            restart = restart.min(wal_budget(max) / 2);
        }
        let restart_frames = (restart / frame).max(16);
        let restart = restart_frames * frame;
        let wal_cap = match max_bytes {
            // The budget's half, as before: the file may not outgrow it.
            Some(max) => wal_budget(max) / 2,
            // Room for the copier to lag by one more log.
            None => 2 * restart,
        };
        if let Some(max) = max_bytes {
            let db_pages = ((max - wal_budget(max)) / page).max(1);
            conn.query_row(&format!("PRAGMA max_page_count = {db_pages}"), [], |_| {
                Ok(())
            })?;
        }
        conn.query_row(
            &format!("PRAGMA journal_size_limit = {restart}"),
            [],
            |_| Ok(()),
        )?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let room = Room {
            max_bytes,
            page,
            db_path: path.to_path_buf(),
            wal_path: wal.into(),
            dir,
            restart_frames: restart_frames as i64,
            wal_cap,
            used_db: AtomicI64::new(0),
            db_growth: AtomicI64::new(0),
            wal_len: AtomicI64::new(0),
            fs_low: AtomicBool::new(false),
            last_fs_check: parking_lot::Mutex::new(None),
        };
        room.refresh(conn);
        Ok(room)
    }

    /// WAL frames after which the writer restarts the log.
    pub(super) fn wal_restart_frames(&self) -> i64 {
        self.restart_frames
    }

    /// Reads the sizes after a commit.
    fn refresh(&self, conn: &Connection) {
        let pages = conn.query_row(
            "SELECT (SELECT page_count FROM pragma_page_count()), (SELECT freelist_count FROM pragma_freelist_count())",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        );
        if let Ok((count, free)) = pages {
            self.used_db
                .store((count - free) * self.page as i64, Ordering::Relaxed);
            let file = std::fs::metadata(&self.db_path).map_or(0, |m| m.len()) as i64;
            self.db_growth
                .store((count * self.page as i64 - file).max(0), Ordering::Relaxed);
        }
        let wal = std::fs::metadata(&self.wal_path).map_or(0, |m| m.len());
        self.wal_len.store(wal as i64, Ordering::Relaxed);
        self.check_fs(true);
    }

    /// Bytes the store may still take on the filesystem without a new message:
    /// the WAL growing to its bound, the database file to what its WAL holds.
    fn claims(&self) -> u64 {
        let wal = self.wal_len.load(Ordering::Relaxed).max(0) as u64;
        let growth = self.db_growth.load(Ordering::Relaxed).max(0) as u64;
        self.wal_cap.saturating_sub(wal) + growth
    }

    /// Reads the filesystem's free space, at most every [`FS_CHECK_EVERY`]
    /// unless `force`d. A filesystem that cannot be read counts as having room
    /// (SQLite's own errors still refuse writes that do not fit).
    fn check_fs(&self, force: bool) {
        {
            let mut last = self.last_fs_check.lock();
            if !force && last.is_some_and(|t| t.elapsed() < FS_CHECK_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        if let Ok(st) = rustix::fs::statvfs(&self.dir) {
            let total = st.f_blocks.saturating_mul(st.f_frsize);
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            let usable = free.saturating_sub(self.claims());
            self.fs_low
                .store(usable < fs_reserve(total), Ordering::Relaxed);
        }
    }

    /// Whether the WAL file has outgrown its bound (with `storage.max_size`,
    /// where `journal_size_limit` truncates a restarted log back to its restart
    /// point, a longer file means more frames than that since the last
    /// restart; without it, the copier has lagged by more than a whole log).
    fn wal_over(&self) -> bool {
        self.wal_len.load(Ordering::Relaxed).max(0) as u64 > self.wal_cap
    }

    /// Whether new messages must be refused.
    pub(super) fn refuses_appends(&self) -> bool {
        // Space freed by someone else (no commit here) must be noticed too.
        self.check_fs(false);
        if self.fs_low.load(Ordering::Relaxed) {
            return true;
        }
        let Some(max) = self.max_bytes else {
            return false;
        };
        let used = self.used_db.load(Ordering::Relaxed).max(0) as u64;
        let wal = self.wal_len.load(Ordering::Relaxed).max(0) as u64;
        let keep = reserve(max);
        used + keep >= max - wal_budget(max) || used + wal + keep >= max
    }
}

pub(super) enum Op {
    Job(Box<dyn Job>),
    Close(oneshot::Sender<()>),
}

/// Handle of the writer thread.
pub(super) struct Writer {
    tx: mpsc::Sender<Op>,
}

impl Writer {
    /// Starts the writer thread on a connection. `on_commit` observes each commit's
    /// duration and batch size (for metrics).
    pub(super) fn start(
        conn: Connection,
        wal: Option<Wal>,
        room: Option<Arc<Room>>,
        on_commit: impl Fn(std::time::Duration, usize) + Send + 'static,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(16 * 1024);
        let handle = std::thread::Builder::new()
            .name("hookgate-writer".into())
            .spawn(move || run(conn, rx, wal, room, on_commit))
            .expect("spawn the store writer thread");
        (Writer { tx }, handle)
    }

    /// Runs `f` in the next batch and answers its result once the batch is
    /// committed. `f` may run more than once (after a rollback of its batch).
    pub(super) async fn exec<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.exec_then(f, |_| {}).await
    }

    /// Like [`Writer::exec`], and runs `after` on the writer thread with the result
    /// once it is committed (for side effects that must follow durability).
    pub(super) async fn exec_then<T, F, A>(&self, f: F, after: A) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> StoreResult<T> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        self.submit(f, after, true).await
    }

    /// Like [`Writer::exec_then`] for writes that may be lost in a crash without
    /// harm (attempt records: the delivery is then simply made again). A batch
    /// of only such writes commits without a sync; the next synced commit makes
    /// them durable too.
    pub(super) async fn exec_then_unsynced<T, F, A>(&self, f: F, after: A) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> StoreResult<T> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        self.submit(f, after, false).await
    }

    async fn submit<T, F, A>(&self, f: F, after: A, durable: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> StoreResult<T> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(ClosureJob {
            f,
            durable,
            after: Some(after),
            result: None,
            reply: Some(reply),
        });
        self.tx
            .send(Op::Job(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Finishes queued jobs, checkpoints the WAL and stops the thread; true when
    /// the thread confirmed it (false if it had stopped already).
    pub(super) async fn close(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Op::Close(tx)).await.is_ok() && rx.await.is_ok()
    }
}

/// Maps a SQLite error to a store error: a full disk is `Full`, the rest `Unavailable`.
pub(super) fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::ErrorCode;
    if let Some(c) = super::read::corrupt_row(&e) {
        return StoreError::Corrupt(c.clone());
    }
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full,
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// Runs a cached statement without results.
fn exec_cached(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(map_err)
}

/// Runs a batch in one transaction; returns which jobs failed and the commit's
/// error, if any. A job that fails rolls the transaction back, and the batch
/// runs again without it.
fn write_batch(
    conn: &Connection,
    batch: &mut [Box<dyn Job>],
    failed: &mut [bool],
) -> Option<StoreError> {
    'attempt: loop {
        if let Err(e) = exec_cached(conn, "BEGIN IMMEDIATE") {
            return Some(e);
        }
        for (job, failed) in batch.iter_mut().zip(failed.iter_mut()) {
            if *failed {
                continue;
            }
            if !job.run(conn) {
                *failed = true;
                let _ = exec_cached(conn, "ROLLBACK");
                continue 'attempt;
            }
        }
        return match exec_cached(conn, "COMMIT") {
            Ok(()) => None,
            Err(e) => {
                let _ = exec_cached(conn, "ROLLBACK");
                tracing::error!(error = %e, "store commit failed; the batch is not acknowledged");
                Some(e)
            }
        };
    }
}

/// Checkpoint failures repeat every few milliseconds while the disk is full:
/// one line per interval.
static CHECKPOINT_LOG: Throttle = Throttle::new(LOG_EVERY);

/// WAL frames (pages) above which the writer restarts the log (~16 MiB), unless
/// `storage.max_size` asks for less (see [`Room`]).
const WAL_RESTART_FRAMES: i64 = 4096;
/// How often the writer looks at the WAL size at most.
const WAL_CHECK_EVERY: Duration = Duration::from_millis(50);
/// How often the copier thread checkpoints.
const WAL_COPY_EVERY: Duration = Duration::from_millis(50);

/// WAL checkpoints, split so that commits (and the acks waiting on them) never
/// pay for copying pages:
/// - a copier thread runs PASSIVE checkpoints beside the writer, copying frames
///   into the database file without blocking anyone;
/// - but only a checkpoint between two of the writer's transactions can let the
///   log restart from its beginning, so when the WAL has grown past a bound the
///   writer runs a RESTART checkpoint itself, at a moment the copier is idle:
///   with nearly every frame already copied, it only waits (in steps of 50 µs,
///   at most 2 ms) for readers on older snapshots, copies the rest and syncs.
///
/// The copier runs with `synchronous = OFF`: it never syncs the database file.
/// That is safe because the log is only restarted by the writer's checkpoint,
/// which syncs the database file (all of it, the copier's writes included)
/// before the frames it replaces can be overwritten.
#[derive(Clone)]
pub(super) struct Wal {
    /// Frames in the log, as the copier last saw them.
    frames: Arc<AtomicI64>,
    /// Frames after which the writer restarts the log.
    restart_frames: i64,
    copying: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Wal {
    /// Restarts the log after `restart_frames` frames.
    pub(super) fn new(restart_frames: i64) -> Self {
        Wal {
            frames: Arc::new(AtomicI64::new(0)),
            restart_frames,
            copying: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag that stops the copier.
    pub(super) fn stop_handle(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Starts the copier thread on its own connection.
    pub(super) fn spawn_copier(&self, conn: Connection) -> std::io::Result<JoinHandle<()>> {
        let wal = self.clone();
        if let Err(e) = conn.execute_batch("PRAGMA synchronous = OFF") {
            return Err(std::io::Error::other(e.to_string()));
        }
        std::thread::Builder::new()
            .name("hookgate-checkpoint".into())
            .spawn(move || {
                while !wal.stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(WAL_COPY_EVERY);
                    wal.copying.store(true, Ordering::SeqCst);
                    let r = conn
                        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
                    wal.copying.store(false, Ordering::SeqCst);
                    match r {
                        Ok(frames) => wal.frames.store(frames, Ordering::Relaxed),
                        Err(e) => {
                            if let Some(suppressed) = CHECKPOINT_LOG.check() {
                                tracing::warn!(error = %e, suppressed, "WAL checkpoint failed");
                            }
                        }
                    }
                }
            })
    }

    /// On the writer, between transactions: restarts the log if it is large.
    fn restart_if_large(&self, conn: &Connection) {
        if self.frames.load(Ordering::Relaxed) < self.restart_frames
            || self.copying.load(Ordering::SeqCst)
        {
            return;
        }
        self.checkpoint(conn, "PRAGMA wal_checkpoint(RESTART)");
    }

    /// On the writer, between transactions, when the WAL file has outgrown its
    /// share of `storage.max_size` because the copier lagged (or could not run):
    /// copies every frame itself and truncates the file, whether or not the
    /// copier is busy (the busy handler waits for it briefly; a busy log is
    /// tried again after the next commit).
    fn truncate(&self, conn: &Connection) {
        self.checkpoint(conn, "PRAGMA wal_checkpoint(TRUNCATE)");
    }

    fn checkpoint(&self, conn: &Connection, pragma: &str) {
        let _ = conn.busy_handler(Some(|tries: i32| {
            std::thread::sleep(Duration::from_micros(50));
            tries < 40
        }));
        match conn.query_row(pragma, [], |r| r.get::<_, i64>(0)) {
            // Not busy: the log starts over at the next commit.
            Ok(0) => self.frames.store(0, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => {
                if let Some(suppressed) = CHECKPOINT_LOG.check() {
                    tracing::warn!(error = %e, suppressed, pragma, "WAL checkpoint failed");
                }
            }
        }
        let _ = conn.busy_timeout(Duration::from_secs(5));
    }
}

fn run(
    conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    wal: Option<Wal>,
    room: Option<Arc<Room>>,
    on_commit: impl Fn(std::time::Duration, usize),
) {
    let mut last_wal_check = Instant::now();
    // The connection starts with `synchronous = FULL`.
    let mut synced = true;
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    let mut failed: Vec<bool> = Vec::with_capacity(MAX_BATCH);
    let mut closing: Option<oneshot::Sender<()>> = None;
    while closing.is_none() {
        match rx.blocking_recv() {
            Some(Op::Job(j)) => batch.push(j),
            Some(Op::Close(tx)) => closing = Some(tx),
            None => break,
        }
        while batch.len() < MAX_BATCH && closing.is_none() {
            match rx.try_recv() {
                Ok(Op::Job(j)) => batch.push(j),
                Ok(Op::Close(tx)) => closing = Some(tx),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let n = batch.len();
        let err = commit(&conn, &mut batch, &mut failed, &mut synced);
        on_commit(started.elapsed(), n);
        if let Some(room) = &room {
            room.refresh(&conn);
        }
        for job in batch.drain(..) {
            job.finish(err.clone());
        }
        if let Some(wal) = &wal {
            keep_wal_small(&conn, wal, room.as_deref(), &mut last_wal_check);
        }
    }
    // Answer what is still queued before closing.
    rx.close();
    while let Ok(op) = rx.try_recv() {
        if let Op::Job(job) = op {
            job.finish(Some(StoreError::Closed));
        }
    }
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
    drop(conn);
    if let Some(tx) = closing {
        let _ = tx.send(());
    }
}

/// Writes one batch in a transaction, synced when any job in it must be
/// durable; returns the commit's error, if any (`failed` marks the jobs that
/// failed on their own). `synced` tracks the connection's `synchronous` mode.
fn commit(
    conn: &Connection,
    batch: &mut [Box<dyn Job>],
    failed: &mut Vec<bool>,
    synced: &mut bool,
) -> Option<StoreError> {
    failed.clear();
    failed.resize(batch.len(), false);
    // In WAL mode, FULL syncs the log at every commit and NORMAL does not;
    // the setting can change between transactions.
    let want_sync = batch.iter().any(|j| j.durable());
    if want_sync != *synced {
        let pragma = if want_sync {
            "PRAGMA synchronous = FULL"
        } else {
            "PRAGMA synchronous = NORMAL"
        };
        if exec_cached(conn, pragma).is_ok() {
            *synced = want_sync;
        }
    }
    if want_sync && !*synced {
        // Never acknowledge a durable write without the sync.
        return Some(StoreError::Unavailable(
            "cannot turn on synchronous commits".into(),
        ));
    }
    write_batch(conn, batch, failed)
}

/// After a commit: checkpoints and truncates the WAL at once when it has
/// outgrown its share of `storage.max_size` (the bound must not depend on the
/// copier keeping up), and restarts it when large, at most every
/// [`WAL_CHECK_EVERY`].
fn keep_wal_small(conn: &Connection, wal: &Wal, room: Option<&Room>, last_check: &mut Instant) {
    if let Some(room) = room {
        if room.wal_over() {
            wal.truncate(conn);
            room.refresh(conn);
        }
    }
    if last_check.elapsed() >= WAL_CHECK_EVERY {
        *last_check = Instant::now();
        wal.restart_if_large(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (Writer, JoinHandle<()>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)")
            .unwrap();
        let (w, h) = Writer::start(conn, None, None, |_, _| {});
        (w, h, dir)
    }

    fn insert(c: &Connection, x: i64) -> StoreResult<()> {
        c.execute("INSERT INTO t (x) VALUES (?1)", [x])
            .map(|_| ())
            .map_err(map_err)
    }

    /// A job that fails after writing leaves nothing behind, and the jobs of its
    /// batch still commit (they run again without it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_job_rolls_back_alone() {
        let (w, _h, dir) = writer();
        for round in 0..20 {
            let base = round * 10;
            let (a, b, c) = tokio::join!(
                w.exec(move |c| insert(c, base + 1)),
                w.exec(move |c| {
                    insert(c, base + 2)?;
                    Err::<(), _>(StoreError::Conflict)
                }),
                w.exec(move |c| insert(c, base + 3)),
            );
            assert!(a.is_ok() && c.is_ok());
            assert_eq!(b.unwrap_err(), StoreError::Conflict);
        }
        let got: Vec<i64> = w
            .exec(|c| {
                let mut s = c.prepare("SELECT x FROM t ORDER BY x").map_err(map_err)?;
                let rows = s.query_map([], |r| r.get(0)).map_err(map_err)?;
                rows.collect::<Result<Vec<i64>, _>>().map_err(map_err)
            })
            .await
            .unwrap();
        let want: Vec<i64> = (0..20).flat_map(|r| [r * 10 + 1, r * 10 + 3]).collect();
        assert_eq!(got, want);
        w.close().await;
        drop(dir);
    }

    /// After the writer closes, calls fail with `Closed` instead of hanging.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_after_close_fail() {
        let (w, h, _dir) = writer();
        w.close().await;
        h.join().unwrap();
        assert_eq!(
            w.exec(|c| insert(c, 1)).await.unwrap_err(),
            StoreError::Closed
        );
    }

    /// A database in WAL mode that SQLite never checkpoints by itself.
    fn unmanaged_wal() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t (x INTEGER, body BLOB)",
        )
        .unwrap();
        (dir, path, conn)
    }

    /// With `storage.max_size`, the WAL stays within its share even when no
    /// copier runs at all: the writer checkpoints once the file outgrows its
    /// restart point, instead of the log growing until ingest is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_bounded_without_the_copier() {
        let (dir, path, conn) = unmanaged_wal();
        let max: u64 = 1 << 20;
        let room = Arc::new(Room::apply(&conn, &path, Some(max)).unwrap());
        let wal = Wal::new(room.wal_restart_frames());
        let (w, _h) = Writer::start(conn, Some(wal), Some(room.clone()), |_, _| {});
        let mut largest = 0;
        for x in 0..200 {
            w.exec(move |c| {
                c.execute("DELETE FROM t WHERE x < ?1", [x - 8])
                    .and_then(|_| {
                        c.execute("INSERT INTO t (x, body) VALUES (?1, zeroblob(8192))", [x])
                    })
                    .map(|_| ())
                    .map_err(map_err)
            })
            .await
            .unwrap();
            let len = std::fs::metadata(dir.path().join("w.db-wal")).map_or(0, |m| m.len());
            largest = largest.max(len);
            assert!(
                !room.refuses_appends(),
                "refused at row {x}, WAL {len} bytes"
            );
        }
        // The restart point plus one transaction (a few pages).
        assert!(
            largest <= wal_budget(max) / 2 + 16 * 4120,
            "the WAL reached {largest} bytes"
        );
        w.close().await;
    }

    /// Pages that only the WAL holds are counted against the free space: the
    /// checkpoint will need that room to extend the database file, and a
    /// store that cannot checkpoint can never restart its log.
    #[test]
    fn pages_waiting_in_the_wal_count_as_claimed() {
        let (_dir, path, conn) = unmanaged_wal();
        let room = Room::apply(&conn, &path, None).unwrap();
        for x in 0..50 {
            conn.execute("INSERT INTO t (x, body) VALUES (?1, zeroblob(8192))", [x])
                .unwrap();
        }
        room.refresh(&conn);
        let growth = room.db_growth.load(Ordering::Relaxed);
        assert!(growth >= 50 * 8192, "growth {growth}");
        assert!(room.claims() >= growth as u64);
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        room.refresh(&conn);
        assert_eq!(room.db_growth.load(Ordering::Relaxed), 0);
        // With the log empty, what is left is the WAL's room to grow.
        assert_eq!(room.claims(), room.wal_cap);
    }
}
