//! The admin API's OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` attributes and the request and answer types they
//! (de)serialize; served at `GET /api/v1/openapi.json`, printed by
//! `hookgate openapi`, and committed as `docs/openapi.json` (a test keeps the
//! two equal).
//!
//! What the attributes do not say is added here once: the bearer security
//! scheme and its 401 answer on every `/api/v1` operation, and the answers of
//! the JSON body extractors (400, 413, 415, 422) on every call with a body.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{
    alerts, deliveries, destinations, events, health, messages, pull, rejected, reload, transforms,
    Shared,
};

/// The prefix of the operations behind the bearer token.
pub const API_PREFIX: &str = "/api/v1/";

/// The name of the security scheme in the document.
const BEARER: &str = "bearer";

/// The document, from the handlers' attributes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "hookgate admin API",
        description = "The admin API of hookgate, a durable webhook gateway: messages, deliveries, \
destinations (push and pull), publishing events, refused requests and reloads, under `/api/v1` \
behind `Authorization: Bearer <admin token>`; health, readiness and metrics without a token. \
Every error is answered as `{\"error\": {\"code\", \"message\", \"details\"?}}` (`ErrorBody`)."
    ),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        messages::list_messages,
        messages::get_message,
        messages::replay_message,
        deliveries::list_deliveries,
        deliveries::bulk_replay,
        destinations::list,
        destinations::create,
        destinations::get_one,
        destinations::patch,
        destinations::delete,
        destinations::pause,
        destinations::resume,
        destinations::rotate,
        pull::pull,
        pull::ack,
        events::publish,
        rejected::list_rejected,
        alerts::list_alerts,
        alerts::list_channels,
        alerts::get_channel,
        alerts::create_channel,
        alerts::replace_channel,
        alerts::delete_channel,
        reload::reload,
        transforms::list,
        transforms::get_one,
        transforms::create,
        transforms::replace,
        transforms::patch,
        transforms::delete,
        transforms::try_it,
        openapi_json,
    ),
    components(schemas(super::error::ErrorBody)),
    modifiers(&Bearer),
    tags(
        (name = "messages", description = "Received messages, their deliveries and attempts; replay"),
        (name = "deliveries", description = "Deliveries across messages; bulk replay of dead ones"),
        (name = "destinations", description = "Destinations: list, create, change, delete, pause, resume, rotate the signing secret"),
        (name = "pull", description = "Consumers of pull destinations lease deliveries and report results"),
        (name = "events", description = "Publish events from your app (source `api`)"),
        (name = "rejected", description = "The last requests ingest refused, with the reason"),
        (name = "alerts", description = "Alert conditions that hold now and the alerts raised"),
        (name = "transforms", description = "Transformations: list, create, replace, change, delete, and try one on a stored message or a request object"),
        (name = "operations", description = "Health, readiness, metrics, reload and this document"),
    )
)]
pub struct ApiDoc;

/// Adds the bearer scheme, and to every `/api/v1` operation its requirement
/// and the 401 answer of [`super::auth`], and to those with a body the
/// refusals of the body extractors.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("One of `server.admin_tokens`"))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with(API_PREFIX) {
                continue;
            }
            for op in operations(item) {
                op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                op.responses
                    .responses
                    .insert("401".to_string(), error_response(UNAUTHORIZED, true).into());
                if op.request_body.is_some() {
                    for (status, description) in BODY_REFUSALS {
                        op.responses
                            .responses
                            .entry(status.to_string())
                            .or_insert_with(|| error_response(description, false).into());
                    }
                }
            }
        }
    }
}

/// What the 401 of every `/api/v1` call says.
const UNAUTHORIZED: &str = "No valid admin token: `Authorization: Bearer <token>`";

/// The refusals of a JSON body (`extract::JsonBody`, `OptionalJson`), the same
/// on every call that takes one unless the call says more.
const BODY_REFUSALS: [(&str, &str); 4] = [
    ("400", "A malformed body"),
    ("413", "The body is larger than server.max_body"),
    (
        "415",
        "The body is not JSON (Content-Type: application/json)",
    ),
    ("422", "A body with unknown, missing or mistyped fields"),
];

/// An answer with an [`super::error::ErrorBody`], and for a 401 its
/// `WWW-Authenticate` header.
fn error_response(description: &str, challenge: bool) -> utoipa::openapi::Response {
    let mut r = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if challenge {
        r = r.header(
            "WWW-Authenticate",
            utoipa::openapi::header::HeaderBuilder::new()
                .schema(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::String),
                )
                .description(Some("`Bearer`"))
                .build(),
        );
    }
    r.build()
}

/// Every operation of a path.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The document as pretty-printed JSON with a final newline, as committed in
/// `docs/openapi.json`; made once.
pub fn document_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        camel_case_links(&mut doc);
        let mut text = serde_json::to_string_pretty(&doc).expect("the document serializes");
        text.push('\n');
        text
    })
}

/// utoipa 5.5 writes a Link Object's fields in snake case (`operation_id`),
/// which OpenAPI does not know: renames them as the specification spells them
/// (`operationId`, `operationRef`, `requestBody`) in every response's `links`.
fn camel_case_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|r| r.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(v) = link.remove(snake) {
                link.insert(camel.to_string(), v);
            }
        }
    }
}

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new().route("/api/v1/openapi.json", get(openapi_json))
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub(crate) async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}
