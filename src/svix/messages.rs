//! Messages and attempts. A message is stored like `POST /api/v1/events`
//! stores an event (durably, before the 202), as source `tenant.<app id>`, so
//! only that tenant's endpoints are routed to it; its `eventId` and channels
//! are kept with it as headers (`svix-event-id`, `svix-channels`) that are
//! never sent. An attempt is one of the store's attempts, with the id
//! `atmpt_<delivery>_<n>`.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::apps;
use super::auth::Scope;
use super::endpoints::{self, fields};
use super::shape::{check_keys, valid_key, Body, ListResponse, Query};
use super::{tenant_source, time, SvixError, SvixResult};
use crate::admin::events::{first_delay, store_event_from, Event};
use crate::admin::Shared;
use crate::config::Priority;
use crate::ingest::route::Overrides;
use crate::select::Inbound;
use crate::store::{
    decode_headers, encode_headers, Appended, AttemptInfo, DeliveryInfo, DeliveryQuery,
    DeliveryStatus, MessageDetail, MessageId, MessageQuery, TenantRecord,
};

/// The header a message's event id is kept in.
const EVENT_ID: &str = "svix-event-id";
/// The header a message's channels are kept in (comma-separated).
const CHANNELS: &str = "svix-channels";

/// The routes of this area.
pub fn router() -> Router<Shared> {
    let msg = "/api/v1/app/{app_id}/msg/{msg_id}";
    Router::new()
        .route("/api/v1/app/{app_id}/msg", get(list).post(create))
        .route(msg, get(read))
        .route(&format!("{msg}/attempt/{{attempt_id}}"), get(attempt))
        .route(&format!("{msg}/endpoint"), get(destinations))
        .route(
            &format!("{msg}/endpoint/{{endpoint_id}}/resend"),
            post(resend),
        )
        .route(
            &format!("{msg}/content"),
            delete(super::error::not_implemented),
        )
        .route(
            &format!("{msg}/attempt/{{attempt_id}}/content"),
            delete(super::error::not_implemented),
        )
        .route(
            "/api/v1/app/{app_id}/attempt/msg/{msg_id}",
            get(attempts_of_message),
        )
        .route(
            "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}",
            get(attempts_of_endpoint),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/msg",
            get(messages_of_endpoint),
        )
}

/// `MessageIn`, with hookgate's extras.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageIn {
    /// Its type, such as `user.signup`.
    pub event_type: String,
    /// A JSON object, delivered byte for byte as given.
    pub payload: Box<RawValue>,
    /// A second message with the same id is refused (409).
    #[serde(default)]
    pub event_id: Option<String>,
    /// Only endpoints listening to one of these (or to all) get it.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// Makes the application if the path names none (its uid is the path's).
    #[serde(default)]
    pub application: Option<apps::AppIn>,
    /// Svix's payload retention (accepted; `storage.retention` applies).
    #[serde(default)]
    pub payload_retention_period: Option<i64>,
    /// Svix's tags (accepted, kept nowhere).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// hookgate: messages with the same key reach an endpoint one at a time, in order.
    #[serde(default)]
    pub ordering_key: Option<String>,
    /// hookgate: `high`, `normal` or `low`.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// hookgate: deliver at this time (RFC 3339).
    #[serde(default)]
    pub deliver_at: Option<String>,
}

/// `MessageOut`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut {
    id: String,
    event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channels: Option<Vec<String>>,
    payload: Value,
    timestamp: String,
}

impl MessageOut {
    fn of(d: &MessageDetail, with_content: bool) -> Self {
        let (event_id, channels) = kept(&d.message.headers);
        MessageOut {
            id: d.summary.id.to_string(),
            event_type: d.summary.event_type.clone().unwrap_or_default(),
            event_id,
            channels,
            payload: if with_content {
                serde_json::from_slice(&d.message.body).unwrap_or(Value::Object(Default::default()))
            } else {
                Value::Object(Default::default())
            },
            timestamp: time(d.summary.received_at),
        }
    }
}

