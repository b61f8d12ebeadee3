//! Destinations made at run time through the API: create, read, change, delete,
//! rotate the signing secret. They are stored in the store (so every node and
//! every restart sees them), SSRF-checked unless
//! `server.allow_private_destinations`, and routed from source `api` by their
//! `event_types`. Config-file destinations are read-only here (409).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::api::{destination_json, missing, ApiError, ApiResult, JsonBody, OptionalJson};
use super::Shared;
use crate::config::{
    check_retry, check_url, valid_name, BreakerConfig, Dur, ForwardHeaders, RateLimitConfig,
    RetryConfig, Secret,
};
use crate::dispatch::destination::{DestinationSpec, Origin, SigningKey};
use crate::dispatch::retry::RetryPolicy;
use crate::dispatch::ssrf;
use crate::ingest::route::RouteTable;
use crate::store::{Millis, StoreError, StoredDestination};

/// A signing key as stored: the secret and, during a rotation's grace, its end.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredKey {
    /// `whsec_...`
    pub secret: String,
    /// Signs until then (ms), if set.
    pub until: Option<Millis>,
}

/// A destination made through the API: the `[[destinations]]` fields plus
/// `event_types`. `signing_secrets` is kept by the gateway, never sent by users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiDestination {
    /// Unique name.
    pub name: String,
    /// `http(s)` URL.
    pub url: String,
    /// Event types of source `api` routed here (globs; default all).
    #[serde(default = "all_types")]
    pub event_types: Vec<String>,
    /// Per-attempt timeout.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Concurrent requests at most.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// Requests per second at most.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Retry schedule.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Disable when failing this long.
    #[serde(default)]
    pub disable_after: Option<Dur>,
    /// Circuit breaker.
    #[serde(default)]
    pub circuit_breaker: Option<BreakerConfig>,
    /// Given at creation to choose the secret; not stored in this field.
    #[serde(default)]
    pub signing_secret: Option<Secret>,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Which original headers pass through.
    #[serde(default)]
    pub forward_headers: Option<ForwardHeaders>,
    /// The signing keys (managed by the gateway).
    #[serde(default)]
    pub signing_secrets: Vec<StoredKey>,
}

fn all_types() -> Vec<String> {
    vec!["*".into()]
}

/// Fields a user may not set.
const INTERNAL: &[&str] = &["signing_secrets"];

impl ApiDestination {
    /// Reads a destination as the store keeps it.
    pub fn from_stored(sd: &StoredDestination) -> Result<Self, String> {
        let obj = sd
            .spec
            .as_object()
            .ok_or_else(|| "the stored spec is not a JSON object".to_string())?;
        serde_json::from_value(Value::Object(obj.clone())).map_err(|e| e.to_string())
    }

    /// Checks the fields that need no I/O; returns every problem.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !valid_name(&self.name) {
            out.push("name must be 1-64 letters, digits, '_', '-' or '.'".into());
        }
        if let Err(e) = check_url(&self.url) {
            out.push(e);
        }
        if self.event_types.is_empty() || self.event_types.iter().any(|t| t.is_empty()) {
            out.push("event_types must hold non-empty patterns (use [\"*\"] for all)".into());
        }
        if self.timeout.is_some_and(|t| t.0.is_zero()) {
            out.push("timeout must be more than 0".into());
        }
        if self.max_in_flight == Some(0) {
            out.push("max_in_flight must be at least 1".into());
        }
        if let Some(rl) = &self.rate_limit {
            if !(rl.per_second.is_finite() && rl.per_second > 0.0) {
                out.push("rate_limit.per_second must be more than 0".into());
            }
        }
        if let Some(r) = &self.retry {
            if let Err(e) = check_retry(r) {
                out.push(e);
            }
        }
        if self.circuit_breaker.is_some_and(|b| b.failures == 0) {
            out.push("circuit_breaker.failures must be at least 1".into());
        }
        if let Some(s) = &self.signing_secret {
            if !crate::signing::valid_signing_secret(s.expose()) {
                out.push("signing_secret must be whsec_ followed by base64".into());
            }
        }
        for (k, v) in &self.headers {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                out.push(format!("header name {k:?} is not valid"));
            }
            if http::HeaderValue::from_str(v).is_err() {
                out.push(format!("the value of header {k:?} is not valid"));
            }
        }
        out
    }

    /// The dispatcher's spec of this destination.
    pub fn to_spec(&self) -> Result<DestinationSpec, String> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| e.to_string())?;
        let uri = crate::dispatch::destination::to_uri(&url)?;
        let mut headers = http::HeaderMap::new();
        for (k, v) in &self.headers {
            let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
            let mut value = http::HeaderValue::from_str(v).map_err(|e| e.to_string())?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let signing = self
            .signing_secrets
            .iter()
            .filter_map(|k| {
                Some(SigningKey {
                    key: crate::signing::decode_secret(&k.secret)?,
                    secret: k.secret.clone(),
                    until: k.until,
                })
            })
            .collect();
        let retry = self.retry.clone().unwrap_or_default();
        Ok(DestinationSpec {
            name: self.name.clone(),
            url,
            uri,
            timeout: self.timeout.unwrap_or(Dur::secs(10)).0,
            max_in_flight: self.max_in_flight.unwrap_or(32).max(1),
            rate_limit: self.rate_limit,
            retry: RetryPolicy::from_config(&retry),
            retry_4xx: retry.on_4xx,
            breaker: self.circuit_breaker,
            signing,
            headers,
            forward: self.forward_headers.clone().unwrap_or_default(),
            disable_after: self.disable_after.unwrap_or(Dur::secs(5 * 86_400)).0,
            origin: Origin::Api,
            event_types: self.event_types.clone(),
        })
    }
}

