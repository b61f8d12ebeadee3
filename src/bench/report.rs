//! What `hookgate bench` prints: one JSON object (`--json`) whose key names are
//! a fixed interface (docs/performance.md) and must never change, and the same
//! figures as a table.
//!
//! A figure whose phase did not run (or produced nothing to measure) is `null`,
//! never a made-up number.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::nodes::NodeFigures;

/// Answers that were not 2xx, and requests that got no answer, in one phase.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PhaseErrors {
    /// Answers other than 2xx.
    pub non_2xx: u64,
    /// Timeouts and connection errors.
    pub errors: u64,
}

/// The gateway's store commits during one phase (from its `/metrics`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Commits {
    /// Commits per second.
    pub commits_per_s: f64,
    /// Mean time of one commit, writes and sync, in milliseconds.
    pub commit_ms_avg: f64,
    /// Mean jobs (appends, attempt records, ...) per commit.
    pub batch_avg: f64,
}

/// The machine the figures were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub cores: usize,
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// CPU model name, when `/proc/cpuinfo` says.
    pub cpu: Option<String>,
}

impl Machine {
    /// Reads the machine's description.
    pub fn read() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        });
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| std::env::consts::OS.to_string()),
            cpu,
        }
    }
}

/// The parameters of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    /// Measured seconds of each load phase.
    pub duration_s: f64,
    /// Warm-up seconds before each measurement.
    pub warmup_s: f64,
    /// Connections of the load generator.
    pub connections: u32,
    /// Requests per second of the fixed-rate phase.
    pub rate: u32,
    /// Body bytes.
    pub body_size: usize,
    /// Verification asked for (`on`/`off`).
    pub verify: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Messages of the backlog phase (0: skipped).
    pub backlog: u64,
    /// The phases run.
    pub phases: Vec<String>,
    /// The sink destination's `max_in_flight`.
    pub max_in_flight: u32,
    /// Console sessions open on the overview during the load phases.
    pub consoles: u32,
    /// Consumers of the pull phase (`null` when it did not run).
    pub pull_consumers: Option<u32>,
    /// Deliveries each pull asks for (`null` when the pull phase did not run).
    pub pull_batch: Option<u32>,
    /// Gateway nodes of the load phases, on one database (`--nodes`).
    pub nodes: u32,
}

