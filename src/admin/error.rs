//! API errors: a status, a stable code and a message, answered as
//! `{"error": {"code", "message"}}` (with `details`, `[{pointer, message}]`,
//! when a definition has several problems).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::control::ControlError;
use crate::store::StoreError;

/// An API error: status, a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable message (never a secret or an internal detail).
    pub message: String,
    /// Where each problem is (`[{pointer, message}]`), for definitions.
    pub details: Option<Value>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
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

/// The body of every error answer of the API: `{"error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "destination not found"}}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// An error's code, message and, for definitions and config files, where each
/// problem is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, stable across versions (`not_found`,
    /// `invalid_request`, `invalid_destination`, `unauthorized`, ...).
    #[schema(example = "not_found")]
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Each problem: `{pointer, message}` for a definition, `{file, line,
    /// column, message, text}` for a config file.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub details: Option<Value>,
}

impl From<ApiError> for ErrorDetail {
    fn from(e: ApiError) -> Self {
        ErrorDetail {
            code: e.code.to_string(),
            message: e.message,
            details: e.details,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = ErrorBody { error: self.into() };
        (status, Json(body)).into_response()
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
            StoreError::Corrupt(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_corrupt",
                "a stored row cannot be read (see the gateway's log)",
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

/// Maps a store error, a missing row being `what` not found.
pub fn missing(what: &'static str) -> impl Fn(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound if what == "cursor" => ApiError::bad("invalid cursor"),
        StoreError::NotFound => ApiError::not_found(what),
        e => e.into(),
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Invalid(problems) => invalid(
                "invalid_destination",
                &problems,
                ControlError::Invalid(problems.clone()).to_string(),
            ),
            e @ ControlError::Exists(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            e @ (ControlError::ReadOnly | ControlError::Channel(_)) => {
                ApiError::new(StatusCode::CONFLICT, "read_only", e.to_string())
            }
            ControlError::NotFound => ApiError::not_found("destination"),
            ControlError::Store(e) => e.into(),
        }
    }
}

impl From<crate::control::transforms::TransformChangeError> for ApiError {
    fn from(e: crate::control::transforms::TransformChangeError) -> Self {
        use crate::control::transforms::TransformChangeError as E;
        match e {
            E::Invalid(problems) => invalid(
                "invalid_transform",
                &problems,
                E::Invalid(problems.clone()).to_string(),
            ),
            e @ E::Compile { .. } => ApiError {
                details: Some(json!([{"pointer": "/code", "message": e.to_string()}])),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_transform",
                    e.to_string(),
                )
            },
            e @ E::Exists(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            e @ E::ReadOnly => ApiError::new(StatusCode::CONFLICT, "read_only", e.to_string()),
            e @ E::InUse { .. } => ApiError::new(StatusCode::CONFLICT, "in_use", e.to_string()),
            E::NotFound => ApiError::not_found("transform"),
            E::Store(e) => e.into(),
        }
    }
}

impl From<crate::control::channels::ChannelChangeError> for ApiError {
    fn from(e: crate::control::channels::ChannelChangeError) -> Self {
        use crate::control::channels::ChannelChangeError as E;
        match e {
            E::Invalid(problems) => invalid(
                "invalid_alert_channel",
                &problems,
                E::Invalid(problems.clone()).to_string(),
            ),
            e @ E::Exists(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            e @ E::ReadOnly => ApiError::new(StatusCode::CONFLICT, "read_only", e.to_string()),
            E::NotFound => ApiError::not_found("alert channel"),
            E::Store(e) => e.into(),
        }
    }
}

/// A 422 with each problem at its place in `details`.
fn invalid(code: &'static str, problems: &[crate::control::Problem], message: String) -> ApiError {
    let details = problems
        .iter()
        .map(|p| json!({"pointer": p.pointer(), "message": p.message}))
        .collect();
    ApiError {
        details: Some(Value::Array(details)),
        ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}
