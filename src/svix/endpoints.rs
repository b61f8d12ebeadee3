//! Endpoints: each one an API destination made through
//! [`crate::control::Registry`] (named by its `ep_` id, routed from its
//! tenant's source only, so no other tenant's message reaches it), plus a
//! record of the fields only Svix has. `eventTypes` (or `filterTypes`) are the
//! destination's `event_types`; `throttleRate` (or `rateLimit`) its enforced
//! `rate_limit`; `disabled` pauses it; `headers` are its headers; `secret` its
//! Standard Webhooks signing secret. Channels are matched when a message is
//! routed ([`super::messages`]). The retry schedule is Svix's unless the
//! hookgate extra `retrySchedule` sets one; `maxInFlight` is an extra too.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::apps::{self, records_page};
use super::auth::Scope;
use super::shape::{
    check_keys, check_metadata, check_uid, Body, ListResponse, MaybeBody, Paging, Query,
};
use super::{kind, new_id, tenant_source, time, SvixError, SvixResult};
use crate::admin::Shared;
use crate::config::{Dur, Secret};
use crate::store::{DeliveryQuery, DeliveryStatus, ReplayFilter, StoreError, TenantRecord};

/// Svix's retry schedule: at once, then after 5 s, 5 min, 30 min, 2 h, 5 h,
/// 10 h and 10 h.
pub const SVIX_SCHEDULE: [&str; 8] = ["0s", "5s", "5m", "30m", "2h", "5h", "10h", "10h"];

/// How long the old secret keeps signing after a rotation (Svix: 24 hours).
const ROTATION_GRACE_S: u64 = 24 * 3600;

/// The routes of this area.
pub fn router() -> Router<Shared> {
    let ep = "/api/v1/app/{app_id}/endpoint/{endpoint_id}";
    Router::new()
        .route("/api/v1/app/{app_id}/endpoint", get(list).post(create))
        .route(ep, get(read).put(update).patch(patch).delete(delete))
        .route(
            &format!("{ep}/headers"),
            get(get_headers).put(put_headers).patch(patch_headers),
        )
        .route(&format!("{ep}/secret"), get(get_secret))
        .route(&format!("{ep}/secret/rotate"), post(rotate_secret))
        .route(&format!("{ep}/stats"), get(stats))
        .route(&format!("{ep}/recover"), post(recover))
        .route(
            &format!("{ep}/send-example"),
            post(super::error::not_implemented),
        )
}

/// The fields of an endpoint (`EndpointIn`, `EndpointUpdate`; a patch is
/// merged into the current ones first).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fields {
    /// Where deliveries go.
    pub url: String,
    /// For people.
    #[serde(default)]
    pub description: Option<String>,
    /// The user's alias.
    #[serde(default)]
    pub uid: Option<String>,
    /// Paused: nothing is sent until it is enabled again.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Only these event types (all if none).
    #[serde(default, alias = "filterTypes")]
    pub event_types: Option<Vec<String>>,
    /// Only messages of one of these channels (all if none).
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// Requests per second at most (enforced).
    #[serde(default, alias = "rateLimit")]
    pub throttle_rate: Option<u32>,
    /// Free-form string pairs.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Extra headers on every request.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Svix's endpoint version (kept).
    #[serde(default)]
    pub version: Option<u32>,
    /// hookgate: concurrent requests at most.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// hookgate: seconds before each retry (instead of Svix's schedule).
    #[serde(default)]
    pub retry_schedule: Option<Vec<u64>>,
    /// The signing secret (create only; never stored here).
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
}

