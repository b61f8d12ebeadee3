//! `POST /api/v1/destinations/{name}/pull` and `/ack`: consumers of pull
//! destinations lease due deliveries and report each result. Thin adapters
//! over [`Dispatcher::pull`](crate::dispatch::Dispatcher::pull) and
//! [`Dispatcher::ack`](crate::dispatch::Dispatcher::ack); see `docs/pull.md`.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use super::destinations::NamePath;
use super::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use super::extract::{JsonBody, OptionalJson};
use super::views::{body_text, joined_headers, BodyEncoding, List};
use super::Shared;
use crate::config::Dur;
use crate::dispatch::http::RESPONSE_KEEP;
use crate::dispatch::pull::{
    Ack, AckAction, AckOutcome, PullError, PullParams, Pulled, MAX_LEASE, MAX_PULL, MAX_WAIT,
    MIN_LEASE,
};
use crate::store::StoreError;

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v1/destinations/{name}/pull", post(pull))
        .route("/api/v1/destinations/{name}/ack", post(ack))
}

/// Deliveries per pull unless asked.
const DEFAULT_MAX: usize = 10;
/// A lease's length unless asked.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Results per ack call at most.
const MAX_RESULTS: usize = 1000;
/// Bytes of a result's `error` kept.
const ERROR_KEEP: usize = 1024;

/// A duration as seconds or as text (`"20s"`, `"1m 30s"`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum Span {
    Seconds(u64),
    Text(Dur),
}

impl utoipa::PartialSchema for Span {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .description(Some("Seconds, or a duration such as `20s` or `1m 30s`"))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .examples([20]),
            )
            .item(<Dur as utoipa::PartialSchema>::schema())
            .into()
    }
}

impl ToSchema for Span {}

impl Span {
    fn get(self) -> Duration {
        match self {
            Span::Seconds(s) => Duration::from_secs(s),
            Span::Text(d) => d.0,
        }
    }
}

/// Body of `pull` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"max": 10, "wait": "20s", "lease": "30s"}))]
pub(crate) struct PullBody {
    /// Deliveries at most (1 to 1000, default 10).
    #[schema(minimum = 1, maximum = 1000)]
    max: Option<usize>,
    /// How long to wait for the first (up to 60 s, default 0).
    wait: Option<Span>,
    /// How long each lease lasts (1 s to 12 h, default 30 s).
    lease: Option<Span>,
}

impl PullBody {
    fn params(&self) -> ApiResult<PullParams> {
        let max = self.max.unwrap_or(DEFAULT_MAX);
        if max == 0 || max > MAX_PULL {
            return Err(ApiError::bad(format!(
                "max must be 1 to {MAX_PULL}, not {max}"
            )));
        }
        let wait = self.wait.map_or(Duration::ZERO, Span::get);
        if wait > MAX_WAIT {
            return Err(ApiError::bad(format!(
                "wait must be at most {}",
                Dur(MAX_WAIT)
            )));
        }
        let lease = self.lease.map_or(DEFAULT_LEASE, Span::get);
        if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
            return Err(ApiError::bad(format!(
                "lease must be {} to {}",
                Dur(MIN_LEASE),
                Dur(MAX_LEASE)
            )));
        }
        Ok(PullParams { max, wait, lease })
    }
}

impl From<PullError> for ApiError {
    fn from(e: PullError) -> Self {
        match e {
            PullError::NotFound => ApiError::not_found("destination"),
            e @ PullError::NotPull => {
                ApiError::new(StatusCode::CONFLICT, "not_pull", e.to_string())
            }
            PullError::Store(e) => e.into(),
        }
    }
}

