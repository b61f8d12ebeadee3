//! The admin listener: health and readiness, Prometheus metrics, and the bearer-
//! authenticated JSON API under `/api/v1` (SPEC §6). One `router()` per area,
//! merged here.

pub mod api;
pub mod destinations;
pub mod events;
pub mod ready;

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::clock::SharedClock;
use crate::config::{Config, Secret};
use crate::dispatch::Dispatcher;
use crate::ingest::route::Routing;
use crate::listener::Limits;
use crate::store::Store;

/// What the admin handlers share.
pub struct AdminState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Destinations and their workers.
    pub dispatcher: Arc<Dispatcher>,
    /// Routes (changed by API destinations).
    pub routing: Arc<Routing>,
    /// Wall clock.
    pub clock: SharedClock,
    /// Accepted bearer tokens.
    pub tokens: Vec<Secret>,
    /// Backpressure threshold (readiness).
    pub max_pending: u64,
    /// The Prometheus recorder.
    pub metrics: PrometheusHandle,
    /// The config the gateway runs with.
    pub config: Arc<Config>,
    /// Cancelled when shutdown starts: from then on the node is not ready.
    pub draining: CancellationToken,
}

/// Shared admin state.
pub type Shared = Arc<AdminState>;

/// The whole admin router.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api::router(state.clone()))
        .merge(crate::console::router(state.clone()))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.server.max_body.0 as usize,
        ))
        .with_state(state)
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
            s.max_pending,
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
        s.metrics.render(),
    )
}

/// Serves the admin router until `shutdown`, with the same header and idle
/// timeout as ingest (`read_timeout`) and at most `admin_max_connections`
/// connections (see [`crate::listener`]).
pub async fn serve(listener: TcpListener, state: Shared, shutdown: CancellationToken) {
    let limits = Limits {
        header_timeout: state.config.server.read_timeout.0,
        max_connections: state.config.server.admin_max_connections.max(1),
    };
    let app = router(state);
    crate::listener::serve(listener, limits, shutdown, move |req, _peer| {
        // A router is always ready, so `call` needs no `poll_ready` first.
        let call = app.clone().call(req.map(axum::body::Body::new));
        async move {
            match call.await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    })
    .await;
}
