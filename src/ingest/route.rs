//! Routing: which destinations a message goes to. Routes come from the config
//! (`[[routes]]`) and from destinations made through the API (their
//! `event_types`, for source `api`). The table is swapped whole when API
//! destinations change, so a lookup never waits for a writer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use wildmatch::WildMatch;

use crate::config::{Priority, RouteDef};
use crate::select::{Condition, FilterError, Inbound, Selector};
use crate::store::{Millis, NewDelivery};

/// A route ready to match.
#[derive(Debug, Clone)]
pub struct Route {
    event_types: Vec<WildMatch>,
    /// Whether `*` is among the patterns (it alone matches a missing event type).
    any_type: bool,
    to: Vec<String>,
    filter: Vec<Condition>,
    ordering_key: Option<Selector>,
    priority: Priority,
    delay: Duration,
    transform: Option<String>,
}

impl Route {
    /// Whether an event type matches one of the patterns. A message without an
    /// event type matches only `*`.
    fn type_matches(&self, event_type: Option<&str>) -> bool {
        match event_type {
            Some(t) => self.event_types.iter().any(|p| p.matches(t)),
            None => self.any_type,
        }
    }
}

/// A route whose filter is not a condition. The checks of the file and the API
/// refuse such a route first; a table is never built with the condition left out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("a route of source `{source_name}`: filter {index}: {error}")]
pub struct RouteError {
    /// The route's source.
    pub source_name: String,
    /// The position of the filter condition in the route.
    pub index: usize,
    /// Why it is not a condition.
    #[source]
    pub error: FilterError,
}

impl Route {
    /// Compiles a route; a filter that is not a condition refuses it.
    pub fn compile(r: &RouteDef) -> Result<Self, RouteError> {
        let filter = r
            .filter
            .iter()
            .enumerate()
            .map(|(index, f)| {
                Condition::try_from(f.get_ref().clone()).map_err(|error| RouteError {
                    source_name: r.source.get_ref().clone(),
                    index,
                    error,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Route {
            event_types: r.event_types.iter().map(|p| WildMatch::new(p)).collect(),
            any_type: r.event_types.iter().any(|p| p == "*"),
            to: r
                .to
                .get_ref()
                .names()
                .into_iter()
                .map(str::to_string)
                .collect(),
            filter,
            ordering_key: r.ordering_key.clone(),
            priority: r.priority,
            delay: r.delay.0,
            transform: r.transform.clone(),
        })
    }
}

/// Per-message overrides of the API (`priority`, `ordering_key`, `deliver_at`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces the route's priority.
    pub priority: Option<Priority>,
    /// Replaces the route's ordering key.
    pub ordering_key: Option<String>,
    /// Not before this time (replaces the route's delay).
    pub deliver_at: Option<Millis>,
}

/// All routes, by source.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_source: HashMap<String, Vec<Route>>,
}

impl RouteTable {
    /// Builds the table from routes in order (earlier routes win a destination;
    /// see [`RouteTable::deliveries`]). `control::Registry::route_table` is the
    /// one caller at run time: config routes, then those of API destinations.
    pub fn new<'a>(routes: impl IntoIterator<Item = &'a RouteDef>) -> Result<Self, RouteError> {
        let mut by_source: HashMap<String, Vec<Route>> = HashMap::new();
        for r in routes {
            by_source
                .entry(r.source.get_ref().clone())
                .or_default()
                .push(Route::compile(r)?);
        }
        Ok(RouteTable { by_source })
    }

