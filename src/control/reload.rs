//! Live reload (SIGHUP, `POST /api/v1/reload`): the config file the gateway was
//! started with is read and checked again, exactly as `hookgate check` does, and
//! what changed is applied without stopping anything.
//!
//! - A file that fails the check, or whose sources or destinations cannot be
//!   built, is refused with every error; nothing changes.
//! - Sources (verifiers, secrets, limits, answers) and the ingest limits are
//!   swapped whole ([`Live`]): a request in progress finishes with the source it
//!   started with. An unchanged source is kept as it is, rate limiter and all.
//! - Config-file destinations and routes go through [`Registry::reload_file`];
//!   API destinations are untouched.
//! - Admin tokens, the retention and the other settings read per request
//!   follow the running config ([`Live<Config>`]).
//! - Settings fixed at start (listeners, the store, timeouts of the listeners)
//!   keep their running value; the answer and the log line name them as
//!   needing a restart. So does turning TLS on or off for a listener; new
//!   certificate paths apply.
//! - Hooks given to [`Reloader::on_every_reload`] run after every reload that
//!   is not refused, changed or not: the listeners' certificates are read
//!   again there (a renewed certificate at the same path changes no setting).
//!
//! Every outcome is logged and counted (`hookgate_config_reloads_total`).

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

use super::registry::{FileRefused, Registry};
use crate::config::{self, Config, ConfigError, ConfigErrors, Live, RouteDef};
use crate::ingest::http::Settings;
use crate::store::StoreError;
use crate::telemetry::events::{ConfigReloadRefused, ConfigReloaded};

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gateway was given its config as text, not as a file.
    #[error("this gateway was not started from a config file, so there is nothing to reload")]
    NoFile,
    /// The file has problems (every one, as `hookgate check` prints them).
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The store could not be read (the saved states of new destinations).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Names added, removed and changed, in the file's order.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Named {
    /// New in the file.
    pub added: Vec<String>,
    /// No longer in the file.
    pub removed: Vec<String>,
    /// In both, with other settings.
    pub changed: Vec<String>,
}

impl Named {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// `source `a` added, source `b` removed`
    fn describe(&self, what: &str, out: &mut Vec<String>) {
        for (names, how) in [
            (&self.added, "added"),
            (&self.removed, "removed"),
            (&self.changed, "changed"),
        ] {
            out.extend(names.iter().map(|n| format!("{what} `{n}` {how}")));
        }
    }
}

/// What a reload changes: names and setting paths, never a value.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Changes {
    /// `[[sources]]` by name.
    pub sources: Named,
    /// `[[destinations]]` of the file by name.
    pub destinations: Named,
    /// `[[routes]]`, each as `source → to` (a route has no name; a changed one
    /// is one removed and one added).
    pub routes: Named,
    /// `[[transforms]]` by name (a changed script counts as changed).
    pub transforms: Named,
    /// `server.*` and `storage.*` settings applied (`server.admin_tokens`).
    pub settings: Vec<&'static str>,
    /// Settings changed in the file that keep their running value until a
    /// restart (answered beside the changes, not among them).
    #[serde(skip)]
    pub needs_restart: Vec<&'static str>,
    /// What still runs but may not be meant: an API destination routed from a
    /// source the reload removed (also logged as warnings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Changes {
    /// One line for people: `source `a` added, 1 route removed`, or `nothing
    /// changed`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        self.sources.describe("source", &mut parts);
        self.destinations.describe("destination", &mut parts);
        self.routes.describe("route", &mut parts);
        self.transforms.describe("transform", &mut parts);
        parts.extend(self.settings.iter().map(|s| format!("{s} changed")));
        if parts.is_empty() {
            "nothing changed".to_string()
        } else {
            parts.join(", ")
        }
    }

    fn is_empty(&self) -> bool {
        self.sources.is_empty()
            && self.destinations.is_empty()
            && self.routes.is_empty()
            && self.transforms.is_empty()
            && self.settings.is_empty()
    }
}

