//! Request extractors whose rejections are API errors, and the helpers of
//! listing calls (limits, cursors, status parameters, pages).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use super::views::Page;

/// A JSON body whose rejections are API errors.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON with Content-Type: application/json",
            )),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.body_text(),
            )),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the body is larger than server.max_body",
            )),
            Err(e) => Err(ApiError::bad(e.body_text())),
        }
    }
}

/// A JSON body that may be empty (no body means the default value).
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0")
            || (!req.headers().contains_key(header::CONTENT_TYPE)
                && !req.headers().contains_key(header::TRANSFER_ENCODING)
                && !req.headers().contains_key(header::CONTENT_LENGTH));
        if empty {
            return Ok(OptionalJson(T::default()));
        }
        let JsonBody(v) = JsonBody::<T>::from_request(req, state).await?;
        Ok(OptionalJson(v))
    }
}

/// Query parameters whose rejections are API errors.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Params(q.0)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError::bad(e.body_text()))
            }
            Err(e) => Err(ApiError::bad(e.body_text())),
        }
    }
}

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

pub fn limit(l: Option<usize>) -> ApiResult<usize> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ApiError::bad("limit must be at least 1")),
        Some(n) if n > MAX_LIMIT => {
            Err(ApiError::bad(format!("limit must be at most {MAX_LIMIT}")))
        }
        Some(n) => Ok(n),
    }
}

/// A listing page as the API answers it ([`Page`]), each item shown through `view`.
pub fn page<'a, T, V: Serialize>(
    list: &'a crate::store::Page<T>,
    view: impl Fn(&'a T) -> V,
) -> Response {
    Json(Page {
        data: list.items.iter().map(view).collect(),
        next_cursor: list.next_cursor.clone(),
    })
    .into_response()
}

/// A query parameter, with an empty value meaning absent.
pub fn given(v: Option<String>) -> Option<String> {
    v.filter(|v| !v.is_empty())
}

/// A `status=` parameter; `expected` lists the valid values for the error.
pub fn parse_status<T: std::str::FromStr>(v: Option<&str>, expected: &str) -> ApiResult<Option<T>> {
    match v.filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse::<T>()
            .map(Some)
            .map_err(|_| ApiError::bad(format!("status is one of {expected}"))),
        None => Ok(None),
    }
}

/// An RFC 3339 time from field `field`, or a 400 that says the format.
pub fn parse_time(field: &str, v: &str) -> ApiResult<i64> {
    crate::clock::parse_rfc3339(v).ok_or_else(|| {
        ApiError::bad(format!(
            "{field} must be an RFC 3339 time like 2026-01-31T12:00:00Z"
        ))
    })
}
