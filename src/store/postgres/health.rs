//! Whether PostgreSQL is reachable, as this node last saw it, so that an outage
//! costs each request nothing instead of a connection wait.
//!
//! Connection-level failures (no connection within `storage.connect_timeout`, a
//! broken socket, no answer within `storage.query_timeout`) mark the database
//! down; while it is down, appends and leases fail at once and a probe task
//! tries a fresh connection every [`PROBE_EVERY`] until one answers. Connections
//! opened before the last outage are never used again (they may be dead sockets
//! that a silent network would keep hanging).
//!
//! A failover is an outage too: a server that refuses writes as read-only
//! (SQLSTATE 25006: a standby, reached through an address that points at it
//! before or without its promotion) marks the database down like a lost
//! connection, and the probe takes it as back only once the server it reaches
//! is out of recovery, that is a primary.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sqlstate;
use crate::store::{StoreError, StoreResult, Wakeups};
use crate::throttle::Throttle;

/// How often the probe tries while the database is down.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(500);

/// The shared up/down state.
pub(super) struct Health {
    /// A guarded call longer than this is logged (`None`: never).
    slow: Option<Duration>,
    slow_log: Throttle,
    up: AtomicBool,
    /// Why it is down, and when the last outage began.
    state: Mutex<(String, Option<Instant>)>,
    went_down: Notify,
    came_up: Notify,
    /// Woken, every one, when the database is back.
    wakeups: Option<Arc<Wakeups>>,
}

impl Health {
    /// Up, with no outage seen.
    pub(super) fn new() -> Self {
        Health {
            slow: None,
            slow_log: Throttle::new(Duration::from_secs(1)),
            up: AtomicBool::new(true),
            state: Mutex::new((String::new(), None)),
            went_down: Notify::new(),
            came_up: Notify::new(),
            wakeups: None,
        }
    }

    /// Wakes every dispatcher of `wakeups` when the database is back: work
    /// and results held through the outage go at once, not at their next
    /// timer.
    pub(super) fn with_wakeups(mut self, wakeups: Arc<Wakeups>) -> Self {
        self.wakeups = Some(wakeups);
        self
    }

    /// Logs calls that take longer than `slow` (`storage.slow_query`; zero: none).
    pub(super) fn with_slow_query(mut self, slow: Duration) -> Self {
        self.slow = (!slow.is_zero()).then_some(slow);
        self
    }

    /// Whether the database answered last time it was asked.
    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// `Ok` while up; the reason while down.
    pub(super) fn check(&self) -> StoreResult<()> {
        if self.is_up() {
            return Ok(());
        }
        Err(StoreError::Unavailable(format!(
            "PostgreSQL is unreachable ({})",
            self.state.lock().0
        )))
    }

    /// Marks the database down and wakes the probe.
    pub(super) fn mark_down(&self, why: &str) {
        {
            let mut st = self.state.lock();
            st.0 = why.to_string();
            st.1 = Some(Instant::now());
        }
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(reason = %why, "PostgreSQL is unreachable: ingest answers 503 until it is back");
            self.went_down.notify_one();
        }
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!("PostgreSQL is reachable again");
            self.came_up.notify_one();
            if let Some(w) = &self.wakeups {
                w.wake_all();
            }
        }
    }

    /// Returns once the database is back after an outage (at once if it came
    /// back since the last call).
    pub(super) async fn back(&self) {
        self.came_up.notified().await;
    }

    /// Marks the database down if `e` says it cannot be reached or cannot
    /// take writes.
    pub(super) fn observe(&self, e: &sqlx::Error) {
        if is_read_only(e) {
            self.mark_down(READ_ONLY);
        } else if is_connection_error(e) {
            self.mark_down(&e.to_string());
        }
    }

    /// Whether a connection `age` old was opened before the last outage began.
    pub(super) fn predates_outage(&self, age: Duration) -> bool {
        self.state
            .lock()
            .1
            .is_some_and(|since| age > since.elapsed())
    }

    /// Runs `fut` (the store call `what`), giving up after `limit` (then the
    /// database is marked down before `fut`, and the connection it holds, is
    /// dropped), notes a connection-level failure, and logs a slow call.
    pub(super) async fn guard<T>(
        &self,
        limit: Duration,
        what: &'static str,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, sqlx::Error> {
        let started = Instant::now();
        tokio::pin!(fut);
        let r = tokio::select! {
            r = &mut fut => r,
            _ = tokio::time::sleep(limit) => {
                let why = format!("no answer within {} ms (storage.query_timeout)", limit.as_millis());
                self.mark_down(&why);
                Err(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, why)))
            }
        };
        if let Err(e) = &r {
            self.observe(e);
        }
        self.note_duration(what, started.elapsed(), r.is_ok());
        r
    }

    /// Logs a call that took `took` if that is over the threshold.
    fn note_duration(&self, what: &'static str, took: Duration, ok: bool) {
        let Some(slow) = self.slow.filter(|s| took >= *s) else {
            return;
        };
        if let Some(repeats) = self.slow_log.check() {
            tracing::warn!(
                operation = what,
                took_ms = took.as_millis() as u64,
                threshold_ms = slow.as_millis() as u64,
                ok,
                slow_calls_not_logged = repeats,
                "slow store call (storage.slow_query)"
            );
        }
    }
}

