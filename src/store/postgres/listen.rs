//! Wake-ups across nodes: every transaction that makes work due sends
//! `NOTIFY hookgate_wake, '<destination>'` (delivered at its commit), and each node
//! keeps one dedicated connection listening, which pokes the local dispatcher of
//! that destination. So an idle node starts a delivery within milliseconds of
//! another node's commit, not at its next poll.
//!
//! Invariant: a notification lost while the connection was down is made up for:
//! after every (re)connect the listener wakes every destination once. The
//! dispatcher's periodic re-check remains the last resort.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
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
