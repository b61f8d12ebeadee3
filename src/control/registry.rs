//! The registry: every destination and route the gateway runs with, from both
//! origins, and the only place that changes them.
//!
//! Config-file destinations are read-only; API destinations are kept in the store
//! (so every node and every restart sees them), SSRF-checked unless
//! `server.allow_private_destinations`, and routed from source `api` by their
//! `event_types`. Each change goes: check → store → dispatcher → route table, so
//! the dispatcher never runs a destination the store does not hold. With several
//! nodes on one store, [`Registry::sync`] brings in what the others changed.
//! Alert channels made through the API take the same steps with their
//! destinations `alerts.<name>` (read-only through the destinations' calls).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use super::channels::{ChannelChangeError, Channels};
use super::compile::{self, CompileError};
use super::def::{DestinationDef, RouteDef, StoredKey};
use super::defaults;
use super::transforms::{ApiTransform, TransformChangeError};
use super::validate::{self, Problem};
use crate::clock::SharedClock;
use crate::config::alerts::{self as channel, AlertChannel};
use crate::config::{Dur, Secret};
use crate::dispatch::destination::{DestinationSpec, Origin};
use crate::dispatch::{ssrf, Dispatcher};
use crate::ingest::route::{RouteError, RouteTable, Routing};
use crate::store::{
    Millis, Store, StoreError, StoredAlertChannel, StoredDestination, StoredTransform,
};
use crate::transform::Script;

/// Why a change to a destination was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The definition has problems (every one of them, with its path).
    #[error("{}", .0.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// A destination of that name exists.
    #[error("a destination named `{0}` exists")]
    Exists(String),
    /// The destination is defined in the config file.
    #[error("this destination is defined in the config file; change it there")]
    ReadOnly,
    /// The destination delivers an alert channel made through the API.
    #[error("this destination delivers alert channel `{0}`; change the channel through /api/v1/alert-channels")]
    Channel(String),
    /// No destination of that name.
    #[error("destination not found")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ControlError::NotFound,
            e => ControlError::Store(e),
        }
    }
}

/// A route table that would not build: an API destination's filter that is not
/// a condition (its checks refuse that first).
impl From<RouteError> for ControlError {
    fn from(e: RouteError) -> Self {
        let index = e.index.to_string();
        ControlError::Invalid(vec![Problem::at_keys(&["filter", &index], e.to_string())])
    }
}

impl ControlError {
    fn invalid(path: &str, message: impl Into<String>) -> Self {
        ControlError::Invalid(vec![Problem::at(path, message)])
    }
}

/// Why the registry could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A config-file destination does not compile.
    #[error("destination `{name}`: {source}")]
    Compile {
        /// The destination.
        name: String,
        /// Why.
        source: CompileError,
    },
    /// A route does not compile.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The destinations and routes of the gateway; see the module docs.
pub struct Registry {
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    routing: Arc<Routing>,
    clock: SharedClock,
    /// Names of the config-file destinations (read-only; a reload changes them).
    file_names: RwLock<HashSet<String>>,
    /// The config-file routes.
    file_routes: RwLock<Vec<RouteDef>>,
    /// `server.allow_private_destinations`: no SSRF check on API destinations.
    allow_private: bool,
    /// The sources of the config file (an API destination may be routed from one).
    sources: RwLock<HashSet<String>>,
    /// The transformations by name.
    transforms: Arc<super::transforms::Transforms>,
    /// The alert channels.
    channels: Arc<Channels>,
}

/// Why a reload of the config file's destinations was refused (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum FileRefused {
    /// Problems with the new destinations, one line each.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fields of a stored destination that users may not set.
const INTERNAL: &str = "signing_secrets";

impl Registry {
    /// Compiles the config-file destinations, loads the stored API ones (config
    /// destinations win a name clash), puts them all into the dispatcher with
    /// their saved states and builds the route table.
    pub async fn load(
        store: Arc<dyn Store>,
        dispatcher: Arc<Dispatcher>,
        clock: SharedClock,
        file: &[DestinationDef],
        file_routes: &[RouteDef],
        allow_private: bool,
        sources: HashSet<String>,
    ) -> Result<Self, LoadError> {
        let states = store.destination_states().await?;
        let mut file_names = HashSet::new();
        for d in file {
            let spec =
                compile::destination(d, Origin::Config).map_err(|source| LoadError::Compile {
                    name: d.name.clone(),
                    source,
                })?;
            let st = states.get(&spec.name).cloned().unwrap_or_default();
            file_names.insert(spec.name.clone());
            dispatcher.add(spec, st);
        }
        for sd in store.stored_destinations().await? {
            if file_names.contains(&sd.name) {
                tracing::warn!(destination = %sd.name, "a stored API destination has the name of a config destination; the config one is used");
                continue;
            }
            match stored_spec(&sd) {
                Ok(spec) => {
                    let st = states.get(&sd.name).cloned().unwrap_or_default();
                    dispatcher.add(spec, st);
                }
                Err(e) => {
                    tracing::error!(destination = %sd.name, error = %e, "a stored destination could not be loaded");
                }
            }
        }
        let routing = Arc::new(Routing::new(RouteTable::default()));
        let registry = Registry {
            store,
            dispatcher,
            transforms: Arc::new(super::transforms::Transforms::new(routing.clone())),
            routing,
            clock,
            file_names: RwLock::new(file_names),
            file_routes: RwLock::new(file_routes.to_vec()),
            allow_private,
            sources: RwLock::new(sources),
            channels: Arc::default(),
        };
        registry.load_transforms().await?;
        registry.rebuild_routes()?;
        Ok(registry)
    }

