//! The Svix-compatible API: tenants ("applications") and their endpoints,
//! event types, messages and attempts at the paths and JSON shapes of the
//! open-source Svix server's API v1, so Svix's official clients work with the
//! server URL pointed at the admin listener. See `docs/svix.md`.
//!
//! The handlers are thin over the gateway's own machinery:
//! - an application is a tenant: a record in the store ([`crate::store::tenants`]),
//!   whose messages are those of source `tenant.<app id>`;
//! - an endpoint is an API destination made through [`crate::control::Registry`]
//!   (named by its `ep_` id, routed from its tenant's source only), plus a
//!   record of the fields only Svix has (description, channels, metadata);
//! - a message is stored like `POST /api/v1/events` stores an event, through
//!   `admin::events::store_event_from`; attempts are the store's attempts.
//!
//! Every lookup is scoped by the application in the path, and a tenant token
//! ([`auth`]) reaches only its own application: anything else is 404.

pub mod apps;
pub mod auth;
pub mod endpoints;
pub mod error;
pub mod event_types;
pub mod messages;
pub mod shape;

use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::admin::Shared;
use crate::clock::{format_rfc3339, Millis, Precision};

pub use error::{SvixError, SvixResult};

/// Kinds of records ([`crate::store::TenantRecord::kind`]).
pub(crate) mod kind {
    /// An application.
    pub const APP: &str = "app";
    /// An event type.
    pub const EVENT_TYPE: &str = "event_type";
    /// An endpoint's own fields.
    pub const ENDPOINT: &str = "endpoint";
    /// An app-portal token (by its hash).
    pub const TOKEN: &str = "token";
}

/// The Svix API's routes, behind the admin token or a tenant token; the
/// health checks are open, as Svix's are.
pub fn router(state: Shared) -> Router<Shared> {
    let api = scoped_router()
        .merge(auth::router())
        .route_layer(middleware::from_fn_with_state(state, auth::authorize));
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/health/ping", get(ping).head(ping))
        .route("/api/v1/health/", get(health))
        .merge(api)
        .route(
            "/api/v1/auth/dashboard-access/{app_id}",
            post(error::not_implemented),
        )
}

/// The API's routes without authentication: every handler reads the caller's
/// [`auth::Scope`] from the request's extensions, which the caller must set
/// (the app portal sets its session's tenant scope).
pub fn scoped_router() -> Router<Shared> {
    Router::new()
        .merge(apps::router())
        .merge(event_types::router())
        .merge(endpoints::router())
        .merge(messages::router())
}

/// `GET /api/v1/health`: 204 when the store answers.
async fn health(
    axum::extract::State(s): axum::extract::State<Shared>,
) -> SvixResult<axum::http::StatusCode> {
    s.store.ping().await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// `GET /api/v1/health/ping`: 204.
async fn ping() -> axum::http::StatusCode {
    axum::http::StatusCode::NO_CONTENT
}

/// A time as Svix writes it (RFC 3339, milliseconds, UTC).
pub(crate) fn time(ms: Millis) -> String {
    format_rfc3339(ms, Precision::Milliseconds)
}

/// A new id with Svix's prefix (`app`, `ep`, ...) and a ULID.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new())
}

/// The source of a tenant's messages.
pub fn tenant_source(app_id: &str) -> String {
    format!("{}{app_id}", crate::config::TENANT_SOURCE_PREFIX)
}
