//! Event types: shared by every application, as in Svix. Create, list
//! (archived ones only with `include_archived`), get, update (which creates a
//! missing one), patch, delete (archives; `expunge=true` removes). Tenant
//! tokens may read them; only admin tokens change them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::apps::records_page;
use super::auth::Scope;
use super::shape::{valid_key, Body, ListResponse, Paging, Query};
use super::{kind, time, SvixError, SvixResult};
use crate::admin::Shared;
use crate::store::{StoreError, TenantRecord};

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v1/event-type", get(list).post(create))
        .route(
            "/api/v1/event-type/{event_type_name}",
            get(read).put(update).patch(patch).delete(delete),
        )
}

/// `EventTypeIn` (and `EventTypeUpdate`, whose name is in the path).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeIn {
    /// Its name, such as `user.signup`.
    #[serde(default)]
    pub name: Option<String>,
    /// For people.
    pub description: String,
    /// Archived types are left out of listings.
    #[serde(default)]
    pub archived: Option<bool>,
    /// Shown as deprecated.
    #[serde(default)]
    pub deprecated: Option<bool>,
    /// Svix's feature flag (kept, not enforced).
    #[serde(default)]
    pub feature_flag: Option<String>,
    /// JSON schemas by version (kept, not enforced).
    #[serde(default)]
    pub schemas: Option<serde_json::Map<String, Value>>,
}

/// `EventTypePatch`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTypePatch {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    archived: Option<bool>,
    #[serde(default)]
    deprecated: Option<bool>,
    #[serde(default, with = "super::shape::double_option")]
    feature_flag: Option<Option<String>>,
    #[serde(default, with = "super::shape::double_option")]
    schemas: Option<Option<serde_json::Map<String, Value>>>,
}

/// `EventTypeOut`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeOut {
    name: String,
    description: String,
    archived: bool,
    deprecated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    feature_flag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schemas: Option<Value>,
    created_at: String,
    updated_at: String,
}

impl EventTypeOut {
    fn of(r: &TenantRecord) -> Self {
        EventTypeOut {
            name: r.id.clone(),
            description: r.body["description"].as_str().unwrap_or("").to_string(),
            archived: r.body["archived"].as_bool().unwrap_or(false),
            deprecated: r.body["deprecated"].as_bool().unwrap_or(false),
            feature_flag: r.body["featureFlag"].as_str().map(str::to_string),
            schemas: Some(r.body["schemas"].clone()).filter(|v| v.is_object()),
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
        }
    }
}

fn check_name(name: &str) -> SvixResult<()> {
    if !valid_key(name) {
        return Err(SvixError::invalid(
            "name",
            "must be 1 to 256 characters of a-z, A-Z, 0-9, '-', '_' and '.'",
        ));
    }
    Ok(())
}

fn record(name: &str, e: &EventTypeIn, created_at: i64, now: i64) -> SvixResult<TenantRecord> {
    check_name(name)?;
    if let Some(f) = &e.feature_flag {
        if !valid_key(f) {
            return Err(SvixError::invalid(
                "featureFlag",
                "must be 1 to 256 characters of a-z, A-Z, 0-9, '-', '_' and '.'",
            ));
        }
    }
    if e.schemas
        .as_ref()
        .is_some_and(|m| m.values().any(|v| !v.is_object()))
    {
        return Err(SvixError::invalid(
            "schemas",
            "each version's schema must be a JSON object",
        ));
    }
    Ok(TenantRecord {
        kind: kind::EVENT_TYPE.into(),
        tenant: String::new(),
        id: name.to_string(),
        uid: None,
        body: json!({
            "description": e.description,
            "archived": e.archived.unwrap_or(false),
            "deprecated": e.deprecated.unwrap_or(false),
            "featureFlag": e.feature_flag,
            "schemas": e.schemas,
        }),
        created_at,
        updated_at: now,
    })
}

/// `POST /api/v1/event-type`: 201; 409 if the name exists.
async fn create(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Body(e): Body<EventTypeIn>,
) -> SvixResult<(StatusCode, Json<EventTypeOut>)> {
    scope.admin_only()?;
    let name = e
        .name
        .clone()
        .ok_or_else(|| SvixError::invalid("name", "missing field `name`"))?;
    let now = s.clock.now_millis();
    let r = record(&name, &e, now, now)?;
    s.store
        .put_tenant_record(&r, true)
        .await
        .map_err(|err| match err {
            StoreError::Conflict => SvixError::conflict("an event type"),
            err => err.into(),
        })?;
    Ok((StatusCode::CREATED, Json(EventTypeOut::of(&r))))
}

