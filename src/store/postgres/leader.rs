//! The leader of the work one node does for all nodes on a database (the
//! alerts' evaluator): the node that holds a session advisory lock on a
//! connection of its own, outside the pool.
//!
//! Invariants:
//! - **At most one leader.** PostgreSQL grants the lock to one session; a node
//!   leads only while a query on that session still succeeds.
//! - **A dead leader is replaced.** The lock is the session's: it goes when the
//!   node closes the store, or when its connection ends (a `kill -9` closes the
//!   socket at once; a vanished host is noticed by TCP keepalives), and the
//!   next node to ask gets it, within one of its rounds.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use super::map_err;
use crate::store::{StoreError, StoreResult};

/// Advisory lock class of the leader (`pg_try_advisory_lock(class, 0)`).
pub(crate) const LEADER_LOCK_CLASS: i32 = 0x6867_0003;

/// This node's leadership: the connection that holds the lock (or tries to).
pub(super) struct Leader {
    opts: PgConnectOptions,
    timeout: Duration,
    /// The connection, and whether it holds the lock.
    conn: tokio::sync::Mutex<Option<(PgConnection, bool)>>,
}

impl Leader {
    /// Not connected yet; `timeout` bounds each connect and query.
    pub(super) fn new(opts: PgConnectOptions, timeout: Duration) -> Self {
        Leader {
            opts,
            timeout,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether this node leads: it keeps the lock while its connection
    /// answers, else tries to take it (connecting again if need be).
    pub(super) async fn lead(&self) -> StoreResult<bool> {
        let mut slot = self.conn.lock().await;
        let r = tokio::time::timeout(self.timeout, self.round(&mut slot)).await;
        match r {
            Ok(Ok(held)) => Ok(held),
            Ok(Err(e)) => {
                // A broken session holds nothing: start again next round.
                *slot = None;
                Err(e)
            }
            Err(_) => {
                *slot = None;
                Err(StoreError::Unavailable(
                    "the leader's connection did not answer in time".into(),
                ))
            }
        }
    }

    async fn round(&self, slot: &mut Option<(PgConnection, bool)>) -> StoreResult<bool> {
        if slot.is_none() {
            let c = self.opts.connect().await.map_err(map_err)?;
            *slot = Some((c, false));
        }
        let (conn, held) = slot.as_mut().expect("connected above");
        if *held {
            // Still the same session, so still the holder.
            sqlx::query("SELECT 1")
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
            return Ok(true);
        }
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, 0)")
            .bind(LEADER_LOCK_CLASS)
            .fetch_one(&mut *conn)
            .await
            .map_err(map_err)?;
        *held = got;
        if got {
            tracing::info!("this node now leads the alerts' evaluation");
        }
        Ok(got)
    }

    /// Gives the lock up, so another node takes over at once: unlocked on
    /// the session first (the server ends a closed session's backend, and
    /// with it the lock, only a little after the close returns), then closed.
    pub(super) async fn release(&self) {
        if let Some((mut c, held)) = self.conn.lock().await.take() {
            if held {
                let unlock = sqlx::query("SELECT pg_advisory_unlock($1, 0)")
                    .bind(LEADER_LOCK_CLASS)
                    .execute(&mut c);
                let _ = tokio::time::timeout(self.timeout, unlock).await;
            }
            let _ = c.close().await;
        }
    }
}