/// Settings fixed while running: when the file changes one, `new` gets the
/// running value back (so the running config says what runs) and its name is
/// pushed to `out`.
macro_rules! keep_running {
    ($old:ident, $new:ident, $out:ident; $($sec:ident . $field:ident),+ $(,)?) => {
        $(if $old.$sec.$field != $new.$sec.$field {
            $out.push(concat!(stringify!($sec), ".", stringify!($field)));
            $new.$sec.$field = $old.$sec.$field.clone();
        })+
    };
}

/// Settings read per request or per pass: pushed to `out` when they differ.
macro_rules! applied {
    ($old:ident, $new:ident, $out:ident; $($sec:ident . $field:ident),+ $(,)?) => {
        $(if $old.$sec.$field != $new.$sec.$field {
            $out.push(concat!(stringify!($sec), ".", stringify!($field)));
        })+
    };
}

/// `[[alerts]]` is read at start: a changed one keeps the running channels and
/// their destinations, and is named as needing a restart.
fn keep_alerts(old: &Config, new: &mut Config, needs_restart: &mut Vec<&'static str>) {
    use crate::config::alerts::{is_channel_destination, AlertChannel};
    let unplaced = |a: &[AlertChannel]| -> Vec<AlertChannel> {
        a.iter()
            .map(|c| AlertChannel {
                spans: Default::default(),
                ..c.clone()
            })
            .collect()
    };
    if unplaced(&old.alerts) == unplaced(&new.alerts) {
        return;
    }
    needs_restart.push("alerts");
    new.alerts.clone_from(&old.alerts);
    new.destinations
        .retain(|d| !is_channel_destination(&d.name));
    new.destinations.extend(
        old.destinations
            .iter()
            .filter(|d| is_channel_destination(&d.name))
            .cloned(),
    );
}

/// What differs between the running config and the file's new one. Settings
/// that cannot change while running are set back to their running values in
/// `new` and listed in [`Changes::needs_restart`].
pub fn diff(old: &Config, new: &mut Config) -> Changes {
    let mut needs_restart = Vec::new();
    keep_running!(old, new, needs_restart;
        server.listen, server.admin_listen, server.allow_private_destinations,
        server.read_timeout, server.shutdown_grace, server.admin_max_connections,
        server.console_url,
        storage.backend, storage.path, storage.url, storage.pool_size, storage.max_size,
        storage.connect_timeout, storage.query_timeout, storage.slow_query, storage.lease_margin,
        telemetry.otlp_endpoint, telemetry.sample_ratio, telemetry.service_name,
    );
    keep_alerts(old, new, &mut needs_restart);
    let mut settings = Vec::new();
    for (name, was, now) in [
        ("server.tls", &old.server.tls, &mut new.server.tls),
        (
            "server.admin_tls",
            &old.server.admin_tls,
            &mut new.server.admin_tls,
        ),
    ] {
        if was.is_some() != now.is_some() {
            // The listener's kind (plain or TLS) is fixed at start.
            needs_restart.push(name);
            now.clone_from(was);
        } else if was != now {
            settings.push(name);
        }
    }
    applied!(old, new, settings;
        server.admin_tokens, server.admin_read_tokens, server.trusted_proxies,
        server.max_body, storage.retention, storage.max_pending, storage.max_waiting,
        storage.max_waiting_bytes,
    );
    let sources = named(
        &old.sources,
        &new.sources,
        |s| s.name.get_ref().as_str(),
        |a, b| {
            let (mut a, mut b) = (a.clone(), b.clone());
            (a.spans, b.spans) = Default::default();
            a == b
        },
    );
    let destinations = named(
        &old.destinations,
        &new.destinations,
        |d| d.name.as_str(),
        |a, b| {
            let (mut a, mut b) = (a.clone(), b.clone());
            (a.spans, b.spans) = Default::default();
            a == b
        },
    );
    Changes {
        sources,
        destinations,
        routes: routes(&old.routes, &new.routes),
        transforms: named(
            &old.transforms,
            &new.transforms,
            |t| t.name.as_str(),
            |a, b| a.text() == b.text() && a.limits() == b.limits(),
        ),
        settings,
        needs_restart,
        warnings: Vec::new(),
    }
}

