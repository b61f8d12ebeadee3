//! The overview's sampler: a background task that, every [`EVERY`], reads the
//! counters and histograms the gateway keeps anyway (the Prometheus recorder)
//! and the store's backlog figures (one `destination_stats` call), and appends
//! one point per source and destination to rings of [`POINTS`] (an hour).
//!
//! The ingest and delivery paths do nothing for it: they count as they always
//! did. Console pages only read the rings, so an open console costs one lock
//! and a render, never a store query or a metrics render.
//!
//! Invariants:
//! - Memory is bounded: [`POINTS`] points per configured source and per
//!   destination; the series of a removed destination are dropped at the next
//!   sample.
//! - Samples are taken one at a time (`one_at_a_time`), so every point is the
//!   difference between two readings taken in order.
//! - The first readings are taken when the sampler is made: the first point
//!   counts what happened after that.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::series::{self, Buckets, Ring};
use super::sources::ACCEPTED;
use super::stats;
use crate::clock::{Millis, SharedClock};
use crate::dispatch::Dispatcher;
use crate::store::Store;

/// How often a point is taken.
pub const EVERY: Duration = Duration::from_secs(10);

/// Points kept per series: an hour at [`EVERY`].
pub const POINTS: usize = 360;

/// The histogram whose percentiles the overview shows: ingest to delivered.
const LATENCY: &str = "hookgate_delivery_lag_seconds_bucket";

/// One interval of a source.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SourcePoint {
    /// When the interval ended.
    pub at: Millis,
    /// Requests accepted (stored, duplicates, handshakes).
    pub received: u64,
    /// Requests refused (verification, limits, size, store unavailable…).
    pub refused: u64,
}

/// One interval of a destination.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DestinationPoint {
    /// When the interval ended.
    pub at: Millis,
    /// Attempts that delivered.
    pub delivered: u64,
    /// Attempts that failed (to be retried, or dead).
    pub failed: u64,
    /// Median time from ingest to delivered, in seconds (none delivered: `None`).
    pub p50: Option<f64>,
    /// 99th percentile of the same.
    pub p99: Option<f64>,
    /// Age of the oldest waiting delivery at the end, in seconds (0 when none).
    pub lag: Option<f64>,
    /// Deliveries waiting at the end (`None`: the store did not answer).
    pub pending: Option<u64>,
    /// When the oldest waiting delivery was made.
    pub oldest_pending_at: Option<Millis>,
    /// Dead deliveries at the end.
    pub dead: Option<u64>,
}

/// The rings of every source and destination, by name.
#[derive(Debug, Default)]
pub struct Series {
    /// Per configured source.
    pub sources: BTreeMap<String, Ring<SourcePoint>>,
    /// Per destination.
    pub destinations: BTreeMap<String, Ring<DestinationPoint>>,
}

/// Cumulative readings of the recorder, kept from one sample to the next.
#[derive(Debug, Default)]
struct Readings {
    /// `hookgate_ingest_requests_total` by (source, outcome).
    ingest: HashMap<(String, String), f64>,
    /// `hookgate_deliveries_total` by (destination, outcome).
    deliveries: HashMap<(String, String), f64>,
    /// The latency histogram's buckets by destination.
    latency: HashMap<String, Buckets>,
}

impl Readings {
    fn read(text: &str) -> Self {
        let mut latency: HashMap<String, Buckets> = HashMap::new();
        for (labels, v) in stats::samples(text, LATENCY) {
            let (Some(d), Some(le)) = (labels.get("destination"), labels.get("le")) else {
                continue;
            };
            let le = match le.as_str() {
                "+Inf" => f64::INFINITY,
                s => match s.parse::<f64>() {
                    Ok(x) if x.is_finite() => x,
                    _ => continue,
                },
            };
            latency.entry(d.clone()).or_default().push((le, v));
        }
        Readings {
            ingest: stats::by_labels(text, "hookgate_ingest_requests_total", "source", "outcome"),
            deliveries: stats::by_labels(
                text,
                "hookgate_deliveries_total",
                "destination",
                "outcome",
            ),
            latency: latency
                .into_iter()
                .map(|(k, b)| (k, series::normalise(b)))
                .collect(),
        }
    }

    /// What counter `key` of `pick` grew by since `prev`.
    fn grew(
        &self,
        prev: &Readings,
        pick: fn(&Readings) -> &HashMap<(String, String), f64>,
        key: &(String, String),
    ) -> u64 {
        let at = |r: &Readings| pick(r).get(key).copied().unwrap_or(0.0);
        series::counter_delta(at(prev), at(self))
    }
}

