//! `/api/v1/transforms`: the transformations the gateway runs, and "try it":
//! a script run on a stored message or on a given request object, answering
//! what would be delivered, or the error (nothing is sent, nothing stored).
//! Transformations are created, replaced and deleted here too (kept in the
//! store); the config file's are read-only.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{missing, ApiError, ApiResult, ErrorBody};
use super::extract::JsonBody;
use super::Shared;
use crate::control::transforms::{ApiTransform, Transforms};
use crate::dispatch::transform::request_of;
use crate::store::MessageId;
use crate::transform::{Delivery, Request, Script};

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v1/transforms", get(list).post(create))
        .route(
            "/api/v1/transforms/{name}",
            get(get_one).put(replace).patch(patch).delete(delete),
        )
        .route("/api/v1/transforms/{name}/try", post(try_it))
}

/// A transformation.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"name": "telegram-to-chat", "code": "function transform(request, context) { return request; }", "timeout_ms": 50, "memory_limit": 16777216, "origin": "config"}))]
pub struct TransformView {
    /// Its name (`transform = "…"` on routes and destinations).
    pub name: String,
    /// Where it is defined: `config` (read-only here) or `api`.
    pub origin: String,
    /// The script.
    pub code: String,
    /// How long one run may take, in milliseconds.
    pub timeout_ms: u64,
    /// Bytes the script may use.
    pub memory_limit: u64,
}

impl TransformView {
    /// The view of `s`, one of `transforms`.
    fn of(s: &Script, transforms: &Transforms) -> Self {
        TransformView {
            name: s.name.clone(),
            origin: if transforms.is_file(&s.name) {
                "config"
            } else {
                "api"
            }
            .to_string(),
            code: s.code.clone(),
            timeout_ms: s.limits.time.as_millis() as u64,
            memory_limit: s.limits.memory as u64,
        }
    }
}

/// The list of transformations.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransformList {
    /// By name.
    pub data: Vec<TransformView>,
}

#[utoipa::path(get, path = "/api/v1/transforms", tag = "transforms", operation_id = "list_transforms",
    responses((status = 200, description = "The transformations, by name", body = TransformList)))]
pub(crate) async fn list(State(s): State<Shared>) -> Json<TransformList> {
    let transforms = s.registry.transforms();
    let data = transforms
        .all()
        .iter()
        .map(|t| TransformView::of(t, &transforms))
        .collect();
    Json(TransformList { data })
}

#[utoipa::path(get, path = "/api/v1/transforms/{name}", tag = "transforms", operation_id = "get_transform",
    params(("name" = String, Path, description = "The transformation's name", example = "telegram-to-chat")),
    responses(
        (status = 200, description = "The transformation", body = TransformView),
        (status = 404, description = "No such transformation", body = ErrorBody),
    ))]