    /// The deliveries of a message: each destination once, from the first route
    /// that sends it there. `first_delay` gives a destination's delay before its
    /// first attempt (the first entry of its retry schedule).
    pub fn deliveries(
        &self,
        source: &str,
        event_type: Option<&str>,
        req: &Inbound<'_>,
        received_at: Millis,
        overrides: &Overrides,
        first_delay: &dyn Fn(&str) -> Duration,
    ) -> Vec<NewDelivery> {
        let Some(routes) = self.by_source.get(source) else {
            return Vec::new();
        };
        let mut out: Vec<NewDelivery> = Vec::new();
        for r in routes {
            if !r.type_matches(event_type) {
                continue;
            }
            if !r.filter.iter().all(|c| c.matches(req)) {
                continue;
            }
            let key = overrides
                .ordering_key
                .clone()
                .or_else(|| r.ordering_key.as_ref().and_then(|s| req.select_key(s)));
            for to in &r.to {
                if out.iter().any(|d| &d.destination == to) {
                    continue;
                }
                let base = overrides
                    .deliver_at
                    .unwrap_or(received_at + r.delay.as_millis() as i64);
                out.push(NewDelivery {
                    destination: to.clone(),
                    due_at: base + first_delay(to).as_millis() as i64,
                    priority: overrides.priority.unwrap_or(r.priority),
                    ordering_key: key.clone(),
                });
            }
        }
        out
    }
}

impl RouteTable {
    /// Whether some route of `source` names a transformation.
    pub fn has_transforms(&self, source: &str) -> bool {
        self.by_source
            .get(source)
            .is_some_and(|rs| rs.iter().any(|r| r.transform.is_some()))
    }

    /// The transformation of the route that sends a message to `destination`
    /// (the first that does, as [`RouteTable::deliveries`] chose it), if it
    /// names one.
    pub fn transform_for(
        &self,
        source: &str,
        event_type: Option<&str>,
        req: &Inbound<'_>,
        destination: &str,
    ) -> Option<&str> {
        self.by_source
            .get(source)?
            .iter()
            .find(|r| {
                r.to.iter().any(|t| t == destination)
                    && r.type_matches(event_type)
                    && r.filter.iter().all(|c| c.matches(req))
            })?
            .transform
            .as_deref()
    }
}

/// The current route table, swappable.
#[derive(Default)]
pub struct Routing {
    table: RwLock<Arc<RouteTable>>,
}

impl Routing {
    /// Starts with a table.
    pub fn new(table: RouteTable) -> Self {
        Routing {
            table: RwLock::new(Arc::new(table)),
        }
    }

    /// The table in effect now.
    pub fn current(&self) -> Arc<RouteTable> {
        self.table.read().clone()
    }