impl Fields {
    fn check(&self) -> SvixResult<()> {
        if self.url.is_empty() || self.url.len() > 65536 {
            return Err(SvixError::invalid("url", "must be 1 to 65536 characters"));
        }
        check_uid("uid", self.uid.as_deref())?;
        check_keys("eventTypes", self.event_types.as_deref(), 1000)?;
        check_keys("channels", self.channels.as_deref(), 10)?;
        if let Some(m) = &self.metadata {
            check_metadata(m)?;
        }
        if self.throttle_rate == Some(0) || self.throttle_rate.is_some_and(|r| r > 65535) {
            return Err(SvixError::invalid("throttleRate", "must be 1 to 65535"));
        }
        if self.max_in_flight == Some(0) {
            return Err(SvixError::invalid("maxInFlight", "must be at least 1"));
        }
        if let Some(s) = &self.retry_schedule {
            if s.len() > 50 || s.iter().any(|d| *d > 30 * 86400) {
                return Err(SvixError::invalid(
                    "retrySchedule",
                    "at most 50 delays of up to 30 days (in seconds)",
                ));
            }
        }
        if self.description.as_ref().is_some_and(|d| d.len() > 4096) {
            return Err(SvixError::invalid("description", "at most 4096 characters"));
        }
        Ok(())
    }

    /// The destination's definition (as `POST /api/v1/destinations` takes it).
    fn destination(&self, app_id: &str) -> Map<String, Value> {
        let schedule: Vec<String> = match &self.retry_schedule {
            Some(secs) => std::iter::once("0s".to_string())
                .chain(secs.iter().map(|s| format!("{s}s")))
                .collect(),
            None => SVIX_SCHEDULE.iter().map(|s| s.to_string()).collect(),
        };
        let mut m = Map::new();
        m.insert("url".into(), json!(self.url));
        m.insert("source".into(), json!(tenant_source(app_id)));
        m.insert("event_types".into(), json!(self.event_types));
        m.insert(
            "rate_limit".into(),
            match self.throttle_rate {
                Some(r) => json!({"per_second": r}),
                None => Value::Null,
            },
        );
        m.insert("max_in_flight".into(), json!(self.max_in_flight));
        m.insert(
            "retry".into(),
            json!({"schedule": schedule, "on_4xx": true}),
        );
        m.insert(
            "headers".into(),
            json!(self.headers.clone().unwrap_or_default()),
        );
        m.insert("forward_headers".into(), json!("none"));
        m
    }
}

/// `EndpointOut` (and the endpoint fields of `MessageEndpointOut`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOut {
    id: String,
    uid: Option<String>,
    url: String,
    description: String,
    disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channels: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    throttle_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_in_flight: Option<u32>,
    metadata: BTreeMap<String, String>,
    version: u32,
    created_at: String,
    updated_at: String,
}

/// An endpoint's stored fields.
pub fn fields(r: &TenantRecord) -> Fields {
    let mut f: Fields = serde_json::from_value(r.body.clone()).unwrap_or_default();
    f.uid = r.uid.clone();
    f
}

impl EndpointOut {
    /// The answer of a stored endpoint; `disabled` also when endpoint health
    /// disabled its destination.
    pub fn of(s: &Shared, r: &TenantRecord) -> Self {
        let f = fields(r);
        let health_off = s
            .dispatcher
            .get(&r.id)
            .is_some_and(|h| h.state().disabled_at.is_some());
        EndpointOut {
            id: r.id.clone(),
            uid: r.uid.clone(),
            url: f.url,
            description: f.description.unwrap_or_default(),
            disabled: f.disabled.unwrap_or(false) || health_off,
            filter_types: f.event_types.clone(),
            event_types: f.event_types,
            channels: f.channels,
            throttle_rate: f.throttle_rate,
            rate_limit: f.throttle_rate,
            max_in_flight: f.max_in_flight,
            metadata: f.metadata.unwrap_or_default(),
            version: f.version.unwrap_or(1),
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
        }
    }
}

/// An endpoint of an application by id or uid (404 if it is another's).
pub async fn find(s: &Shared, app_id: &str, key: &str) -> SvixResult<TenantRecord> {
    s.store
        .tenant_record(kind::ENDPOINT, app_id, key)
        .await?
        .ok_or_else(|| SvixError::not_found("endpoint"))
}