    /// Takes in the transformations the store holds (those made through the API).
    async fn load_transforms(&self) -> Result<(), StoreError> {
        let scripts = self
            .store
            .stored_transforms()
            .await?
            .iter()
            .filter_map(|t| match stored_script(t) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::error!(transform = %t.name, error = %e, "a stored transform could not be loaded");
                    None
                }
            })
            .collect();
        self.transforms.set_api(scripts);
        Ok(())
    }

    /// `POST /api/v1/transforms` (`create`) or `PUT /api/v1/transforms/{name}`:
    /// checks the fields, compiles the script (refused if it does not), stores
    /// it and puts it to use.
    pub async fn put_transform(
        &self,
        name: &str,
        fields: &ApiTransform,
        create: bool,
    ) -> Result<Arc<Script>, TransformChangeError> {
        if self.transforms.is_file(name) {
            return Err(if create {
                TransformChangeError::Exists(name.to_string())
            } else {
                TransformChangeError::ReadOnly
            });
        }
        let def = fields.def(name).map_err(TransformChangeError::Invalid)?;
        let script = Arc::new(def.script());
        self.transforms
            .engine()
            .check(script.clone())
            .await
            .map_err(|e| TransformChangeError::Compile {
                name: name.to_string(),
                error: e.to_string(),
            })?;
        let now = self.clock.now_millis();
        let row = StoredTransform {
            name: name.to_string(),
            spec: fields.to_json(),
            created_at: now,
            updated_at: now,
        };
        self.store
            .put_stored_transform(&row, create)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => TransformChangeError::Exists(name.to_string()),
                e => e.into(),
            })?;
        self.transforms.put_api(script.clone());
        Ok(script)
    }

    /// `PATCH /api/v1/transforms/{name}`: the fields given replace the stored ones.
    pub async fn patch_transform(
        &self,
        name: &str,
        patch: &ApiTransform,
    ) -> Result<Arc<Script>, TransformChangeError> {
        if self.transforms.is_file(name) {
            return Err(TransformChangeError::ReadOnly);
        }
        let current = self
            .store
            .stored_transforms()
            .await?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or(TransformChangeError::NotFound)?;
        let mut fields = current
            .spec
            .as_object()
            .map(ApiTransform::parse)
            .and_then(Result::ok)
            .unwrap_or_default();
        if patch.code.is_some() {
            fields.code = patch.code.clone();
        }
        if patch.timeout_ms.is_some() {
            fields.timeout_ms = patch.timeout_ms;
        }
        if patch.memory_limit.is_some() {
            fields.memory_limit = patch.memory_limit;
        }
        self.put_transform(name, &fields, false).await
    }

    /// `DELETE /api/v1/transforms/{name}`: refused while a destination names it.
    pub async fn delete_transform(&self, name: &str) -> Result<(), TransformChangeError> {
        if self.transforms.is_file(name) {
            return Err(TransformChangeError::ReadOnly);
        }
        let mut by: Vec<String> = self
            .dispatcher
            .all()
            .iter()
            .map(|h| h.spec())
            .filter(|spec| spec.transform.as_deref() == Some(name))
            .map(|spec| spec.name.clone())
            .collect();
        if !by.is_empty() {
            by.sort();
            return Err(TransformChangeError::InUse {
                name: name.to_string(),
                by,
            });
        }
        self.store.delete_stored_transform(name).await?;
        self.transforms.remove_api(name);
        Ok(())
    }

    /// The route table as ingest and the API read it.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.clone()
    }

    /// The transformations, which the dispatcher asks which script a delivery runs.
    pub fn transforms(&self) -> Arc<super::transforms::Transforms> {
        self.transforms.clone()
    }

    /// A `transform` of an API definition must name a transformation.
    fn check_transform(&self, d: &DestinationDef) -> Result<(), ControlError> {
        match &d.transform {
            Some(t) if self.transforms.get(t).is_none() => Err(ControlError::invalid(
                "transform",
                format!("transform `{t}` is not a defined transform"),
            )),
            _ => Ok(()),
        }
    }

    /// Whether `name` is a config-file destination.
    pub fn is_file(&self, name: &str) -> bool {
        self.file_names.read().contains(name)
    }

    /// The route table: the config routes, then one route per API destination.
    /// The only place a table is built.
    pub fn route_table(&self) -> Result<RouteTable, RouteError> {
        self.route_table_with(&self.file_routes.read())
    }

    /// The route table with these config routes.
    fn route_table_with(&self, file_routes: &[RouteDef]) -> Result<RouteTable, RouteError> {
        let api = self
            .dispatcher
            .all()
            .iter()
            .map(|h| h.spec())
            .filter(|sp| sp.origin == Origin::Api)
            .map(|sp| {
                RouteDef::for_api_destination_from(
                    &sp.name,
                    &sp.source,
                    &sp.event_types,
                    &sp.filter,
                )
            })
            .collect::<Vec<_>>();
        RouteTable::new(file_routes.iter().chain(api.iter()))
    }

    fn rebuild_routes(&self) -> Result<(), RouteError> {
        self.routing.replace(self.route_table()?);
        Ok(())
    }

    /// A reload of the config file: its destinations become `file` (those in
    /// `changed` get their new settings; a new one starts with its saved state;
    /// one no longer there stops, its deliveries staying stored), its routes
    /// `routes` and its sources `sources`. API destinations are untouched. Every
    /// check runs first, so a refusal changes nothing: each new destination must
    /// compile, and none may have the name of an API destination. The order keeps
    /// every message routed somewhere that exists: destinations are added
    /// before the route table that names them, and removed after it. Returns a
    /// warning for each API destination routed from a source the file no longer
    /// defines (it stays, and gets messages again if the source comes back).
    pub async fn reload_file(
        &self,
        file: &[DestinationDef],
        changed: &HashSet<String>,
        routes: &[RouteDef],
        sources: HashSet<String>,
    ) -> Result<Vec<String>, FileRefused> {
        let mut problems = Vec::new();
        let mut specs = Vec::new();
        for d in file {
            let clash = self
                .dispatcher
                .get(&d.name)
                .is_some_and(|h| h.spec().origin == Origin::Api);
            if clash {
                problems.push(format!(
                    "destination `{}` has the name of a destination made through the API; rename it in the file, or delete the API one first",
                    d.name
                ));
                continue;
            }
            match compile::destination(d, Origin::Config) {
                Ok(spec) => specs.push(spec),
                Err(e) => problems.push(format!("destination `{}`: {e}", d.name)),
            }
        }
        if !problems.is_empty() {
            return Err(FileRefused::Invalid(problems));
        }
        let table = self
            .route_table_with(routes)
            .map_err(|e| FileRefused::Invalid(vec![e.to_string()]))?;
        let states = self.store.destination_states().await?;
        let new_names: HashSet<String> = specs.iter().map(|s| s.name.clone()).collect();
        let old_names = self.file_names.read().clone();
        for spec in specs {
            if !old_names.contains(&spec.name) {
                let st = states.get(&spec.name).cloned().unwrap_or_default();
                self.dispatcher.add(spec, st);
            } else if changed.contains(&spec.name) {
                self.dispatcher.update(spec);
            }
        }
        let orphans = self.orphaned_api_destinations(&sources);
        *self.file_names.write() = new_names.clone();
        *self.file_routes.write() = routes.to_vec();
        *self.sources.write() = sources;
        self.routing.replace(table);
        for gone in old_names.difference(&new_names) {
            self.dispatcher.remove(gone);
        }
        Ok(orphans)
    }

    /// A line for each API destination routed from a source not in `sources`.
    fn orphaned_api_destinations(&self, sources: &HashSet<String>) -> Vec<String> {
        let mut lines: Vec<String> = self
            .dispatcher
            .all()
            .iter()
            .map(|h| h.spec())
            .filter(|sp| {
                sp.origin == Origin::Api
                    && sp.source != crate::config::API_SOURCE
                    && !crate::config::is_tenant_source(&sp.source)
                    && !sources.contains(&sp.source)
            })
            .map(|sp| {
                format!(
                    "destination `{}` (made through the API) is routed from source `{}`, which the file no longer defines: it gets no messages until the source is back",
                    sp.name, sp.source
                )
            })
            .collect();
        lines.sort();
        lines
    }

    /// `POST /api/v1/destinations`: makes an API destination from a JSON body;
    /// returns its signing secret (the given one, or a new random one).
    pub async fn create(&self, mut body: Map<String, Value>) -> Result<String, ControlError> {
        if body.contains_key(INTERNAL) {
            return Err(ControlError::invalid(
                INTERNAL,
                format!("`{INTERNAL}` is managed by hookgate; use signing_secret"),
            ));
        }
        let mut d = parse(&body)?;
        self.check_transform(&d)?;
        if self.is_file(&d.name) || self.dispatcher.get(&d.name).is_some() {
            return Err(ControlError::Exists(d.name));
        }
        self.check_source(&d)?;
        self.guard(&d).await?;
        let secret = d
            .signing_secret
            .take()
            .map(|s| s.expose().to_string())
            .unwrap_or_else(crate::signing::new_secret);
        d.signing_secrets = vec![StoredKey {
            secret: secret.clone(),
            until: None,
        }];
        body.remove("signing_secret");
        body.insert(INTERNAL.into(), json!(d.signing_secrets));
        let spec = compile_api(&d)?;
        let now = self.clock.now_millis();
        let stored = StoredDestination {
            name: d.name.clone(),
            spec: Value::Object(body),
            created_at: now,
            updated_at: now,
        };
        self.store
            .put_stored_destination(&stored, true)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => ControlError::Exists(d.name.clone()),
                e => e.into(),
            })?;
        let state = self
            .store
            .destination_states()
            .await?
            .remove(&d.name)
            .unwrap_or_default();
        self.dispatcher.add(spec, state);
        self.rebuild_routes()?;
        Ok(secret)
    }

    /// `PATCH /api/v1/destinations/{name}`: changes the given fields (`null`
    /// removes one, so its default applies).
    pub async fn patch(&self, name: &str, body: Map<String, Value>) -> Result<(), ControlError> {
        let current = self.stored(name).await?;
        if body.contains_key(INTERNAL) {
            return Err(ControlError::invalid(
                INTERNAL,
                format!("`{INTERNAL}` is managed by hookgate; use rotate-secret"),
            ));
        }
        if body.contains_key("signing_secret") {
            return Err(ControlError::invalid(
                "signing_secret",
                "change the signing secret with POST /api/v1/destinations/{name}/rotate-secret",
            ));
        }
        if body.get("name").is_some_and(|n| n.as_str() != Some(name)) {
            return Err(ControlError::invalid(
                "name",
                "a destination cannot be renamed",
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
        self.check_transform(&d)?;
        let was = parse(current.spec.as_object().unwrap_or(&Map::new()))?;
        if d.kind != was.kind {
            return Err(ControlError::invalid(
                "type",
                "the type of a destination cannot be changed; make a new one",
            ));
        }
        self.check_source(&d)?;
        if d.url.as_deref() != current.spec["url"].as_str() {
            self.guard(&d).await?;
        }
        let spec = compile_api(&d)?;
        self.put(current, merged, self.clock.now_millis()).await?;
        self.dispatcher.update(spec);
        self.rebuild_routes()?;
        Ok(())
    }

    /// `DELETE /api/v1/destinations/{name}`
    pub async fn delete(&self, name: &str) -> Result<(), ControlError> {
        self.changeable(name)?;
        self.store.delete_stored_destination(name).await?;
        self.dispatcher.remove(name);
        self.rebuild_routes()?;
        Ok(())
    }

    /// `POST /api/v1/destinations/{name}/rotate-secret`: `secret` (or a new
    /// random one) signs from now on; the old ones keep signing for `grace`.
    /// Returns the new secret and when the old ones stop.
    pub async fn rotate(
        &self,
        name: &str,
        secret: Option<Secret>,
        grace: Option<Dur>,
    ) -> Result<(String, Millis), ControlError> {
        let current = self.stored(name).await?;
        let mut obj = current.spec.as_object().cloned().unwrap_or_default();
        let mut d = parse(&obj)?;
        let secret = match secret {
            Some(s) if !crate::signing::valid_signing_secret(s.expose()) => {
                return Err(ControlError::invalid(
                    "signing_secret",
                    validate::BAD_SIGNING_SECRET,
                ));
            }
            Some(s) => s.expose().to_string(),
            None => crate::signing::new_secret(),
        };
        let now = self.clock.now_millis();
        let grace = Dur(grace.map_or(defaults::ROTATION_GRACE, |g| g.0));
        // Saturating: a grace past the year 292 million means "for ever", not a
        // time wrapped into the past.
        let until = now.saturating_add(grace.as_millis_i64());
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
        obj.insert(INTERNAL.into(), json!(d.signing_secrets));
        let spec = compile_api(&d)?;
        self.put(current, obj, now).await?;
        self.dispatcher.update(spec);
        Ok((secret, until))
    }

    /// Pauses or resumes a destination (of either origin); the state is stored,
    /// so other nodes follow.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), ControlError> {
        self.dispatcher
            .set_paused(name, paused)
            .await
            .map(|_| ())
            .ok_or(ControlError::NotFound)
    }

    /// Checks that an API destination's `source` is a defined source (or `api`).
    fn check_source(&self, d: &DestinationDef) -> Result<(), ControlError> {
        match d.source.as_deref() {
            Some(s)
                if s != crate::config::API_SOURCE
                    && !crate::config::is_tenant_source(s)
                    && !self.sources.read().contains(s) =>
            {
                Err(ControlError::invalid(
                    "source",
                    format!("source `{s}` is not a defined source (nor `api`)"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Checks the URL of an API destination against the SSRF guard.
    async fn guard(&self, d: &DestinationDef) -> Result<(), ControlError> {
        let Some(url) = d.url.as_deref().filter(|_| !self.allow_private) else {
            return Ok(());
        };
        let url = url::Url::parse(url).map_err(|e| ControlError::invalid("url", e.to_string()))?;
        ssrf::check(&url)
            .await
            .map_err(|e| ControlError::invalid("url", e.to_string()))
    }

    /// The stored row of an API destination; a config one is read-only.
    async fn stored(&self, name: &str) -> Result<StoredDestination, ControlError> {
        self.changeable(name)?;
        self.store
            .stored_destinations()
            .await?
            .into_iter()
            .find(|d| d.name == name)
            .ok_or(ControlError::NotFound)
    }

    /// A config destination is read-only here, and so is an alert channel's.
    fn changeable(&self, name: &str) -> Result<(), ControlError> {
        if self.is_file(name) {
            return Err(ControlError::ReadOnly);
        }
        match name.strip_prefix(channel::CHANNEL_PREFIX) {
            Some(c) if self.channels.is_api(c) => Err(ControlError::Channel(c.to_string())),
            _ => Ok(()),
        }
    }

    /// Stores a changed destination.
    async fn put(
        &self,
        current: StoredDestination,
        spec: Map<String, Value>,
        now: Millis,
    ) -> Result<(), ControlError> {
        let changed = StoredDestination {
            spec: Value::Object(spec),
            updated_at: now,
            ..current
        };
        Ok(self.store.put_stored_destination(&changed, false).await?)
    }

    /// With several nodes on one store, picks up what other nodes changed every
    /// `every`, until `stop`: pause, resume and disable states, and destinations
    /// made, changed or removed through another node's API.
    pub async fn sync(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut seen = HashMap::new();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            self.sync_once(&mut seen).await;
        }
    }

    /// One pass of [`Registry::sync`]: two small reads. `seen` holds the
    /// `updated_at` of each stored destination already taken in.
    pub async fn sync_once(&self, seen: &mut HashMap<String, Millis>) {
        let read_at = tokio::time::Instant::now();
        if let Ok(states) = self.store.destination_states().await {
            for (name, st) in &states {
                self.dispatcher.adopt_state(name, st, read_at);
            }
        }
        if let Err(e) = self.load_transforms().await {
            tracing::debug!(error = %e, "the stored transforms were not read; the previous ones stay");
        }
        self.sync_channels(seen).await;
        let Ok(stored) = self.store.stored_destinations().await else {
            return;
        };
        let mut changed = false;
        for sd in &stored {
            if self.is_file(&sd.name) || seen.get(&sd.name) == Some(&sd.updated_at) {
                continue;
            }
            seen.insert(sd.name.clone(), sd.updated_at);
            let spec = match stored_spec(sd) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::error!(destination = %sd.name, error = %e, "a stored destination could not be loaded");
                    continue;
                }
            };
            if !self.dispatcher.update(spec.clone()) {
                self.dispatcher.add(spec, Default::default());
            }
            changed = true;
        }
        for h in self.dispatcher.all() {
            let spec = h.spec();
            if spec.origin == Origin::Api && !stored.iter().any(|d| d.name == spec.name) {
                self.dispatcher.remove(&spec.name);
                seen.remove(&spec.name);
                changed = true;
            }
        }
        if changed {
            if let Err(e) = self.rebuild_routes() {
                tracing::error!(error = %e, "the route table was not rebuilt after a sync; the previous one stays");
            }
        }
    }
}

/// Alert channels made through the API (`/api/v1/alert-channels`): the same
/// steps as destinations (check → store → dispatcher), the channel's
/// destination `alerts.<name>` changed with it.
impl Registry {
    /// The alert channels (the evaluator reads them each round).
    pub fn channels(&self) -> Arc<Channels> {
        self.channels.clone()
    }

    /// Takes in the config file's channels (their destinations came with the
    /// file's) and the stored ones, with their destinations.
    pub async fn load_channels(&self, file: Vec<AlertChannel>) -> Result<(), StoreError> {
        self.channels.set_file(file);
        let states = self.store.destination_states().await?;
        for row in self.store.stored_alert_channels().await? {
            if self.channels.is_file(&row.name) {
                tracing::warn!(channel = %row.name, "a stored API alert channel has the name of a config channel; the config one is used");
                continue;
            }
            match stored_channel(&row) {
                Ok((c, spec)) => {
                    let st = states.get(&spec.name).cloned().unwrap_or_default();
                    self.dispatcher.add(spec, st);
                    self.channels.put_api(c);
                }
                Err(e) => {
                    tracing::error!(channel = %row.name, error = %e, "a stored alert channel could not be loaded");
                }
            }
        }
        Ok(())
    }

    /// `POST /api/v1/alert-channels` (`name` none: the body names it) or
    /// `PUT /api/v1/alert-channels/{name}` (the body is the whole channel):
    /// checks it, stores it and puts it and its destination to use.
    pub async fn put_channel(
        &self,
        name: Option<&str>,
        mut body: Map<String, Value>,
    ) -> Result<AlertChannel, ChannelChangeError> {
        let create = name.is_none();
        if let Some(name) = name {
            if self.channels.is_file(name) {
                return Err(ChannelChangeError::ReadOnly);
            }
            match body.get("name") {
                None => {
                    body.insert("name".into(), json!(name));
                }
                Some(n) if n.as_str() == Some(name) => {}
                Some(_) => {
                    return Err(channel_invalid(
                        "name",
                        "an alert channel cannot be renamed; make a new one and delete this one",
                    ))
                }
            }
        }
        let c = channel::from_json(&body).map_err(ChannelChangeError::Invalid)?;
        let current = if create {
            if self.channels.get(&c.name).is_some() {
                return Err(ChannelChangeError::Exists(c.name));
            }
            None
        } else {
            let row = self
                .store
                .stored_alert_channels()
                .await?
                .into_iter()
                .find(|r| r.name == c.name)
                .ok_or(ChannelChangeError::NotFound)?;
            Some(row)
        };
        let def = channel::channel_destination(&c);
        self.guard(&def).await.map_err(|e| match e {
            ControlError::Invalid(p) => ChannelChangeError::Invalid(
                p.into_iter()
                    .map(|p| Problem::at(url_field(&c), p.message))
                    .collect(),
            ),
            e => channel_invalid("url", e.to_string()),
        })?;
        let spec = channel_spec(&c)?;
        let now = self.clock.now_millis();
        let row = StoredAlertChannel {
            name: c.name.clone(),
            spec: Value::Object(body),
            created_at: current.map_or(now, |r| r.created_at),
            updated_at: now,
        };
        self.store
            .put_stored_alert_channel(&row, create)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => ChannelChangeError::Exists(c.name.clone()),
                e => e.into(),
            })?;
        if !self.dispatcher.update(spec.clone()) {
            let state = self
                .store
                .destination_states()
                .await?
                .remove(&spec.name)
                .unwrap_or_default();
            self.dispatcher.add(spec, state);
        }
        self.channels.put_api(c.clone());
        Ok(c)
    }

    /// `DELETE /api/v1/alert-channels/{name}`: its alerts stop at once; those
    /// queued and not yet sent stay stored, unsent (like a deleted
    /// destination's deliveries).
    pub async fn delete_channel(&self, name: &str) -> Result<(), ChannelChangeError> {
        if self.channels.is_file(name) {
            return Err(ChannelChangeError::ReadOnly);
        }
        self.store.delete_stored_alert_channel(name).await?;
        self.channels.remove_api(name);
        self.dispatcher
            .remove(&format!("{}{name}", channel::CHANNEL_PREFIX));
        Ok(())
    }

    /// The channels part of [`Registry::sync_once`]: those another node made,
    /// changed or deleted (`seen` by their destination's name).
    async fn sync_channels(&self, seen: &mut HashMap<String, Millis>) {
        let rows = match self.store.stored_alert_channels().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(error = %e, "the stored alert channels were not read; the previous ones stay");
                return;
            }
        };
        for row in &rows {
            let dest = format!("{}{}", channel::CHANNEL_PREFIX, row.name);
            if self.channels.is_file(&row.name) || seen.get(&dest) == Some(&row.updated_at) {
                continue;
            }
            seen.insert(dest, row.updated_at);
            match stored_channel(row) {
                Ok((c, spec)) => {
                    if !self.dispatcher.update(spec.clone()) {
                        self.dispatcher.add(spec, Default::default());
                    }
                    self.channels.put_api(c);
                }
                Err(e) => {
                    tracing::error!(channel = %row.name, error = %e, "a stored alert channel could not be loaded");
                }
            }
        }
        for name in self.channels.api_names() {
            if !rows.iter().any(|r| r.name == name) {
                let dest = format!("{}{name}", channel::CHANNEL_PREFIX);
                self.channels.remove_api(&name);
                self.dispatcher.remove(&dest);
                seen.remove(&dest);
            }
        }
    }
}

