//! The admin listener: health and readiness, Prometheus metrics, and the bearer-
//! authenticated JSON API under `/api/v1` (SPEC §6). One `router()` per area,
//! merged here; the API's OpenAPI document is generated from the handlers
//! (`openapi`).

pub mod alerts;
pub mod deliveries;
pub mod destinations;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod messages;
pub mod openapi;
pub mod pull;
pub mod ready;
pub mod rejected;
pub mod reload;
pub mod transforms;
pub mod views;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::clock::SharedClock;
use crate::config::{Config, Live};
use crate::control::{Registry, Reloader};
use crate::dispatch::Dispatcher;
use crate::listener::Limits;
use crate::store::Store;
use crate::tasks::Tasks;
use error::ApiError;

/// What the admin handlers share.
pub struct AdminState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Destinations and their workers.
    pub dispatcher: Arc<Dispatcher>,
    /// Destinations and routes: every change to them goes through it.
    pub registry: Arc<Registry>,
    /// The gateway's background tasks (bulk replays run there).
    pub tasks: Arc<Tasks>,
    /// Wall clock.
    pub clock: SharedClock,
    /// The Prometheus recorder.
    pub metrics: PrometheusHandle,
    /// The config the gateway runs with (its admin tokens, limits, sources);
    /// a reload replaces it, so handlers read it through [`AdminState::config`].
    pub live: Arc<Live<Config>>,
    /// Applies the config file again (`POST /api/v1/reload`, SIGHUP).
    pub reloader: Arc<Reloader>,
    /// Cancelled when shutdown starts: from then on the node is not ready.
    pub draining: CancellationToken,
    /// Where ingest listens, as bound (the config may say port 0).
    pub ingest_addr: std::net::SocketAddr,
    /// Whether ingest serves HTTPS (`server.tls`): the console's ingest URLs
    /// and its test webhooks use `https`.
    pub ingest_tls: bool,
    /// The last requests ingest refused (`GET /api/v1/rejected`).
    pub rejects: Arc<crate::ingest::rejects::Rejects>,
    /// The alerts: current conditions and past alerts (`GET /api/v1/alerts`).
    pub alerts: Arc<crate::alerts::Alerts>,
}

impl AdminState {
    /// The config in effect now; hold it for one request at most.
    pub fn config(&self) -> Arc<Config> {
        self.live.load()
    }
}

/// Shared admin state.
pub type Shared = Arc<AdminState>;

/// The whole admin router: health and metrics open, the API areas behind the
/// bearer token, and `pages` (the web console, with its own sessions) beside them.
pub fn router(state: Shared, pages: Router<Shared>) -> Router {
    let api = Router::new()
        .merge(messages::router())
        .merge(deliveries::router())
        .merge(destinations::router())
        .merge(pull::router())
        .merge(events::router())
        .merge(rejected::router())
        .merge(alerts::router())
        .merge(reload::router())
        .merge(transforms::router())
        .merge(openapi::router())
        .fallback(|| async { ApiError::not_found("API route") })
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .merge(health::router())
        .merge(api)
        .merge(pages)
        // `server.max_body` is applied per request by `serve` (a reload may
        // change it); no second, fixed limit here.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// The token of an `Authorization: Bearer` header, if there is one.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
        })
}

/// Refuses calls without a valid `Authorization: Bearer` token (401).
async fn auth(State(s): State<Shared>, req: Request, next: Next) -> Response {
    match bearer_token(req.headers()) {
        Some(t)
            if !t.is_empty()
                && crate::ingest::verify::any_key_eq(
                    &s.config().server.admin_tokens,
                    t.as_bytes(),
                ) =>
        {
            next.run(req).await
        }
        _ => {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin token is required: Authorization: Bearer <token>",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
            r
        }
    }
}

/// Serves the admin router until `shutdown`, with the same header and idle
/// timeout as ingest (`read_timeout`) and at most `admin_max_connections`
/// connections (see [`crate::listener`]); over TLS with `tls` (HTTP/2 when
/// the client asks for it by ALPN).
pub async fn serve(
    listener: TcpListener,
    state: Shared,
    pages: Router<Shared>,
    tls: Option<crate::tls::Acceptor>,
    shutdown: CancellationToken,
) {
    let cfg = state.config();
    let limits = Limits {
        header_timeout: cfg.server.read_timeout.0,
        max_connections: cfg.server.admin_max_connections.max(1),
    };
    let live = state.live.clone();
    let app = router(state, pages);
    crate::listener::serve(listener, limits, tls, shutdown, move |req, peer| {
        // The running `server.max_body`: a larger body fails to read, which
        // the extractors answer with 413.
        let max_body = usize::try_from(live.load().server.max_body.0).unwrap_or(usize::MAX);
        let mut req = req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, max_body)));
        // The console limits failed logins per client address.
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        // A router is always ready, so `call` needs no `poll_ready` first.
        let call = app.clone().call(req);
        async move {
            match call.await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    })
    .await;
}