/// The application and the endpoint of a path.
async fn app_and_endpoint(
    s: &Shared,
    scope: &Scope,
    app_key: &str,
    ep_key: &str,
) -> SvixResult<(TenantRecord, TenantRecord)> {
    let app = apps::find(s, scope, app_key).await?;
    let ep = find(s, &app.id, ep_key).await?;
    Ok((app, ep))
}

/// Every endpoint of an application, in id order.
pub async fn all(s: &Shared, app_id: &str) -> SvixResult<Vec<TenantRecord>> {
    let mut out = Vec::new();
    loop {
        let page = s
            .store
            .tenant_records(&crate::store::RecordQuery {
                kind: kind::ENDPOINT,
                tenant: app_id,
                after: out.last().map(|r: &TenantRecord| r.id.as_str()),
                before: None,
                limit: 1000,
            })
            .await?;
        let more = page.len() == 1000;
        out.extend(page);
        if !more {
            return Ok(out);
        }
    }
}

/// Deletes every endpoint of an application (when it is deleted).
pub async fn delete_all(s: &Shared, app_id: &str) -> SvixResult<()> {
    for ep in all(s, app_id).await? {
        remove(s, &ep).await?;
    }
    Ok(())
}

async fn remove(s: &Shared, ep: &TenantRecord) -> SvixResult<()> {
    match s.registry.delete(&ep.id).await {
        Ok(()) | Err(crate::control::ControlError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    match s
        .store
        .delete_tenant_record(kind::ENDPOINT, &ep.tenant, &ep.id)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A secret as Svix takes it: `whsec_` and base64 (the prefix is optional).
fn checked_secret(secret: &str, field: &str) -> SvixResult<String> {
    let full = if secret.starts_with("whsec_") {
        secret.to_string()
    } else {
        format!("whsec_{secret}")
    };
    if !crate::signing::valid_signing_secret(&full) {
        return Err(SvixError::invalid(
            field,
            "must be whsec_ and base64 of 16 to 128 bytes (24 recommended)",
        ));
    }
    Ok(full)
}

fn record_body(f: &Fields) -> Value {
    let mut v = serde_json::to_value(f).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("uid");
    }
    v
}

/// `POST /api/v1/app/{app_id}/endpoint`: 201.
async fn create(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path(app_id): Path<String>,
    Body(f): Body<Fields>,
) -> SvixResult<(StatusCode, Json<EndpointOut>)> {
    let app = apps::find(&s, &scope, &app_id).await?;
    f.check()?;
    if let Some(uid) = &f.uid {
        if s.store
            .tenant_record(kind::ENDPOINT, &app.id, uid)
            .await?
            .is_some()
        {
            return Err(SvixError::conflict("an endpoint"));
        }
    }
    let id = new_id("ep");
    let mut def = f.destination(&app.id);
    def.insert("name".into(), json!(id));
    if let Some(secret) = &f.secret {
        def.insert(
            "signing_secret".into(),
            json!(checked_secret(secret, "secret")?),
        );
    }
    s.registry.create(def).await?;
    let now = s.clock.now_millis();
    let r = TenantRecord {
        kind: kind::ENDPOINT.into(),
        tenant: app.id.clone(),
        id: id.clone(),
        uid: f.uid.clone(),
        body: record_body(&f),
        created_at: now,
        updated_at: now,
    };
    if let Err(e) = s.store.put_tenant_record(&r, true).await {
        let _ = s.registry.delete(&id).await;
        return Err(match e {
            StoreError::Conflict => SvixError::conflict("an endpoint"),
            e => e.into(),
        });
    }
    if f.disabled == Some(true) {
        s.registry.set_paused(&id, true).await?;
    }
    Ok((StatusCode::CREATED, Json(EndpointOut::of(&s, &r))))
}

/// `GET /api/v1/app/{app_id}/endpoint`
async fn list(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path(app_id): Path<String>,
    Query(p): Query<Paging>,
) -> SvixResult<Json<ListResponse<EndpointOut>>> {
    let app = apps::find(&s, &scope, &app_id).await?;
    let page = records_page(&s, kind::ENDPOINT, &app.id, &p).await?;
    Ok(Json(page.map(|r| EndpointOut::of(&s, r))))
}

/// `GET /api/v1/app/{app_id}/endpoint/{endpoint_id}`
async fn read(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, ep_id)): Path<(String, String)>,
) -> SvixResult<Json<EndpointOut>> {
    let (_, ep) = app_and_endpoint(&s, &scope, &app_id, &ep_id).await?;
    Ok(Json(EndpointOut::of(&s, &ep)))
}