/// The field a channel's URL problem is at: Telegram's is `api_url`.
fn url_field(c: &AlertChannel) -> &'static str {
    match c.format {
        channel::ChannelKind::Telegram => "api_url",
        _ => "url",
    }
}

fn channel_invalid(path: &str, message: impl Into<String>) -> ChannelChangeError {
    ChannelChangeError::Invalid(vec![Problem::at(path, message)])
}

/// The spec of a checked channel's destination. Its checks came first; the
/// URL may hold a token, so the error never quotes it.
fn channel_spec(c: &AlertChannel) -> Result<DestinationSpec, ChannelChangeError> {
    compile::destination(&channel::channel_destination(c), Origin::Channel).map_err(|_| {
        channel_invalid(
            url_field(c),
            "the channel's URL cannot be used to deliver its alerts",
        )
    })
}

/// A stored channel and its destination's spec.
fn stored_channel(
    row: &StoredAlertChannel,
) -> Result<(AlertChannel, DestinationSpec), ChannelChangeError> {
    let obj = row
        .spec
        .as_object()
        .ok_or_else(|| channel_invalid("", "the stored spec is not a JSON object"))?;
    let c = channel::from_json(obj).map_err(ChannelChangeError::Invalid)?;
    let spec = channel_spec(&c)?;
    Ok((c, spec))
}