/// The route table of the config routes plus the API destinations now running.
pub fn route_table(
    config_routes: &[crate::config::RouteConfig],
    dispatcher: &crate::dispatch::Dispatcher,
) -> RouteTable {
    let api: Vec<(String, Vec<String>)> = dispatcher
        .all()
        .iter()
        .map(|h| h.spec())
        .filter(|sp| sp.origin == Origin::Api)
        .map(|sp| (sp.name.clone(), sp.event_types.clone()))
        .collect();
    RouteTable::new(config_routes, &api)
}

/// Rebuilds the route table after an API destination changed.
pub fn rebuild_routes(s: &Shared) {
    s.routing
        .replace(route_table(&s.config.routes, &s.dispatcher));
}

fn unprocessable(problems: Vec<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_destination",
        problems.join("; "),
    )
}

/// Parses a stored or requested JSON object, reporting problems as 422.
fn parse(obj: &Map<String, Value>) -> ApiResult<ApiDestination> {
    let d: ApiDestination = serde_json::from_value(Value::Object(obj.clone()))
        .map_err(|e| unprocessable(vec![e.to_string()]))?;
    let problems = d.problems();
    if !problems.is_empty() {
        return Err(unprocessable(problems));
    }
    Ok(d)
}

async fn guard(s: &Shared, d: &ApiDestination) -> ApiResult<()> {
    if s.config.server.allow_private_destinations {
        return Ok(());
    }
    let url = reqwest::Url::parse(&d.url).map_err(|e| unprocessable(vec![e.to_string()]))?;
    ssrf::check(&url)
        .await
        .map_err(|e| unprocessable(vec![e.to_string()]))
}

fn config_destination(s: &Shared, name: &str) -> bool {
    s.config
        .destinations
        .iter()
        .any(|d| d.name.get_ref() == name)
}

fn read_only() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "read_only",
        "this destination is defined in the config file; change it there",
    )
}

async fn stored(s: &Shared, name: &str) -> ApiResult<StoredDestination> {
    s.store
        .stored_destinations()
        .await?
        .into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| ApiError::not_found("destination"))
}

async fn respond(s: &Shared, name: &str, extra: Option<(&str, Value)>) -> ApiResult<Value> {
    let stats = s.store.destination_stats().await?;
    let h = s
        .dispatcher
        .get(name)
        .ok_or_else(|| ApiError::not_found("destination"))?;
    let mut v = destination_json(&h, stats.get(name), s.clock.now_millis());
    if let (Some((k, val)), Some(obj)) = (extra, v.as_object_mut()) {
        obj.insert(k.to_string(), val);
    }
    Ok(v)
}

/// `POST /api/v1/destinations`
pub async fn create(
    State(s): State<Shared>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if let Some(k) = INTERNAL.iter().find(|k| body.contains_key(**k)) {
        return Err(unprocessable(vec![format!(
            "`{k}` is managed by hookgate; use signing_secret"
        )]));
    }
    let mut d = parse(&body)?;
    if config_destination(&s, &d.name) || s.dispatcher.get(&d.name).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("a destination named `{}` exists", d.name),
        ));
    }
    guard(&s, &d).await?;
    let secret = d
        .signing_secret
        .take()
        .map(|s| s.expose().to_string())
        .unwrap_or_else(crate::signing::new_secret);
    d.signing_secrets = vec![StoredKey {
        secret: secret.clone(),
        until: None,
    }];
    let mut spec_json = body;
    spec_json.remove("signing_secret");
    spec_json.insert("signing_secrets".into(), json!(d.signing_secrets));
    let now = s.clock.now_millis();
    s.store
        .put_stored_destination(
            &StoredDestination {
                name: d.name.clone(),
                spec: Value::Object(spec_json),
                created_at: now,
                updated_at: now,
            },
            true,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "it exists already")
            }
            e => e.into(),
        })?;
    let spec = d.to_spec().map_err(|e| unprocessable(vec![e]))?;
    let state = s
        .store
        .destination_states()
        .await?
        .remove(&d.name)
        .unwrap_or_default();
    s.dispatcher.add(spec, state);
    rebuild_routes(&s);
    let v = respond(&s, &d.name, Some(("signing_secret", json!(secret)))).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// `GET /api/v1/destinations/{name}`
pub async fn get_one(State(s): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(respond(&s, &name, None).await?))
}

