//! `/api/v1/deliveries`: list deliveries and replay dead ones in bulk.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use super::error::{missing, ApiError, ApiResult, ErrorBody};
use super::extract::{given, limit, page, parse_status, parse_time, JsonBody, Params};
use super::views::{DeliveryView, Page};
use super::Shared;
use crate::clock::SharedClock;
use crate::store::{DeliveryQuery, DeliveryStatus, ReplayFilter, Store, StoreError};
use crate::telemetry::events::Replayed;

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v1/deliveries", get(list_deliveries))
        .route("/api/v1/deliveries/replay", post(bulk_replay))
}

/// The filters of `GET /api/v1/deliveries` (an empty value is no filter).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveriesParams {
    /// Only deliveries to this destination.
    destination: Option<String>,
    /// `pending`, `queued`, `delivered`, `dead`, `replayed`, `dropped` or `transform_failed`.
    #[param(example = "dead")]
    status: Option<String>,
    /// Deliveries per page: 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /api/v1/deliveries`: newest first, cursor-paginated.
#[utoipa::path(get, path = "/api/v1/deliveries", tag = "deliveries", operation_id = "list_deliveries",
    params(DeliveriesParams),
    responses(
        (status = 200, description = "A page of deliveries, newest first", body = Page<DeliveryView>),
        (status = 400, description = "A bad filter, limit or cursor", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn list_deliveries(
    State(s): State<Shared>,
    Params(p): Params<DeliveriesParams>,
) -> ApiResult<Response> {
    let q = DeliveryQuery {
        destination: given(p.destination),
        status: parse_status::<DeliveryStatus>(
            p.status.as_deref(),
            "pending, queued, delivered, dead, replayed, dropped, transform_failed",
        )?,
        limit: limit(p.limit)?,
        cursor: given(p.cursor),
    };
    let list = s.store.deliveries(&q).await.map_err(missing("cursor"))?;
    Ok(page(&list, DeliveryView::from))
}

/// The body of a bulk replay: which dead deliveries to revive.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"destination": "app", "status": "dead", "since": "2026-01-31T00:00:00Z"}))]
pub(crate) struct BulkReplay {
    /// Only deliveries to this destination.
    destination: Option<String>,
    /// Must be `dead`.
    #[schema(example = "dead", pattern = "^dead$")]
    status: String,
    /// Dead since this time (RFC 3339).
    #[schema(format = DateTime)]
    since: Option<String>,
    /// Dead before this time (RFC 3339; at most now).
    #[schema(format = DateTime)]
    until: Option<String>,
}

/// How many dead deliveries a bulk replay revives.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"count": 12}))]
pub struct BulkReplayed {
    /// Dead deliveries selected; they are revived in the background.
    count: u64,
}

/// `POST /api/v1/deliveries/replay`: revives dead deliveries in bulk.
#[utoipa::path(post, path = "/api/v1/deliveries/replay", tag = "deliveries", operation_id = "replay_deliveries",
    request_body = BulkReplay,
    responses(
        (status = 202, description = "The replay runs in the background", body = BulkReplayed),
        (status = 400, description = "A status other than dead, a bad time or a malformed body", body = ErrorBody),
        (status = 404, description = "No such destination", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn bulk_replay(
    State(s): State<Shared>,
    JsonBody(b): JsonBody<BulkReplay>,
) -> ApiResult<(StatusCode, Json<BulkReplayed>)> {
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
    // so ingest, the dispatcher and the API keep going. The task is the
    // gateway's: a shutdown stops it between batches.
    spawn_bulk_replay(&s, filter);
    Ok((StatusCode::ACCEPTED, Json(BulkReplayed { count })))
}

/// Starts a bulk replay of what `filter` selects as one of the gateway's
/// background tasks (the API and the console both start them here).
pub(crate) fn spawn_bulk_replay(s: &super::AdminState, filter: ReplayFilter) {
    let store = s.store.clone();
    let clock = s.clock.clone();
    s.tasks
        .spawn(move |stop| replay_dead(store, clock, filter, stop));
}

/// Revives the dead deliveries `f` selects, 500 at a time, until none is left,
/// `stop` fires or the store is closed.
async fn replay_dead(
    store: Arc<dyn Store>,
    clock: SharedClock,
    f: ReplayFilter,
    stop: CancellationToken,
) {
    let mut total = 0u64;
    while !stop.is_cancelled() {
        match store.replay_dead_batch(&f, clock.now_millis(), 500).await {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(StoreError::Closed) => break,
            Err(e) => {
                tracing::warn!(error = %e, "bulk replay batch failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.cancelled() => break,
                }
            }
        }
        tokio::task::yield_now().await;
    }
    Replayed {
        destination: f.destination.as_deref(),
        count: total,
    }
    .emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bulk replay ends when the store is closed, instead of retrying forever.
    #[tokio::test(start_paused = true)]
    async fn a_bulk_replay_stops_on_a_closed_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::sqlite::SqliteStore::open(dir.path().join("db")).unwrap());
        store.close().await;
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let never = CancellationToken::new();
        replay_dead(store, clock, ReplayFilter::default(), never).await;
    }
}