/// Everything measured. Field names are the JSON keys.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Bare hyper server, closed loop: 2xx answers per second.
    pub baseline_rps: Option<f64>,
    /// Gateway, closed loop, delivery running: acknowledgements per second.
    pub ingest_rps: Option<f64>,
    /// `ingest_rps / baseline_rps`.
    pub ingest_vs_baseline: Option<f64>,
    /// Fixed rate: acknowledgement latency percentiles, from the scheduled send time.
    pub ack_p50_ms: Option<f64>,
    /// See `ack_p50_ms`.
    pub ack_p99_ms: Option<f64>,
    /// See `ack_p50_ms`.
    pub ack_p999_ms: Option<f64>,
    /// Deliveries reaching the sink per second during the saturation window.
    pub delivered_per_s: Option<f64>,
    /// Fixed rate: end-to-end lag (send to the sink's arrival) p99.
    pub lag_p99_ms: Option<f64>,
    /// Gateway resident memory after the load phases (VmRSS), MB.
    pub rss_mb: Option<f64>,
    /// Backlog: the larger peak resident memory (VmHWM) of the gateway holding
    /// the backlog and of the restarted one draining it, MB.
    pub backlog_rss_mb: Option<f64>,
    /// Backlog: from starting the killed gateway again to the sink's first delivery.
    pub restart_to_first_delivery_ms: Option<f64>,
    /// Backlog: deliveries per second from the first to the last.
    pub drain_per_s: Option<f64>,
    /// `drain_per_s / baseline_rps`.
    pub drain_vs_baseline: Option<f64>,

    /// Baseline latency p99 under saturation.
    pub baseline_p99_ms: Option<f64>,
    /// Gateway acknowledgement latency p50 under saturation.
    pub ingest_p50_ms: Option<f64>,
    /// Gateway acknowledgement latency p99 under saturation.
    pub ingest_p99_ms: Option<f64>,
    /// After the saturation window, how long until every accepted message was delivered.
    pub delivery_catchup_ms: Option<f64>,
    /// Fixed rate: 2xx answers per second achieved.
    pub rate_achieved_rps: Option<f64>,
    /// Fixed rate: largest acknowledgement latency.
    pub ack_max_ms: Option<f64>,
    /// Fixed rate: how late the pacer released requests, p99 (generator precision).
    pub pacer_late_p99_ms: Option<f64>,
    /// Fixed rate: end-to-end lag p50.
    pub lag_p50_ms: Option<f64>,
    /// Fixed rate: end-to-end lag p99.9.
    pub lag_p999_ms: Option<f64>,
    /// Gateway peak resident memory over the load phases (VmHWM), MB.
    pub rss_peak_mb: Option<f64>,
    /// Backlog: messages accepted (the deliveries to drain).
    pub backlog_messages: Option<u64>,
    /// Backlog: acknowledgements per second while the destination was paused.
    pub backlog_ingest_rps: Option<f64>,
    /// Backlog: resident memory after ingest, destination paused (VmRSS), MB.
    pub backlog_rss_after_ingest_mb: Option<f64>,
    /// Backlog: peak resident memory of the restarted gateway while draining (VmHWM), MB.
    pub backlog_rss_restart_peak_mb: Option<f64>,
    /// Backlog: from starting the killed gateway again to its `/healthz` answering
    /// (the destination is resumed right after).
    pub restart_to_ready_ms: Option<f64>,
    /// Backlog: distinct messages delivered after the restart.
    pub backlog_delivered: Option<u64>,
    /// Backlog: seconds from the first delivery to the last.
    pub backlog_drain_s: Option<f64>,
    /// Pull: messages accepted for the pull destination (the deliveries to drain).
    pub pull_messages: Option<u64>,
    /// Pull: acknowledgements per second of that ingest (nothing pulled meanwhile).
    pub pull_ingest_rps: Option<f64>,
    /// Pull: distinct messages whose `ok` result the gateway recorded.
    pub pull_acknowledged: Option<u64>,
    /// Pull: seconds from the first acknowledged delivery to the last.
    pub pull_drain_s: Option<f64>,
    /// Pull: deliveries acknowledged per second, first to last.
    pub pull_per_s: Option<f64>,
    /// `pull_per_s / drain_per_s`: pull drain against push drain of the same
    /// number of messages (both phases run).
    pub pull_vs_push_drain: Option<f64>,
    /// Pull: latency of a pull call that returned deliveries, p50.
    pub pull_call_p50_ms: Option<f64>,
    /// Pull: the same, p99.
    pub pull_call_p99_ms: Option<f64>,
    /// Pull: latency of an ack call, p50.
    pub pull_ack_p50_ms: Option<f64>,
    /// Pull: the same, p99.
    pub pull_ack_p99_ms: Option<f64>,
    /// Pull: mean deliveries per pull that returned any.
    pub pull_batch_avg: Option<f64>,
    /// Pull: pull calls made, empty ones (a wait that ran out) included.
    pub pull_calls: Option<u64>,
    /// Pull: pull and ack calls that failed (no answer, or an error without results).
    pub pull_failed_calls: Option<u64>,
    /// Pull: results the gateway did not record (an expired or ended lease).
    pub pull_not_recorded: Option<u64>,
    /// Pull: acknowledged deliveries of a message already acknowledged.
    pub pull_repeats: Option<u64>,
    /// Pull: peak resident memory of the gateway over the pull phase (VmHWM), MB.
    pub pull_rss_mb: Option<f64>,
    /// The disk: 4 KiB append + `fdatasync` in the bench's temp dir, p50.
    pub fsync_p50_ms: Option<f64>,
    /// The same, p99.
    pub fsync_p99_ms: Option<f64>,
    /// Saturation: what each gateway node did (one entry per `--nodes`).
    pub saturation_nodes: Vec<NodeFigures>,
    /// Saturation: the database's share of the machine's CPU (PostgreSQL on
    /// this machine only; `null` otherwise).
    pub db_cpu_share: Option<f64>,
    /// Saturation: the database's CPU time per acknowledged message, microseconds.
    pub db_cpu_us_per_message: Option<f64>,
    /// Saturation: cores' worth of CPU the database used.
    pub db_cores_used: Option<f64>,
    /// Deliveries of a message the sink had already received (at-least-once).
    pub duplicate_deliveries: u64,
    /// Non-2xx answers and failed requests per phase.
    pub errors: BTreeMap<&'static str, PhaseErrors>,
    /// The gateway's store commits per load phase.
    pub store_commits: BTreeMap<&'static str, Commits>,
    /// How the source was verified: `hmac-sha256`, `bearer` or `off`.
    pub verify_used: String,
    /// The machine.
    pub machine: Machine,
    /// The parameters.
    pub params: Params,
    /// Caveats of this run (CPU sharing, fallbacks, time-outs).
    pub notes: Vec<String>,
}