/// Added, removed and changed entries of two named lists.
fn named<T>(
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
    same: impl Fn(&T, &T) -> bool,
) -> Named {
    let mut n = Named::default();
    for b in new {
        match old.iter().find(|a| name(a) == name(b)) {
            None => n.added.push(name(b).to_string()),
            Some(a) if !same(a, b) => n.changed.push(name(b).to_string()),
            Some(_) => {}
        }
    }
    for a in old {
        if !new.iter().any(|b| name(a) == name(b)) {
            n.removed.push(name(a).to_string());
        }
    }
    n
}

/// Routes removed and added (as a multiset: two equal routes count twice).
fn routes(old: &[RouteDef], new: &[RouteDef]) -> Named {
    let plain = |r: &RouteDef| {
        let mut r = r.clone();
        r.spans = Default::default();
        r
    };
    let (old, new): (Vec<_>, Vec<_>) = (
        old.iter().map(plain).collect(),
        new.iter().map(plain).collect(),
    );
    let mut left = old.clone();
    let mut added = Vec::new();
    for r in &new {
        match left.iter().position(|o| o == r) {
            Some(i) => {
                left.remove(i);
            }
            None => added.push(describe_route(r)),
        }
    }
    Named {
        added,
        removed: left.iter().map(describe_route).collect(),
        changed: Vec::new(),
    }
}

/// `app → svc, archive` (with its event types unless all).
fn describe_route(r: &RouteDef) -> String {
    let mut s = format!(
        "{} → {}",
        r.source.get_ref(),
        r.to.get_ref().names().join(", ")
    );
    if r.event_types.iter().any(|t| t != "*") {
        s.push_str(&format!(" [{}]", r.event_types.join(", ")));
    }
    s
}

/// Called with the new config once a reload is applied (wiring for parts
/// above the control plane, such as the console's sampler).
pub type AfterApply = Box<dyn Fn(&Config) + Send + Sync>;

