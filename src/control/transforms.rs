//! The transformations at run time: the scripts by name (the config file's,
//! swapped whole by a reload), and which one a delivery runs through — its
//! route's, found again in the current route table as ingest chose the route,
//! else its destination's. The dispatcher asks through
//! [`TransformLookup`]; the scripts are compiled by the engine's threads.
//!
//! Transformations created through the API are kept apart from the config
//! file's (which a reload swaps whole and the API may not change); a name in
//! both is the config file's.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::check::Problem;
use crate::config::{Dur, Size, TransformDef};
use crate::dispatch::destination::DestinationSpec;
use crate::dispatch::transform::TransformLookup;
use crate::ingest::route::Routing;
use crate::select::Inbound;
use crate::store::{decode_headers, StoredMessage};
use crate::transform::request::PATH_HEADER;
use crate::transform::{Engine, Script};

/// The scripts by name, and the routes that name them.
pub struct Transforms {
    /// The config file's.
    scripts: RwLock<HashMap<String, Arc<Script>>>,
    /// Those created through the API (kept in the store).
    api: RwLock<HashMap<String, Arc<Script>>>,
    routing: Arc<Routing>,
    engine: Arc<Engine>,
}

impl Transforms {
    /// None yet, over this route table.
    pub fn new(routing: Arc<Routing>) -> Self {
        Transforms {
            scripts: RwLock::new(HashMap::new()),
            api: RwLock::new(HashMap::new()),
            routing,
            engine: Engine::for_machine(),
        }
    }

    /// The pool that runs the scripts (its threads start at the first run).
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Replaces the scripts with those of `defs` (the config file's).
    pub fn replace(&self, defs: &[TransformDef]) {
        let scripts = defs
            .iter()
            .map(|d| (d.name.clone(), Arc::new(d.script())))
            .collect();
        *self.scripts.write() = scripts;
    }

    /// The script named `name` (the config file's first).
    pub fn get(&self, name: &str) -> Option<Arc<Script>> {
        let file = self.scripts.read().get(name).cloned();
        file.or_else(|| self.api.read().get(name).cloned())
    }

    /// Whether `name` is defined in the config file (read-only through the API).
    pub fn is_file(&self, name: &str) -> bool {
        self.scripts.read().contains_key(name)
    }

    /// Every script, by name.
    pub fn all(&self) -> Vec<Arc<Script>> {
        let file = self.scripts.read();
        let mut v: Vec<_> = file.values().cloned().collect();
        v.extend(
            self.api
                .read()
                .values()
                .filter(|s| !file.contains_key(&s.name))
                .cloned(),
        );
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Adds or replaces a transformation created through the API.
    pub fn put_api(&self, script: Arc<Script>) {
        self.api.write().insert(script.name.clone(), script);
    }

    /// Removes a transformation created through the API.
    pub fn remove_api(&self, name: &str) {
        self.api.write().remove(name);
    }

    /// Replaces the API's transformations with `scripts` (what the store holds).
    pub fn set_api(&self, scripts: Vec<Arc<Script>>) {
        let mut api = self.api.write();
        // Unchanged scripts keep their Arc (and so their place in no cache: the
        // engine keys compiled scripts by name and version).
        *api = scripts.into_iter().map(|s| (s.name.clone(), s)).collect();
    }

    /// The name of the transformation a delivery of `msg` to `spec` runs
    /// through: its route's, else its destination's.
    pub fn name_for(&self, msg: &StoredMessage, spec: &DestinationSpec) -> Option<String> {
        let table = self.routing.current();
        if table.has_transforms(&msg.source) {
            let stored = decode_headers(&msg.headers);
            let mut headers = HeaderMap::with_capacity(stored.len());
            let mut query = None;
            for (k, v) in &stored {
                if k == PATH_HEADER {
                    query = std::str::from_utf8(v)
                        .ok()
                        .and_then(|t| t.split_once('?'))
                        .map(|(_, q)| q.to_string());
                }
                if let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_bytes(v),
                ) {
                    headers.append(k, v);
                }
            }
            let inbound = Inbound::new(&headers, query.as_deref(), &msg.body);
            if let Some(n) =
                table.transform_for(&msg.source, msg.event_type.as_deref(), &inbound, &spec.name)
            {
                return Some(n.to_string());
            }
        }
        spec.transform.clone()
    }
}

impl TransformLookup for Transforms {
    fn script(
        &self,
        msg: &StoredMessage,
        spec: &DestinationSpec,
    ) -> Option<Result<Arc<Script>, String>> {
        let name = self.name_for(msg, spec)?;
        Some(
            self.get(&name)
                .ok_or_else(|| format!("transform `{name}` is not defined")),
        )
    }
}

/// The fields of a transformation in the API (and in the store): `code`, and
/// the limits of a run (`PUT`: `code` required; `PATCH`: those given change).
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "function transform(request) { return request; }", "timeout_ms": 100}))]
pub struct ApiTransform {
    /// The JavaScript defining `function transform(request, context)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// How long one run may take, in milliseconds (1-10000; default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Bytes the script may use (1 MiB to 1 GiB; default 16 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
}