/// Applies new fields to an endpoint: its destination, its pause, its record.
async fn apply(s: &Shared, cur: TenantRecord, f: Fields) -> SvixResult<TenantRecord> {
    f.check()?;
    let was = fields(&cur);
    let def = f.destination(&cur.tenant);
    s.registry.patch(&cur.id, def).await?;
    if f.disabled.unwrap_or(false) != was.disabled.unwrap_or(false) {
        s.registry
            .set_paused(&cur.id, f.disabled.unwrap_or(false))
            .await?;
    }
    let r = TenantRecord {
        uid: f.uid.clone(),
        body: record_body(&f),
        updated_at: s.clock.now_millis(),
        ..cur
    };
    s.store
        .put_tenant_record(&r, false)
        .await
        .map_err(|e| match e {
            StoreError::Conflict => SvixError::conflict("an endpoint"),
            e => e.into(),
        })?;
    Ok(r)
}

/// `PUT /api/v1/app/{app_id}/endpoint/{endpoint_id}`: replaces its fields.
async fn update(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, ep_id)): Path<(String, String)>,
    Body(mut f): Body<Fields>,
) -> SvixResult<Json<EndpointOut>> {
    let (_, ep) = app_and_endpoint(&s, &scope, &app_id, &ep_id).await?;
    if f.secret.is_some() {
        return Err(SvixError::invalid(
            "secret",
            "change the secret with POST .../secret/rotate",
        ));
    }
    let was = fields(&ep);
    // Fields Svix's update does not carry stay as they are.
    f.headers = f.headers.or(was.headers);
    f.max_in_flight = f.max_in_flight.or(was.max_in_flight);
    f.retry_schedule = f.retry_schedule.or(was.retry_schedule);
    let r = apply(&s, ep, f).await?;
    Ok(Json(EndpointOut::of(&s, &r)))
}

/// `PATCH /api/v1/app/{app_id}/endpoint/{endpoint_id}`: the given fields
/// replace the current ones; `null` clears one.
async fn patch(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, ep_id)): Path<(String, String)>,
    Body(p): Body<Map<String, Value>>,
) -> SvixResult<Json<EndpointOut>> {
    let (_, ep) = app_and_endpoint(&s, &scope, &app_id, &ep_id).await?;
    if p.contains_key("secret") {
        return Err(SvixError::invalid(
            "secret",
            "change the secret with POST .../secret/rotate",
        ));
    }
    let mut merged = serde_json::to_value(fields(&ep)).unwrap_or_default();
    if let (Some(m), Some(uid)) = (merged.as_object_mut(), &ep.uid) {
        m.insert("uid".into(), json!(uid));
    }
    for (k, v) in p {
        let key = match k.as_str() {
            "filterTypes" => "eventTypes".to_string(),
            "rateLimit" => "throttleRate".to_string(),
            _ => k,
        };
        merged[key] = v;
    }
    let f: Fields = serde_path_to_error::deserialize(merged).map_err(|e| {
        let path = e.path().to_string();
        SvixError::invalid(&path, e.into_inner().to_string())
    })?;
    let r = apply(&s, ep, f).await?;
    Ok(Json(EndpointOut::of(&s, &r)))
}

