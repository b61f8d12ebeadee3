//! The JSON API under `/api/v1`: bearer authentication, errors as
//! `{"error": {"code", "message"}}`, cursor pagination, and the calls on
//! messages, deliveries and destinations.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Shared;
use crate::store::{
    DeliveryQuery, DeliveryStatus, MessageId, MessageQuery, MessageStatus, ReplayFilter, StoreError,
};
use crate::telemetry::events::Replayed;

/// An API error: status, a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable message (never a secret or an internal detail).
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    /// 400 invalid_request.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    /// 404 not_found.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::Conflict => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "it exists already")
            }
            StoreError::Full => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_full",
                "the store is full",
            ),
            StoreError::Unavailable(_) | StoreError::Closed | StoreError::Refused(_) => {
                tracing::error!(error = %e, "store call failed in the admin API");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable; try again",
                )
            }
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON body whose rejections are API errors.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON with Content-Type: application/json",
            )),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.body_text(),
            )),
            Err(e) => Err(ApiError::bad(e.body_text())),
        }
    }
}

/// A JSON body that may be empty (no body means the default value).
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0")
            || (!req.headers().contains_key(header::CONTENT_TYPE)
                && !req.headers().contains_key(header::TRANSFER_ENCODING)
                && !req.headers().contains_key(header::CONTENT_LENGTH));
        if empty {
            return Ok(OptionalJson(T::default()));
        }
        let JsonBody(v) = JsonBody::<T>::from_request(req, state).await?;
        Ok(OptionalJson(v))
    }
}

/// Query parameters whose rejections are API errors.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Params(q.0)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError::bad(e.body_text()))
            }
            Err(e) => Err(ApiError::bad(e.body_text())),
        }
    }
}

