//! `/api/v1/messages`: list, read and replay received messages.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{missing, ApiError, ApiResult};
use super::extract::{given, limit, page_json, parse_status, parse_time, OptionalJson, Params};
use super::views::{DeliveryView, MessageView};
use super::Shared;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesParams {
    source: Option<String>,
    status: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    dedup_key: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list_messages(
    State(s): State<Shared>,
    Params(p): Params<MessagesParams>,
) -> ApiResult<Json<Value>> {
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
    let page = s.store.messages(&q).await.map_err(missing("cursor"))?;
    Ok(page_json(&page, MessageView::from))
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
    let deliveries: Vec<DeliveryView> = d.deliveries.iter().map(DeliveryView::from).collect();
    Ok(Json(json!({
        "id": d.summary.id,
        "source": d.summary.source,
        "event_type": d.summary.event_type,
        "received_at": d.summary.received_at,
        "status": d.summary.status,
        "content_type": m.content_type,
        "headers": headers,
        "body": body,
        "deliveries": deliveries,
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