impl ApiTransform {
    /// The fields of a JSON object (a request body or a stored row).
    pub fn parse(obj: &Map<String, Value>) -> Result<Self, Vec<Problem>> {
        serde_json::from_value(Value::Object(obj.clone())).map_err(|e| {
            let message = e.to_string();
            let message = message
                .rfind(" at line ")
                .map_or(message.as_str(), |i| &message[..i])
                .to_string();
            vec![Problem::at("", crate::config::reword(&message))]
        })
    }

    /// The checked definition named `name` (every problem, at its field).
    pub fn def(&self, name: &str) -> Result<TransformDef, Vec<Problem>> {
        let def = TransformDef {
            name: name.to_string(),
            file: None,
            code: Some(self.code.clone().unwrap_or_default()),
            timeout: self
                .timeout_ms
                .map(|ms| Dur(std::time::Duration::from_millis(ms))),
            memory_limit: self.memory_limit.map(Size),
            loaded: None,
            spans: Default::default(),
        };
        let mut problems: Vec<Problem> = crate::config::check::transform(&def)
            .into_iter()
            .map(|p| match p.path.first().map(String::as_str) {
                // The API's name of the time limit.
                Some("timeout") => Problem::at(
                    "timeout_ms",
                    "timeout_ms must be more than 0 and at most 10000",
                ),
                _ => p,
            })
            .collect();
        if self.code.is_none() {
            problems.push(Problem::at("code", "code is required"));
        }
        if problems.is_empty() {
            Ok(def)
        } else {
            Err(problems)
        }
    }

    /// As stored: a JSON object of the fields given.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("the fields are JSON")
    }
}

/// Why a change to a transformation through the API was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransformChangeError {
    /// The fields have problems (every one, at its field).
    #[error("{}", .0.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// The script does not compile (or defines no `transform`).
    #[error("transform `{name}` does not compile: its code {error}")]
    Compile {
        /// The transformation.
        name: String,
        /// The engine's words.
        error: String,
    },
    /// A transformation of that name exists.
    #[error("a transform named `{0}` exists")]
    Exists(String),
    /// It is defined in the config file.
    #[error("this transform is defined in the config file; change it there")]
    ReadOnly,
    /// Destinations still name it.
    #[error("transform `{name}` is used by destinations {}; change them first", .by.join(", "))]
    InUse {
        /// The transformation.
        name: String,
        /// The destinations that name it.
        by: Vec<String>,
    },
    /// No transformation of that name.
    #[error("transform not found")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(crate::store::StoreError),
}

impl From<crate::store::StoreError> for TransformChangeError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::NotFound => TransformChangeError::NotFound,
            e => TransformChangeError::Store(e),
        }
    }
}