impl Report {
    /// An empty report for these parameters.
    pub fn new(machine: Machine, params: Params) -> Report {
        Report {
            baseline_rps: None,
            ingest_rps: None,
            ingest_vs_baseline: None,
            ack_p50_ms: None,
            ack_p99_ms: None,
            ack_p999_ms: None,
            delivered_per_s: None,
            lag_p99_ms: None,
            rss_mb: None,
            backlog_rss_mb: None,
            restart_to_first_delivery_ms: None,
            drain_per_s: None,
            drain_vs_baseline: None,
            baseline_p99_ms: None,
            ingest_p50_ms: None,
            ingest_p99_ms: None,
            delivery_catchup_ms: None,
            rate_achieved_rps: None,
            ack_max_ms: None,
            pacer_late_p99_ms: None,
            lag_p50_ms: None,
            lag_p999_ms: None,
            rss_peak_mb: None,
            backlog_messages: None,
            backlog_ingest_rps: None,
            backlog_rss_after_ingest_mb: None,
            backlog_rss_restart_peak_mb: None,
            restart_to_ready_ms: None,
            backlog_delivered: None,
            backlog_drain_s: None,
            pull_messages: None,
            pull_ingest_rps: None,
            pull_acknowledged: None,
            pull_drain_s: None,
            pull_per_s: None,
            pull_vs_push_drain: None,
            pull_call_p50_ms: None,
            pull_call_p99_ms: None,
            pull_ack_p50_ms: None,
            pull_ack_p99_ms: None,
            pull_batch_avg: None,
            pull_calls: None,
            pull_failed_calls: None,
            pull_not_recorded: None,
            pull_repeats: None,
            pull_rss_mb: None,
            fsync_p50_ms: None,
            fsync_p99_ms: None,
            saturation_nodes: Vec::new(),
            db_cpu_share: None,
            db_cpu_us_per_message: None,
            db_cores_used: None,
            duplicate_deliveries: 0,
            errors: BTreeMap::new(),
            store_commits: BTreeMap::new(),
            verify_used: String::new(),
            machine,
            params,
            notes: Vec::new(),
        }
    }