/// `DELETE /api/v1/app/{app_id}/endpoint/{endpoint_id}`: 204.
async fn delete(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, ep_id)): Path<(String, String)>,
) -> SvixResult<StatusCode> {
    let (_, ep) = app_and_endpoint(&s, &scope, &app_id, &ep_id).await?;
    remove(&s, &ep).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `EndpointHeadersIn` / `EndpointHeadersPatchIn`.
#[derive(Debug, Deserialize)]
struct HeadersIn {
    headers: BTreeMap<String, Option<String>>,
}

/// `EndpointHeadersOut`: secret-looking headers are named in `sensitive`, not shown.
#[derive(Debug, Serialize)]
struct HeadersOut {
    headers: BTreeMap<String, String>,
    sensitive: Vec<String>,
}

/// `GET .../headers`
async fn get_headers(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, ep_id)): Path<(String, String)>,
) -> SvixResult<Json<HeadersOut>> {
    let (_, ep) = app_and_endpoint(&s, &scope, &app_id, &ep_id).await?;
    let (sensitive, shown): (BTreeMap<_, _>, BTreeMap<_, _>) = fields(&ep)
        .headers
        .unwrap_or_default()
        .into_iter()
        .partition(|(k, _)| crate::ingest::rejects::is_secret_header(k));
    Ok(Json(HeadersOut {
        headers: shown,
        sensitive: sensitive.into_keys().collect(),
    }))
}

