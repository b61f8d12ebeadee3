//! `/api/v1/messages`: list, read and replay received messages.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{missing, ApiError, ApiResult, ErrorBody};
use super::extract::{given, limit, page, parse_status, parse_time, OptionalJson, Params};
use super::views::{body_text, joined_headers, BodyEncoding, DeliveryView, MessageView, Page};
use super::Shared;
use crate::clock::Millis;
use crate::store::{MessageId, MessageQuery, MessageStatus};
use crate::telemetry::events::Replayed;

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v1/messages", get(list_messages))
        .route("/api/v1/messages/{id}", get(get_message))
        .route("/api/v1/messages/{id}/replay", post(replay_message))
}

fn parse_id(id: &str) -> ApiResult<MessageId> {
    id.parse().map_err(|_| ApiError::not_found("message"))
}

/// The filters of `GET /api/v1/messages` (an empty value is no filter).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct MessagesParams {
    /// Only messages of this source.
    source: Option<String>,
    /// `pending`, `delivered` or `dead`.
    #[param(example = "dead")]
    status: Option<String>,
    /// Only messages of this event type.
    event_type: Option<String>,
    /// Received at or after this time (RFC 3339).
    #[param(example = "2026-01-31T12:00:00Z", format = DateTime)]
    since: Option<String>,
    /// Received before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// Only the message with this deduplication key.
    dedup_key: Option<String>,
    /// Messages per page: 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /api/v1/messages`: newest first, cursor-paginated.
#[utoipa::path(get, path = "/api/v1/messages", tag = "messages", operation_id = "list_messages",
    params(MessagesParams),
    responses(
        (status = 200, description = "A page of messages, newest first", body = Page<MessageView>),
        (status = 400, description = "A bad filter, limit or cursor", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn list_messages(
    State(s): State<Shared>,
    Params(p): Params<MessagesParams>,
) -> ApiResult<Response> {
    let q = MessageQuery {
        source: given(p.source),
        status: parse_status::<MessageStatus>(p.status.as_deref(), "pending, delivered, dead")?,
        event_type: given(p.event_type),
        since: given(p.since)
            .map(|t| parse_time("since", &t))
            .transpose()?,
        until: given(p.until)
            .map(|t| parse_time("until", &t))
            .transpose()?,
        dedup_key: given(p.dedup_key),
        limit: limit(p.limit)?,
        cursor: given(p.cursor),
    };
    let list = s.store.messages(&q).await.map_err(missing("cursor"))?;
    Ok(page(&list, MessageView::from))
}

/// A message with its headers, body and each delivery with its attempts.
#[derive(Serialize, ToSchema)]
pub struct MessageDetail<'a> {
    /// `msg_` and a ULID.
    #[schema(value_type = String, example = "msg_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK")]
    id: MessageId,
    /// The source it came from (`api` for published events).
    source: &'a str,
    /// Its event type, when known.
    event_type: Option<&'a str>,
    /// When it was received, in ms since the Unix epoch.
    #[schema(value_type = i64)]
    received_at: Millis,
    status: MessageStatus,
    /// The request's `Content-Type`.
    content_type: Option<&'a str>,
    /// The request's headers as received (repeated names joined with ", ").
    headers: std::collections::BTreeMap<String, String>,
    /// The body, byte for byte.
    body: Body,
    /// Each delivery with its attempts.
    deliveries: Vec<DeliveryView<'a>>,
}

/// A body: text when it is UTF-8, else base64.
#[derive(Serialize, ToSchema)]
pub struct Body {
    encoding: BodyEncoding,
    data: String,
}

/// `GET /api/v1/messages/{id}`
#[utoipa::path(get, path = "/api/v1/messages/{id}", tag = "messages", operation_id = "get_message",
    params(("id" = String, Path, description = "The message id", example = "msg_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK")),
    responses(
        (status = 200, description = "The message, its deliveries and their attempts", body = MessageDetail),
        (status = 404, description = "No such message", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn get_message(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let d = s.store.message(id).await.map_err(missing("message"))?;
    let m = &d.message;
    let headers = joined_headers(
        crate::store::decode_headers(&m.headers)
            .iter()
            .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned())),
    );
    let (data, encoding) = body_text(&m.body);
    let detail = MessageDetail {
        id: d.summary.id,
        source: &d.summary.source,
        event_type: d.summary.event_type.as_deref(),
        received_at: d.summary.received_at,
        status: d.summary.status,
        content_type: m.content_type.as_deref(),
        headers,
        body: Body { encoding, data },
        deliveries: d.deliveries.iter().map(DeliveryView::from).collect(),
    };
    Ok(Json(detail).into_response())
}

/// The body of a message's replay (optional).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"destination": "app"}))]
pub(crate) struct ReplayOne {
    /// Only to this destination (default: every destination it was routed to).
    destination: Option<String>,
}

/// What a replay made.
#[derive(Serialize, ToSchema)]
pub struct ReplayedMessage {
    #[schema(value_type = String, example = "msg_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK")]
    message_id: MessageId,
    /// The new deliveries' ids.
    deliveries: Vec<i64>,
    /// Their destinations, in the same order.
    destinations: Vec<String>,
}

/// `POST /api/v1/messages/{id}/replay`: a new delivery to every routed
/// destination, or to the one given.
#[utoipa::path(post, path = "/api/v1/messages/{id}/replay", tag = "messages", operation_id = "replay_message",
    params(("id" = String, Path, description = "The message id", example = "msg_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK")),
    request_body(content = Option<ReplayOne>, description = "Optional: the one destination to replay to"),
    responses(
        (status = 202, description = "New deliveries are queued", body = ReplayedMessage),
        (status = 404, description = "No such message or destination", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn replay_message(
    State(s): State<Shared>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ReplayOne>,
) -> ApiResult<(StatusCode, Json<ReplayedMessage>)> {
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
        Json(ReplayedMessage {
            message_id: id,
            deliveries: ids,
            destinations: dests,
        }),
    ))
}
