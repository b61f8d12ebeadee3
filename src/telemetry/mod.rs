//! Logs, metrics and traces. Logs go to stderr (`HOOKGATE_LOG` filter, `info` by default;
//! `HOOKGATE_LOG_FORMAT=json` for JSON lines). Metrics are Prometheus, rendered
//! on the admin listener's `/metrics`; every metric is recorded through a named
//! event in [`events`]. Traces are OpenTelemetry spans exported over OTLP while
//! `[telemetry] otlp_endpoint` is set ([`trace`]).

pub mod events;
pub mod trace;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Held (shared) while `/metrics` is rendered and (exclusively) while gauges
/// that must agree are set together, so that a scrape never shows half of
/// such an update: say a destination's `hookgate_pending` already 0 beside its
/// previous `hookgate_oldest_pending_seconds`. A render reads the gauges one
/// after another, and a scraper preempted in the middle would otherwise mix
/// two updates.
static TOGETHER: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Runs `f`, which sets several metrics, so that no render sees part of it.
pub(crate) fn together<T>(f: impl FnOnce() -> T) -> T {
    let _guard = TOGETHER.write().unwrap_or_else(|e| e.into_inner());
    f()
}

/// The Prometheus text of every metric (`/metrics`), never in the middle of an
/// update made [`together`].
pub fn render(handle: &PrometheusHandle) -> String {
    let _guard = TOGETHER.read().unwrap_or_else(|e| e.into_inner());
    handle.render()
}

/// Installs the log subscriber once; later calls do nothing.
pub fn init_logging() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter =
            EnvFilter::try_from_env("HOOKGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
        let json =
            std::env::var("HOOKGATE_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
        let _ = if json {
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .try_init()
        } else {
            builder.try_init()
        };
    });
}

/// Buckets of latency histograms, in seconds: fine below a millisecond, where acks live.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Buckets of delivery lag, in seconds: from milliseconds to a day of retries.
const LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 1800.0, 3600.0, 21600.0, 86400.0,
];

/// Installs the Prometheus recorder once and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("hookgate_delivery_lag_seconds".into()),
                    LAG_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                })
                .expect("valid histogram buckets");
            let handle = builder
                .install_recorder()
                .expect("install the metrics recorder once");
            events::describe();
            handle
        })
        .clone()
}
