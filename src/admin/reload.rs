//! `POST /api/v1/reload`: reads the config file again and applies it (see
//! [`crate::control::reload`]). 200 with what changed and what needs a restart;
//! 422 `invalid_config` with every error as `hookgate check` prints it, the
//! running config staying; 409 when the gateway was not started from a file.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::Shared;
use crate::control::reload::{Changes, ReloadError};

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new().route("/api/v1/reload", post(reload))
}

/// What a reload applied.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"reloaded": true, "summary": "destination `app` changed",
    "changes": {"sources": {"added": [], "removed": [], "changed": []},
                "destinations": {"added": [], "removed": [], "changed": ["app"]},
                "routes": {"added": [], "removed": [], "changed": []},
                "transforms": {"added": [], "removed": [], "changed": []}, "settings": []},
    "needs_restart": []}))]
pub struct Reloaded {
    /// Always `true`.
    reloaded: bool,
    /// What changed, in one line.
    summary: String,
    /// What changed, by kind.
    changes: Changes,
    /// Settings changed in the file that keep their running value until a restart.
    needs_restart: Vec<&'static str>,
}

/// `POST /api/v1/reload`: reads the config file again and applies it.
#[utoipa::path(post, path = "/api/v1/reload", tag = "operations", operation_id = "reload",
    responses(
        (status = 200, description = "The new config is running", body = Reloaded),
        (status = 409, description = "The gateway was not started from a config file", body = ErrorBody),
        (status = 422, description = "The file has errors (each in `details`); the running config stays", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn reload(State(s): State<Shared>) -> ApiResult<Json<Reloaded>> {
    let changes = s.reloader.reload().await?;
    Ok(Json(Reloaded {
        reloaded: true,
        summary: changes.summary(),
        needs_restart: changes.needs_restart.clone(),
        changes,
    }))
}

impl From<ReloadError> for ApiError {
    fn from(e: ReloadError) -> Self {
        match e {
            ReloadError::NoFile => {
                ApiError::new(StatusCode::CONFLICT, "no_config_file", e.to_string())
            }
            ReloadError::Invalid(errs) => {
                let details = errs
                    .0
                    .iter()
                    .map(|e| {
                        json!({
                            "file": e.file,
                            "line": e.line,
                            "column": e.col,
                            "message": e.message,
                            "text": e.to_string(),
                        })
                    })
                    .collect();
                let n = errs.0.len();
                ApiError {
                    details: Some(Value::Array(details)),
                    ..ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_config",
                        format!(
                            "the config file has {n} error{}; the running config stays",
                            if n == 1 { "" } else { "s" }
                        ),
                    )
                }
            }
            ReloadError::Store(e) => e.into(),
        }
    }
}
