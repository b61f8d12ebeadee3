//! Readiness (`GET /readyz`): whether an ingest would succeed on this node now,
//! and if not, every reason why.
//!
//! It is computed from state the node keeps anyway — the draining flag, the
//! store's own view of its writability ([`Store::writable`]), the pending count —
//! so it never waits on the disk or the network, and the handler is bounded by
//! [`READY_DEADLINE`] besides. A new condition is one more [`NotReady`] variant.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::store::{Store, StoreError};

/// The longest `/readyz` takes to answer; past it the node is reported not ready.
pub const READY_DEADLINE: Duration = Duration::from_secs(1);

/// One reason the node would not take a message now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// Shutting down: the ingest listener is closed or closing.
    Draining,
    /// The store is out of room (`storage.max_size`, or the disk).
    StoreFull,
    /// The store refuses writes or cannot be reached.
    StoreUnavailable(String),
    /// The dispatcher cannot record delivery results (attempts wait until it can).
    ResultsUnrecorded,
    /// `storage.max_pending` reached.
    MaxPending {
        /// Pending deliveries now.
        pending: u64,
        /// The bound.
        max_pending: u64,
    },
    /// The check itself took longer than [`READY_DEADLINE`].
    TimedOut,
}

impl NotReady {
    /// A stable, machine-readable name.
    pub fn code(&self) -> &'static str {
        match self {
            NotReady::Draining => "draining",
            NotReady::StoreFull => "store_full",
            NotReady::StoreUnavailable(_) => "store_unavailable",
            NotReady::ResultsUnrecorded => "results_unrecorded",
            NotReady::MaxPending { .. } => "max_pending",
            NotReady::TimedOut => "timed_out",
        }
    }

    /// What an operator reads.
    pub fn message(&self) -> String {
        match self {
            NotReady::Draining => "shutting down: no new requests are taken".into(),
            NotReady::StoreFull => {
                "the store is full (storage.max_size or the disk): ingest answers 503 until retention frees room".into()
            }
            NotReady::StoreUnavailable(why) => format!("store: {why}"),
            NotReady::ResultsUnrecorded => {
                "the store refuses to record delivery results (disk full?): attempts wait until it recovers".into()
            }
            NotReady::MaxPending {
                pending,
                max_pending,
            } => format!(
                "max_pending reached ({pending} of {max_pending}): ingest answers 503 until deliveries drain"
            ),
            NotReady::TimedOut => format!(
                "the readiness check took longer than {}s",
                READY_DEADLINE.as_secs()
            ),
        }
    }
}

/// Ready, or every reason not to be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Empty when ready.
    pub reasons: Vec<NotReady>,
    /// Pending deliveries (for the body).
    pub pending: u64,
}

impl Readiness {
    /// Looks at the node's state; no I/O.
    pub fn check(
        store: &dyn Store,
        draining: bool,
        results_unrecorded: bool,
        max_pending: u64,
    ) -> Readiness {
        let mut reasons = Vec::new();
        if draining {
            reasons.push(NotReady::Draining);
        }
        match store.writable() {
            Ok(()) => {}
            Err(StoreError::Full) => reasons.push(NotReady::StoreFull),
            Err(e) => reasons.push(NotReady::StoreUnavailable(e.to_string())),
        }
        if results_unrecorded {
            reasons.push(NotReady::ResultsUnrecorded);
        }
        let pending = store.pending_estimate();
        if pending >= max_pending {
            reasons.push(NotReady::MaxPending {
                pending,
                max_pending,
            });
        }
        Readiness { reasons, pending }
    }

    /// Whether an ingest would succeed now.
    pub fn is_ready(&self) -> bool {
        self.reasons.is_empty()
    }

    /// The answer's body.
    pub fn answer(&self) -> ReadyBody {
        let ready = self.is_ready();
        ReadyBody {
            ready,
            status: if ready {
                ReadyStatus::Ready
            } else {
                ReadyStatus::Unavailable
            },
            reasons: self
                .reasons
                .iter()
                .map(|r| Reason {
                    code: r.code(),
                    message: r.message(),
                })
                .collect(),
            pending: self.pending,
            reason: (!ready).then(|| {
                let joined: Vec<String> = self.reasons.iter().map(NotReady::message).collect();
                joined.join("; ")
            }),
        }
    }

    /// The JSON body (see [`ReadyBody`]).
    pub fn body(&self) -> Value {
        serde_json::to_value(self.answer()).unwrap_or_default()
    }
}

/// The body of `/readyz`: `ready`, `reasons` (each with `code` and `message`),
/// and `status`/`reason` as earlier versions wrote them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"ready": true, "status": "ready", "reasons": [], "pending": 0}))]
pub struct ReadyBody {
    /// Whether an ingest would succeed now.
    pub ready: bool,
    pub status: ReadyStatus,
    /// Every reason not to be ready (empty when ready).
    pub reasons: Vec<Reason>,
    /// Pending deliveries.
    pub pending: u64,
    /// The reasons' messages in one line (when not ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `ready`, or `unavailable`.
#[derive(Debug, Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum ReadyStatus {
    /// Ingest would succeed.
    Ready,
    /// It would not (see `reasons`).
    Unavailable,
}

/// One reason not to be ready.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reason {
    /// `draining`, `store_full`, `store_unavailable`, `results_unrecorded`,
    /// `max_pending` or `timed_out`.
    #[schema(example = "max_pending")]
    pub code: &'static str,
    /// What an operator reads.
    pub message: String,
}

impl IntoResponse for Readiness {
    fn into_response(self) -> Response {
        let status = if self.is_ready() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, Json(self.answer())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_lists_every_reason() {
        let r = Readiness {
            reasons: vec![
                NotReady::Draining,
                NotReady::MaxPending {
                    pending: 5,
                    max_pending: 5,
                },
            ],
            pending: 5,
        };
        let v = r.body();
        assert_eq!(v["ready"], false);
        assert_eq!(v["reasons"][0]["code"], "draining");
        assert_eq!(v["reasons"][1]["code"], "max_pending");
        assert!(v["reason"].as_str().unwrap().contains("max_pending"));
        let ok = Readiness::default().body();
        assert_eq!(ok["ready"], true);
        assert_eq!(ok["status"], "ready");
        assert_eq!(ok["reasons"].as_array().unwrap().len(), 0);
    }
}