/// Why the database is down while the server reached is read-only.
const READ_ONLY: &str =
    "the server is read-only: a standby in recovery, not (yet) a primary (SQLSTATE 25006)";

/// A write refused because the server is read-only (`read_only_sql_transaction`):
/// a standby, where the primary was expected. Not a statement's fault: the
/// same write succeeds on the primary, wherever the failover puts it.
fn is_read_only(e: &sqlx::Error) -> bool {
    sqlstate(e).is_some_and(|c| c == "25006")
}

/// A failure of the connection rather than of a statement: the database (or
/// the way to it) is not there.
pub(super) fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        _ => sqlstate(e).is_some_and(|c| {
            // 08: connection exception; 57P01-03: shutting down, or not accepting.
            c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03"
        }),
    }
}

/// Starts the probe: while the database is down, a fresh connection every
/// [`PROBE_EVERY`], each within `connect_timeout`, that asks whether the server
/// is in recovery; only a primary (not in recovery) marks the database up.
pub(super) fn spawn_probe(
    health: Arc<Health>,
    opts: PgConnectOptions,
    connect_timeout: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if health.is_up() {
                tokio::select! {
                    _ = health.went_down.notified() => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(PROBE_EVERY) => {}
                _ = stop.cancelled() => return,
            }
            let probe = tokio::time::timeout(connect_timeout, async {
                let mut c = opts.connect().await?;
                let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                    .fetch_one(&mut c)
                    .await?;
                c.close().await?;
                Ok::<_, sqlx::Error>(standby)
            })
            .await;
            match probe {
                Ok(Ok(false)) => health.mark_up(),
                // Writes would fail: still down, now for this reason.
                Ok(Ok(true)) => health.mark_down(READ_ONLY),
                Ok(Err(e)) => tracing::debug!(error = %e, "PostgreSQL probe failed"),
                Err(_) => tracing::debug!("PostgreSQL probe timed out"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_database_is_marked_down_at_the_deadline() {
        let h = Health::new();
        assert!(h.check().is_ok());
        let r: Result<(), _> = h
            .guard(Duration::from_secs(5), "test", std::future::pending())
            .await;
        assert!(r.is_err());
        assert!(!h.is_up());
        let e = h.check().unwrap_err();
        assert!(e.to_string().contains("query_timeout"), "{e}");
        // A connection opened before the outage is not used again; one after is.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(h.predates_outage(Duration::from_secs(2)));
        assert!(!h.predates_outage(Duration::from_millis(500)));
    }

    #[test]
    fn statement_errors_do_not_mark_the_database_down() {
        let h = Health::new();
        h.observe(&sqlx::Error::RowNotFound);
        assert!(h.is_up());
        h.observe(&sqlx::Error::PoolTimedOut);
        assert!(!h.is_up());
    }

    /// A database error with `code`, as the server sends it.
    fn db_error(code: &str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(TestDbError(code.to_string())))
    }

    #[derive(Debug)]
    struct TestDbError(String);

    impl std::fmt::Display for TestDbError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for TestDbError {}

    impl sqlx::error::DatabaseError for TestDbError {
        fn message(&self) -> &str {
            &self.0
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.as_str().into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[test]
    fn a_read_only_server_marks_the_database_down() {
        let h = Health::new();
        // A constraint violation is the statement's fault.
        h.observe(&db_error("23505"));
        assert!(h.is_up());
        // A standby refusing a write is the database's.
        h.observe(&db_error("25006"));
        assert!(!h.is_up());
        let e = h.check().unwrap_err().to_string();
        assert!(e.contains("read-only") && e.contains("standby"), "{e}");
    }
}
