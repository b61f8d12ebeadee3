//! Building and running the gateway from a checked [`Config`]: open the store,
//! start the dispatcher, bind the listeners, and on shutdown stop in one order:
//! stop accepting → stop leasing → finish in-flight within the grace period →
//! release leases → flush and close the store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Backend, Config};
use crate::dispatch::destination::DestinationSpec;
use crate::dispatch::Dispatcher;
use crate::ingest::http::Ingest;
use crate::ingest::route::{RouteTable, Routing};
use crate::ingest::source::Source;
use crate::store::postgres::{PgOptions, PgStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::telemetry::events::StoreCommitted;

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
    /// Something in the config could not be built.
    #[error("{0}")]
    Build(String),
}

/// A running gateway.
pub struct Running {
    /// Where ingest listens.
    pub ingest_addr: SocketAddr,
    /// Where the admin listener listens.
    pub admin_addr: SocketAddr,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Asks the gateway to stop.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Waits until it has stopped.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// How long admin requests still running at the end of a shutdown may take.
const ADMIN_CLOSE: Duration = Duration::from_millis(150);

/// How much longer than `server.shutdown_grace` a shutdown may take: the
/// dispatcher's wrap-up (recording cut-off attempts, releasing their leases),
/// closing the admin listener, and flushing the store.
pub const SHUTDOWN_BOUND: Duration = Duration::from_millis(500);
const _: () = assert!(
    crate::dispatch::SHUTDOWN_WRAP_UP.as_millis() + ADMIN_CLOSE.as_millis()
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
            let store = tokio::task::spawn_blocking(move || SqliteStore::open_opts(path, opts))
                .await
                .map_err(|e| StartError::Build(e.to_string()))??;
            Ok(Arc::new(store))
        }
        Backend::Postgres => {
            let url = cfg.storage.url.as_ref().ok_or_else(|| {
                StartError::Build("storage.backend = \"postgres\" needs storage.url".into())
            })?;
            let observer = Arc::new(|elapsed, batch| StoreCommitted { elapsed, batch }.emit());
            let store = PgStore::connect_with(
                url.expose(),
                PgOptions {
                    pool_size: cfg.storage.pool_size,
                    observer,
                    connect_timeout: cfg.storage.connect_timeout.0,
                    query_timeout: cfg.storage.query_timeout.0,
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
    let metrics = crate::telemetry::metrics_handle();
    let clock: SharedClock = Arc::new(SystemClock);
    for w in crate::config::warnings(&cfg) {
        tracing::warn!("{w}");
    }

    // Bind first: a port in use is reported before anything is opened.
    let ingest_listener = TcpListener::bind(cfg.server.listen.0)
        .await
        .map_err(|source| StartError::Bind {
            addr: cfg.server.listen.0,
            source,
        })?;
    let admin_listener = TcpListener::bind(cfg.server.admin_listen.0)
        .await
        .map_err(|source| StartError::Bind {
            addr: cfg.server.admin_listen.0,
            source,
        })?;
    let ingest_addr = ingest_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: cfg.server.listen.0,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: cfg.server.admin_listen.0,
            source,
        })?;

    let store = open_store(&cfg).await?;
    let allow_private = cfg.server.allow_private_destinations;
    let guarded = crate::dispatch::client::DeliveryClient::new(!allow_private);
    let dispatcher = Dispatcher::new(
        store.clone(),
        clock.clone(),
        crate::dispatch::client::DeliveryClient::new(false),
        guarded,
        !allow_private,
        cfg.storage.lease_margin.0,
    );
    let states = store.destination_states().await?;
    let mut config_names = Vec::new();
    for d in &cfg.destinations {
        let spec = DestinationSpec::from_config(d).map_err(StartError::Build)?;
        let st = states.get(&spec.name).cloned().unwrap_or_default();
        config_names.push(spec.name.clone());
        dispatcher.add(spec, st);
    }
    let api_routes = crate::admin::destinations::load(&store, &dispatcher, &config_names).await?;
    let routing = Arc::new(Routing::new(RouteTable::new(&cfg.routes, &api_routes)));
    for (name, st) in store.destination_stats().await? {
        if st.pending > 0 && dispatcher.get(&name).is_none() {
            tracing::warn!(
                destination = %name,
                pending = st.pending,
                "deliveries are waiting for a destination that is no longer configured; they stay stored until it comes back"
            );
        }
    }

    let mut sources = HashMap::new();
    for s in &cfg.sources {
        let src = Source::build(s, cfg.storage.retention.0).map_err(StartError::Build)?;
        sources.insert(src.name.clone(), Arc::new(src));
    }
    let ingest = Arc::new(Ingest {
        sources,
        routing: routing.clone(),
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        clock: clock.clone(),
        max_body: cfg.server.max_body.0,
        read_timeout: cfg.server.read_timeout.0,
        max_pending: cfg.storage.max_pending,
        waiting: crate::ingest::http::Waiting::new(
            cfg.storage.max_waiting,
            cfg.storage.max_waiting_bytes.0,
        ),
        trusted_proxies: cfg.server.trusted_proxies.iter().map(|n| n.0).collect(),
    });

    let admin_state = Arc::new(AdminState {
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        routing: routing.clone(),
        clock: clock.clone(),
        tokens: cfg.server.admin_tokens.clone(),
        max_pending: cfg.storage.max_pending,
        metrics: metrics.clone(),
        config: Arc::new(cfg.clone()),
        draining: shutdown.clone(),
    });

    let stop_ingest = CancellationToken::new();
    let ingest_task = tokio::spawn(crate::ingest::http::serve(
        ingest_listener,
        ingest,
        stop_ingest.clone(),
    ));
    let stop_admin = CancellationToken::new();
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        admin_state,
        stop_admin.clone(),
    ));
    let background = CancellationToken::new();
    spawn_gauges(dispatcher.clone(), background.clone(), metrics.clone());
    if cfg.storage.backend == Backend::Postgres {
        spawn_sync(
            store.clone(),
            dispatcher.clone(),
            routing.clone(),
            Arc::new(cfg.clone()),
            background.clone(),
        );
    }
    spawn_retention(
        store.clone(),
        clock.clone(),
        cfg.storage.retention.0,
        background.clone(),
    );

    tracing::info!(
        listen = %ingest_addr,
        admin = %admin_addr,
        sources = cfg.sources.len(),
        destinations = cfg.destinations.len(),
        routes = cfg.routes.len(),
        "hookgate is running"
    );

    let grace = cfg.server.shutdown_grace.0;
    let token = shutdown.clone();
    let done = tokio::spawn(async move {
        token.cancelled().await;
        // One clock for the whole drain: requests being received and attempts
        // in flight both get until the grace ends, so the shutdown takes at
        // most `shutdown_grace` + `SHUTDOWN_BOUND`.
        let grace_ends = tokio::time::Instant::now() + grace;
        tracing::info!("shutting down: no new requests");
        stop_ingest.cancel();
        let _ = tokio::time::timeout_at(grace_ends, ingest_task).await;
        tracing::info!("finishing deliveries in flight");
        dispatcher
            .shutdown(grace_ends.saturating_duration_since(tokio::time::Instant::now()))
            .await;
        background.cancel();
        stop_admin.cancel();
        let _ = tokio::time::timeout(ADMIN_CLOSE, admin_task).await;
        store.close().await;
        tracing::info!("stopped");
    });
    Ok(Running {
        ingest_addr,
        admin_addr,
        shutdown,
        done,
    })
}

