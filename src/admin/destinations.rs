//! `/api/v1/destinations`: list, create, read, change, delete, pause, resume and
//! rotate the signing secret. Thin adapters over [`crate::control::Registry`],
//! which checks, stores and applies every change; config-file destinations are
//! read-only here (409).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{JsonBody, OptionalJson};
use super::views::List;
use super::Shared;
use crate::clock::Millis;
use crate::config::def::{DestinationDef, DestinationType, Origin};
use crate::config::{Dur, Secret};

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v1/destinations", get(list).post(create))
        .route(
            "/api/v1/destinations/{name}",
            get(get_one).patch(patch).delete(delete),
        )
        .route("/api/v1/destinations/{name}/pause", post(pause))
        .route("/api/v1/destinations/{name}/resume", post(resume))
        .route("/api/v1/destinations/{name}/rotate-secret", post(rotate))
}

/// Whether a destination's circuit breaker lets attempts through.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Circuit {
    /// Attempts go out.
    Closed,
    /// Attempts wait (open or half-open).
    Open,
}

/// A destination's rate limit in effect.
#[derive(Serialize, ToSchema)]
pub struct RateView {
    /// Sustained requests per second.
    per_second: f64,
    /// Largest burst.
    burst: u32,
}

/// One destination as the API shows it: its settings, state and backlog.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "name": "app", "type": "push", "url": "https://app.example.com/hooks", "origin": "api",
    "timeout": "30s", "max_in_flight": 10, "rate_limit": null, "event_types": ["order.*"],
    "source": "api", "circuit": "closed", "paused": false, "disabled": false,
    "disabled_at": null, "failing_since": null, "in_flight": 0, "pending": 0,
    "oldest_pending_age_seconds": null, "dead": 0
}))]
pub struct DestinationView {
    /// Its name.
    name: String,
    /// `push` or `pull`.
    #[serde(rename = "type")]
    kind: DestinationType,
    /// Where deliveries go (push destinations).
    url: Option<String>,
    /// `config` (read-only here), `api`, or `channel` (the destination of an
    /// alert channel made through the API: change it with the channel).
    origin: Origin,
    /// Per-attempt timeout.
    #[schema(example = "30s")]
    timeout: String,
    /// Concurrent requests at most.
    max_in_flight: u32,
    rate_limit: Option<RateView>,
    /// The event types routed here (API destinations).
    event_types: Vec<String>,
    /// The source routed here (API destinations).
    source: Option<String>,
    circuit: Circuit,
    /// Attempts stopped by `pause`.
    paused: bool,
    /// Disabled after failing for `disable_after`.
    disabled: bool,
    /// When it was disabled (ms since the Unix epoch).
    #[schema(value_type = Option<i64>)]
    disabled_at: Option<Millis>,
    /// Since when every attempt has failed (ms since the Unix epoch).
    #[schema(value_type = Option<i64>)]
    failing_since: Option<Millis>,
    /// Requests under way.
    in_flight: u32,
    /// Deliveries waiting.
    pending: u64,
    /// Age of the oldest waiting delivery, in seconds.
    oldest_pending_age_seconds: Option<f64>,
    /// Dead-lettered deliveries.
    dead: u64,
    /// The signing secret (`whsec_...`): in the answer to a create only.
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_secret: Option<String>,
}

