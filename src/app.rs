//! Building and running the gateway from a checked [`Config`]: open the store,
//! start the dispatcher, bind the listeners, and on shutdown stop in one order:
//! stop accepting → stop leasing → finish in-flight within the grace period →
//! release leases → flush and close the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::alerts::Alerts;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Backend, Config, Live};
use crate::console::sampler::{self, Sampler};
use crate::control::reload::{Changes, ReloadError};
use crate::control::{Registry, Reloader};
use crate::dispatch::client::DeliveryClient;
use crate::dispatch::Dispatcher;
use crate::ingest::http::{Ingest, Settings};
use crate::store::postgres::{PgOptions, PgStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;
use crate::telemetry::events::StoreCommitted;
use crate::tls::{Acceptor, Certificates};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store would not open.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// A listener would not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A destination in the config could not be compiled.
    #[error(transparent)]
    Destination(#[from] crate::control::registry::LoadError),
    /// A source in the config could not be built.
    #[error(transparent)]
    Source(#[from] crate::ingest::source::BuildError),
    /// `storage.backend = "postgres"` without `storage.url`.
    #[error("storage.backend = \"postgres\" needs storage.url")]
    NoStoreUrl,
    /// A listener's certificate or key did not load.
    #[error("cannot load the certificate of {setting}: {source}")]
    Tls {
        /// `server.tls` or `server.admin_tls`.
        setting: &'static str,
        /// Why.
        source: crate::tls::TlsError,
    },
    /// The OTLP exporter of `[telemetry]` could not be built.
    #[error(transparent)]
    Traces(#[from] crate::telemetry::trace::TraceError),
    /// The task that opens the embedded store failed.
    #[error("cannot open the store: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A running gateway.
pub struct Running {
    /// Where ingest listens.
    pub ingest_addr: SocketAddr,
    /// Where the admin listener listens.
    pub admin_addr: SocketAddr,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
    overview: Arc<Sampler>,
    reloader: Arc<Reloader>,
}

impl Running {
    /// Asks the gateway to stop.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// The console overview's sampler (tests take a point with it instead of
    /// waiting for the next one).
    pub fn overview(&self) -> &Arc<Sampler> {
        &self.overview
    }

    /// Reads the config file again and applies it (SIGHUP); the outcome is
    /// logged and counted either way.
    pub async fn reload(&self) -> Result<Changes, ReloadError> {
        self.reloader.reload().await
    }

    /// Waits until it has stopped.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// How long admin requests still running at the end of a shutdown may take.
const ADMIN_CLOSE: Duration = Duration::from_millis(150);

/// How long background tasks (sync, gauges, retention, bulk replays) may take
/// to stop once asked; the ones still running then are aborted.
const TASKS_CLOSE: Duration = Duration::from_millis(50);

/// How long a shutdown waits, after the store is closed, for the last spans
/// to be exported (tracing on only).
const TRACES_FLUSH: Duration = Duration::from_secs(2);

/// How often a node on a shared store picks up other nodes' changes.
const SYNC_EVERY: Duration = Duration::from_secs(2);

/// How much longer than `server.shutdown_grace` a shutdown may take: the
/// dispatcher's wrap-up (recording cut-off attempts, releasing their leases),
/// closing the admin listener, and flushing the store.
pub const SHUTDOWN_BOUND: Duration = Duration::from_millis(500);
const _: () = assert!(
    crate::dispatch::SHUTDOWN_WRAP_UP.as_millis()
        + ADMIN_CLOSE.as_millis()
        + TASKS_CLOSE.as_millis()
        < SHUTDOWN_BOUND.as_millis(),
    "the parts of the shutdown after the grace fit in its bound, with room for the store"
);

/// Opens the configured store.
pub async fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, StartError> {
    match cfg.storage.backend {
        Backend::Sqlite => {
            let observer = Arc::new(|elapsed, batch| StoreCommitted { elapsed, batch }.emit());
            let path = cfg.storage.path.clone();
            let opts = crate::store::sqlite::SqliteOptions {
                observer,
                max_size: cfg.storage.max_size.map(|s| s.0),
                adopt: cfg.storage.adopt,
            };
            let store =
                tokio::task::spawn_blocking(move || SqliteStore::open_opts(path, opts)).await??;
            Ok(Arc::new(store))
        }
        Backend::Postgres => {
            let url = cfg.storage.url.as_ref().ok_or(StartError::NoStoreUrl)?;
            let observer = Arc::new(|elapsed, batch| StoreCommitted { elapsed, batch }.emit());
            let store = PgStore::connect_with(
                url.expose(),
                PgOptions {
                    pool_size: cfg.storage.pool_size,
                    observer,
                    connect_timeout: cfg.storage.connect_timeout.0,
                    query_timeout: cfg.storage.query_timeout.0,
                    slow_query: cfg.storage.slow_query.0,
                    ..Default::default()
                },
            )
            .await?;
            Ok(Arc::new(store))
        }
    }
}

/// Starts the gateway; it runs until [`Running::stop`] (or the token) fires.
pub async fn start(cfg: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    // The recorder first: metrics registered before it would go nowhere.
    let metrics = crate::telemetry::metrics_handle();
    let clock: SharedClock = Arc::new(SystemClock);
    for w in crate::config::warnings(&cfg) {
        tracing::warn!("{w}");
    }
    // Bind first: a port in use is reported before anything is opened.
    let (ingest_listener, ingest_addr) = bind(cfg.server.listen.0).await?;
    let (admin_listener, admin_addr) = bind(cfg.server.admin_listen.0).await?;
    let tls = Tls::load(&cfg)?;
    let traces = crate::telemetry::trace::Traces::start(&cfg.telemetry)?;
    crate::telemetry::events::add_per_tenant_metrics(&cfg.telemetry.per_tenant_metrics);
    let store = open_store(&cfg).await?;
    let dispatcher = new_dispatcher(&cfg, &store, &clock);
    if let Some(t) = &traces {
        dispatcher.set_traces(t.clone());
    }
    let registry = Arc::new(load_registry(&cfg, &store, &dispatcher, &clock).await?);
    registry.transforms().replace(&cfg.transforms);
    dispatcher.set_transforms(crate::dispatch::transform::Transforming {
        engine: registry.transforms().engine(),
        lookup: registry.transforms(),
    });
    warn_orphans(store.as_ref(), &dispatcher).await?;
    let mut ingest = new_ingest(&cfg, &store, &dispatcher, &registry, &clock)?;
    ingest.traces = traces.clone();
    let overview = Arc::new(Sampler::new(
        metrics.clone(),
        store.clone(),
        dispatcher.clone(),
        clock.clone(),
        source_names(&cfg),
    ));
    let alerts = new_alerts(&cfg, &registry, &store, &dispatcher, &clock, admin_addr);
    alerts.set_source_counts(source_counts(&overview));
    let live = Arc::new(Live::new(cfg.clone()));
    let reloader = Arc::new(new_reloader(&live, &ingest, &registry, &overview, &tls));
    let admin_state = Arc::new(AdminState {
        store,
        dispatcher,
        registry,
        tasks: Arc::new(Tasks::new()),
        clock,
        metrics,
        live,
        reloader: reloader.clone(),
        draining: shutdown.clone(),
        ingest_addr,
        ingest_tls: tls.ingest.is_some(),
        rejects: ingest.rejects.clone(),
        alerts,
    });
    spawn_background(&cfg, &admin_state, &overview, &tls);
    log_running(&cfg, ingest_addr, admin_addr);
    let parts = Parts::serve(
        cfg.server.shutdown_grace.0,
        (ingest_listener, Arc::new(ingest), tls.ingest.clone()),
        (admin_listener, admin_state, tls.admin.clone()),
        overview.clone(),
        traces,
    );
    let done = tokio::spawn(stop_when(shutdown.clone(), parts));
    Ok(Running {
        ingest_addr,
        admin_addr,
        shutdown,
        done,
        overview,
        reloader,
    })
}

/// Compiles the config's destinations and loads the stored ones into the
/// dispatcher, with the route table of both.
async fn load_registry(
    cfg: &Config,
    store: &Arc<dyn Store>,
    dispatcher: &Arc<Dispatcher>,
    clock: &SharedClock,
) -> Result<Registry, StartError> {
    let registry = Registry::load(
        store.clone(),
        dispatcher.clone(),
        clock.clone(),
        &cfg.destinations,
        &cfg.routes,
        cfg.server.allow_private_destinations,
        source_names(cfg).into_iter().collect(),
    )
    .await?;
    registry
        .load_channels(cfg.alerts.clone())
        .await
        .map_err(crate::control::registry::LoadError::from)?;
    Ok(registry)
}

/// The reload of the config file (SIGHUP, `POST /api/v1/reload`): it also
/// tells the overview the new sources, and reads the certificates again.
fn new_reloader(
    live: &Arc<Live<Config>>,
    ingest: &Ingest,
    registry: &Arc<Registry>,
    overview: &Arc<Sampler>,
    tls: &Tls,
) -> Reloader {
    let (overview, tls) = (overview.clone(), tls.clone());
    Reloader::new(live.clone(), ingest.settings.clone(), registry.clone())
        .after_apply(Box::new(move |c| overview.set_sources(source_names(c))))
        .on_every_reload(Box::new(move |c| tls.reload(c)))
}

/// The alerts of the registry's channels (`[[alerts]]` and the API's), told
/// of the dispatcher's dead letters; links point at `server.console_url`, else
/// at the admin listener.
fn new_alerts(
    cfg: &Config,
    registry: &Registry,
    store: &Arc<dyn Store>,
    dispatcher: &Arc<Dispatcher>,
    clock: &SharedClock,
    admin_addr: SocketAddr,
) -> Arc<Alerts> {
    let scheme = if cfg.server.admin_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let console = cfg
        .server
        .console_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{admin_addr}"));
    let alerts = Alerts::new(
        registry.channels(),
        store.clone(),
        dispatcher.clone(),
        clock.clone(),
        console,
    );
    dispatcher.on_dead(alerts.hook());
    alerts
}

/// Each source's accepted and refused requests over a window, from the
/// overview's rings (one point per `sampler::EVERY`).
fn source_counts(overview: &Arc<Sampler>) -> crate::alerts::SourceCounts {
    let overview = overview.clone();
    Arc::new(move |window| {
        let since = crate::clock::now_millis() - window.as_millis() as i64;
        overview.read(|s| {
            s.sources
                .iter()
                .map(|(name, ring)| {
                    let (ok, refused) = ring
                        .iter()
                        .filter(|p| p.at > since)
                        .fold((0, 0), |(a, r), p| (a + p.received, r + p.refused));
                    (name.clone(), ok, refused)
                })
                .collect()
        })
    })
}

/// The line that says the gateway is up.
fn log_running(cfg: &Config, ingest_addr: SocketAddr, admin_addr: SocketAddr) {
    tracing::info!(
        listen = %ingest_addr,
        admin = %admin_addr,
        sources = cfg.sources.len(),
        destinations = cfg.destinations.len(),
        routes = cfg.routes.len(),
        "hookgate is running"
    );
}

/// The names of the config's sources, in its order.
fn source_names(cfg: &Config) -> Vec<String> {
    cfg.sources
        .iter()
        .map(|s| s.name.get_ref().clone())
        .collect()
}

/// The TLS of the two listeners, if configured.
#[derive(Clone)]
struct Tls {
    ingest: Option<Acceptor>,
    admin: Option<Acceptor>,
}

impl Tls {
    /// Loads the certificates: `http/1.1` on ingest (what providers speak),
    /// `h2` and `http/1.1` on the admin listener.
    fn load(cfg: &Config) -> Result<Self, StartError> {
        let one = |setting: &'static str, t: &Option<crate::config::TlsConfig>, alpn| {
            t.as_ref()
                .map(|t| {
                    Certificates::load(setting, t.files())
                        .map(|c| Acceptor::new(c, alpn))
                        .map_err(|source| StartError::Tls { setting, source })
                })
                .transpose()
        };
        Ok(Tls {
            ingest: one("server.tls", &cfg.server.tls, &[b"http/1.1"])?,
            admin: one(
                "server.admin_tls",
                &cfg.server.admin_tls,
                &[b"h2", b"http/1.1"],
            )?,
        })
    }

    fn certificates(&self) -> impl Iterator<Item = Arc<Certificates>> + '_ {
        [&self.ingest, &self.admin]
            .into_iter()
            .flatten()
            .map(|a| a.certificates.clone())
    }

    /// Reads the certificates again, from the paths of the running config
    /// (a failure is logged, and the running certificate stays).
    fn reload(&self, cfg: &Config) {
        for (acceptor, t) in [
            (&self.ingest, &cfg.server.tls),
            (&self.admin, &cfg.server.admin_tls),
        ] {
            if let (Some(a), Some(t)) = (acceptor, t) {
                let _ = a.certificates.reload(&t.files());
            }
        }
    }
}

/// Binds a listener; returns it with the address it got (port 0 picks one).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let fail = |source| StartError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(fail)?;
    let local = listener.local_addr().map_err(fail)?;
    Ok((listener, local))
}

/// The dispatcher: config destinations trusted, API ones SSRF-guarded unless
/// `server.allow_private_destinations`.
fn new_dispatcher(cfg: &Config, store: &Arc<dyn Store>, clock: &SharedClock) -> Arc<Dispatcher> {
    let guard = !cfg.server.allow_private_destinations;
    Dispatcher::new(
        store.clone(),
        clock.clone(),
        DeliveryClient::new(false),
        DeliveryClient::new(guard),
        guard,
        cfg.storage.lease_margin.0,
    )
}

/// Warns of deliveries kept for destinations that are no longer defined.
async fn warn_orphans(store: &dyn Store, dispatcher: &Dispatcher) -> Result<(), StoreError> {
    for (name, st) in store.destination_stats().await? {
        if st.pending > 0 && dispatcher.get(&name).is_none() {
            tracing::warn!(
                destination = %name,
                pending = st.pending,
                "deliveries are waiting for a destination that is no longer configured; they stay stored until it comes back"
            );
        }
    }
    Ok(())
}

/// The ingest side: the sources, and the routes of the registry.
fn new_ingest(
    cfg: &Config,
    store: &Arc<dyn Store>,
    dispatcher: &Arc<Dispatcher>,
    registry: &Registry,
    clock: &SharedClock,
) -> Result<Ingest, StartError> {
    Ok(Ingest {
        settings: Arc::new(Live::new(Settings::build(cfg, &|_| None, None)?)),
        routing: registry.routing(),
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        clock: clock.clone(),
        read_timeout: cfg.server.read_timeout.0,
        rejects: Arc::new(crate::ingest::rejects::Rejects::new()),
        traces: None,
    })
}

/// Starts the background tasks in the admin state's set: gauges, retention,
/// the overview's sampler, the certificates' watchers and, on a shared store,
/// the registry's sync with the other nodes.
fn spawn_background(cfg: &Config, s: &AdminState, overview: &Arc<Sampler>, tls: &Tls) {
    let tasks = &s.tasks;
    let (dispatcher, metrics) = (s.dispatcher.clone(), s.metrics.clone());
    tasks.spawn(move |stop| gauges(dispatcher, metrics, stop));
    let (store, clock, live) = (s.store.clone(), s.clock.clone(), s.live.clone());
    tasks.spawn(move |stop| retention(store, clock, live, stop));
    let overview = overview.clone();
    tasks.spawn(move |stop| overview.run(sampler::EVERY, stop));
    let alerts = s.alerts.clone();
    tasks.spawn(move |stop| alerts.run(stop));
    if cfg.storage.backend == Backend::Postgres {
        let registry = s.registry.clone();
        tasks.spawn(move |stop| registry.sync(SYNC_EVERY, stop));
    }
    for certs in tls.certificates() {
        tasks.spawn(move |stop| certs.watch(crate::tls::WATCH_EVERY, stop));
    }
}

/// What a shutdown stops, in its order.
struct Parts {
    grace: Duration,
    stop_ingest: CancellationToken,
    ingest_task: tokio::task::JoinHandle<()>,
    dispatcher: Arc<Dispatcher>,
    stop_admin: CancellationToken,
    admin_task: tokio::task::JoinHandle<()>,
    tasks: Arc<Tasks>,
    store: Arc<dyn Store>,
    traces: Option<crate::telemetry::trace::Traces>,
}

impl Parts {
    /// Starts serving ingest and the admin API; returns what stops them.
    fn serve(
        grace: Duration,
        (ingest_listener, ingest, ingest_tls): (TcpListener, Arc<Ingest>, Option<Acceptor>),
        (admin_listener, admin, admin_tls): (TcpListener, Arc<AdminState>, Option<Acceptor>),
        overview: Arc<Sampler>,
        traces: Option<crate::telemetry::trace::Traces>,
    ) -> Self {
        let (dispatcher, store) = (admin.dispatcher.clone(), admin.store.clone());
        let tasks = admin.tasks.clone();
        let stop_ingest = CancellationToken::new();
        let ingest_task = tokio::spawn(crate::ingest::http::serve(
            ingest_listener,
            ingest,
            ingest_tls,
            stop_ingest.clone(),
        ));
        let stop_admin = CancellationToken::new();
        // The web console shares the admin listener.
        let pages = crate::console::router(admin.clone(), overview)
            .merge(crate::svix::router(admin.clone()));
        let admin_task = tokio::spawn(admin::serve(
            admin_listener,
            admin,
            pages,
            admin_tls,
            stop_admin.clone(),
        ));
        Parts {
            grace,
            stop_ingest,
            ingest_task,
            dispatcher,
            stop_admin,
            admin_task,
            tasks,
            store,
            traces,
        }
    }
}

/// Waits for `token`, then stops in one order: stop accepting → finish
/// in-flight deliveries within the grace → close the admin listener → stop and
/// join the background tasks → flush and close the store → export the last
/// spans (within [`TRACES_FLUSH`]).
async fn stop_when(token: CancellationToken, p: Parts) {
    token.cancelled().await;
    // One clock for the whole drain: requests being received and attempts
    // in flight both get until the grace ends, so the shutdown takes at
    // most `shutdown_grace` + `SHUTDOWN_BOUND`.
    let grace_ends = tokio::time::Instant::now() + p.grace;
    tracing::info!("shutting down: no new requests");
    p.stop_ingest.cancel();
    let _ = tokio::time::timeout_at(grace_ends, p.ingest_task).await;
    tracing::info!("finishing deliveries in flight");
    p.dispatcher
        .shutdown(grace_ends.saturating_duration_since(tokio::time::Instant::now()))
        .await;
    p.stop_admin.cancel();
    let _ = tokio::time::timeout(ADMIN_CLOSE, p.admin_task).await;
    p.tasks.stop(TASKS_CLOSE).await;
    p.store.close().await;
    if let Some(t) = p.traces {
        t.shutdown(TRACES_FLUSH).await;
    }
    tracing::info!("stopped");
}

/// Refreshes the backlog gauges, and folds the histograms' recorded samples into
/// their buckets: without it, every sample would be kept until `/metrics` is
/// scraped (memory growing with traffic on a gateway nobody scrapes).
async fn gauges(
    dispatcher: Arc<Dispatcher>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                dispatcher.refresh_gauges().await;
                metrics.run_upkeep();
            }
            _ = stop.cancelled() => break,
        }
    }
}

/// Removes finished messages older than the retention (of the running config,
/// which a reload may change), in small batches so that ingest is never held
/// up for long.
async fn retention(
    store: Arc<dyn Store>,
    clock: SharedClock,
    live: Arc<Live<Config>>,
    stop: CancellationToken,
) {
    const BATCH: usize = 500;
    loop {
        let retention = live.load().storage.retention.0;
        let now = clock.now_millis();
        let cutoff = now - retention.as_millis() as i64;
        let pause = match store.cleanup(cutoff, now, BATCH).await {
            Ok(n) if n >= BATCH => Duration::from_millis(50),
            Ok(_) => Duration::from_secs(30),
            Err(StoreError::Closed) => break,
            Err(e) => {
                tracing::warn!(error = %e, "retention cleanup failed");
                Duration::from_secs(30)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => break,
        }
    }
}