/// The event id and channels kept with a message.
fn kept(headers: &[u8]) -> (Option<String>, Option<Vec<String>>) {
    let mut event_id = None;
    let mut channels = None;
    for (k, v) in decode_headers(headers) {
        let v = String::from_utf8_lossy(&v).into_owned();
        match k.as_str() {
            EVENT_ID => event_id = Some(v),
            CHANNELS => channels = Some(v.split(',').map(str::to_string).collect()),
            _ => {}
        }
    }
    (event_id, channels)
}

/// The application of a path; with `create`, a message's `application` makes
/// a missing one (admin tokens only).
async fn app_of(s: &Shared, scope: &Scope, key: &str) -> SvixResult<TenantRecord> {
    apps::find(s, scope, key).await
}

/// `?with_content=` of create and get.
#[derive(Debug, Default, Deserialize)]
struct ContentParams {
    #[serde(default, deserialize_with = "super::shape::flag")]
    with_content: Option<bool>,
}

fn check(m: &MessageIn, now: i64) -> SvixResult<Option<i64>> {
    if !valid_key(&m.event_type) {
        return Err(SvixError::invalid(
            "eventType",
            "must be 1 to 256 characters of a-z, A-Z, 0-9, '-', '_' and '.'",
        ));
    }
    if !m.payload.get().trim_start().starts_with('{') {
        return Err(SvixError::invalid("payload", "must be a JSON object"));
    }
    check_keys("channels", m.channels.as_deref(), 10)?;
    if m.event_id.as_deref().is_some_and(|e| !valid_key(e)) {
        return Err(SvixError::invalid(
            "eventId",
            "must be 1 to 256 characters of a-z, A-Z, 0-9, '-', '_' and '.'",
        ));
    }
    if m.ordering_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 256)
    {
        return Err(SvixError::invalid(
            "orderingKey",
            "must be 1 to 256 characters",
        ));
    }
    let _ = (&m.payload_retention_period, &m.tags);
    m.deliver_at
        .as_deref()
        .map(|t| {
            crate::clock::parse_rfc3339(t)
                .ok_or_else(|| SvixError::invalid("deliverAt", "must be an RFC 3339 time"))
        })
        .transpose()
        .map(|t| t.filter(|t| *t > now))
}

/// Whether an endpoint listening to `wanted` channels (all if none) takes a
/// message of `channels`.
fn channels_match(wanted: Option<&[String]>, channels: Option<&[String]>) -> bool {
    match (wanted, channels) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(w), Some(c)) => c.iter().any(|c| w.contains(c)),
    }
}

/// `POST /api/v1/app/{app_id}/msg`: stored durably, then 202. An `eventId`
/// seen before is 409; an `idempotency-key` seen before answers the first
/// message again.
async fn create(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path(app_id): Path<String>,
    Query(q): Query<ContentParams>,
    headers: HeaderMap,
    Body(m): Body<MessageIn>,
) -> SvixResult<(StatusCode, Json<MessageOut>)> {
    let now = s.clock.now_millis();
    let deliver_at = check(&m, now)?;
    let app = match (app_of(&s, &scope, &app_id).await, m.application) {
        (Err(SvixError::Http { status, .. }), Some(new)) if status == StatusCode::NOT_FOUND => {
            apps::create_for_message(&s, &scope, &app_id, new).await?
        }
        (r, _) => r?,
    };
    let source = tenant_source(&app.id);
    let body = Bytes::copy_from_slice(m.payload.get().as_bytes());
    let no_headers = HeaderMap::new();
    let inbound = Inbound::new(&no_headers, None, &body);
    let overrides = Overrides {
        priority: m.priority,
        ordering_key: m.ordering_key.clone(),
        deliver_at,
    };
    let mut deliveries = s.registry.routing().current().deliveries(
        &source,
        Some(&m.event_type),
        &inbound,
        now,
        &overrides,
        &|d| first_delay(&s, d),
    );
    if !deliveries.is_empty() {
        let wanted: HashMap<String, Option<Vec<String>>> = endpoints::all(&s, &app.id)
            .await?
            .iter()
            .map(|r| (r.id.clone(), fields(r).channels))
            .collect();
        deliveries.retain(|d| {
            wanted
                .get(&d.destination)
                .is_some_and(|w| channels_match(w.as_deref(), m.channels.as_deref()))
        });
    }
    let joined = m.channels.as_ref().map(|c| c.join(","));
    let kept = [
        m.event_id.as_deref().map(|e| (EVENT_ID, e.as_bytes())),
        joined.as_deref().map(|c| (CHANNELS, c.as_bytes())),
    ];
    let idempotency = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 256);
    let key = match (&m.event_id, idempotency) {
        (Some(e), _) => Some(format!("event-id:{e}")),
        (None, Some(k)) => Some(format!("idempotency-key:{k}")),
        (None, None) => None,
    };
    let event = Event {
        source: &source,
        event_type: &m.event_type,
        body,
        headers: encode_headers(kept.into_iter().flatten()),
        idempotency_key: key,
    };
    let id = match store_event_from(&s, event, deliveries).await? {
        Appended::Duplicate(_) if m.event_id.is_some() => {
            return Err(SvixError::conflict("a message"));
        }
        a => a.id(),
    };
    let payload = if q.with_content != Some(false) {
        serde_json::from_str(m.payload.get()).unwrap_or_default()
    } else {
        Value::Object(Default::default())
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageOut {
            id: id.to_string(),
            event_type: m.event_type,
            event_id: m.event_id,
            channels: m.channels,
            payload,
            timestamp: time(now),
        }),
    ))
}