pub(crate) async fn get_one(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Json<TransformView>> {
    let transforms = s.registry.transforms();
    let t = transforms
        .get(&name)
        .ok_or_else(|| ApiError::not_found("transform"))?;
    Ok(Json(TransformView::of(&t, &transforms)))
}

/// The body of a new transformation: its name and fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "drop-slack-retries", "code": "function transform(request) { return request.headers['x-slack-retry-num'] ? null : request; }", "timeout_ms": 50}))]
pub struct NewTransform {
    /// Its name: 1-64 letters, digits, `_`, `-` or `.`.
    pub name: String,
    /// JavaScript defining `function transform(request, context)`.
    pub code: String,
    /// How long one run may take, in milliseconds (1-10000; default 50).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Bytes the script may use (1 MiB to 1 GiB; default 16 MiB).
    #[serde(default)]
    pub memory_limit: Option<u64>,
}

#[utoipa::path(post, path = "/api/v1/transforms", tag = "transforms", operation_id = "create_transform",
    request_body = NewTransform,
    responses(
        (status = 201, description = "Created (the script compiles)", body = TransformView,
            links(
                ("GetTransform" = (operation_id = "get_transform", parameters(("name" = "$response.body#/name")))),
                ("DeleteTransform" = (operation_id = "delete_transform", parameters(("name" = "$response.body#/name")))),
            )),
        (status = 409, description = "A transformation of that name exists", body = ErrorBody),
        (status = 422, description = "The fields have problems, or the script does not compile (each in `details`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn create(
    State(s): State<Shared>,
    JsonBody(body): JsonBody<NewTransform>,
) -> ApiResult<(StatusCode, Json<TransformView>)> {
    let fields = ApiTransform {
        code: Some(body.code),
        timeout_ms: body.timeout_ms,
        memory_limit: body.memory_limit,
    };
    let script = s.registry.put_transform(&body.name, &fields, true).await?;
    let view = TransformView::of(&script, &s.registry.transforms());
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(put, path = "/api/v1/transforms/{name}", tag = "transforms", operation_id = "replace_transform",
    params(("name" = String, Path, description = "The transformation's name", example = "telegram-to-chat")),
    request_body = ApiTransform,
    responses(
        (status = 200, description = "Replaced (the script compiles); deliveries from now run it", body = TransformView),
        (status = 404, description = "No such transformation made through the API", body = ErrorBody),
        (status = 409, description = "A config-file transformation (read-only here)", body = ErrorBody),
        (status = 422, description = "The fields have problems, or the script does not compile (each in `details`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn replace(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ApiTransform>,
) -> ApiResult<Json<TransformView>> {
    let script = s.registry.put_transform(&name, &body, false).await?;
    Ok(Json(TransformView::of(&script, &s.registry.transforms())))
}

#[utoipa::path(patch, path = "/api/v1/transforms/{name}", tag = "transforms", operation_id = "patch_transform",
    params(("name" = String, Path, description = "The transformation's name", example = "telegram-to-chat")),
    request_body = ApiTransform,
    responses(
        (status = 200, description = "Changed (the script compiles); deliveries from now run it", body = TransformView),
        (status = 404, description = "No such transformation made through the API", body = ErrorBody),
        (status = 409, description = "A config-file transformation (read-only here)", body = ErrorBody),
        (status = 422, description = "The fields have problems, or the script does not compile (each in `details`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn patch(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ApiTransform>,
) -> ApiResult<Json<TransformView>> {
    let script = s.registry.patch_transform(&name, &body).await?;
    Ok(Json(TransformView::of(&script, &s.registry.transforms())))
}

#[utoipa::path(delete, path = "/api/v1/transforms/{name}", tag = "transforms", operation_id = "delete_transform",
    params(("name" = String, Path, description = "The transformation's name", example = "telegram-to-chat")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such transformation made through the API", body = ErrorBody),
        (status = 409, description = "A config-file transformation (read-only here), or destinations still name it (named in the message)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn delete(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.registry.delete_transform(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What to run a transformation on: a stored message, or a request object.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"message_id": "msg_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK"}))]
pub struct TryRequest {
    /// A stored message: its request object as a delivery would get it.
    #[serde(default)]
    pub message_id: Option<String>,
    /// A request object (`method`, `path`, `query`, `headers`, `body`,
    /// `source`, `event_type`; missing fields are empty).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub request: Option<Value>,
    /// Run this code instead of the saved script (to try a change; nothing is saved).
    #[serde(default)]
    pub code: Option<String>,
}

/// What a run gave.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TryOutcome {
    /// It returned a request: this would be delivered.
    Deliver,
    /// It returned `null`: the message would be dropped.
    Dropped,
    /// It failed: the delivery would be `transform_failed`.
    TransformFailed,
}

/// The answer of a try.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"outcome": "deliver", "output": {"body": {"chat_id": 1111111, "user": "Testusername", "text": "/start"}},
    "content_type": "application/json", "body": "{\"chat_id\":1111111,\"user\":\"Testusername\",\"text\":\"/start\"}", "error": null, "duration_ms": 0.4}))]
pub struct TryResult {
    /// Delivered, dropped, or failed.
    pub outcome: TryOutcome,
    /// The object the script returned (deliver only).
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// The Content-Type that would be sent (deliver only).
    pub content_type: Option<String>,
    /// The body that would be sent, as text (deliver only).
    pub body: Option<String>,
    /// Why it failed (transform_failed only).
    pub error: Option<String>,
    /// How long the run took, in milliseconds (queueing on the pool included).
    pub duration_ms: f64,
}

#[utoipa::path(post, path = "/api/v1/transforms/{name}/try", tag = "transforms", operation_id = "try_transform",
    params(("name" = String, Path, description = "The transformation's name", example = "telegram-to-chat")),
    request_body = TryRequest,
    responses(
        (status = 200, description = "What the run gave: the request that would be delivered, a drop, or the error", body = TryResult),
        (status = 400, description = "Neither or both of message_id and request, or a request that is not an object", body = ErrorBody),
        (status = 404, description = "No such transformation or message", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub(crate) async fn try_it(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<TryRequest>,
) -> ApiResult<Json<TryResult>> {
    run_try(&s, &name, body).await.map(Json)
}

/// Runs transformation `name` (or the code given instead) on a stored message
/// or a request object: the API's try and the console's **Try it**.
pub async fn run_try(s: &super::AdminState, name: &str, body: TryRequest) -> ApiResult<TryResult> {
    let transforms = s.registry.transforms();
    let saved = transforms
        .get(name)
        .ok_or_else(|| ApiError::not_found("transform"))?;
    let script = match body.code {
        Some(code) => Arc::new(Script::new(saved.name.clone(), code, saved.limits)),
        None => saved,
    };
    let (request, content_type, message_id) = match (body.message_id, body.request) {
        (Some(id), None) => {
            let id: MessageId = id
                .parse()
                .map_err(|_| ApiError::bad("message_id is not a message id (msg_…)"))?;
            let msg = s
                .store
                .message(id)
                .await
                .map_err(missing("message"))?
                .message;
            (request_of(&msg), msg.content_type, msg.id.to_string())
        }
        (None, Some(v)) => {
            let r = given_request(v)?;
            let ct = r
                .headers
                .get("content-type")
                .and_then(Value::as_str)
                .map(str::to_string);
            (r, ct, "msg_try".to_string())
        }
        _ => return Err(ApiError::bad("give one of message_id and request")),
    };
    let t0 = Instant::now();
    let out = transforms.engine().run(script, &request, &message_id).await;
    let duration_ms = t0.elapsed().as_micros() as f64 / 1000.0;
    let failed = |error: String| TryResult {
        outcome: TryOutcome::TransformFailed,
        output: None,
        content_type: None,
        body: None,
        error: Some(error),
        duration_ms,
    };
    Ok(match out {
        Ok(None) => TryResult {
            outcome: TryOutcome::Dropped,
            output: None,
            content_type: None,
            body: None,
            error: None,
            duration_ms,
        },
        Ok(Some(v)) => match Delivery::from_output(&v, content_type.as_deref()) {
            Ok(d) => TryResult {
                outcome: TryOutcome::Deliver,
                content_type: d.content_type.clone(),
                body: Some(String::from_utf8_lossy(&d.body).into_owned()),
                output: Some(v),
                error: None,
                duration_ms,
            },
            Err(e) => failed(format!(
                "transform `{name}` returned an invalid request: {e}"
            )),
        },
        Err(e) => failed(format!("transform `{name}` {e}")),
    })
}

/// A request object given in a try, missing fields filled in.
fn given_request(v: Value) -> ApiResult<Request> {
    let Value::Object(o) = v else {
        return Err(ApiError::bad("request must be an object"));
    };
    let text = |k: &str, default: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    let object = |k: &str| match o.get(k) {
        Some(Value::Object(m)) => m.clone(),
        _ => Default::default(),
    };
    let source = text("source", "try");
    Ok(Request {
        method: text("method", "POST"),
        path: text("path", &format!("/in/{source}")),
        query: object("query"),
        headers: object("headers")
            .into_iter()
            .filter(|(k, _)| !crate::select::is_secret_header(k))
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        body: o.get("body").cloned().unwrap_or(Value::Null),
        event_type: o
            .get("event_type")
            .and_then(Value::as_str)
            .map(str::to_string),
        source,
    })
}
