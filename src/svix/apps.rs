//! Applications (tenants): create (with `get_if_exists`), list, get,
//! update (which creates a missing one, as Svix does), patch, delete. Deleting
//! one deletes its endpoints (their destinations) too; its messages stay until
//! retention removes them.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Scope;
use super::shape::{check_metadata, check_uid, Body, ListResponse, Paging, Query};
use super::{endpoints, kind, new_id, time, SvixError, SvixResult};
use crate::admin::Shared;
use crate::store::{RecordQuery, StoreError, TenantRecord};

/// The routes of this area.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v1/app", get(list).post(create))
        .route(
            "/api/v1/app/{app_id}",
            get(read).put(update).patch(patch).delete(delete),
        )
}

/// `ApplicationIn`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppIn {
    /// Its name.
    pub name: String,
    /// The user's alias.
    #[serde(default)]
    pub uid: Option<String>,
    /// Messages per second to its endpoints (kept and shown; each endpoint's
    /// own limit is the one enforced).
    #[serde(default, alias = "rateLimit")]
    pub throttle_rate: Option<u16>,
    /// Free-form string pairs.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// `ApplicationPatch`: each field given replaces it (`null` clears uid and rate).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, with = "super::shape::double_option")]
    uid: Option<Option<String>>,
    #[serde(default, alias = "rateLimit", with = "super::shape::double_option")]
    throttle_rate: Option<Option<u16>>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

/// `ApplicationOut`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppOut {
    /// `app_…`
    pub id: String,
    /// The user's alias.
    pub uid: Option<String>,
    /// Its name.
    pub name: String,
    /// Messages per second (Svix's name).
    pub throttle_rate: Option<u16>,
    /// The same, by the name of newer clients.
    pub rate_limit: Option<u16>,
    /// Free-form string pairs.
    pub metadata: BTreeMap<String, String>,
    /// Created.
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
}

impl AppOut {
    /// The answer of a stored application.
    pub fn of(r: &TenantRecord) -> Self {
        let rate = r.body["throttleRate"].as_u64().map(|v| v as u16);
        AppOut {
            id: r.id.clone(),
            uid: r.uid.clone(),
            name: r.body["name"].as_str().unwrap_or_default().to_string(),
            throttle_rate: rate,
            rate_limit: rate,
            metadata: serde_json::from_value(r.body["metadata"].clone()).unwrap_or_default(),
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
        }
    }
}

/// An application by id or uid, if the caller may see it (else 404).
pub async fn find(s: &Shared, scope: &Scope, key: &str) -> SvixResult<TenantRecord> {
    let r = s
        .store
        .tenant_record(kind::APP, "", key)
        .await?
        .ok_or_else(|| SvixError::not_found("application"))?;
    match scope.app() {
        Some(mine) if mine != r.id => Err(SvixError::not_found("application")),
        _ => Ok(r),
    }
}

fn check(a: &AppIn) -> SvixResult<()> {
    if a.name.is_empty() || a.name.len() > 256 {
        return Err(SvixError::invalid("name", "must be 1 to 256 characters"));
    }
    if a.throttle_rate == Some(0) {
        return Err(SvixError::invalid("throttleRate", "must be at least 1"));
    }
    if let Some(m) = &a.metadata {
        check_metadata(m)?;
    }
    check_uid("uid", a.uid.as_deref())
}

fn record(id: String, a: &AppIn, created_at: i64, now: i64) -> TenantRecord {
    TenantRecord {
        kind: kind::APP.into(),
        tenant: String::new(),
        id,
        uid: a.uid.clone(),
        body: json!({
            "name": a.name,
            "throttleRate": a.throttle_rate,
            "metadata": a.metadata.clone().unwrap_or_default(),
        }),
        created_at,
        updated_at: now,
    }
}

/// `?get_if_exists=true` of create.
#[derive(Debug, Default, Deserialize)]
struct CreateParams {
    #[serde(default, deserialize_with = "super::shape::flag")]
    get_if_exists: Option<bool>,
}

/// `POST /api/v1/app`: 201 with the new application; with `get_if_exists`,
/// 200 with the one of the same uid if there is one.
async fn create(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Query(q): Query<CreateParams>,
    Body(a): Body<AppIn>,
) -> SvixResult<(StatusCode, Json<AppOut>)> {
    scope.admin_only()?;
    check(&a)?;
    if let Some(uid) = &a.uid {
        if let Some(found) = s.store.tenant_record(kind::APP, "", uid).await? {
            if q.get_if_exists == Some(true) {
                return Ok((StatusCode::OK, Json(AppOut::of(&found))));
            }
            return Err(SvixError::conflict("an application"));
        }
    }
    let now = s.clock.now_millis();
    let r = record(new_id("app"), &a, now, now);
    put(&s, &r, true).await?;
    Ok((StatusCode::CREATED, Json(AppOut::of(&r))))
}

/// `GET /api/v1/app`: in id (creation) order; a tenant token sees its own.
async fn list(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Query(p): Query<Paging>,
) -> SvixResult<Json<ListResponse<AppOut>>> {
    if let Some(mine) = scope.app() {
        let r = find(&s, &scope, mine).await?;
        return Ok(Json(ListResponse {
            data: vec![AppOut::of(&r)],
            iterator: None,
            prev_iterator: None,
            done: true,
        }));
    }
    let page = records_page(&s, kind::APP, "", &p).await?;
    Ok(Json(page.map(AppOut::of)))
}