/// A message of an application by id or `eventId` (404 if it is another's).
async fn message_of(s: &Shared, app: &TenantRecord, key: &str) -> SvixResult<MessageDetail> {
    let id: MessageId = match key.parse() {
        Ok(id) => id,
        Err(()) => {
            let found = s
                .store
                .messages(&MessageQuery {
                    source: Some(tenant_source(&app.id)),
                    dedup_key: Some(format!("event-id:{key}")),
                    limit: 1,
                    ..MessageQuery::default()
                })
                .await?;
            found
                .items
                .first()
                .map(|m| m.id)
                .ok_or_else(|| SvixError::not_found("message"))?
        }
    };
    let d = s.store.message(id).await.map_err(|e| match e {
        crate::store::StoreError::NotFound => SvixError::not_found("message"),
        e => e.into(),
    })?;
    if d.summary.source != tenant_source(&app.id) {
        return Err(SvixError::not_found("message"));
    }
    Ok(d)
}

/// `GET /api/v1/app/{app_id}/msg/{msg_id}`
async fn read(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, msg_id)): Path<(String, String)>,
    Query(q): Query<ContentParams>,
) -> SvixResult<Json<MessageOut>> {
    let app = app_of(&s, &scope, &app_id).await?;
    let d = message_of(&s, &app, &msg_id).await?;
    Ok(Json(MessageOut::of(&d, q.with_content != Some(false))))
}

/// The filters of the listings, read by hand: `event_types` may repeat.
#[derive(Debug, Default)]
struct Filters {
    limit: usize,
    iterator: Option<String>,
    channel: Option<String>,
    event_types: Vec<String>,
    before: Option<i64>,
    after: Option<i64>,
    with_content: bool,
    status: Option<i64>,
    endpoint_id: Option<String>,
}

impl Filters {
    fn parse(query: Option<&str>) -> SvixResult<Self> {
        let mut f = Filters {
            limit: 50,
            with_content: true,
            ..Filters::default()
        };
        let bad = |k: &str| SvixError::invalid_query(format!("{k} has a value it cannot take"));
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let v = v.into_owned();
            match k.as_ref() {
                "limit" => {
                    f.limit = v.parse::<u64>().map_err(|_| bad("limit"))?.clamp(1, 250) as usize
                }
                "iterator" => f.iterator = Some(v).filter(|v| !v.is_empty()),
                "channel" => f.channel = Some(v),
                "event_types" | "event_types[]" => f
                    .event_types
                    .extend(v.split(',').filter(|t| !t.is_empty()).map(str::to_string)),
                "before" => f.before = super::shape::query_time("before", Some(&v))?,
                "after" => f.after = super::shape::query_time("after", Some(&v))?,
                "with_content" => f.with_content = v.parse().map_err(|_| bad("with_content"))?,
                "status" => f.status = Some(v.parse().map_err(|_| bad("status"))?),
                "endpoint_id" => f.endpoint_id = Some(v),
                _ => {}
            }
        }
        Ok(f)
    }

    fn admits(&self, d: &MessageDetail) -> bool {
        let (_, channels) = kept(&d.message.headers);
        let et = d.summary.event_type.as_deref().unwrap_or("");
        (self.event_types.is_empty() || self.event_types.iter().any(|t| t == et))
            && self
                .channel
                .as_ref()
                .is_none_or(|c| channels.is_some_and(|cs| cs.contains(c)))
    }
}