/// One destination as the API shows it.
pub fn destination_view(
    h: &crate::dispatch::DestinationHandle,
    stats: Option<&crate::store::DestinationStats>,
    now: i64,
) -> DestinationView {
    let spec = h.spec();
    let st = h.state();
    DestinationView {
        name: spec.name.clone(),
        kind: spec.kind,
        url: (!spec.is_pull()).then(|| crate::config::alerts::shown_url(&spec.name, &spec.url)),
        origin: spec.origin,
        timeout: Dur(spec.timeout).to_string(),
        max_in_flight: spec.max_in_flight,
        rate_limit: spec.rate_limit.map(|r| RateView {
            per_second: r.per_second,
            burst: r.burst(),
        }),
        event_types: spec.event_types.clone(),
        source: (spec.origin == Origin::Api).then(|| spec.source.clone()),
        circuit: if h.circuit_open() {
            Circuit::Open
        } else {
            Circuit::Closed
        },
        paused: st.paused,
        disabled: st.disabled_at.is_some(),
        disabled_at: st.disabled_at,
        failing_since: st.failing_since,
        in_flight: h.in_flight(),
        pending: stats.map_or(0, |s| s.pending),
        oldest_pending_age_seconds: stats
            .and_then(|s| s.oldest_pending_at)
            .map(|t| ((now - t).max(0) as f64) / 1000.0),
        dead: stats.map_or(0, |s| s.dead),
        signing_secret: None,
    }
}

/// One destination as the API answers it.
async fn respond(s: &Shared, name: &str) -> ApiResult<DestinationView> {
    let stats = s.store.destination_stats().await?;
    let h = s
        .dispatcher
        .get(name)
        .ok_or_else(|| ApiError::not_found("destination"))?;
    Ok(destination_view(&h, stats.get(name), s.clock.now_millis()))
}

/// The `name` path parameter of a destination's calls.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct NamePath {
    /// The destination's name.
    #[param(example = "app")]
    #[allow(dead_code)]
    name: String,
}

