//! `/api/v1/destinations`: list, create, read, change, delete, pause, resume and
//! rotate the signing secret. Thin adapters over [`crate::control::Registry`],
//! which checks, stores and applies every change; config-file destinations are
//! read-only here (409).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, OptionalJson};
use super::Shared;
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

/// One destination as the API shows it.
pub fn destination_json(
    h: &crate::dispatch::DestinationHandle,
    stats: Option<&crate::store::DestinationStats>,
    now: i64,
) -> Value {
    let spec = h.spec();
    let st = h.state();
    let circuit = if h.circuit_open() { "open" } else { "closed" };
    let pending = stats.map_or(0, |s| s.pending);
    let oldest_age = stats
        .and_then(|s| s.oldest_pending_at)
        .map(|t| ((now - t).max(0) as f64) / 1000.0);
    json!({
        "name": spec.name,
        "type": spec.kind.as_str(),
        "url": (!spec.is_pull()).then(|| spec.url.as_str()),
        "origin": match spec.origin { crate::dispatch::destination::Origin::Config => "config", crate::dispatch::destination::Origin::Api => "api" },
        "timeout": format!("{}", crate::config::Dur(spec.timeout)),
        "max_in_flight": spec.max_in_flight,
        "rate_limit": spec.rate_limit.map(|r| json!({"per_second": r.per_second, "burst": r.burst()})),
        "event_types": spec.event_types,
        "source": (spec.origin == crate::dispatch::destination::Origin::Api).then_some(&spec.source),
        "circuit": circuit,
        "paused": st.paused,
        "disabled": st.disabled_at.is_some(),
        "disabled_at": st.disabled_at,
        "failing_since": st.failing_since,
        "in_flight": h.in_flight(),
        "pending": pending,
        "oldest_pending_age_seconds": oldest_age,
        "dead": stats.map_or(0, |s| s.dead),
    })
}

/// One destination as the API answers it, with `extra` fields added.
async fn respond(s: &Shared, name: &str, extra: Option<(&str, Value)>) -> ApiResult<Value> {
    let stats = s.store.destination_stats().await?;
    let h = s
        .dispatcher
        .get(name)
        .ok_or_else(|| ApiError::not_found("destination"))?;
    let mut v = destination_json(&h, stats.get(name), s.clock.now_millis());
    if let (Some((k, val)), Some(obj)) = (extra, v.as_object_mut()) {
        obj.insert(k.to_string(), val);
    }
    Ok(v)
}

/// `GET /api/v1/destinations`
async fn list(State(s): State<Shared>) -> ApiResult<Json<Value>> {
    let stats = s.store.destination_stats().await?;
    let now = s.clock.now_millis();
    let data: Vec<Value> = s
        .dispatcher
        .all()
        .iter()
        .map(|h| destination_json(h, stats.get(&h.spec().name), now))
        .collect();
    Ok(Json(json!({"data": data})))
}

/// `POST /api/v1/destinations`
async fn create(
    State(s): State<Shared>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = body.get("name").and_then(Value::as_str).map(str::to_string);
    let secret = s.registry.create(body).await?;
    let name = name.unwrap_or_default();
    let v = respond(&s, &name, Some(("signing_secret", json!(secret)))).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// `GET /api/v1/destinations/{name}`
async fn get_one(State(s): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(respond(&s, &name, None).await?))
}

/// `PATCH /api/v1/destinations/{name}`: changes the given fields (`null` removes one).
async fn patch(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    s.registry.patch(&name, body).await?;
    Ok(Json(respond(&s, &name, None).await?))
}

/// `DELETE /api/v1/destinations/{name}`
async fn delete(State(s): State<Shared>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    s.registry.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `rotate-secret`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// The new secret (a new random one when absent).
    signing_secret: Option<Secret>,
    /// How long the old secret keeps signing (default 24h).
    grace: Option<Dur>,
}

/// `POST /api/v1/destinations/{name}/rotate-secret`
async fn rotate(
    State(s): State<Shared>,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<Rotate>,
) -> ApiResult<Json<Value>> {
    let (secret, until) = s
        .registry
        .rotate(&name, body.signing_secret, body.grace)
        .await?;
    Ok(Json(
        json!({"signing_secret": secret, "previous_valid_until": until}),
    ))
}

/// `POST /api/v1/destinations/{name}/pause`
async fn pause(State(s): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    s.registry.set_paused(&name, true).await?;
    Ok(Json(respond(&s, &name, None).await?))
}

/// `POST /api/v1/destinations/{name}/resume`
async fn resume(State(s): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    s.registry.set_paused(&name, false).await?;
    Ok(Json(respond(&s, &name, None).await?))
}