/// `GET /api/v1/app/{app_id}/msg`: newest first.
async fn list(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path(app_id): Path<String>,
    uri: axum::http::Uri,
) -> SvixResult<Json<ListResponse<MessageOut>>> {
    let f = Filters::parse(uri.query())?;
    let app = app_of(&s, &scope, &app_id).await?;
    let page = s
        .store
        .messages(&MessageQuery {
            source: Some(tenant_source(&app.id)),
            event_type: (f.event_types.len() == 1).then(|| f.event_types[0].clone()),
            since: f.after,
            until: f.before,
            limit: f.limit,
            cursor: f.iterator.clone(),
            ..MessageQuery::default()
        })
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => {
                SvixError::invalid_query("iterator is not one this server gave")
            }
            e => e.into(),
        })?;
    let mut data = Vec::with_capacity(page.items.len());
    for m in &page.items {
        let d = s.store.message(m.id).await?;
        if f.admits(&d) {
            data.push(MessageOut::of(&d, f.with_content));
        }
    }
    Ok(Json(ListResponse {
        data,
        done: page.next_cursor.is_none(),
        iterator: page.next_cursor,
        prev_iterator: None,
    }))
}

/// `MessageStatus` of a delivery: 0 success, 1 pending, 2 fail, 3 sending.
fn status_of(d: &DeliveryInfo) -> (i64, &'static str) {
    match d.status {
        DeliveryStatus::Delivered => (0, "success"),
        DeliveryStatus::Pending | DeliveryStatus::Queued => (1, "pending"),
        // Not delivered: Svix has no state of its own for a script's outcome.
        DeliveryStatus::Dead
        | DeliveryStatus::Replayed
        | DeliveryStatus::Dropped
        | DeliveryStatus::TransformFailed => (2, "fail"),
    }
}

/// `MessageAttemptOut`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct AttemptOut {
    id: String,
    msg_id: String,
    endpoint_id: String,
    url: String,
    response: String,
    response_status_code: i64,
    response_duration_ms: i64,
    status: i64,
    status_text: &'static str,
    timestamp: String,
    trigger_type: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg: Option<MessageOut>,
}

/// The attempt id of a delivery's `n`th attempt.
fn attempt_id(delivery: i64, n: u32) -> String {
    format!("atmpt_{delivery}_{n}")
}

/// The URL an endpoint has now (empty when it is gone).
fn url_of(s: &Shared, dest: &str) -> String {
    s.dispatcher
        .get(dest)
        .map(|h| h.spec().uri.to_string())
        .unwrap_or_default()
}

fn attempt_out(s: &Shared, msg: &MessageDetail, d: &DeliveryInfo, a: &AttemptInfo) -> AttemptOut {
    let ok = a.status() == "succeeded";
    AttemptOut {
        id: attempt_id(d.id, a.attempt),
        msg_id: msg.summary.id.to_string(),
        endpoint_id: d.destination.clone(),
        url: url_of(s, &d.destination),
        response: a
            .response_body
            .clone()
            .or_else(|| a.error.clone())
            .unwrap_or_default(),
        response_status_code: a.response_status.map_or(0, i64::from),
        response_duration_ms: a.duration_ms.round() as i64,
        status: if ok { 0 } else { 2 },
        status_text: if ok { "success" } else { "fail" },
        timestamp: time(a.started_at),
        // A replayed delivery's attempts were asked for by someone.
        trigger_type: i64::from(d.attempts > 0 && d.replayed_by.is_some()),
        msg: None,
    }
}

