//! `/healthz`, `/readyz` and `/metrics`: open, without a token.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{ready, Shared};

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Readiness, bounded by [`ready::READY_DEADLINE`] as a last guard.
async fn readyz(State(s): State<Shared>) -> Response {
    let check = async {
        ready::Readiness::check(
            s.store.as_ref(),
            s.draining.is_cancelled(),
            s.dispatcher.store_write_failing(),
            s.config().storage.max_pending,
        )
    };
    match tokio::time::timeout(ready::READY_DEADLINE, check).await {
        Ok(r) => r.into_response(),
        Err(_) => ready::Readiness {
            reasons: vec![ready::NotReady::TimedOut],
            pending: s.store.pending_estimate(),
        }
        .into_response(),
    }
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render(&s.metrics),
    )
}