    /// Fills the ratios from the figures they divide.
    pub fn derive_ratios(&mut self) {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(round(a / b, 3)),
            _ => None,
        };
        self.ingest_vs_baseline = ratio(self.ingest_rps, self.baseline_rps);
        self.drain_vs_baseline = ratio(self.drain_per_s, self.baseline_rps);
        self.pull_vs_push_drain = ratio(self.pull_per_s, self.drain_per_s);
    }

    /// The JSON object.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes")
    }

    /// The table.
    pub fn table(&self) -> String {
        let p = &self.params;
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "hookgate bench: {} cores, Linux {}, {} store, verify {}, {} B bodies, {} connections, {} s per phase (+{} s warm-up)",
            m.cores, m.kernel, p.backend, self.verify_used, p.body_size, p.connections, p.duration_s, p.warmup_s
        );
        let rows: Vec<Row> = [
            self.load_rows(),
            self.rate_rows(),
            self.backlog_rows(),
            self.pull_rows(),
        ]
        .concat();
        let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "{:w0$}  {:>w1$}  target (issue 7)",
            "figure", "measured"
        );
        for (name, value, target) in rows {
            let _ = writeln!(out, "{name:w0$}  {value:>w1$}  {target}");
        }
        self.footer(&mut out);
        out
    }

    /// The lines under the table: failed requests, duplicates, store commits
    /// and the run's notes.
    fn footer(&self, out: &mut String) {
        let errs: Vec<String> = self
            .errors
            .iter()
            .map(|(k, e)| format!("{k} {}/{}", e.non_2xx, e.errors))
            .collect();
        let _ = writeln!(
            out,
            "non-2xx/failed requests: {}; duplicate deliveries: {}",
            if errs.is_empty() {
                "-".to_string()
            } else {
                errs.join(", ")
            },
            self.duplicate_deliveries
        );
        if self.saturation_nodes.len() > 1 {
            for n in &self.saturation_nodes {
                let _ = writeln!(
                    out,
                    "node {}, saturation: {:.0} acks/s, {:.0} delivered/s, lag mean {}, CPU {}",
                    n.node,
                    n.acks_per_s,
                    n.delivered_per_s,
                    num(n.lag_mean_ms, 1, " ms"),
                    num(n.cpu_share.map(|c| c * 100.0), 1, "% of the machine"),
                );
            }
        }
        if self.db_cpu_share.is_some() {
            let _ = writeln!(
                out,
                "database, saturation: CPU {} ({} cores), {} per message",
                num(self.db_cpu_share.map(|c| c * 100.0), 1, "% of the machine"),
                num(self.db_cores_used, 2, ""),
                num(self.db_cpu_us_per_message, 1, " us"),
            );
        }
        for (phase, c) in &self.store_commits {
            let _ = writeln!(
                out,
                "store commits, {phase}: {:.0}/s, {:.3} ms each, {:.1} jobs each",
                c.commits_per_s, c.commit_ms_avg, c.batch_avg
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
    }

    /// The saturation phases: the disk, bare hyper, and the gateway at full load.
    fn load_rows(&self) -> Vec<Row> {
        vec![
            (
                "disk: 4 KiB append + fdatasync p50 / p99".into(),
                pair(self.fsync_p50_ms, self.fsync_p99_ms),
                "",
            ),
            (
                "baseline (bare hyper), requests/s".into(),
                num(self.baseline_rps, 0, ""),
                "",
            ),
            (
                "gateway saturated, acks/s".into(),
                num(self.ingest_rps, 0, ""),
                "",
            ),
            (
                "  ingest vs baseline".into(),
                num(self.ingest_vs_baseline, 3, " x"),
                ">= 0.5 x",
            ),
            (
                "  ack p50 / p99 under saturation".into(),
                pair(self.ingest_p50_ms, self.ingest_p99_ms),
                "",
            ),
            (
                "  delivered to the sink /s".into(),
                num(self.delivered_per_s, 0, ""),
                "",
            ),
        ]
    }

    /// The fixed-rate phase: acks and lag, and the memory after the load.
    fn rate_rows(&self) -> Vec<Row> {
        let p = &self.params;
        vec![
            (
                format!("fixed rate {}/s, achieved /s", p.rate),
                num(self.rate_achieved_rps, 0, ""),
                "",
            ),
            ("  ack p50".into(), num(self.ack_p50_ms, 3, " ms"), ""),
            (
                "  ack p99".into(),
                num(self.ack_p99_ms, 3, " ms"),
                "<= 1 ms",
            ),
            (
                "  ack p99.9".into(),
                num(self.ack_p999_ms, 3, " ms"),
                "<= 3 ms",
            ),
            (
                "  end-to-end lag p99".into(),
                num(self.lag_p99_ms, 3, " ms"),
                "<= 5 ms",
            ),
            (
                "gateway RSS after load (peak)".into(),
                format!(
                    "{} ({})",
                    num(self.rss_mb, 1, " MB"),
                    num(self.rss_peak_mb, 1, " MB")
                ),
                "",
            ),
        ]
    }

    /// The backlog phase: holding, restarting and draining it.
    fn backlog_rows(&self) -> Vec<Row> {
        vec![
            (
                format!("backlog of {}: ingest acks/s", count(self.backlog_messages)),
                num(self.backlog_ingest_rps, 0, ""),
                "",
            ),
            (
                "  RSS (peak of holding and draining)".into(),
                num(self.backlog_rss_mb, 1, " MB"),
                "<= 150 MB",
            ),
            (
                "  restart to first delivery".into(),
                num(self.restart_to_first_delivery_ms, 1, " ms"),
                "<= 1000 ms",
            ),
            (
                "  drain, deliveries/s".into(),
                num(self.drain_per_s, 0, ""),
                "",
            ),
            (
                "  drain vs baseline".into(),
                num(self.drain_vs_baseline, 3, " x"),
                ">= 0.5 x",
            ),
        ]
    }

    /// The pull phase: consumers leasing and acknowledging the backlog.
    fn pull_rows(&self) -> Vec<Row> {
        let p = &self.params;
        vec![
            (
                format!(
                    "pull of {}: {} consumers, batches of {}, acknowledged",
                    count(self.pull_messages),
                    count(p.pull_consumers.map(u64::from)),
                    count(p.pull_batch.map(u64::from)),
                ),
                count(self.pull_acknowledged),
                "",
            ),
            (
                "  pull drain, deliveries/s".into(),
                num(self.pull_per_s, 0, ""),
                "",
            ),
            (
                "  pull drain vs push drain".into(),
                num(self.pull_vs_push_drain, 3, " x"),
                "",
            ),
            (
                "  pull call p50 / p99".into(),
                pair(self.pull_call_p50_ms, self.pull_call_p99_ms),
                "",
            ),
            (
                "  ack call p50 / p99".into(),
                pair(self.pull_ack_p50_ms, self.pull_ack_p99_ms),
                "",
            ),
            (
                "  deliveries per pull (mean)".into(),
                num(self.pull_batch_avg, 1, ""),
                "",
            ),
        ]
    }
}

/// A row of the table: the figure, what was measured, and its target.
type Row = (String, String, &'static str);

/// Rounds to `places` decimals.
pub fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// A percentile of a microsecond histogram in milliseconds; `None` when empty.
pub fn ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| round(h.value_at_quantile(q) as f64 / 1000.0, 3))
}

