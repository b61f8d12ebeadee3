//! `POST /api/v1/reload`: reads the config file again and applies it (see
//! [`crate::control::reload`]). 200 with what changed and what needs a restart;
//! 422 `invalid_config` with every error as `hookgate check` prints it, the
//! running config staying; 409 when the gateway was not started from a file.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::Shared;
use crate::control::reload::ReloadError;

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new().route("/api/v1/reload", post(reload))
}

async fn reload(State(s): State<Shared>) -> ApiResult<Json<Value>> {
    let changes = s.reloader.reload().await?;
    Ok(Json(json!({
        "reloaded": true,
        "summary": changes.summary(),
        "changes": changes,
        "needs_restart": changes.needs_restart,
    })))
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