struct State {
    prev: Readings,
    series: Series,
}

/// Takes the overview's points; see the module doc.
pub struct Sampler {
    metrics: PrometheusHandle,
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    clock: SharedClock,
    /// The running config's sources (a reload changes them).
    sources: Mutex<Vec<String>>,
    one_at_a_time: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

impl Sampler {
    /// A sampler of `sources` and of the dispatcher's destinations, with its
    /// first readings taken now.
    pub fn new(
        metrics: PrometheusHandle,
        store: Arc<dyn Store>,
        dispatcher: Arc<Dispatcher>,
        clock: SharedClock,
        sources: Vec<String>,
    ) -> Self {
        let prev = Readings::read(&crate::telemetry::render(&metrics));
        Sampler {
            metrics,
            store,
            dispatcher,
            clock,
            sources: Mutex::new(sources),
            one_at_a_time: tokio::sync::Mutex::new(()),
            state: Mutex::new(State {
                prev,
                series: Series::default(),
            }),
        }
    }

    /// The sources it samples (the configured ones, in the config's order).
    pub fn sources(&self) -> Vec<String> {
        self.sources.lock().clone()
    }

    /// Samples these sources from now on (after a reload); the series of a
    /// source no longer configured go at the next point.
    pub fn set_sources(&self, sources: Vec<String>) {
        *self.sources.lock() = sources;
    }

    /// Runs `f` on the series (under a short lock: no I/O in `f`).
    pub fn read<T>(&self, f: impl FnOnce(&Series) -> T) -> T {
        f(&self.state.lock().series)
    }

    /// Takes a point now: what every series did since the previous one.
    pub async fn sample_now(&self) {
        let _one = self.one_at_a_time.lock().await;
        let cur = Readings::read(&crate::telemetry::render(&self.metrics));
        let backlog = match self.store.destination_stats().await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::debug!(error = %e, "overview: the store's backlog figures are unavailable");
                None
            }
        };
        let now = self.clock.now_millis();
        let names: Vec<String> = self
            .dispatcher
            .all()
            .iter()
            .map(|h| h.spec().name.clone())
            .collect();
        let sources = self.sources();
        let mut st = self.state.lock();
        st.series.sources.retain(|s, _| sources.contains(s));
        for s in &sources {
            let p = source_point(&st.prev, &cur, s, now);
            ring(&mut st.series.sources, s).push(p);
        }
        st.series.destinations.retain(|d, _| names.contains(d));
        for d in &names {
            let mut p = destination_point(&st.prev, &cur, d, now);
            if let Some(b) = &backlog {
                let s = b.get(d).cloned().unwrap_or_default();
                let oldest = s.oldest_pending_at.filter(|_| s.pending > 0);
                p.pending = Some(s.pending);
                p.dead = Some(s.dead);
                p.oldest_pending_at = oldest;
                p.lag = Some(oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0));
            }
            ring(&mut st.series.destinations, d).push(p);
        }
        st.prev = cur;
    }

    /// Takes a point every `every` until `stop` fires.
    pub async fn run(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sample_now().await,
                _ = stop.cancelled() => break,
            }
        }
    }
}

fn ring<'a, T>(map: &'a mut BTreeMap<String, Ring<T>>, name: &str) -> &'a mut Ring<T> {
    map.entry(name.to_string())
        .or_insert_with(|| Ring::new(POINTS))
}

fn source_point(prev: &Readings, cur: &Readings, source: &str, at: Millis) -> SourcePoint {
    let mut p = SourcePoint {
        at,
        ..Default::default()
    };
    for key in cur.ingest.keys().filter(|(s, _)| s == source) {
        let n = cur.grew(prev, |r| &r.ingest, key);
        if ACCEPTED.contains(&key.1.as_str()) {
            p.received += n;
        } else {
            p.refused += n;
        }
    }
    p
}

