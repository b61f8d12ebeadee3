//! `GET /api/v1/rejected`: the last requests ingest refused, newest first, each
//! with its reason in plain words, headers with secrets masked and the body
//! truncated (see [`crate::ingest::rejects`]). Held in memory: a restart empties it.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::extract::{given, limit, Params};
use super::Shared;

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new().route("/api/v1/rejected", get(list_rejected))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectedParams {
    source: Option<String>,
    limit: Option<usize>,
}

async fn list_rejected(
    State(s): State<Shared>,
    Params(p): Params<RejectedParams>,
) -> ApiResult<Json<Value>> {
    let limit = limit(p.limit)?;
    let items = s.rejects.list(given(p.source).as_deref(), limit);
    let data: Vec<&crate::ingest::rejects::RejectedRequest> = items.iter().map(|r| &**r).collect();
    Ok(Json(json!({ "data": data })))
}