/// A store failure as a 503 with `Retry-After`, anything else as it is.
fn refusal(e: PullError) -> Response {
    let retry = matches!(
        e,
        PullError::Store(StoreError::Unavailable(_) | StoreError::Full | StoreError::Closed)
    );
    let mut r = ApiError::from(e).into_response();
    if retry {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

/// One leased delivery: its lease token, the message and where it stands.
#[derive(Serialize, ToSchema)]
pub struct PulledItem {
    /// The lease token to acknowledge with.
    token: String,
    #[schema(example = "msg_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK")]
    message_id: String,
    delivery_id: i64,
    /// This attempt's number (1 for the first).
    attempt: u32,
    source: String,
    event_type: Option<String>,
    /// RFC 3339, UTC.
    #[schema(example = "2026-01-31T12:00:00.000Z")]
    received_at: String,
    /// When the lease ends unless acknowledged (RFC 3339, UTC).
    lease_expires_at: String,
    ordering_key: Option<String>,
    /// `high`, `normal` or `low`.
    #[schema(example = "normal")]
    priority: &'static str,
    content_type: Option<String>,
    /// The headers a push delivery would carry (repeated names joined with ", ").
    headers: std::collections::BTreeMap<String, String>,
    /// The body: text, or base64 when `body_encoding` says so.
    body: String,
    body_encoding: BodyEncoding,
}

/// `POST /api/v1/destinations/{name}/pull`: leases due deliveries of a pull
/// destination, waiting up to `wait` for the first.
#[utoipa::path(post, path = "/api/v1/destinations/{name}/pull", tag = "pull", operation_id = "pull",
    params(NamePath),
    request_body(content = Option<PullBody>, description = "Optional: how many, how long to wait, how long each lease lasts"),
    responses(
        (status = 200, description = "The leased deliveries (none when nothing came within `wait`)", body = List<PulledItem>),
        (status = 400, description = "A bad max, wait or lease, or a malformed body", body = ErrorBody),
        (status = 404, description = "No such destination", body = ErrorBody),
        (status = 409, description = "Not a pull destination", body = ErrorBody),
        (status = 503, description = "The store is unavailable; try again after Retry-After", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait"))),
    ))]
pub(crate) async fn pull(
    State(s): State<Shared>,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<PullBody>,
) -> Response {
    let params = match body.params() {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match s.dispatcher.pull(&name, params).await {
        Ok(items) => {
            let data: Vec<PulledItem> = items.iter().map(item).collect();
            Json(List { data }).into_response()
        }
        Err(e) => refusal(e),
    }
}

/// One leased delivery as the API shows it.
fn item(p: &Pulled) -> PulledItem {
    let m = &p.leased.message;
    let headers = joined_headers(
        p.headers
            .iter()
            .filter(|(k, _)| **k != header::CONTENT_TYPE)
            .map(|(k, v)| {
                (
                    k.as_str(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            }),
    );
    let (body, body_encoding) = body_text(&m.body);
    PulledItem {
        token: p.token.clone(),
        message_id: m.id.to_string(),
        delivery_id: p.leased.delivery_id,
        attempt: p.leased.attempt,
        source: m.source.clone(),
        event_type: m.event_type.clone(),
        received_at: rfc3339(m.received_at),
        lease_expires_at: rfc3339(p.lease_expires_at),
        ordering_key: p.leased.ordering_key.clone(),
        priority: p.leased.priority.as_str(),
        content_type: m.content_type.clone(),
        headers,
        body,
        body_encoding,
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds).
fn rfc3339(ms: i64) -> String {
    crate::clock::format_rfc3339(ms.max(0), crate::clock::Precision::Milliseconds)
}

/// What a result says happened (absent: classified by `status`, as a push
/// attempt's answer would be).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Ok,
    Retry,
    Dead,
    Release,
}

/// One result in `ack`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckItem {
    /// The lease token `pull` gave.
    token: String,
    result: Option<Verdict>,
    /// The HTTP status the consumer's handler answered (100 to 599).
    #[schema(minimum = 100, maximum = 599)]
    status: Option<u16>,
    /// Why it failed (the first 1 KiB is kept).
    error: Option<String>,
    /// The handler's response body (the first 4 KiB is kept).
    body: Option<String>,
    /// Retry no sooner than this.
    retry_after: Option<Span>,
    /// How long the handler took, in milliseconds.
    #[schema(minimum = 0)]
    duration_ms: Option<f64>,
}

/// Body of `ack`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"results": [{"token": "plt_...", "result": "ok", "status": 200}]}))]
pub(crate) struct AckBody {
    /// 1 to 1000 results.
    #[schema(min_items = 1, max_items = 1000)]
    results: Vec<AckItem>,
}

/// What became of one result.
#[derive(Serialize, ToSchema)]
pub struct AckResult {
    token: String,
    /// `recorded`, or why it did not apply: `invalid_token`, `unknown_lease`,
    /// `wrong_destination`, `lease_ended`, `lease_expired`.
    #[schema(example = "recorded")]
    outcome: &'static str,
}

/// An `ack` refused: the error, and when some result did not apply, what
/// became of each result (`data`; the error's code is the first failure's).
#[derive(Serialize, ToSchema)]
pub struct AckRefused {
    error: ErrorDetail,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Vec<AckResult>>,
}

impl AckItem {
    fn into_ack(self) -> Result<Ack, String> {
        if let Some(s) = self.status {
            if !(100..=599).contains(&s) {
                return Err(format!("status {s} is not an HTTP status"));
            }
        }
        let duration = match self.duration_ms {
            Some(ms) if !(ms.is_finite() && ms >= 0.0) => {
                return Err("duration_ms must be a number of milliseconds, 0 or more".into())
            }
            Some(ms) => Some(Duration::from_secs_f64((ms / 1000.0).min(1e9))),
            None => None,
        };
        Ok(Ack {
            token: self.token,
            action: match (self.result, self.status) {
                (Some(Verdict::Ok), _) => AckAction::Ok,
                (Some(Verdict::Retry), _) => AckAction::Retry,
                (Some(Verdict::Dead), _) => AckAction::Dead,
                (Some(Verdict::Release), _) => AckAction::Release,
                (None, _) => AckAction::Classify,
            },
            status: self.status,
            error: self.error.map(|e| cut(e, ERROR_KEEP)),
            body: self.body.map(|b| Bytes::from(cut(b, RESPONSE_KEEP))),
            retry_after: self
                .retry_after
                .map(|r| r.get().min(crate::dispatch::retry::MAX_RETRY_AFTER)),
            duration,
        })
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The status of an outcome that did not apply.
fn status_of(o: AckOutcome) -> (StatusCode, &'static str) {
    match o {
        AckOutcome::Recorded => (StatusCode::OK, "recorded"),
        AckOutcome::InvalidToken => (
            StatusCode::BAD_REQUEST,
            "the token is not a lease token of this gateway",
        ),
        AckOutcome::UnknownLease => (StatusCode::NOT_FOUND, "no delivery has this lease"),
        AckOutcome::WrongDestination => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "the token is a lease of another destination",
        ),
        AckOutcome::LeaseEnded => (
            StatusCode::CONFLICT,
            "the lease has ended already (acknowledged or released)",
        ),
        AckOutcome::LeaseExpired => (
            StatusCode::GONE,
            "the lease ran out before its result came; the delivery is retried as a timed-out attempt",
        ),
    }
}

/// `POST /api/v1/destinations/{name}/ack`: the results of pulled deliveries.
#[utoipa::path(post, path = "/api/v1/destinations/{name}/ack", tag = "pull", operation_id = "ack",
    params(NamePath),
    request_body = AckBody,
    responses(
        (status = 200, description = "Every result was recorded", body = List<AckResult>),
        (status = 400, description = "No results, too many, a bad one, or a token not of this gateway", body = AckRefused),
        (status = 404, description = "No such destination, or no delivery has a token's lease", body = AckRefused),
        (status = 409, description = "Not a pull destination, or a lease that has ended", body = AckRefused),
        (status = 410, description = "A lease ran out before its result came", body = AckRefused),
        (status = 422, description = "A body with unknown or mistyped fields, or a token of another destination", body = AckRefused),
        (status = 503, description = "The store is unavailable; try again after Retry-After", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait"))),
    ))]
pub(crate) async fn ack(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<AckBody>,
) -> Response {
    if body.results.is_empty() {
        return ApiError::bad("results must hold at least one result").into_response();
    }
    if body.results.len() > MAX_RESULTS {
        return ApiError::bad(format!("at most {MAX_RESULTS} results per call")).into_response();
    }
    let mut acks = Vec::with_capacity(body.results.len());
    for (i, item) in body.results.into_iter().enumerate() {
        match item.into_ack() {
            Ok(a) => acks.push(a),
            Err(msg) => {
                return ApiError::bad(format!("results[{i}]: {msg}")).into_response();
            }
        }
    }
    let tokens: Vec<String> = acks.iter().map(|a| a.token.clone()).collect();
    let outcomes = match s.dispatcher.ack(&name, acks).await {
        Ok(o) => o,
        Err(e) => return refusal(e),
    };
    let data: Vec<AckResult> = tokens
        .into_iter()
        .zip(&outcomes)
        .map(|(token, o)| AckResult {
            token,
            outcome: o.as_str(),
        })
        .collect();
    match outcomes.iter().find(|o| **o != AckOutcome::Recorded) {
        None => Json(List { data }).into_response(),
        Some(first) => {
            let (status, message) = status_of(*first);
            let failed = outcomes
                .iter()
                .filter(|o| **o != AckOutcome::Recorded)
                .count();
            let body = AckRefused {
                error: ErrorDetail {
                    code: first.as_str().to_string(),
                    message: format!(
                        "{failed} of {} results did not apply: {message}",
                        outcomes.len()
                    ),
                    details: None,
                },
                data: Some(data),
            };
            (status, Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn pull_parameters_are_bounded() {
        let p = |v: Value| serde_json::from_value::<PullBody>(v).unwrap().params();
        let d = p(json!({})).unwrap();
        assert_eq!(
            (d.max, d.wait, d.lease),
            (10, Duration::ZERO, DEFAULT_LEASE)
        );
        let d = p(json!({"max": 1000, "wait": "20s", "lease": 5})).unwrap();
        assert_eq!(
            (d.max, d.wait, d.lease),
            (1000, Duration::from_secs(20), Duration::from_secs(5))
        );
        for bad in [
            json!({"max": 0}),
            json!({"max": 1001}),
            json!({"wait": "61s"}),
            json!({"lease": "500ms"}),
            json!({"lease": "13h"}),
        ] {
            assert_eq!(
                p(bad.clone()).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
        assert!(serde_json::from_value::<PullBody>(json!({"max": -1})).is_err());
        assert!(serde_json::from_value::<PullBody>(json!({"wait": "soon"})).is_err());
        assert!(serde_json::from_value::<PullBody>(json!({"maxx": 1})).is_err());
    }

    #[test]
    fn results_are_checked_and_cut() {
        let item = |v: Value| serde_json::from_value::<AckItem>(v).unwrap().into_ack();
        assert!(item(json!({"token": "t", "status": 99})).is_err());
        assert!(item(json!({"token": "t", "status": 600})).is_err());
        assert!(item(json!({"token": "t", "duration_ms": -1.0})).is_err());
        let a = item(json!({"token": "t", "error": "é".repeat(2000), "body": "x".repeat(10_000)}))
            .unwrap();
        assert!(a.error.unwrap().len() <= ERROR_KEEP);
        assert_eq!(a.body.unwrap().len(), RESPONSE_KEEP);
        assert_eq!(
            item(json!({"token": "t", "status": 503})).unwrap().action,
            AckAction::Classify
        );
        assert_eq!(
            item(json!({"token": "t", "result": "release"}))
                .unwrap()
                .action,
            AckAction::Release
        );
        assert!(
            serde_json::from_value::<AckItem>(json!({"token": "t", "result": "maybe"})).is_err()
        );
    }
}