fn num(v: Option<f64>, places: usize, unit: &str) -> String {
    match v {
        Some(x) if places == 0 => format!("{}{unit}", thousands(x.round() as u64)),
        Some(x) => format!("{x:.places$}{unit}"),
        None => "-".into(),
    }
}

fn count(n: Option<u64>) -> String {
    n.map_or_else(|| "-".to_string(), |n| n.to_string())
}

fn pair(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{a:.3} / {b:.3} ms"),
        _ => "-".into(),
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            duration_s: 1.0,
            warmup_s: 0.0,
            connections: 1,
            rate: 10,
            body_size: 1024,
            verify: "on".into(),
            backend: "sqlite".into(),
            backlog: 0,
            phases: vec![],
            max_in_flight: 64,
            consoles: 0,
            pull_consumers: None,
            pull_batch: None,
            nodes: 1,
        }
    }

    #[test]
    fn missing_figures_are_null_and_ratios_need_both_sides() {
        let mut r = Report::new(Machine::read(), params());
        r.ingest_rps = Some(10.0);
        r.derive_ratios();
        assert_eq!(r.ingest_vs_baseline, None);
        r.baseline_rps = Some(40.0);
        r.derive_ratios();
        assert_eq!(r.ingest_vs_baseline, Some(0.25));
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert!(v["drain_vs_baseline"].is_null());
        assert!(v["pull_vs_push_drain"].is_null() && v["pull_per_s"].is_null());
        r.drain_per_s = Some(20.0);
        r.pull_per_s = Some(30.0);
        r.derive_ratios();
        assert_eq!(r.pull_vs_push_drain, Some(1.5));
        assert_eq!(v["ingest_vs_baseline"], 0.25);
        assert!(r.table().contains("0.250 x"));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(num(None, 1, " ms"), "-");
        assert_eq!(num(Some(0.1234), 3, " ms"), "0.123 ms");
        let mut h = crate::bench::load::histogram();
        assert_eq!(ms(&h, 0.99), None);
        h.record(1500).unwrap();
        assert_eq!(ms(&h, 0.99), Some(1.5));
    }
}