async fn set_headers(
    s: &Shared,
    scope: &Scope,
    app_id: &str,
    ep_id: &str,
    h: HeadersIn,
    replace: bool,
) -> SvixResult<StatusCode> {
    let (_, ep) = app_and_endpoint(s, scope, app_id, ep_id).await?;
    let mut f = fields(&ep);
    let mut headers = if replace {
        BTreeMap::new()
    } else {
        f.headers.take().unwrap_or_default()
    };
    for (k, v) in h.headers {
        match v {
            Some(v) => headers.insert(k.to_ascii_lowercase(), v),
            None => headers.remove(&k.to_ascii_lowercase()),
        };
    }
    f.headers = Some(headers);
    apply(s, ep, f).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT .../headers`: replaces them (204).
async fn put_headers(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, ep_id)): Path<(String, String)>,
    Body(h): Body<HeadersIn>,
) -> SvixResult<StatusCode> {
    set_headers(&s, &scope, &app_id, &ep_id, h, true).await
}

/// `PATCH .../headers`: sets the given ones, `null` removes one (204).
async fn patch_headers(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, ep_id)): Path<(String, String)>,
    Body(h): Body<HeadersIn>,
) -> SvixResult<StatusCode> {
    set_headers(&s, &scope, &app_id, &ep_id, h, false).await
}

/// `EndpointSecretOut`.
#[derive(Debug, Serialize)]
struct SecretOut {
    key: String,
}

/// `GET .../secret`: the secret that signs now.
async fn get_secret(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, ep_id)): Path<(String, String)>,
) -> SvixResult<Json<SecretOut>> {
    let (_, ep) = app_and_endpoint(&s, &scope, &app_id, &ep_id).await?;
    let stored = s
        .store
        .stored_destinations()
        .await?
        .into_iter()
        .find(|d| d.name == ep.id)
        .ok_or_else(|| SvixError::not_found("endpoint"))?;
    let key = stored.spec["signing_secrets"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["until"].is_null()))
        .and_then(|k| k["secret"].as_str())
        .ok_or_else(|| SvixError::not_found("endpoint secret"))?;
    Ok(Json(SecretOut {
        key: key.to_string(),
    }))
}

/// `EndpointSecretRotateIn`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RotateIn {
    #[serde(default)]
    key: Option<String>,
    /// How long the old secret keeps signing (default 24 hours).
    #[serde(default)]
    grace_period_seconds: Option<u64>,
}

/// `POST .../secret/rotate`: a new secret (given or random) signs from now
/// on; the old one keeps signing for the grace period. Answers 200 with the
/// new secret, as Svix's current API does (1.1.1 answered 204 and nothing).
async fn rotate_secret(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, ep_id)): Path<(String, String)>,
    MaybeBody(r): MaybeBody<RotateIn>,
) -> SvixResult<Json<SecretOut>> {
    let (_, ep) = app_and_endpoint(&s, &scope, &app_id, &ep_id).await?;
    let key = r.key.map(|k| checked_secret(&k, "key")).transpose()?;
    let grace = r.grace_period_seconds.unwrap_or(ROTATION_GRACE_S);
    if grace > 7 * 86400 {
        return Err(SvixError::invalid(
            "gracePeriodSeconds",
            "at most 7 days (604800)",
        ));
    }
    let (key, _) = s
        .registry
        .rotate(
            &ep.id,
            key.map(Secret::new),
            Some(Dur(std::time::Duration::from_secs(grace))),
        )
        .await?;
    Ok(Json(SecretOut { key }))
}

/// `EndpointStats`.
#[derive(Debug, Serialize)]
struct StatsOut {
    success: u64,
    pending: u64,
    sending: u64,
    fail: u64,
    canceled: u64,
}

/// Deliveries of a destination with one status (counted page by page).
async fn count(s: &Shared, dest: &str, status: DeliveryStatus) -> SvixResult<u64> {
    let mut n = 0u64;
    let mut cursor = None;
    loop {
        let page = s
            .store
            .deliveries(&DeliveryQuery {
                destination: Some(dest.to_string()),
                status: Some(status),
                limit: 1000,
                cursor,
            })
            .await?;
        n += page.items.len() as u64;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(n),
        }
    }
}

/// `GET .../stats`: deliveries by outcome (`sending`: attempts in flight now).
async fn stats(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, ep_id)): Path<(String, String)>,
) -> SvixResult<Json<StatsOut>> {
    let (_, ep) = app_and_endpoint(&s, &scope, &app_id, &ep_id).await?;
    let sending = s
        .dispatcher
        .get(&ep.id)
        .map_or(0, |h| u64::from(h.in_flight()));
    let pending = count(&s, &ep.id, DeliveryStatus::Pending).await?
        + count(&s, &ep.id, DeliveryStatus::Queued).await?;
    Ok(Json(StatsOut {
        success: count(&s, &ep.id, DeliveryStatus::Delivered).await?,
        pending: pending.saturating_sub(sending),
        sending,
        fail: count(&s, &ep.id, DeliveryStatus::Dead).await?,
        canceled: 0,
    }))
}

/// `RecoverIn`.
#[derive(Debug, Deserialize)]
struct RecoverIn {
    since: String,
    #[serde(default)]
    until: Option<String>,
}

/// `RecoverOut`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RecoverOut {
    id: String,
    status: &'static str,
    task: &'static str,
    updated_at: String,
}

/// `POST .../recover`: sends again every delivery to the endpoint that failed
/// for good since `since` (until `until`), as a background task (202).
async fn recover(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, ep_id)): Path<(String, String)>,
    Body(r): Body<RecoverIn>,
) -> SvixResult<(StatusCode, Json<RecoverOut>)> {
    let (_, ep) = app_and_endpoint(&s, &scope, &app_id, &ep_id).await?;
    let time_of = |field: &str, v: &str| {
        crate::clock::parse_rfc3339(v)
            .ok_or_else(|| SvixError::invalid(field, "must be an RFC 3339 time"))
    };
    let since = time_of("since", &r.since)?;
    let until = r
        .until
        .as_deref()
        .map(|u| time_of("until", u))
        .transpose()?;
    crate::admin::deliveries::spawn_bulk_replay(
        &s,
        ReplayFilter {
            destination: Some(ep.id.clone()),
            since: Some(since),
            until,
        },
    );
    let now = s.clock.now_millis();
    Ok((
        StatusCode::ACCEPTED,
        Json(RecoverOut {
            id: new_id("qtask"),
            status: "running",
            task: "endpoint.recover",
            updated_at: time(now),
        }),
    ))
}