/// `PATCH /api/v1/destinations/{name}`: changes the given fields (`null` removes one).
pub async fn patch(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    if config_destination(&s, &name) {
        return Err(read_only());
    }
    let current = stored(&s, &name).await?;
    if let Some(k) = INTERNAL.iter().find(|k| body.contains_key(**k)) {
        return Err(unprocessable(vec![format!(
            "`{k}` is managed by hookgate; use rotate-secret"
        )]));
    }
    if body.contains_key("signing_secret") {
        return Err(unprocessable(vec![
            "change the signing secret with POST /api/v1/destinations/{name}/rotate-secret".into(),
        ]));
    }
    if body
        .get("name")
        .is_some_and(|n| n.as_str() != Some(name.as_str()))
    {
        return Err(unprocessable(
            vec!["a destination cannot be renamed".into()],
        ));
    }
    let mut merged = current.spec.as_object().cloned().unwrap_or_default();
    for (k, v) in body {
        if v.is_null() {
            merged.remove(&k);
        } else {
            merged.insert(k, v);
        }
    }
    let d = parse(&merged)?;
    if d.url != current.spec["url"].as_str().unwrap_or_default() {
        guard(&s, &d).await?;
    }
    s.store
        .put_stored_destination(
            &StoredDestination {
                name: name.clone(),
                spec: Value::Object(merged),
                created_at: current.created_at,
                updated_at: s.clock.now_millis(),
            },
            false,
        )
        .await?;
    let spec = d.to_spec().map_err(|e| unprocessable(vec![e]))?;
    s.dispatcher.update(spec);
    rebuild_routes(&s);
    Ok(Json(respond(&s, &name, None).await?))
}

/// `DELETE /api/v1/destinations/{name}`
pub async fn delete(State(s): State<Shared>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    if config_destination(&s, &name) {
        return Err(read_only());
    }
    s.store
        .delete_stored_destination(&name)
        .await
        .map_err(missing("destination"))?;
    s.dispatcher.remove(&name);
    rebuild_routes(&s);
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `rotate-secret`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// The new secret (a new random one when absent).
    pub signing_secret: Option<Secret>,
    /// How long the old secret keeps signing (default 24h).
    pub grace: Option<Dur>,
}

/// `POST /api/v1/destinations/{name}/rotate-secret`
pub async fn rotate(
    State(s): State<Shared>,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<Rotate>,
) -> ApiResult<Json<Value>> {
    if config_destination(&s, &name) {
        return Err(read_only());
    }
    let current = stored(&s, &name).await?;
    let mut obj = current.spec.as_object().cloned().unwrap_or_default();
    let mut d = parse(&obj)?;
    let secret = match body.signing_secret {
        Some(sec) => {
            if !crate::signing::valid_signing_secret(sec.expose()) {
                return Err(unprocessable(vec![
                    "signing_secret must be whsec_ followed by base64".into(),
                ]));
            }
            sec.expose().to_string()
        }
        None => crate::signing::new_secret(),
    };
    let now = s.clock.now_millis();
    let until = now + body.grace.unwrap_or(Dur::secs(86_400)).as_millis_i64();
    let mut keys = vec![StoredKey {
        secret: secret.clone(),
        until: None,
    }];
    for k in d.signing_secrets.drain(..) {
        let end = k.until.map_or(until, |u| u.min(until));
        if end > now && k.secret != secret {
            keys.push(StoredKey {
                secret: k.secret,
                until: Some(end),
            });
        }
    }
    d.signing_secrets = keys;
    obj.insert("signing_secrets".into(), json!(d.signing_secrets));
    s.store
        .put_stored_destination(
            &StoredDestination {
                name: name.clone(),
                spec: Value::Object(obj),
                created_at: current.created_at,
                updated_at: now,
            },
            false,
        )
        .await?;
    let spec = d.to_spec().map_err(|e| unprocessable(vec![e]))?;
    s.dispatcher.update(spec);
    Ok(Json(
        json!({"signing_secret": secret, "previous_valid_until": until}),
    ))
}

/// Loads the stored destinations at start-up into the dispatcher (config-file
/// destinations win a name clash).
pub async fn load(
    store: &Arc<dyn crate::store::Store>,
    dispatcher: &crate::dispatch::Dispatcher,
    config_names: &[String],
) -> Result<Vec<(String, Vec<String>)>, StoreError> {
    let states = store.destination_states().await?;
    let mut routes = Vec::new();
    for sd in store.stored_destinations().await? {
        if config_names.contains(&sd.name) {
            tracing::warn!(destination = %sd.name, "a stored API destination has the name of a config destination; the config one is used");
            continue;
        }
        let parsed = ApiDestination::from_stored(&sd).and_then(|d| d.to_spec().map(|sp| (d, sp)));
        match parsed {
            Ok((d, spec)) => {
                let st = states.get(&d.name).cloned().unwrap_or_default();
                routes.push((d.name.clone(), d.event_types.clone()));
                dispatcher.add(spec, st);
            }
            Err(e) => {
                tracing::error!(destination = %sd.name, error = %e, "a stored destination could not be loaded");
            }
        }
    }
    Ok(routes)
}
