//! The transformations at run time: the scripts by name (the config file's,
//! swapped whole by a reload), and which one a delivery runs through — its
//! route's, found again in the current route table as ingest chose the route,
//! else its destination's. The dispatcher asks through
//! [`TransformLookup`]; the scripts are compiled by the engine's threads.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use parking_lot::RwLock;

use crate::config::TransformDef;
use crate::dispatch::destination::DestinationSpec;
use crate::dispatch::transform::TransformLookup;
use crate::ingest::route::Routing;
use crate::select::Inbound;
use crate::store::{decode_headers, StoredMessage};
use crate::transform::request::PATH_HEADER;
use crate::transform::{Engine, Script};

/// The scripts by name, and the routes that name them.
pub struct Transforms {
    scripts: RwLock<HashMap<String, Arc<Script>>>,
    routing: Arc<Routing>,
    engine: Arc<Engine>,
}

impl Transforms {
    /// None yet, over this route table.
    pub fn new(routing: Arc<Routing>) -> Self {
        Transforms {
            scripts: RwLock::new(HashMap::new()),
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

    /// The script named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Script>> {
        self.scripts.read().get(name).cloned()
    }

    /// Every script, by name.
    pub fn all(&self) -> Vec<Arc<Script>> {
        let mut v: Vec<_> = self.scripts.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
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