/// Refuses calls without a valid `Authorization: Bearer` token (401).
async fn auth(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
        });
    match token {
        Some(t) if !t.is_empty() && crate::ingest::verify::any_key_eq(&s.tokens, t.as_bytes()) => {
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

/// The API router (authenticated).
pub fn router(state: Shared) -> Router<Shared> {
    Router::new()
        .route("/api/v1/messages", get(list_messages))
        .route("/api/v1/messages/{id}", get(get_message))
        .route("/api/v1/messages/{id}/replay", post(replay_message))
        .route("/api/v1/deliveries", get(list_deliveries))
        .route("/api/v1/deliveries/replay", post(bulk_replay))
        .route("/api/v1/events", post(super::events::publish))
        .route(
            "/api/v1/destinations",
            get(list_destinations).post(super::destinations::create),
        )
        .route(
            "/api/v1/destinations/{name}",
            get(super::destinations::get_one)
                .patch(super::destinations::patch)
                .delete(super::destinations::delete),
        )
        .route("/api/v1/destinations/{name}/pause", post(pause))
        .route("/api/v1/destinations/{name}/resume", post(resume))
        .route(
            "/api/v1/destinations/{name}/rotate-secret",
            post(super::destinations::rotate),
        )
        .fallback(|| async { ApiError::not_found("API route") })
        .route_layer(middleware::from_fn_with_state(state, auth))
}

fn parse_id(id: &str) -> ApiResult<MessageId> {
    id.parse().map_err(|_| ApiError::not_found("message"))
}

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

fn limit(l: Option<usize>) -> ApiResult<usize> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ApiError::bad("limit must be at least 1")),
        Some(n) if n > MAX_LIMIT => {
            Err(ApiError::bad(format!("limit must be at most {MAX_LIMIT}")))
        }
        Some(n) => Ok(n),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesParams {
    source: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct ListPage<T> {
    data: Vec<T>,
    next_cursor: Option<String>,
}

/// A listing page as the API answers it.
fn page_json<T: Serialize>(page: crate::store::Page<T>) -> Json<Value> {
    Json(json!(ListPage {
        data: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// A query parameter, with an empty value meaning absent.
fn given(v: Option<String>) -> Option<String> {
    v.filter(|v| !v.is_empty())
}

/// A `status=` parameter; `expected` lists the valid values for the error.
fn parse_status<T: std::str::FromStr>(v: Option<&str>, expected: &str) -> ApiResult<Option<T>> {
    match v.filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse::<T>()
            .map(Some)
            .map_err(|_| ApiError::bad(format!("status is one of {expected}"))),
        None => Ok(None),
    }
}

/// Maps a store error, a missing row being `what` not found.
pub fn missing(what: &'static str) -> impl Fn(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound if what == "cursor" => ApiError::bad("invalid cursor"),
        StoreError::NotFound => ApiError::not_found(what),
        e => e.into(),
    }
}

async fn list_messages(
    State(s): State<Shared>,
    Params(p): Params<MessagesParams>,
) -> ApiResult<Json<Value>> {
    let q = MessageQuery {
        source: given(p.source),
        status: parse_status::<MessageStatus>(p.status.as_deref(), "pending, delivered, dead")?,
        limit: limit(p.limit)?,
        cursor: given(p.cursor),
    };
    Ok(page_json(
        s.store.messages(&q).await.map_err(missing("cursor"))?,
    ))
}

async fn get_message(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let d = s.store.message(id).await.map_err(missing("message"))?;
    let m = &d.message;
    let headers: serde_json::Map<String, Value> = crate::store::decode_headers(&m.headers)
        .into_iter()
        .map(|(k, v)| (k, Value::String(String::from_utf8_lossy(&v).into_owned())))
        .collect();
    let body = match std::str::from_utf8(&m.body) {
        Ok(t) => json!({"encoding": "utf8", "data": t}),
        Err(_) => {
            use base64::Engine as _;
            json!({"encoding": "base64", "data": base64::engine::general_purpose::STANDARD.encode(&m.body)})
        }
    };
    Ok(Json(json!({
        "id": d.summary.id,
        "source": d.summary.source,
        "event_type": d.summary.event_type,
        "received_at": d.summary.received_at,
        "status": d.summary.status,
        "content_type": m.content_type,
        "headers": headers,
        "body": body,
        "deliveries": d.deliveries,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayOne {
    destination: Option<String>,
}

async fn replay_message(
    State(s): State<Shared>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ReplayOne>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let id = parse_id(&id)?;
    let dests = match body.destination {
        Some(d) => {
            if s.dispatcher.get(&d).is_none() {
                return Err(ApiError::not_found("destination"));
            }
            vec![d]
        }
        None => s
            .store
            .message_destinations(id)
            .await
            .map_err(missing("message"))?,
    };
    let ids = s
        .store
        .replay_message(id, &dests, s.clock.now_millis())
        .await
        .map_err(missing("message"))?;
    for d in &dests {
        Replayed {
            destination: Some(d),
            count: 1,
        }
        .emit();
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"message_id": id, "deliveries": ids, "destinations": dests})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesParams {
    destination: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list_deliveries(
    State(s): State<Shared>,
    Params(p): Params<DeliveriesParams>,
) -> ApiResult<Json<Value>> {
    let q = DeliveryQuery {
        destination: given(p.destination),
        status: parse_status::<DeliveryStatus>(
            p.status.as_deref(),
            "pending, queued, delivered, dead, replayed",
        )?,
        limit: limit(p.limit)?,
        cursor: given(p.cursor),
    };
    Ok(page_json(
        s.store.deliveries(&q).await.map_err(missing("cursor"))?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkReplay {
    destination: Option<String>,
    status: String,
    since: Option<String>,
    until: Option<String>,
}

fn parse_time(field: &str, v: &str) -> ApiResult<i64> {
    humantime::parse_rfc3339_weak(v)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            ApiError::bad(format!(
                "{field} must be an RFC 3339 time like 2026-01-31T12:00:00Z"
            ))
        })
}

async fn bulk_replay(
    State(s): State<Shared>,
    JsonBody(b): JsonBody<BulkReplay>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if b.status != "dead" {
        return Err(ApiError::bad("bulk replay takes status \"dead\""));
    }
    if let Some(d) = &b.destination {
        if s.dispatcher.get(d).is_none() {
            return Err(ApiError::not_found("destination"));
        }
    }
    let now = s.clock.now_millis();
    let filter = ReplayFilter {
        destination: b.destination.clone(),
        since: b
            .since
            .as_deref()
            .map(|v| parse_time("since", v))
            .transpose()?,
        // Only what is dead now: deliveries that die again during the replay stay dead.
        until: Some(
            b.until
                .as_deref()
                .map(|v| parse_time("until", v))
                .transpose()?
                .map_or(now, |u| u.min(now)),
        ),
    };
    let count = s.store.count_dead(&filter).await?;
    // Revive in small batches in the background: each batch is one short write,
    // so ingest, the dispatcher and the API keep going.
    let store = s.store.clone();
    let clock = s.clock.clone();
    let f = filter.clone();
    tokio::spawn(async move {
        let mut total = 0u64;
        loop {
            match store.replay_dead_batch(&f, clock.now_millis(), 500).await {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) => {
                    tracing::warn!(error = %e, "bulk replay batch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            tokio::task::yield_now().await;
        }
        Replayed {
            destination: f.destination.as_deref(),
            count: total,
        }
        .emit();
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"count": count}))))
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
        "url": spec.url.as_str(),
        "origin": match spec.origin { crate::dispatch::destination::Origin::Config => "config", crate::dispatch::destination::Origin::Api => "api" },
        "timeout": format!("{}", crate::config::Dur(spec.timeout)),
        "max_in_flight": spec.max_in_flight,
        "rate_limit": spec.rate_limit.map(|r| json!({"per_second": r.per_second, "burst": r.burst()})),
        "event_types": spec.event_types,
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

async fn list_destinations(State(s): State<Shared>) -> ApiResult<Json<Value>> {
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

async fn set_paused(s: Shared, name: String, paused: bool) -> ApiResult<Json<Value>> {
    s.dispatcher
        .set_paused(&name, paused)
        .await
        .ok_or_else(|| ApiError::not_found("destination"))?;
    let stats = s.store.destination_stats().await?;
    let h = s
        .dispatcher
        .get(&name)
        .ok_or_else(|| ApiError::not_found("destination"))?;
    Ok(Json(destination_json(
        &h,
        stats.get(&name),
        s.clock.now_millis(),
    )))
}

async fn pause(State(s): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    set_paused(s, name, true).await
}

async fn resume(State(s): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    set_paused(s, name, false).await
}