/// Every attempt of a message, newest first.
fn attempts_in(s: &Shared, msg: &MessageDetail) -> Vec<AttemptOut> {
    let mut out: Vec<(i64, AttemptOut)> = msg
        .deliveries
        .iter()
        .flat_map(|d| {
            d.attempt_log
                .iter()
                .flatten()
                .map(move |a| (a.started_at, attempt_out(s, msg, d, a)))
        })
        .collect();
    out.sort_by_key(|a| std::cmp::Reverse(a.0));
    out.into_iter().map(|(_, a)| a).collect()
}

/// A page of a list held whole: `iterator` is the last id of the page before.
fn page_of<T>(items: Vec<T>, id: impl Fn(&T) -> &str, f: &Filters) -> ListResponse<T> {
    let start = match &f.iterator {
        Some(it) => items
            .iter()
            .position(|i| id(i) == it)
            .map_or(items.len(), |p| p + 1),
        None => 0,
    };
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let done = rest.len() <= f.limit;
    rest.truncate(f.limit);
    ListResponse {
        iterator: rest.last().map(|i| id(i).to_string()).filter(|_| !done),
        prev_iterator: None,
        done,
        data: rest,
    }
}

fn status_admits(f: &Filters, status: i64) -> bool {
    f.status.is_none_or(|s| s == status)
}

/// `GET /api/v1/app/{app_id}/attempt/msg/{msg_id}`
async fn attempts_of_message(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, msg_id)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> SvixResult<Json<ListResponse<AttemptOut>>> {
    let f = Filters::parse(uri.query())?;
    let app = app_of(&s, &scope, &app_id).await?;
    let msg = message_of(&s, &app, &msg_id).await?;
    let ep = match &f.endpoint_id {
        Some(e) => Some(endpoints::find(&s, &app.id, e).await?.id),
        None => None,
    };
    let all: Vec<AttemptOut> = attempts_in(&s, &msg)
        .into_iter()
        .filter(|a| ep.as_ref().is_none_or(|e| &a.endpoint_id == e) && status_admits(&f, a.status))
        .collect();
    Ok(Json(page_of(all, |a| a.id.as_str(), &f)))
}

/// `GET /api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}`: by delivery,
/// newest first (a page holds the attempts of up to `limit` deliveries).
async fn attempts_of_endpoint(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, ep_id)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> SvixResult<Json<ListResponse<AttemptOut>>> {
    let f = Filters::parse(uri.query())?;
    let app = app_of(&s, &scope, &app_id).await?;
    let ep = endpoints::find(&s, &app.id, &ep_id).await?;
    let (page, msgs) = deliveries_page(&s, &ep.id, &f).await?;
    let mut data = Vec::new();
    for d in &page.items {
        let Some(msg) = msgs.get(&d.message_id) else {
            continue;
        };
        if !f.admits(msg) {
            continue;
        }
        let Some(full) = msg.deliveries.iter().find(|x| x.id == d.id) else {
            continue;
        };
        let mut atts: Vec<AttemptOut> = full
            .attempt_log
            .iter()
            .flatten()
            .map(|a| attempt_out(&s, msg, full, a))
            .filter(|a| status_admits(&f, a.status))
            .collect();
        atts.reverse();
        data.extend(atts);
    }
    Ok(Json(ListResponse {
        data,
        done: page.next_cursor.is_none(),
        iterator: page.next_cursor,
        prev_iterator: None,
    }))
}

/// A page of an endpoint's deliveries and their messages.
async fn deliveries_page(
    s: &Shared,
    dest: &str,
    f: &Filters,
) -> SvixResult<(
    crate::store::Page<DeliveryInfo>,
    HashMap<MessageId, MessageDetail>,
)> {
    let page = s
        .store
        .deliveries(&DeliveryQuery {
            destination: Some(dest.to_string()),
            status: None,
            limit: f.limit,
            cursor: f.iterator.clone(),
        })
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => {
                SvixError::invalid_query("iterator is not one this server gave")
            }
            e => e.into(),
        })?;
    let mut msgs = HashMap::new();
    let ids: HashSet<MessageId> = page.items.iter().map(|d| d.message_id).collect();
    for id in ids {
        match s.store.message(id).await {
            Ok(m) => {
                msgs.insert(id, m);
            }
            Err(crate::store::StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((page, msgs))
}

/// `GET .../msg/{msg_id}/attempt/{attempt_id}`
async fn attempt(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, msg_id, attempt_id)): Path<(String, String, String)>,
) -> SvixResult<Json<AttemptOut>> {
    let app = app_of(&s, &scope, &app_id).await?;
    let msg = message_of(&s, &app, &msg_id).await?;
    attempts_in(&s, &msg)
        .into_iter()
        .find(|a| a.id == attempt_id)
        .map(Json)
        .ok_or_else(|| SvixError::not_found("attempt"))
}