/// With several nodes on one store, picks up what other nodes changed: pause,
/// resume and disable states, and destinations made, changed or removed
/// through another node's API. Every two seconds; each pass is two small reads.
fn spawn_sync(
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    routing: Arc<Routing>,
    cfg: Arc<Config>,
    stop: CancellationToken,
) {
    use crate::admin::destinations::{route_table, ApiDestination};
    use crate::dispatch::destination::Origin;
    tokio::spawn(async move {
        let mut seen: HashMap<String, i64> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            let read_at = tokio::time::Instant::now();
            if let Ok(states) = store.destination_states().await {
                for (name, st) in &states {
                    dispatcher.adopt_state(name, st, read_at);
                }
            }
            let Ok(stored) = store.stored_destinations().await else {
                continue;
            };
            let config_names: Vec<String> = cfg
                .destinations
                .iter()
                .map(|d| d.name.get_ref().clone())
                .collect();
            let mut changed = false;
            for sd in &stored {
                if config_names.contains(&sd.name) || seen.get(&sd.name) == Some(&sd.updated_at) {
                    continue;
                }
                seen.insert(sd.name.clone(), sd.updated_at);
                let parsed = ApiDestination::from_stored(sd).and_then(|d| d.to_spec());
                let Ok(spec) = parsed else {
                    continue;
                };
                if !dispatcher.update(spec.clone()) {
                    dispatcher.add(spec, Default::default());
                }
                changed = true;
            }
            for h in dispatcher.all() {
                let spec = h.spec();
                if spec.origin == Origin::Api && !stored.iter().any(|d| d.name == spec.name) {
                    dispatcher.remove(&spec.name);
                    seen.remove(&spec.name);
                    changed = true;
                }
            }
            if changed {
                routing.replace(route_table(&cfg.routes, &dispatcher));
            }
        }
    });
}

/// Refreshes the backlog gauges, and folds the histograms' recorded samples into
/// their buckets: without it, every sample would be kept until `/metrics` is
/// scraped (memory growing with traffic on a gateway nobody scrapes).
fn spawn_gauges(
    dispatcher: Arc<Dispatcher>,
    stop: CancellationToken,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) {
    tokio::spawn(async move {
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
    });
}

/// Removes finished messages older than the retention, in small batches so
/// that ingest is never held up for long.
fn spawn_retention(
    store: Arc<dyn Store>,
    clock: SharedClock,
    retention: Duration,
    stop: CancellationToken,
) {
    const BATCH: usize = 500;
    tokio::spawn(async move {
        loop {
            let now = clock.now_millis();
            let cutoff = now - retention.as_millis() as i64;
            let pause = match store.cleanup(cutoff, now, BATCH).await {
                Ok(n) if n >= BATCH => Duration::from_millis(50),
                Ok(_) => Duration::from_secs(30),
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
    });
}