fn destination_point(prev: &Readings, cur: &Readings, dest: &str, at: Millis) -> DestinationPoint {
    let n = |o: &str| cur.grew(prev, |r| &r.deliveries, &(dest.to_string(), o.to_string()));
    let latency = match (prev.latency.get(dest), cur.latency.get(dest)) {
        (Some(p), Some(c)) => series::bucket_delta(p, c),
        (None, Some(c)) => c.clone(),
        _ => Vec::new(),
    };
    DestinationPoint {
        at,
        delivered: n("delivered"),
        failed: n("retried") + n("dead"),
        p50: series::quantile(&latency, 0.5),
        p99: series::quantile(&latency, 0.99),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorder's text with these counts: source `s`'s ingest outcomes
    /// (stored, duplicate, unauthorized), destination `d`'s attempt outcomes
    /// (delivered, retried, dead), and its latency buckets (≤0.1 s, ≤1 s, all).
    fn text(ingest: [u32; 3], attempts: [u32; 3], buckets: [u32; 3]) -> String {
        let mut t = String::from(
            "hookgate_ingest_requests_total{source=\"other\",outcome=\"stored\"} 50\n",
        );
        for (o, n) in ["stored", "duplicate", "unauthorized"].iter().zip(ingest) {
            t += &format!("hookgate_ingest_requests_total{{source=\"s\",outcome=\"{o}\"}} {n}\n");
        }
        for (o, n) in ["delivered", "retried", "dead"].iter().zip(attempts) {
            t += &format!("hookgate_deliveries_total{{destination=\"d\",outcome=\"{o}\"}} {n}\n");
        }
        for (le, n) in ["0.1", "1", "+Inf"].iter().zip(buckets) {
            t += &format!("{LATENCY}{{destination=\"d\",le=\"{le}\"}} {n}\n");
        }
        t
    }

    fn before() -> Readings {
        Readings::read(&text([5, 0, 1], [4, 1, 0], [4, 4, 4]))
    }

    fn after() -> Readings {
        Readings::read(&text([8, 1, 3], [6, 2, 1], [4, 6, 6]))
    }

    #[test]
    fn points_are_the_growth_between_readings() {
        let (prev, cur) = (before(), after());
        let s = source_point(&prev, &cur, "s", 7);
        assert_eq!(
            s,
            SourcePoint {
                at: 7,
                received: 4,
                refused: 2
            }
        );
        let d = destination_point(&prev, &cur, "d", 7);
        assert_eq!((d.delivered, d.failed), (2, 2));
        // Both new deliveries took between 0.1 and 1 s.
        let (p50, p99) = (d.p50.unwrap(), d.p99.unwrap());
        assert!(
            (p50 - 0.55).abs() < 1e-9 && (p99 - 0.991).abs() < 1e-9,
            "{p50} {p99}"
        );
    }

    #[test]
    fn a_quiet_interval_and_an_unknown_name_are_zero_without_percentiles() {
        let cur = after();
        let d = destination_point(&cur, &cur, "d", 1);
        assert_eq!((d.delivered, d.failed, d.p50, d.p99), (0, 0, None, None));
        let x = destination_point(&cur, &cur, "nope", 1);
        assert_eq!((x.delivered, x.p50), (0, None));
        assert_eq!(source_point(&cur, &cur, "nope", 1).received, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_takes_one_point_per_interval_and_stops_when_asked() {
        let store: Arc<dyn Store> = Arc::new(crate::store::memory::MemoryStore::new());
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let dispatcher = Dispatcher::for_tests(store.clone(), clock.clone());
        let sources = vec!["sampler-test".to_string()];
        let s = Arc::new(Sampler::new(
            crate::telemetry::metrics_handle(),
            store,
            dispatcher,
            clock,
            sources,
        ));
        let points = || s.read(|x| x.sources.get("sampler-test").map_or(0, |r| r.len()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(s.clone().run(EVERY, stop.clone()));
        tokio::time::sleep(EVERY - Duration::from_millis(1)).await;
        assert_eq!(points(), 0, "the first point comes after one interval");
        tokio::time::sleep(EVERY * 2 + Duration::from_millis(2)).await;
        assert_eq!(points(), 3);
        assert_eq!(
            s.read(|x| *x.sources["sampler-test"].last().unwrap())
                .received,
            0
        );
        stop.cancel();
        task.await.unwrap();
        tokio::time::sleep(EVERY * 2).await;
        assert_eq!(points(), 3, "no point after the stop");
    }

    #[test]
    fn a_restarted_recorder_counts_from_zero() {
        let (prev, cur) = (after(), before());
        let d = destination_point(&prev, &cur, "d", 1);
        assert_eq!((d.delivered, d.failed), (4, 1));
        assert!(d.p50.is_some_and(|v| v.is_finite()));
    }
}