/// Reads and checks an API definition (a request body or a stored row).
fn parse(obj: &Map<String, Value>) -> Result<DestinationDef, ControlError> {
    let d: DestinationDef =
        serde_json::from_value(Value::Object(obj.clone())).map_err(|e| json_problem(&e))?;
    let problems = validate::destination(&d, Origin::Api);
    if !problems.is_empty() {
        return Err(ControlError::Invalid(problems));
    }
    Ok(d)
}

/// A JSON error in the words the config uses (a suggestion for a misspelt key,
/// never the value found), at the field it names when it names one.
fn json_problem(e: &serde_json::Error) -> ControlError {
    let message = e.to_string();
    // serde_json appends " at line 1 column 2"; a value has no lines worth naming.
    let message = message
        .rfind(" at line ")
        .map_or(message.as_str(), |i| &message[..i]);
    let field = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next())
        .unwrap_or("");
    ControlError::invalid(field, crate::config::reword(message))
}

/// Compiles a checked API definition.
fn compile_api(d: &DestinationDef) -> Result<DestinationSpec, ControlError> {
    compile::destination(d, Origin::Api).map_err(|e| ControlError::invalid("", e.to_string()))
}

/// The script of a stored API transformation.
fn stored_script(t: &StoredTransform) -> Result<Script, TransformChangeError> {
    let obj = t.spec.as_object().ok_or_else(|| {
        TransformChangeError::Invalid(vec![validate::Problem::at(
            "",
            "the stored spec is not a JSON object",
        )])
    })?;
    let fields = ApiTransform::parse(obj).map_err(TransformChangeError::Invalid)?;
    Ok(fields
        .def(&t.name)
        .map_err(TransformChangeError::Invalid)?
        .script())
}