    /// Replaces the table.
    pub fn replace(&self, table: RouteTable) {
        *self.table.write() = Arc::new(table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn table(toml_routes: &str) -> RouteTable {
        let text = format!(
            "[[sources]]\nname = \"s\"\n[[destinations]]\nname = \"a\"\nurl = \"http://x/\"\n[[destinations]]\nname = \"b\"\nurl = \"http://y/\"\n{toml_routes}"
        );
        let cfg = crate::config::parse(&text, "t", &|_| None).unwrap();
        let api = RouteDef::for_api_destination("hook", &["lead.*".into()]);
        RouteTable::new(cfg.routes.iter().chain([&api])).unwrap()
    }

    fn dests(t: &RouteTable, source: &str, et: Option<&str>, body: &str) -> Vec<String> {
        let h = HeaderMap::new();
        let req = Inbound::new(&h, None, body.as_bytes());
        t.deliveries(source, et, &req, 1000, &Overrides::default(), &|_| {
            Duration::ZERO
        })
        .into_iter()
        .map(|d| d.destination)
        .collect()
    }

    #[test]
    fn globs_filters_and_each_destination_once() {
        let t = table(
            "[[routes]]\nsource = \"s\"\nevent_types = [\"order.*\"]\nto = \"a\"\n\
             [[routes]]\nsource = \"s\"\nto = [\"a\", \"b\"]\nfilter = [{ field = \"body:/vip\", eq = true }]\n",
        );
        assert_eq!(dests(&t, "s", Some("order.created"), "{}"), vec!["a"]);
        assert_eq!(
            dests(&t, "s", Some("user.created"), "{}"),
            Vec::<String>::new()
        );
        assert_eq!(
            dests(&t, "s", Some("order.created"), r#"{"vip":true}"#),
            vec!["a", "b"]
        );
        assert_eq!(dests(&t, "s", None, r#"{"vip":true}"#), vec!["a", "b"]);
        assert_eq!(dests(&t, "s", None, "{}"), Vec::<String>::new());
        assert_eq!(dests(&t, "other", None, "{}"), Vec::<String>::new());
    }

    #[test]
    fn the_transform_is_that_of_the_route_that_chose_the_destination() {
        let t = table(
            "[[routes]]\nsource = \"s\"\nto = \"a\"\nfilter = [{ field = \"body:/vip\", eq = true }]\ntransform = \"vip\"\n\
             [[routes]]\nsource = \"s\"\nto = [\"a\", \"b\"]\ntransform = \"plain\"\n\
             [[transforms]]\nname = \"vip\"\ncode = \"x\"\n[[transforms]]\nname = \"plain\"\ncode = \"x\"\n",
        );
        let h = HeaderMap::new();
        let of = |dest: &str, body: &'static str| {
            let req = Inbound::new(&h, None, body.as_bytes());
            t.transform_for("s", None, &req, dest).map(str::to_string)
        };
        assert!(t.has_transforms("s"));
        assert!(!t.has_transforms("api"));
        assert_eq!(of("a", r#"{"vip":true}"#).as_deref(), Some("vip"));
        assert_eq!(of("a", "{}").as_deref(), Some("plain"));
        assert_eq!(of("b", r#"{"vip":true}"#).as_deref(), Some("plain"));
        assert_eq!(of("hook", "{}"), None);
    }

    #[test]
    fn a_filter_that_is_not_a_condition_refuses_the_table() {
        let no_test: crate::select::FilterSpec =
            serde_json::from_value(serde_json::json!({"field": "body:/vip"})).unwrap();
        let r = RouteDef::for_api_destination_from("hook", "s", &["*".into()], &[no_test]);
        let e = RouteTable::new([&r]).unwrap_err();
        assert_eq!(e.index, 0);
        assert_eq!(
            e.to_string(),
            "a route of source `s`: filter 0: filter on body:/vip needs one test: eq, ne, in, exists or prefix"
        );
    }

    #[test]
    fn api_destinations_route_by_event_type() {
        let t = table("");
        assert_eq!(dests(&t, "api", Some("lead.created"), "{}"), vec!["hook"]);
        assert!(dests(&t, "api", Some("order.created"), "{}").is_empty());
        assert!(dests(&t, "api", None, "{}").is_empty());
    }

    #[test]
    fn delay_priority_ordering_key_and_overrides() {
        let t = table(
            "[[routes]]\nsource = \"s\"\nto = \"a\"\ndelay = \"5s\"\npriority = \"high\"\nordering_key = \"body:/chat\"\n",
        );
        let h = HeaderMap::new();
        let req = Inbound::new(&h, None, br#"{"chat":42}"#);
        let d = t.deliveries("s", None, &req, 1000, &Overrides::default(), &|_| {
            Duration::from_secs(1)
        });
        assert_eq!(d[0].due_at, 1000 + 5000 + 1000);
        assert_eq!(d[0].priority, Priority::High);
        assert_eq!(d[0].ordering_key.as_deref(), Some("42"));
        let o = Overrides {
            priority: Some(Priority::Low),
            ordering_key: Some("k".into()),
            deliver_at: Some(99_000),
        };
        let d = t.deliveries("s", None, &req, 1000, &o, &|_| Duration::ZERO);
        assert_eq!(d[0].due_at, 99_000);
        assert_eq!(d[0].priority, Priority::Low);
        assert_eq!(d[0].ordering_key.as_deref(), Some("k"));
    }
}
