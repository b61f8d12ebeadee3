//! `POST /api/v1/events`: the user's app publishes an event as source `api`. It
//! is routed by `event_types` like any message, stored durably before the 202,
//! deduplicated by `idempotency_key` for the retention period, and can be
//! scheduled (`deliver_at` or `delay`) — a schedule lives in the store, so it
//! survives restarts and crashes.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::JsonBody;
use super::Shared;
use crate::config::{Dur, Priority, API_SOURCE};
use crate::ingest::route::Overrides;
use crate::select::Inbound;
use crate::store::{encode_headers, Appended, Dedup, MessageId, NewMessage, StoreError};
use crate::telemetry::events::MessageUnrouted;

/// The body of `POST /api/v1/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"type": "order.created", "payload": {"id": 42, "total": "19.90"}, "idempotency_key": "order-42"}))]
pub struct Publish {
    /// Event type, such as `lead.created` (1 to 256 characters).
    #[serde(rename = "type")]
    #[schema(example = "order.created", min_length = 1, max_length = 256)]
    pub event_type: String,
    /// The payload, any JSON value, delivered byte for byte as given.
    #[schema(value_type = Value)]
    pub payload: Box<RawValue>,
    /// The same key again returns the same id and delivers nothing new.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub idempotency_key: Option<String>,
    /// Deliver at this time (RFC 3339); not with `delay`.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub deliver_at: Option<String>,
    /// Or after this delay.
    #[serde(default)]
    pub delay: Option<Dur>,
    /// high, normal or low.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Events with the same key reach a destination one at a time, in order.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub ordering_key: Option<String>,
}

/// Longest accepted event type, idempotency key and ordering key.
const MAX_KEY: usize = 256;

/// The routes of this area.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new().route("/api/v1/events", axum::routing::post(publish))
}

/// Checks the fields of a published event; returns when it is to be delivered
/// (`deliver_at`, or now plus `delay`), if either is given.
fn checked_deliver_at(
    p: &Publish,
    now: crate::clock::Millis,
) -> ApiResult<Option<crate::clock::Millis>> {
    let bad = |m: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_event", m);
    if p.event_type.is_empty() || p.event_type.len() > MAX_KEY {
        return Err(bad("type must be 1 to 256 characters"));
    }
    if p.idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY)
    {
        return Err(bad("idempotency_key must be 1 to 256 characters"));
    }
    if p.ordering_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY)
    {
        return Err(bad("ordering_key must be 1 to 256 characters"));
    }
    Ok(match (&p.deliver_at, p.delay) {
        (Some(_), Some(_)) => return Err(bad("give deliver_at or delay, not both")),
        (Some(at), None) => {
            Some(crate::clock::parse_rfc3339(at).ok_or_else(|| {
                bad("deliver_at must be an RFC 3339 time like 2026-01-31T12:00:00Z")
            })?)
        }
        (None, Some(d)) => Some(now.saturating_add(d.as_millis_i64())),
        (None, None) => None,
    })
}

