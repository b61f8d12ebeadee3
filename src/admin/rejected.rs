//! `GET /api/v1/rejected`: the last requests ingest refused, newest first, each
//! with its reason in plain words, headers with secrets masked and the body
//! truncated (see [`crate::ingest::rejects`]). Held in memory: a restart empties it.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiResult, ErrorBody};
use super::extract::{given, limit, Params};
use super::views::List;
use super::Shared;
use crate::ingest::rejects::RejectedRequest;

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new().route("/api/v1/rejected", get(list_rejected))
}

/// The filters of `GET /api/v1/rejected`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RejectedParams {
    /// Only requests to this source.
    source: Option<String>,
    /// Requests at most: 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// `GET /api/v1/rejected`: the last refused requests, newest first.
#[utoipa::path(get, path = "/api/v1/rejected", tag = "rejected", operation_id = "list_rejected",
    params(RejectedParams),
    responses(
        (status = 200, description = "The last refused requests, newest first", body = List<RejectedRequest>),
        (status = 400, description = "A bad filter or limit", body = ErrorBody),
    ))]
pub(crate) async fn list_rejected(
    State(s): State<Shared>,
    Params(p): Params<RejectedParams>,
) -> ApiResult<Response> {
    let limit = limit(p.limit)?;
    let items = s.rejects.list(given(p.source).as_deref(), limit);
    let data: Vec<&RejectedRequest> = items.iter().map(|r| &**r).collect();
    Ok(Json(List { data }).into_response())
}