/// A page of records in id order: `iterator` is the last id of the page
/// before, `-<id>` (a `prevIterator`) the first id of the page after.
pub async fn records_page(
    s: &Shared,
    kind: &str,
    tenant: &str,
    p: &Paging,
) -> SvixResult<RecordPage> {
    let limit = p.limit();
    let it = p.iterator.as_deref().filter(|i| !i.is_empty());
    let (after, before) = match it {
        Some(i) => match i.strip_prefix('-') {
            Some(b) => (None, Some(b)),
            None => (Some(i), None),
        },
        None => (None, None),
    };
    let mut items = s
        .store
        .tenant_records(&RecordQuery {
            kind,
            tenant,
            after,
            before,
            limit: limit + 1,
        })
        .await?;
    let more = items.len() > limit;
    if more {
        if before.is_some() {
            items.remove(0);
        } else {
            items.truncate(limit);
        }
    }
    let done = before.is_none() && !more;
    Ok(RecordPage {
        iterator: items.last().map(|r| r.id.clone()).filter(|_| !done),
        prev_iterator: items.first().map(|r| format!("-{}", r.id)),
        items,
        done,
    })
}

/// A page of records.
pub struct RecordPage {
    /// The records.
    pub items: Vec<TenantRecord>,
    /// The next page's iterator.
    pub iterator: Option<String>,
    /// The page before's iterator.
    pub prev_iterator: Option<String>,
    /// Whether this is the last page.
    pub done: bool,
}

impl RecordPage {
    /// The listing of these records.
    pub fn map<T>(self, f: impl Fn(&TenantRecord) -> T) -> ListResponse<T> {
        ListResponse {
            data: self.items.iter().map(f).collect(),
            iterator: self.iterator,
            prev_iterator: self.prev_iterator,
            done: self.done,
        }
    }
}

/// Makes the application a message names in its `application` field when the
/// path's key names none: its uid is the key (which must match a uid given).
pub async fn create_for_message(
    s: &Shared,
    scope: &Scope,
    key: &str,
    mut a: AppIn,
) -> SvixResult<TenantRecord> {
    scope.admin_only()?;
    if key.starts_with("app_") || !super::shape::valid_key(key) {
        return Err(SvixError::not_found("application"));
    }
    match &a.uid {
        Some(uid) if uid != key => {
            return Err(SvixError::invalid(
                "application.uid",
                "must be the uid in the path",
            ))
        }
        _ => a.uid = Some(key.to_string()),
    }
    check(&a)?;
    let now = s.clock.now_millis();
    let r = record(new_id("app"), &a, now, now);
    match put(s, &r, true).await {
        Ok(()) => Ok(r),
        // Made meanwhile by another request: that one.
        Err(SvixError::Http { status, .. }) if status == StatusCode::CONFLICT => {
            find(s, scope, key).await
        }
        Err(e) => Err(e),
    }
}

/// `GET /api/v1/app/{app_id}`
async fn read(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path(app_id): Path<String>,
) -> SvixResult<Json<AppOut>> {
    Ok(Json(AppOut::of(&find(&s, &scope, &app_id).await?)))
}

/// `PUT /api/v1/app/{app_id}`: replaces it; makes it (201) if missing, with
/// the path's key as its uid.
async fn update(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path(app_id): Path<String>,
    Body(mut a): Body<AppIn>,
) -> SvixResult<(StatusCode, Json<AppOut>)> {
    check(&a)?;
    let now = s.clock.now_millis();
    match find(&s, &scope, &app_id).await {
        Ok(cur) => {
            let r = record(cur.id.clone(), &a, cur.created_at, now);
            put(&s, &r, false).await?;
            Ok((StatusCode::OK, Json(AppOut::of(&r))))
        }
        Err(SvixError::Http { status, .. }) if status == StatusCode::NOT_FOUND => {
            scope.admin_only()?;
            if a.uid.is_none() && super::shape::valid_key(&app_id) && !app_id.starts_with("app_") {
                a.uid = Some(app_id);
            }
            let r = record(new_id("app"), &a, now, now);
            put(&s, &r, true).await?;
            Ok((StatusCode::CREATED, Json(AppOut::of(&r))))
        }
        Err(e) => Err(e),
    }
}

/// Creates or replaces an application's record.
async fn put(s: &Shared, r: &TenantRecord, create: bool) -> SvixResult<()> {
    s.store
        .put_tenant_record(r, create)
        .await
        .map_err(|e| match e {
            StoreError::Conflict => SvixError::conflict("an application"),
            StoreError::NotFound => SvixError::not_found("application"),
            e => e.into(),
        })
}

/// `PATCH /api/v1/app/{app_id}`
async fn patch(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path(app_id): Path<String>,
    Body(p): Body<AppPatch>,
) -> SvixResult<Json<AppOut>> {
    let cur = find(&s, &scope, &app_id).await?;
    let was = AppOut::of(&cur);
    let a = AppIn {
        name: p.name.unwrap_or(was.name),
        uid: p.uid.unwrap_or(was.uid),
        throttle_rate: p.throttle_rate.unwrap_or(was.throttle_rate),
        metadata: Some(p.metadata.unwrap_or(was.metadata)),
    };
    check(&a)?;
    let r = record(cur.id.clone(), &a, cur.created_at, s.clock.now_millis());
    put(&s, &r, false).await?;
    Ok(Json(AppOut::of(&r)))
}

/// `DELETE /api/v1/app/{app_id}`: 204; its endpoints go with it.
async fn delete(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path(app_id): Path<String>,
) -> SvixResult<StatusCode> {
    scope.admin_only()?;
    let app = find(&s, &scope, &app_id).await?;
    endpoints::delete_all(&s, &app.id).await?;
    match s.store.delete_tenant_record(kind::APP, "", &app.id).await {
        Ok(()) | Err(StoreError::NotFound) => Ok(StatusCode::NO_CONTENT),
        Err(e) => Err(e.into()),
    }
}
