//! Wake-ups across nodes: after a transaction that makes work due has
//! committed, its node sends `NOTIFY hookgate_wake, '<destination>'` through the
//! [`Notifier`], and each node keeps one dedicated connection listening, which
//! pokes the local dispatcher of that destination. So an idle node starts a
//! delivery within milliseconds of another node's commit, not at its next poll.
//!
//! The notifications are sent after the commit, never in it: PostgreSQL
//! serializes every committing transaction that notifies (one lock, held through
//! the commit's WAL flush), which made ingest's commits queue behind each other
//! instead of sharing a flush. The [`Notifier`] coalesces what the commits ask
//! for and sends it in its own short transaction that does not wait for a flush
//! (a wake-up is a hint; losing one costs at most the next poll).
//!
//! Invariant: a notification lost while the connection was down is made up for:
//! after every (re)connect the listener wakes every destination once. The
//! dispatcher's periodic re-check remains the last resort.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::Wakeups;

/// The channel of wake-ups; the payload is a destination name.
pub(super) const CHANNEL: &str = "hookgate_wake";

/// Connects a listener on its own connection (outside the store's pool, so that
/// it never takes a slot the store needs) and subscribes it.
pub(super) async fn subscribe(opts: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Runs the listener until `stop`, reconnecting with backoff when it fails.
pub(super) fn spawn(
    first: PgListener,
    opts: PgConnectOptions,
    wakeups: Arc<Wakeups>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut listener = Some(first);
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut l = match listener.take() {
                Some(l) => l,
                None => {
                    let connected = tokio::select! {
                        r = subscribe(&opts) => r,
                        _ = stop.cancelled() => return,
                    };
                    match connected {
                        Ok(l) => {
                            tracing::info!("store notifications reconnected");
                            backoff = Duration::from_millis(100);
                            // Anything sent while disconnected was missed.
                            wakeups.wake_all();
                            l
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "store notifications: cannot reconnect");
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = stop.cancelled() => return,
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                            continue;
                        }
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    n = l.try_recv() => n,
                    _ = stop.cancelled() => return,
                };
                match next {
                    Ok(Some(n)) => wakeups.wake(n.payload()),
                    // The connection was lost and re-established: wake everyone.
                    Ok(None) => wakeups.wake_all(),
                    Err(e) => {
                        tracing::warn!(error = %e, "store notifications: connection failed");
                        break;
                    }
                }
            }
            // Dropping the listener closes its connection; a fresh one follows.
            drop(l);
        }
    })
}

/// Wake-ups for the other nodes, sent after the commits that asked for them,
/// coalesced: while one batch is being sent, the next collects, so a
/// destination is notified at most once per round trip however many commits
/// touched it.
#[derive(Default)]
pub(super) struct Notifier {
    waiting: Mutex<BTreeSet<String>>,
    signal: Notify,
}

impl Notifier {
    /// Asks for wake-ups of `destinations` (committed work). Never waits.
    pub(super) fn send<'a>(&self, destinations: impl IntoIterator<Item = &'a String>) {
        let mut w = self.waiting.lock();
        let before = w.len();
        w.extend(destinations.into_iter().cloned());
        if w.len() > before {
            self.signal.notify_one();
        }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.waiting.lock())
            .into_iter()
            .collect()
    }

    /// Sends what waits, until `stop`; then sends what is left once.
    pub(super) fn spawn(
        self: Arc<Self>,
        pool: PgPool,
        health: Arc<super::health::Health>,
        timeout: Duration,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    _ = self.signal.notified() => false,
                    _ = stop.cancelled() => true,
                };
                let batch = self.take();
                // While the database is down nothing is sent: the listeners
                // wake every destination when they reconnect.
                if !batch.is_empty() && health.is_up() {
                    match tokio::time::timeout(timeout, notify(&pool, &batch)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "wake-up notifications not sent")
                        }
                        Err(_) => tracing::debug!("wake-up notifications timed out"),
                    }
                }
                if stopping {
                    return;
                }
            }
        })
    }
}

/// One transaction of notifications. `pg_notify` gives the transaction an id,
/// so its commit would wait for a WAL flush: it is told not to.
async fn notify(pool: &PgPool, destinations: &[String]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT count(pg_notify($1, d)) FROM unnest($2::text[]) AS d")
        .bind(CHANNEL)
        .bind(destinations)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
