//! `GET /api/v1/alerts`: the alert conditions that hold now and the alerts
//! raised, newest first, with the channel each went to and what became of it
//! (see [`crate::alerts`]). Past alerts are kept in the store across restarts.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiResult, ErrorBody};
use super::extract::{limit, Params};
use super::Shared;
use crate::alerts::event::AlertEvent;
use crate::alerts::AlertRecord;

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new().route("/api/v1/alerts", get(list_alerts))
}

/// The filters of `GET /api/v1/alerts`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertParams {
    /// Past alerts at most: 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The answer of `GET /api/v1/alerts`.
#[derive(Serialize, ToSchema)]
pub(crate) struct AlertList {
    /// The configured channels' names.
    channels: Vec<String>,
    /// Conditions that hold now: the event that started each (or its last reminder).
    current: Vec<AlertEvent>,
    /// Alerts raised, newest first, one per channel they were raised for.
    past: Vec<AlertRecord>,
}

/// `GET /api/v1/alerts`: current conditions and past alerts.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", operation_id = "list_alerts",
    params(AlertParams),
    responses(
        (status = 200, description = "Current conditions and past alerts, newest first", body = AlertList),
        (status = 400, description = "A bad limit", body = ErrorBody),
    ))]
pub(crate) async fn list_alerts(
    State(s): State<Shared>,
    Params(p): Params<AlertParams>,
) -> ApiResult<Response> {
    let limit = limit(p.limit)?;
    Ok(Json(AlertList {
        channels: s.alerts.channel_names(),
        current: s.alerts.current(),
        past: s.alerts.past(limit),
    })
    .into_response())
}
