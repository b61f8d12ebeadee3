//! Errors as Svix answers them: `{"code", "detail"}`, and for a body that
//! does not validate, 422 with `{"detail": [{"loc", "msg", "type"}]}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::control::ControlError;
use crate::store::StoreError;

/// An error of the Svix API.
#[derive(Debug)]
pub enum SvixError {
    /// `{"code", "detail"}` with a status.
    Http {
        /// HTTP status.
        status: StatusCode,
        /// Svix's code (`not_found`, `conflict`, ...).
        code: &'static str,
        /// For people (never a secret).
        detail: String,
    },
    /// 422: where each problem is (`["body", "field"]`) and what it is.
    Validation(Vec<(Vec<String>, String)>),
}

/// Result of a Svix handler.
pub type SvixResult<T> = Result<T, SvixError>;

impl SvixError {
    /// An error with a status, a code and a detail.
    pub fn http(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        SvixError::Http {
            status,
            code,
            detail: detail.into(),
        }
    }
    /// 404 of a thing (`application`, `endpoint`, ...).
    pub fn not_found(what: &str) -> Self {
        Self::http(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    /// 409: the id or uid is taken.
    pub fn conflict(what: &str) -> Self {
        Self::http(
            StatusCode::CONFLICT,
            "conflict",
            format!("{what} with this id or uid already exists"),
        )
    }
    /// 403: a tenant token asked for more than its application.
    pub fn forbidden() -> Self {
        Self::http(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token is limited to one application and cannot do this",
        )
    }
    /// 422 at one field of the body.
    pub fn invalid(field: &str, msg: impl Into<String>) -> Self {
        let mut loc = vec!["body".to_string()];
        loc.extend(
            field
                .split('.')
                .filter(|f| !f.is_empty())
                .map(str::to_string),
        );
        SvixError::Validation(vec![(loc, msg.into())])
    }
    /// 422 of a query parameter.
    pub fn invalid_query(msg: impl Into<String>) -> Self {
        SvixError::Validation(vec![(vec!["query".into()], msg.into())])
    }
}

impl IntoResponse for SvixError {
    fn into_response(self) -> Response {
        match self {
            SvixError::Http {
                status,
                code,
                detail,
            } => (status, Json(json!({"code": code, "detail": detail}))).into_response(),
            SvixError::Validation(items) => {
                let detail: Vec<_> = items
                    .into_iter()
                    .map(|(loc, msg)| json!({"loc": loc, "msg": msg, "type": "value_error"}))
                    .collect();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({ "detail": detail })),
                )
                    .into_response()
            }
        }
    }
}

impl From<StoreError> for SvixError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => SvixError::not_found("entity"),
            StoreError::Conflict => SvixError::conflict("an entity"),
            StoreError::Full => SvixError::http(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_full",
                "the store is full",
            ),
            StoreError::Refused(_) | StoreError::Corrupt(_) => SvixError::http(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                "the store failed",
            ),
            StoreError::Unavailable(_) | StoreError::Closed => SvixError::http(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store is unavailable; retry later",
            ),
        }
    }
}

impl From<ControlError> for SvixError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Invalid(problems) => SvixError::Validation(
                problems
                    .into_iter()
                    .map(|p| (vec!["body".to_string()], p.message))
                    .collect(),
            ),
            ControlError::Exists(_) => SvixError::conflict("an endpoint"),
            ControlError::ReadOnly | ControlError::Channel(_) | ControlError::NotFound => {
                SvixError::not_found("endpoint")
            }
            ControlError::Store(e) => e.into(),
        }
    }
}

impl From<crate::admin::error::ApiError> for SvixError {
    fn from(e: crate::admin::error::ApiError) -> Self {
        SvixError::http(e.status, e.code, e.message)
    }
}

/// 501 for what the open-source Svix server has and hookgate does not.
pub async fn not_implemented() -> SvixError {
    SvixError::http(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "hookgate does not implement this part of the Svix API; see docs/svix.md",
    )
}