/// The filters of the listing.
#[derive(Debug, Default, Deserialize)]
struct ListParams {
    #[serde(flatten)]
    paging: Paging,
    #[serde(default, deserialize_with = "super::shape::flag")]
    include_archived: Option<bool>,
    #[serde(default, deserialize_with = "super::shape::flag")]
    with_content: Option<bool>,
}

/// `GET /api/v1/event-type`
async fn list(
    State(s): State<Shared>,
    Query(q): Query<ListParams>,
) -> SvixResult<Json<ListResponse<EventTypeOut>>> {
    let _ = q.with_content;
    let mut page = records_page(&s, kind::EVENT_TYPE, "", &q.paging).await?;
    if q.include_archived != Some(true) {
        page.items
            .retain(|r| !r.body["archived"].as_bool().unwrap_or(false));
    }
    Ok(Json(page.map(EventTypeOut::of)))
}

async fn find(s: &Shared, name: &str) -> SvixResult<TenantRecord> {
    s.store
        .tenant_record(kind::EVENT_TYPE, "", name)
        .await?
        .ok_or_else(|| SvixError::not_found("event type"))
}

/// `GET /api/v1/event-type/{name}`
async fn read(State(s): State<Shared>, Path(name): Path<String>) -> SvixResult<Json<EventTypeOut>> {
    Ok(Json(EventTypeOut::of(&find(&s, &name).await?)))
}

/// `PUT /api/v1/event-type/{name}`: replaces it, or makes it (201).
async fn update(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path(name): Path<String>,
    Body(e): Body<EventTypeIn>,
) -> SvixResult<(StatusCode, Json<EventTypeOut>)> {
    scope.admin_only()?;
    let now = s.clock.now_millis();
    match s.store.tenant_record(kind::EVENT_TYPE, "", &name).await? {
        Some(cur) => {
            let r = record(&name, &e, cur.created_at, now)?;
            s.store.put_tenant_record(&r, false).await?;
            Ok((StatusCode::OK, Json(EventTypeOut::of(&r))))
        }
        None => {
            let r = record(&name, &e, now, now)?;
            s.store.put_tenant_record(&r, true).await?;
            Ok((StatusCode::CREATED, Json(EventTypeOut::of(&r))))
        }
    }
}

/// `PATCH /api/v1/event-type/{name}`
async fn patch(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path(name): Path<String>,
    Body(p): Body<EventTypePatch>,
) -> SvixResult<Json<EventTypeOut>> {
    scope.admin_only()?;
    let cur = find(&s, &name).await?;
    let was = EventTypeOut::of(&cur);
    let e = EventTypeIn {
        name: None,
        description: p.description.unwrap_or(was.description),
        archived: Some(p.archived.unwrap_or(was.archived)),
        deprecated: Some(p.deprecated.unwrap_or(was.deprecated)),
        feature_flag: p.feature_flag.unwrap_or(was.feature_flag),
        schemas: p
            .schemas
            .unwrap_or_else(|| was.schemas.and_then(|v| v.as_object().cloned())),
    };
    let r = record(&cur.id, &e, cur.created_at, s.clock.now_millis())?;
    s.store.put_tenant_record(&r, false).await?;
    Ok(Json(EventTypeOut::of(&r)))
}

/// `?expunge=true` of delete.
#[derive(Debug, Default, Deserialize)]
struct DeleteParams {
    #[serde(default, deserialize_with = "super::shape::flag")]
    expunge: Option<bool>,
}

/// `DELETE /api/v1/event-type/{name}`: archives it (204); `expunge` removes it.
async fn delete(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path(name): Path<String>,
    Query(q): Query<DeleteParams>,
) -> SvixResult<StatusCode> {
    scope.admin_only()?;
    let mut cur = find(&s, &name).await?;
    if q.expunge == Some(true) {
        s.store
            .delete_tenant_record(kind::EVENT_TYPE, "", &cur.id)
            .await?;
    } else {
        cur.body["archived"] = json!(true);
        cur.updated_at = s.clock.now_millis();
        s.store.put_tenant_record(&cur, false).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