/// The spec of a stored API destination.
fn stored_spec(sd: &StoredDestination) -> Result<DestinationSpec, ControlError> {
    let obj = sd
        .spec
        .as_object()
        .ok_or_else(|| ControlError::invalid("", "the stored spec is not a JSON object"))?;
    compile_api(&parse(obj)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    async fn node(store: Arc<dyn Store>) -> Arc<Registry> {
        let clock: SharedClock = Arc::new(SystemClock);
        let dispatcher = Dispatcher::for_tests(store.clone(), clock.clone());
        Arc::new(
            Registry::load(store, dispatcher, clock, &[], &[], true, HashSet::new())
                .await
                .unwrap(),
        )
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn api_targets(r: &Registry) -> Vec<String> {
        let mut names: Vec<String> = r
            .dispatcher
            .all()
            .iter()
            .map(|h| h.spec().name.clone())
            .collect();
        names.sort();
        names
    }

    /// Two registries over one store, as two nodes: what one makes, changes and
    /// deletes, the other takes in on its next sync pass.
    #[tokio::test]
    async fn a_second_node_follows_changes_on_its_next_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::sqlite::SqliteStore::open(dir.path().join("db.sqlite")).unwrap(),
        );
        let (a, b) = (node(store.clone()).await, node(store.clone()).await);
        let mut seen = HashMap::new();

        a.create(body(
            json!({"name": "x", "url": "http://127.0.0.1:1/", "event_types": ["lead.*"]}),
        ))
        .await
        .unwrap();
        b.sync_once(&mut seen).await;
        assert_eq!(api_targets(&b), ["x"]);
        assert_eq!(
            b.dispatcher.get("x").unwrap().spec().event_types,
            ["lead.*"]
        );

        a.patch("x", body(json!({"max_in_flight": 3})))
            .await
            .unwrap();
        a.set_paused("x", true).await.unwrap();
        b.sync_once(&mut seen).await;
        let h = b.dispatcher.get("x").unwrap();
        assert_eq!(h.spec().max_in_flight, 3);
        assert!(h.state().paused);

        a.delete("x").await.unwrap();
        b.sync_once(&mut seen).await;
        assert!(api_targets(&b).is_empty());
        store.close().await;
    }

    /// An alert channel made on one node runs on the other after its sync
    /// (with its destination), changes there and goes there; a URL that is not
    /// public is refused without `allow_private_destinations`.
    #[tokio::test]
    async fn alert_channels_follow_across_nodes_and_are_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::sqlite::SqliteStore::open(dir.path().join("db.sqlite")).unwrap(),
        );
        let (a, b) = (node(store.clone()).await, node(store.clone()).await);
        let mut seen = HashMap::new();
        let ops = |url: &str| body(json!({"name": "ops", "format": "slack", "url": url}));
        a.put_channel(None, ops("http://127.0.0.1:1/a"))
            .await
            .unwrap();
        b.sync_once(&mut seen).await;
        assert_eq!(b.channels().all()[0].name, "ops");
        let h = b.dispatcher.get("alerts.ops").unwrap();
        assert_eq!(h.spec().origin, Origin::Channel);
        assert_eq!(h.spec().url.as_str(), "http://127.0.0.1:1/a");
        // Never routed, and not the destinations' calls to change.
        let headers = http::HeaderMap::new();
        let routed = b.route_table().unwrap().deliveries(
            crate::config::API_SOURCE,
            Some("any.event"),
            &crate::select::Inbound::new(&headers, None, b"{}"),
            0,
            &Default::default(),
            &|_| Duration::ZERO,
        );
        assert!(routed.is_empty(), "{routed:?}");
        assert!(matches!(
            b.delete("alerts.ops").await,
            Err(ControlError::Channel(c)) if c == "ops"
        ));

        a.put_channel(Some("ops"), ops("http://127.0.0.1:1/b"))
            .await
            .unwrap();
        b.sync_once(&mut seen).await;
        let h = b.dispatcher.get("alerts.ops").unwrap();
        assert_eq!(h.spec().url.as_str(), "http://127.0.0.1:1/b");

        a.delete_channel("ops").await.unwrap();
        b.sync_once(&mut seen).await;
        assert!(b.channels().all().is_empty());
        assert!(b.dispatcher.get("alerts.ops").is_none());

        let clock: SharedClock = Arc::new(SystemClock);
        let guarded = Registry::load(
            store.clone(),
            Dispatcher::for_tests(store.clone(), clock.clone()),
            clock,
            &[],
            &[],
            false,
            HashSet::new(),
        )
        .await
        .unwrap();
        let err = guarded
            .put_channel(None, ops("http://127.0.0.1:1/a"))
            .await
            .unwrap_err();
        let ChannelChangeError::Invalid(p) = err else {
            panic!("{err:?}")
        };
        assert_eq!(p[0].pointer(), "/url");
        assert!(p[0].message.contains("non-public"), "{}", p[0].message);
        store.close().await;
    }

    #[tokio::test]
    async fn problems_come_back_with_their_pointers() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::sqlite::SqliteStore::open(dir.path().join("db.sqlite")).unwrap(),
        );
        let r = node(store.clone()).await;
        let err = r
            .create(body(
                json!({"name": "a b", "url": "ftp://x", "timeout": "0s"}),
            ))
            .await
            .unwrap_err();
        let ControlError::Invalid(p) = err else {
            panic!("{err:?}")
        };
        let pointers: Vec<String> = p.iter().map(Problem::pointer).collect();
        assert_eq!(pointers, ["/name", "/url", "/timeout"]);
        // JSON errors are worded as the config's, without the value found.
        let err = r
            .create(body(
                json!({"name": "d", "url": "http://127.0.0.1/", "max_inflight": 3}),
            ))
            .await
            .unwrap_err();
        let ControlError::Invalid(p) = err else {
            panic!("{err:?}")
        };
        assert_eq!(p[0].pointer(), "/max_inflight");
        assert_eq!(
            p[0].message,
            "unknown key \"max_inflight\", did you mean \"max_in_flight\"?"
        );
        let err = r
            .create(body(
                json!({"name": "d", "url": "http://127.0.0.1/", "headers": "hunter2"}),
            ))
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        store.close().await;
    }
}
