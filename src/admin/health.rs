//! `/healthz`, `/readyz` and `/metrics`: open, without a token.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::ready::ReadyBody;
use super::{ready, Shared};

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The body of `/healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// `GET /healthz`: the process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz`: whether an ingest would succeed on this node now, bounded by
/// [`ready::READY_DEADLINE`] as a last guard.
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: an ingest would succeed now", body = ReadyBody),
        (status = 503, description = "Not ready, with every reason", body = ReadyBody,
            example = json!({"ready": false, "status": "unavailable",
                "reasons": [{"code": "draining", "message": "shutting down: no new requests are taken"}],
                "pending": 0, "reason": "shutting down: no new requests are taken"})),
    ))]
pub(crate) async fn readyz(State(s): State<Shared>) -> Response {
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

/// The media type of `/metrics`: Prometheus text format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Every metric, in Prometheus text format", body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8")))]
pub(crate) async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        crate::telemetry::render(&s.metrics),
    )
}
