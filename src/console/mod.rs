//! The web console: server-rendered HTML (maud) on the admin listener, with a
//! little hand-written JavaScript served from the binary. See `docs/console.md`.
//!
//! It owns no data: every page reads the [`Store`](crate::store::Store) and the
//! dispatcher through the same calls as the JSON API, and every action (replay,
//! pause, resume) takes the API's code path.
//!
//! Invariants:
//! - Every answer carries the security headers of [`security_headers`] (a strict
//!   CSP without inline script or style, no framing, no sniffing, no referrer).
//! - Every page but the login form needs a session ([`auth::Authed`]); every POST
//!   passes [`auth::check_post`] (origin, CSRF token, role).
//! - Everything shown is escaped by maud; secrets and signature headers are
//!   masked ([`mask::is_secret_header`]) in every view, the curl text included.

pub mod alerts;
pub mod auth;
pub mod dead;
pub mod dest_actions;
pub mod destinations;
pub mod layout;
pub mod mask;
pub mod messages;
pub mod overview;
pub mod portal;
pub mod ratelimit;
pub mod rejected;
pub mod sampler;
pub mod series;
pub mod source_test;
pub mod sources;
pub mod stats;
pub mod svg;
pub mod transforms;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::admin::Shared;

/// The console's Content-Security-Policy: only its own script and style files.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const JS: &str = include_str!("static/console.js");
const CSS: &str = include_str!("static/console.css");

/// How the console is served.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Mark cookies `Secure` (when the admin listener is served over TLS).
    pub secure_cookie: bool,
}

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    /// The admin state (store, dispatcher, config, tokens).
    pub admin: Shared,
    /// Logged-in sessions.
    pub sessions: Arc<auth::Sessions>,
    /// Whether cookies are marked `Secure`.
    pub secure_cookie: bool,
    /// Failed logins per client address.
    pub logins: Arc<ratelimit::LoginLimiter>,
    /// The overview's time series.
    pub overview: Arc<sampler::Sampler>,
    /// Tenants' app-portal sessions.
    pub portal: Arc<portal::PortalSessions>,
}

/// The console's routes, to merge into the admin router (plain HTTP: cookies
/// without `Secure`); the overview draws `overview`'s points.
pub fn router(state: Shared, overview: Arc<sampler::Sampler>) -> Router<Shared> {
    router_with(state, overview, Options::default())
}

/// The console's routes with explicit options.
pub fn router_with(
    state: Shared,
    overview: Arc<sampler::Sampler>,
    opts: Options,
) -> Router<Shared> {
    let c = Console {
        admin: state,
        overview,
        sessions: Arc::new(auth::Sessions::new(
            auth::MAX_SESSIONS,
            auth::SESSION_TTL_MS,
        )),
        secure_cookie: opts.secure_cookie,
        logins: Arc::new(ratelimit::LoginLimiter::new()),
        portal: Arc::default(),
    };
    Router::new()
        .route("/", get(overview::page))
        .route("/overview/fragment", get(overview::fragment))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/messages", get(messages::list))
        .route("/messages/rows", get(messages::rows))
        .route("/messages/{id}", get(messages::detail))
        .route("/messages/{id}/replay", post(messages::replay))
        .route("/messages/{id}/raw", get(messages::raw))
        .route("/dead", get(dead::list))
        .route("/dead/replay", get(dead::confirm).post(dead::replay))
        .route("/destinations", get(destinations::list))
        .route("/sources", get(sources::list))
        .route("/rejected", get(rejected::list))
        .route("/alerts", get(alerts::list))
        .route("/alerts/channels/new", post(alerts::create))
        .route("/alerts/channels/{name}/delete", post(alerts::delete))
        .route("/transforms", get(transforms::list))
        .route("/transforms/{name}/try", post(transforms::try_it))
        .route("/transforms/new", post(transforms::create))
        .route("/transforms/{name}/save", post(transforms::save))
        .route("/transforms/{name}/delete", post(transforms::delete))
        .route("/sources/{name}/test", post(source_test::send_test))
        .route("/destinations/{name}/pause", post(destinations::pause))
        .route("/destinations/{name}/resume", post(destinations::resume))
        .route(
            "/destinations/new",
            get(dest_actions::new_form).post(dest_actions::create),
        )
        .route(
            "/destinations/{name}/edit",
            get(dest_actions::edit_form).post(dest_actions::edit),
        )
        .route(
            "/destinations/{name}/delete",
            get(dest_actions::delete_confirm).post(dest_actions::delete),
        )
        .route(
            "/destinations/{name}/rotate",
            get(dest_actions::rotate_confirm).post(dest_actions::rotate),
        )
        .route("/destinations/{name}/test", post(dest_actions::send_test))
        .route("/portal", get(portal::home))
        .route("/portal/login", post(portal::login))
        .route("/portal/logout", post(portal::logout))
        .route(
            "/portal/endpoints/new",
            get(portal::new_form).post(portal::create),
        )
        .route("/portal/endpoints/{ep}", get(portal::endpoint))
        .route("/portal/endpoints/{ep}/edit", post(portal::edit))
        .route("/portal/endpoints/{ep}/delete", post(portal::delete))
        .route("/portal/endpoints/{ep}/rotate", post(portal::rotate))
        .route("/portal/endpoints/{ep}/secret", post(portal::secret))
        .route("/portal/messages", get(portal::messages))
        .route("/portal/messages/{id}", get(portal::message))
        .route("/portal/messages/{id}/resend/{ep}", post(portal::resend))
        .route("/static/console.js", get(js))
        .route("/static/console.css", get(css))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(c)
}

/// Adds the console's security headers to an answer.
pub async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        JS,
    )
        .into_response()
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CSS,
    )
        .into_response()
}

/// A urlencoded form body, as pairs (a missing or malformed body is empty).
#[derive(Debug, Default)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let urlencoded = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| {
                layout::error_page(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    "The form could not be read.",
                )
            })?;
        if !urlencoded {
            return Ok(FormData::default());
        }
        Ok(FormData(
            form_urlencoded::parse(&body).into_owned().collect(),
        ))
    }
}

/// Query parameters, with empty values taken as absent.
pub fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}