/// `POST .../msg/{msg_id}/endpoint/{endpoint_id}/resend`: a new delivery of
/// the message to the endpoint (202).
async fn resend(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, msg_id, ep_id)): Path<(String, String, String)>,
) -> SvixResult<(StatusCode, Json<Value>)> {
    let app = app_of(&s, &scope, &app_id).await?;
    let msg = message_of(&s, &app, &msg_id).await?;
    let ep = endpoints::find(&s, &app.id, &ep_id).await?;
    s.store
        .replay_message(
            msg.summary.id,
            std::slice::from_ref(&ep.id),
            s.clock.now_millis(),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Value::Object(Default::default())),
    ))
}

/// `MessageEndpointOut`: an endpoint a message went to, with that delivery's status.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageEndpointOut {
    #[serde(flatten)]
    endpoint: Value,
    status: i64,
    status_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt: Option<String>,
}

/// `GET .../msg/{msg_id}/endpoint`
async fn destinations(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, msg_id)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> SvixResult<Json<ListResponse<MessageEndpointOut>>> {
    let f = Filters::parse(uri.query())?;
    let app = app_of(&s, &scope, &app_id).await?;
    let msg = message_of(&s, &app, &msg_id).await?;
    // The newest delivery to each endpoint decides its status.
    let mut newest: HashMap<&str, &DeliveryInfo> = HashMap::new();
    for d in &msg.deliveries {
        let e = newest.entry(&d.destination).or_insert(d);
        if d.id > e.id {
            *e = d;
        }
    }
    let mut out = Vec::new();
    for (dest, d) in newest {
        let Ok(ep) = endpoints::find(&s, &app.id, dest).await else {
            continue;
        };
        let (status, status_text) = status_of(d);
        out.push(MessageEndpointOut {
            endpoint: serde_json::to_value(endpoints::EndpointOut::of(&s, &ep)).unwrap_or_default(),
            status,
            status_text,
            next_attempt: d.next_attempt_at.map(time),
        });
    }
    out.sort_by(|a, b| a.endpoint["id"].as_str().cmp(&b.endpoint["id"].as_str()));
    Ok(Json(page_of(
        out,
        |e| e.endpoint["id"].as_str().unwrap_or(""),
        &f,
    )))
}

/// `EndpointMessageOut`: a message sent to an endpoint, with that delivery's status.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EndpointMessageOut {
    #[serde(flatten)]
    message: MessageOut,
    status: i64,
    status_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt: Option<String>,
}

/// `GET /api/v1/app/{app_id}/endpoint/{endpoint_id}/msg`: newest first.
async fn messages_of_endpoint(
    State(s): State<Shared>,
    Extension(scope): Extension<Scope>,
    Path((app_id, ep_id)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> SvixResult<Json<ListResponse<EndpointMessageOut>>> {
    let f = Filters::parse(uri.query())?;
    let app = app_of(&s, &scope, &app_id).await?;
    let ep = endpoints::find(&s, &app.id, &ep_id).await?;
    let (page, msgs) = deliveries_page(&s, &ep.id, &f).await?;
    let data = page
        .items
        .iter()
        .filter_map(|d| {
            let msg = msgs.get(&d.message_id).filter(|m| f.admits(m))?;
            let (status, status_text) = status_of(d);
            status_admits(&f, status).then(|| EndpointMessageOut {
                message: MessageOut::of(msg, f.with_content),
                status,
                status_text,
                next_attempt: d.next_attempt_at.map(time),
            })
        })
        .collect();
    Ok(Json(ListResponse {
        data,
        done: page.next_cursor.is_none(),
        iterator: page.next_cursor,
        prev_iterator: None,
    }))
}