/// The answer to a published event.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "msg_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK", "duplicate": false, "destinations": 1}))]
pub struct Published {
    /// The message's id (the first one's for a repeated `idempotency_key`).
    #[schema(value_type = String, example = "msg_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK")]
    id: MessageId,
    /// Whether the `idempotency_key` was seen before (nothing new is delivered).
    duplicate: bool,
    /// Destinations it is routed to (0 for a duplicate).
    destinations: usize,
    /// Why nothing will be delivered, when no destination takes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

/// `POST /api/v1/events`: publishes an event as source `api`.
#[utoipa::path(post, path = "/api/v1/events", tag = "events", operation_id = "publish_event",
    request_body = Publish,
    responses(
        (status = 202, description = "Stored durably; delivered to the routed destinations", body = Published,
            links(
                ("GetMessage" = (operation_id = "get_message", parameters(("id" = "$response.body#/id")))),
                ("ReplayMessage" = (operation_id = "replay_message", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 422, description = "A body with unknown, missing or invalid fields", body = ErrorBody),
        (status = 503, description = "Too many undelivered messages, or the store is full or unavailable", body = ErrorBody),
    ))]
pub(crate) async fn publish(
    State(s): State<Shared>,
    JsonBody(p): JsonBody<Publish>,
) -> ApiResult<(StatusCode, Json<Published>)> {
    let now = s.clock.now_millis();
    let deliver_at = checked_deliver_at(&p, now)?;
    let body = Bytes::copy_from_slice(p.payload.get().as_bytes());
    let headers = HeaderMap::new();
    let inbound = Inbound::new(&headers, None, &body);
    let overrides = Overrides {
        priority: p.priority,
        ordering_key: p.ordering_key.clone(),
        deliver_at,
    };
    let deliveries = s.registry.routing().current().deliveries(
        API_SOURCE,
        Some(&p.event_type),
        &inbound,
        now,
        &overrides,
        &|d| first_delay(&s, d),
    );
    let routed = deliveries.len();
    let event_type = p.event_type.clone();
    let appended = store_event(&s, &p.event_type, body, p.idempotency_key, deliveries).await?;
    let (id, duplicate) = match appended {
        Appended::Stored(id) => (id, false),
        Appended::Duplicate(id) => (id, true),
    };
    let mut answer = Published {
        id,
        duplicate,
        destinations: if duplicate { 0 } else { routed },
        warning: None,
    };
    if routed == 0 && !duplicate {
        MessageUnrouted {
            source: API_SOURCE,
            event_type: Some(&event_type),
            message_id: id,
        }
        .emit();
        answer.warning = Some(format!(
            "no destination takes events of type \"{event_type}\": the event is stored but delivered nowhere (check the event_types of the routes and destinations)"
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// A destination's delay before its first attempt.
pub fn first_delay(s: &Shared, destination: &str) -> std::time::Duration {
    s.dispatcher
        .get(destination)
        .map(|h| h.spec().retry.first_delay())
        .unwrap_or_default()
}

/// Stores an event of source `api` with its `deliveries`, durably, as
/// `POST /api/v1/events` does (the console's **Send test event** too): refused
/// with 503 past `storage.max_pending` or when the store is full.
pub async fn store_event(
    s: &Shared,
    event_type: &str,
    body: Bytes,
    idempotency_key: Option<String>,
    deliveries: Vec<crate::store::NewDelivery>,
) -> ApiResult<Appended> {
    let event = Event {
        source: API_SOURCE,
        event_type,
        body,
        headers: encode_headers(std::iter::empty()),
        idempotency_key,
    };
    store_event_from(s, event, deliveries).await
}

/// An event to store: its source and what it holds.
pub struct Event<'a> {
    /// Its source (`api`, or a tenant's).
    pub source: &'a str,
    /// Its type.
    pub event_type: &'a str,
    /// The payload, byte-exact.
    pub body: Bytes,
    /// Headers kept with it, encoded with [`encode_headers`].
    pub headers: Bytes,
    /// Its dedup key, remembered for the retention period.
    pub idempotency_key: Option<String>,
}

/// Stores an event of any source as [`store_event`] does (the Svix API
/// stores a tenant's messages here).
pub async fn store_event_from(
    s: &Shared,
    event: Event<'_>,
    deliveries: Vec<crate::store::NewDelivery>,
) -> ApiResult<Appended> {
    if s.store.pending_estimate() >= s.config().storage.max_pending {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many undelivered messages (storage.max_pending); retry later",
        ));
    }
    let now = s.clock.now_millis();
    let msg = NewMessage {
        id: MessageId::new(),
        source: event.source.to_string(),
        event_type: Some(event.event_type.to_string()),
        received_at: now,
        content_type: Some("application/json".into()),
        headers: event.headers,
        body: event.body,
        dedup: event.idempotency_key.map(|key| Dedup {
            key,
            until: now.saturating_add(s.config().storage.retention.as_millis_i64()),
        }),
        deliveries,
    };
    s.store.append(msg).await.map_err(|e| match e {
        StoreError::Full => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_full",
            "the store is full",
        ),
        e => e.into(),
    })
}