/// Reloads the config file into the running gateway; see the module docs.
pub struct Reloader {
    config: Arc<Live<Config>>,
    ingest: Arc<Live<Settings>>,
    registry: Arc<Registry>,
    after: Vec<AfterApply>,
    every: Vec<AfterApply>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// A reloader of the running `config` (whose `file` it reads again), the
    /// ingest settings and the registry's file destinations and routes.
    pub fn new(
        config: Arc<Live<Config>>,
        ingest: Arc<Live<Settings>>,
        registry: Arc<Registry>,
    ) -> Self {
        Reloader {
            config,
            ingest,
            registry,
            after: Vec::new(),
            every: Vec::new(),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// Also calls `f` with each config applied.
    pub fn after_apply(mut self, f: AfterApply) -> Self {
        self.after.push(f);
        self
    }

    /// Also calls `f` with the running config after every reload that is not
    /// refused, even one that changed nothing (files the config names, such
    /// as certificates, may have changed).
    pub fn on_every_reload(mut self, f: AfterApply) -> Self {
        self.every.push(f);
        self
    }

    /// Reads the file again and applies it; logs and counts the outcome.
    pub async fn reload(&self) -> Result<Changes, ReloadError> {
        let _one = self.one_at_a_time.lock().await;
        match self.apply().await {
            Ok(changes) => {
                ConfigReloaded {
                    changes: &changes.summary(),
                    needs_restart: &changes.needs_restart,
                }
                .emit();
                let running = self.config.load();
                for f in &self.every {
                    f(&running);
                }
                Ok(changes)
            }
            Err(e) => {
                let errors: Vec<String> = match &e {
                    ReloadError::Invalid(errs) => errs.0.iter().map(|e| e.to_string()).collect(),
                    e => vec![e.to_string()],
                };
                ConfigReloadRefused { errors: &errors }.emit();
                Err(e)
            }
        }
    }

    async fn apply(&self) -> Result<Changes, ReloadError> {
        let old = self.config.load();
        let path = old.file.clone().ok_or(ReloadError::NoFile)?;
        let mut new = config::load(&path).map_err(ReloadError::Invalid)?;
        new.storage.adopt = old.storage.adopt;
        let changes = diff(&old, &mut new);
        let file = path.display().to_string();
        let refused = |messages: Vec<String>| {
            ReloadError::Invalid(ConfigErrors(
                messages
                    .into_iter()
                    .map(|message| ConfigError {
                        file: file.clone(),
                        line: None,
                        col: None,
                        message,
                    })
                    .collect(),
            ))
        };
        if changes.is_empty() {
            return Ok(changes);
        }
        for w in config::warnings(&new) {
            tracing::warn!("{}: {w}", file);
        }
        let running = self.ingest.load();
        let rebuild_all = old.storage.retention != new.storage.retention;
        let keep: HashSet<&str> = new
            .sources
            .iter()
            .map(|s| s.name.get_ref().as_str())
            .filter(|n| !rebuild_all && !changes.sources.changed.iter().any(|c| c == n))
            .collect();
        let settings = Settings::build(
            &new,
            &|s| {
                let name = s.name.get_ref().as_str();
                keep.contains(name)
                    .then(|| running.sources.get(name).cloned())
                    .flatten()
            },
            Some(&running),
        )
        .map_err(|e| refused(vec![e.to_string()]))?;
        let changed: HashSet<String> = changes.destinations.changed.iter().cloned().collect();
        let source_names = new
            .sources
            .iter()
            .map(|s| s.name.get_ref().clone())
            .collect();
        let orphans = self
            .registry
            .reload_file(&new.destinations, &changed, &new.routes, source_names)
            .await
            .map_err(|e| match e {
                FileRefused::Invalid(problems) => refused(problems),
                FileRefused::Store(e) => ReloadError::Store(e),
            })?;
        for w in &orphans {
            tracing::warn!("{}: {w}", file);
        }
        self.registry.transforms().replace(&new.transforms);
        let mut changes = changes;
        changes.warnings = orphans;
        self.ingest.store(Arc::new(settings));
        let new = Arc::new(new);
        self.config.store(new.clone());
        for f in &self.after {
            f(&new);
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        config::parse(text, "t.toml", &|_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_changed_alert_channel_keeps_running_and_needs_a_restart() {
        let channel = |url: &str| {
            format!("{BASE}\n[[alerts]]\nname = \"ops\"\nformat = \"slack\"\nurl = \"{url}\"\n")
        };
        let old = cfg(&channel("http://127.0.0.1:2/a"));
        // Moved within the file only: nothing changes.
        let mut same = cfg(&format!("\n\n{}", channel("http://127.0.0.1:2/a")));
        assert!(!diff(&old, &mut same).needs_restart.contains(&"alerts"));
        let mut new = cfg(&channel("http://127.0.0.1:2/b"));
        let c = diff(&old, &mut new);
        assert!(c.needs_restart.contains(&"alerts"));
        assert_eq!(new.alerts, old.alerts);
        let url = |c: &Config| {
            c.destinations
                .iter()
                .find(|d| d.name == "alerts.ops")
                .and_then(|d| d.url.clone())
        };
        assert_eq!(url(&new).as_deref(), Some("http://127.0.0.1:2/a"));
        assert!(c.destinations.changed.is_empty());
    }

    const BASE: &str = r#"
[server]
admin_tokens = ["a"]

[[sources]]
name = "app"
verify = { type = "bearer", secret = "s1" }

[[sources]]
name = "gone"

[[destinations]]
name = "svc"
url = "http://127.0.0.1:1/"

[[routes]]
source = "app"
to = "svc"
"#;

    #[test]
    fn nothing_changed_when_only_positions_moved() {
        let old = cfg(BASE);
        let mut new = cfg(&format!("\n\n# moved\n{BASE}"));
        let c = diff(&old, &mut new);
        assert_eq!(c, Changes::default());
        assert_eq!(c.summary(), "nothing changed");
    }

    #[test]
    fn names_what_changed_and_never_a_value() {
        let old = cfg(BASE);
        let text = BASE
            .replace("\"s1\"", "\"s2-secret\"")
            .replace("admin_tokens = [\"a\"]", "admin_tokens = [\"b-token\"]\nlisten = \"127.0.0.1:9\"")
            .replace("[[sources]]\nname = \"gone\"\n", "[[sources]]\nname = \"new\"\n")
            + "\n[[destinations]]\nname = \"extra\"\nurl = \"http://127.0.0.1:2/\"\n\n[[routes]]\nsource = \"app\"\nto = \"extra\"\nevent_types = [\"order.*\"]\n";
        let mut new = cfg(&text);
        let c = diff(&old, &mut new);
        assert_eq!(c.sources.added, ["new"]);
        assert_eq!(c.sources.removed, ["gone"]);
        assert_eq!(c.sources.changed, ["app"]);
        assert_eq!(c.destinations.added, ["extra"]);
        assert!(c.destinations.changed.is_empty());
        assert_eq!(c.routes.added, ["app → extra [order.*]"]);
        assert!(c.routes.removed.is_empty());
        assert_eq!(c.settings, ["server.admin_tokens"]);
        assert_eq!(c.needs_restart, ["server.listen"]);
        // The running listener is kept in the config that runs.
        assert_eq!(new.server.listen, old.server.listen);
        let summary = c.summary();
        assert!(summary.contains("source `app` changed"), "{summary}");
        assert!(
            summary.contains("route `app → extra [order.*]` added"),
            "{summary}"
        );
        let json = serde_json::to_string(&c).unwrap();
        for secret in ["s2-secret", "b-token"] {
            assert!(
                !summary.contains(secret) && !json.contains(secret),
                "{json}"
            );
        }
    }

    #[test]
    fn a_changed_route_is_one_removed_and_one_added_and_destinations_change() {
        let old = cfg(BASE);
        let text = BASE
            .replace("to = \"svc\"", "to = \"svc\"\npriority = \"high\"")
            .replace(
                "url = \"http://127.0.0.1:1/\"",
                "url = \"http://127.0.0.1:1/\"\nmax_in_flight = 3",
            );
        let mut new = cfg(&text);
        let c = diff(&old, &mut new);
        assert_eq!(c.routes.added, ["app → svc"]);
        assert_eq!(c.routes.removed, ["app → svc"]);
        assert_eq!(c.destinations.changed, ["svc"]);
        assert!(c.sources.is_empty() && c.settings.is_empty() && c.needs_restart.is_empty());
    }

    #[test]
    fn tls_paths_apply_and_turning_tls_on_needs_a_restart() {
        let with = |s: &str| cfg(&BASE.replace("[server]\n", &format!("[server]\n{s}\n")));
        let old = with("tls = { cert = \"a.pem\", key = \"a.key\" }");
        let mut new = with("tls = { cert = \"b.pem\", key = \"b.key\" }\nadmin_tls = { cert = \"c.pem\", key = \"c.key\" }");
        let c = diff(&old, &mut new);
        assert_eq!(c.settings, ["server.tls"]);
        assert_eq!(c.needs_restart, ["server.admin_tls"]);
        assert!(
            new.server.admin_tls.is_none(),
            "the admin listener stays plain"
        );
        assert_eq!(
            new.server.tls.as_ref().unwrap().cert.to_str(),
            Some("b.pem")
        );
    }

    #[test]
    fn store_settings_need_a_restart_and_limits_apply() {
        let old = cfg(BASE);
        let text = BASE.replace(
            "[server]\n",
            "[storage]\npath = \"/elsewhere.db\"\npool_size = 3\nmax_pending = 5\n\n[server]\nmax_body = \"2MiB\"\n",
        );
        let mut new = cfg(&text);
        let c = diff(&old, &mut new);
        assert_eq!(c.needs_restart, ["storage.path", "storage.pool_size"]);
        assert_eq!(c.settings, ["server.max_body", "storage.max_pending"]);
        assert_eq!(new.storage.path, old.storage.path);
        assert_eq!(new.storage.max_pending, 5);
    }
}
