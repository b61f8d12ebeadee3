//! The gateway's background tasks (sync, gauges, retention, bulk replays), owned
//! in one place so that a shutdown stops and joins every one of them before the
//! store closes.

use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A set of background tasks and the token that asks them to stop.
#[derive(Default)]
pub struct Tasks {
    set: Mutex<JoinSet<()>>,
    stop: CancellationToken,
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task(stop)` in the set; the task ends soon after `stop` fires. Once
    /// the set is stopping nothing new is started.
    pub fn spawn<F, T>(&self, task: T)
    where
        T: FnOnce(CancellationToken) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        if self.stop.is_cancelled() {
            return;
        }
        let mut set = self.set.lock();
        // Reap the finished ones, so a long run does not keep their results.
        while set.try_join_next().is_some() {}
        set.spawn(task(self.stop.clone()));
    }

    /// Asks every task to stop and waits for them, at most `bound`; the ones
    /// still running then are aborted (and waited for).
    pub async fn stop(&self, bound: Duration) {
        self.stop.cancel();
        let mut set = std::mem::take(&mut *self.set.lock());
        let joined =
            tokio::time::timeout(bound, async { while set.join_next().await.is_some() {} }).await;
        if joined.is_err() {
            tracing::warn!(
                left = set.len(),
                "background tasks did not stop in time; aborting them"
            );
            set.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn stop_joins_the_willing_and_aborts_the_rest() {
        let tasks = Tasks::new();
        let ended = Arc::new(AtomicUsize::new(0));
        let e = ended.clone();
        tasks.spawn(move |stop| async move {
            stop.cancelled().await;
            e.fetch_add(1, Ordering::SeqCst);
        });
        tasks.spawn(|_| std::future::pending());
        tasks.stop(Duration::from_millis(100)).await;
        assert_eq!(ended.load(Ordering::SeqCst), 1);
        assert!(tasks.set.lock().is_empty());
        tasks.spawn(|_| std::future::pending());
        assert!(tasks.set.lock().is_empty(), "nothing starts after stop");
    }
}