/// `GET /api/v1/destinations`: each with its circuit, backlog and state.
#[utoipa::path(get, path = "/api/v1/destinations", tag = "destinations", operation_id = "list_destinations",
    responses(
        (status = 200, description = "Every destination", body = List<DestinationView>),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn list(State(s): State<Shared>) -> ApiResult<Json<List<DestinationView>>> {
    let stats = s.store.destination_stats().await?;
    let now = s.clock.now_millis();
    let data = s
        .dispatcher
        .all()
        .iter()
        .map(|h| destination_view(h, stats.get(&h.spec().name), now))
        .collect();
    Ok(Json(List { data }))
}

/// `POST /api/v1/destinations`: a destination made at run time; `event_types`
/// also routes events of source `api` (or `source`) to it.
#[utoipa::path(post, path = "/api/v1/destinations", tag = "destinations", operation_id = "create_destination",
    request_body(content = DestinationDef, description = "The `[[destinations]]` fields, plus `event_types`, `source` and `filter`",
        example = json!({"name": "app", "url": "https://app.example.com/hooks", "event_types": ["order.*"], "timeout": "10s"})),
    responses(
        (status = 201, description = "Created; the answer holds its signing secret", body = DestinationView,
            links(
                ("GetDestination" = (operation_id = "get_destination", parameters(("name" = "$response.body#/name")))),
                ("PatchDestination" = (operation_id = "patch_destination", parameters(("name" = "$response.body#/name")))),
                ("DeleteDestination" = (operation_id = "delete_destination", parameters(("name" = "$response.body#/name")))),
                ("PauseDestination" = (operation_id = "pause_destination", parameters(("name" = "$response.body#/name")))),
                ("ResumeDestination" = (operation_id = "resume_destination", parameters(("name" = "$response.body#/name")))),
                ("RotateSecret" = (operation_id = "rotate_secret", parameters(("name" = "$response.body#/name")))),
            )),
        (status = 409, description = "A destination of that name exists", body = ErrorBody),
        (status = 422, description = "The definition has problems (each in `details`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn create(
    State(s): State<Shared>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<(StatusCode, Json<DestinationView>)> {
    let name = body.get("name").and_then(Value::as_str).map(str::to_string);
    let secret = s.registry.create(body).await?;
    let name = name.unwrap_or_default();
    let mut v = respond(&s, &name).await?;
    v.signing_secret = Some(secret);
    Ok((StatusCode::CREATED, Json(v)))
}

/// `GET /api/v1/destinations/{name}`
#[utoipa::path(get, path = "/api/v1/destinations/{name}", tag = "destinations", operation_id = "get_destination",
    params(NamePath),
    responses(
        (status = 200, description = "The destination", body = DestinationView),
        (status = 404, description = "No such destination", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn get_one(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Json<DestinationView>> {
    Ok(Json(respond(&s, &name).await?))
}

/// `PATCH /api/v1/destinations/{name}`: changes the given fields (`null` removes one).
#[utoipa::path(patch, path = "/api/v1/destinations/{name}", tag = "destinations", operation_id = "patch_destination",
    params(NamePath),
    request_body(content = Object, description = "Fields of the definition (as in `create_destination`) to change; `null` removes one",
        example = json!({"timeout": "5s", "max_in_flight": 4})),
    responses(
        (status = 200, description = "The destination as changed", body = DestinationView),
        (status = 404, description = "No such destination", body = ErrorBody),
        (status = 409, description = "A config-file destination (read-only here)", body = ErrorBody),
        (status = 422, description = "The changed definition has problems (each in `details`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn patch(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<DestinationView>> {
    s.registry.patch(&name, body).await?;
    Ok(Json(respond(&s, &name).await?))
}

/// `DELETE /api/v1/destinations/{name}`
#[utoipa::path(delete, path = "/api/v1/destinations/{name}", tag = "destinations", operation_id = "delete_destination",
    params(NamePath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such destination", body = ErrorBody),
        (status = 409, description = "A config-file destination (read-only here)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn delete(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.registry.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `rotate-secret` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"grace": "1h"}))]
pub(crate) struct Rotate {
    /// The new secret (a new random one when absent).
    signing_secret: Option<Secret>,
    /// How long the old secret keeps signing (default 24h).
    grace: Option<Dur>,
}

/// The answer of `rotate-secret`.
#[derive(Serialize, ToSchema)]
pub struct Rotated {
    /// The new signing secret.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    signing_secret: String,
    /// Until when the previous secret keeps signing beside it (ms since the Unix epoch).
    #[schema(value_type = i64)]
    previous_valid_until: Millis,
}

/// `POST /api/v1/destinations/{name}/rotate-secret`
#[utoipa::path(post, path = "/api/v1/destinations/{name}/rotate-secret", tag = "destinations", operation_id = "rotate_secret",
    params(NamePath),
    request_body(content = Option<Rotate>, description = "Optional: the new secret and the grace of the old one"),
    responses(
        (status = 200, description = "The new secret", body = Rotated),
        (status = 404, description = "No such destination", body = ErrorBody),
        (status = 409, description = "A config-file destination (read-only here)", body = ErrorBody),
        (status = 422, description = "A bad secret or grace", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn rotate(
    State(s): State<Shared>,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<Rotate>,
) -> ApiResult<Json<Rotated>> {
    let (signing_secret, previous_valid_until) = s
        .registry
        .rotate(&name, body.signing_secret, body.grace)
        .await?;
    Ok(Json(Rotated {
        signing_secret,
        previous_valid_until,
    }))
}

/// `POST /api/v1/destinations/{name}/pause`: stops attempts; messages keep queueing.
#[utoipa::path(post, path = "/api/v1/destinations/{name}/pause", tag = "destinations", operation_id = "pause_destination",
    params(NamePath),
    responses(
        (status = 200, description = "The destination, paused", body = DestinationView),
        (status = 404, description = "No such destination", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn pause(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Json<DestinationView>> {
    s.registry.set_paused(&name, true).await?;
    Ok(Json(respond(&s, &name).await?))
}

/// `POST /api/v1/destinations/{name}/resume`: starts attempts again.
#[utoipa::path(post, path = "/api/v1/destinations/{name}/resume", tag = "destinations", operation_id = "resume_destination",
    params(NamePath),
    responses(
        (status = 200, description = "The destination, resumed", body = DestinationView),
        (status = 404, description = "No such destination", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn resume(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Json<DestinationView>> {
    s.registry.set_paused(&name, false).await?;
    Ok(Json(respond(&s, &name).await?))
}
