//! `hookgate bench`: the built-in benchmark (docs/performance.md).
//!
//! It starts, on loopback, a sink answering 200 ([`sink`]), a bare hyper server
//! as the baseline ([`baseline`]) and the gateway as a child process on a store
//! under a temp dir ([`gateway`]), and drives them with the load generator
//! ([`load`]). Phases, each selectable:
//!
//! 1. `baseline`: the bare server, closed loop (N connections, back to back).
//! 2. `saturation`: the gateway under the same load, delivering to the sink at
//!    the same time.
//! 3. `rate`: the gateway at a fixed rate, open loop: acknowledgement latency
//!    from each request's scheduled time, and end-to-end lag at the sink.
//! 4. `backlog`: destination paused, N messages ingested, memory read; the
//!    gateway is killed (SIGKILL), started again, the destination resumed, and
//!    the time to the first delivery and the drain rate measured.
//! 5. `pull` (not run unless named): the source routed to a pull destination
//!    instead, the same N messages ingested, then drained by K consumers
//!    pulling batches of B over the admin API and acknowledging each batch
//!    ([`pull`]); the drain rate sits beside the push drain of `backlog`.
//!
//! The load generator, the sink and the baseline share the bench process (on
//! two runtimes of their own); the gateway is a separate process. All of them
//! share the machine's cores, which the report notes: figures are ratios
//! measured in one run, not absolute capacities.
//!
//! Output: a table on stdout, or with `--json` one JSON object ([`report`]);
//! a progress line on stderr while it runs.

pub mod baseline;
pub mod consoles;
pub mod gateway;
pub mod load;
pub mod nodes;
pub mod pull;
pub mod report;
pub mod sink;

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use self::gateway::{free_addr, kib_to_mb, CommitTotals, Gateway, Setup, Verify};
use self::load::{Auth, Clock, Live, LoadReport, Workload};
use self::report::{ms, round, Commits, Machine, Params, PhaseErrors, Report};
use self::sink::SinkStats;
use crate::config::Backend;
use crate::store::postgres::scratch::ScratchDatabase;

/// Run numbers: the sink keeps the deliveries of each phase apart.
const RUN_BASELINE: u8 = 0;
const RUN_SATURATION: u8 = 1;
const RUN_RATE: u8 = 2;
const RUN_BACKLOG: u8 = 3;
const RUN_PULL: u8 = 4;

/// Largest `--body-size` (the gateway's `max_body` follows it).
const MAX_BODY: usize = 8 << 20;

/// Deliveries in flight to the sink at most (the destination's `max_in_flight`).
const MAX_IN_FLIGHT: u32 = 64;

/// `on` or `off`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// `--backend`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendArg {
    /// The embedded store, in the bench's temp dir.
    Sqlite,
    /// PostgreSQL at `--pg-url`.
    Postgres,
}

/// A phase of the bench.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The bare hyper server, saturated.
    Baseline,
    /// The gateway, saturated, delivering at the same time.
    Saturation,
    /// The gateway at a fixed rate: ack latency and end-to-end lag.
    Rate,
    /// Backlog: ingest with the destination paused, restart, drain.
    Backlog,
    /// Pull: the backlog ingested for a pull destination, drained by consumers.
    Pull,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Saturation => "saturation",
            Phase::Rate => "rate",
            Phase::Backlog => "backlog",
            Phase::Pull => "pull",
        }
    }
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}; write a duration like \"10s\", \"500ms\" or \"2m\""))
}

/// Flags of `hookgate bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Measured time of each load phase (after its warm-up).
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub duration: Duration,
    /// Load before each measurement that is not counted.
    #[arg(long, default_value = "2s", value_parser = duration_arg)]
    pub warmup: Duration,
    /// Connections of the load generator.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub connections: u32,
    /// Requests per second of the fixed-rate phase.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// Bytes of each JSON request body.
    #[arg(long, default_value_t = 1024)]
    pub body_size: usize,
    /// Verify each request at the gateway (HMAC-SHA256 of the body, computed by
    /// the load generator per request).
    #[arg(long, value_enum, default_value = "on")]
    pub verify: OnOff,
    /// The gateway's store.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BackendArg,
    /// PostgreSQL server URL (with `--backend postgres`): the bench creates a
    /// fresh database on that server for its run and drops it at the end.
    #[arg(long)]
    pub pg_url: Option<String>,
    /// Gateway nodes of the load phases (saturation and rate), all on one
    /// database, the load generator's connections spread over them
    /// round-robin (more than 1 needs `--backend postgres`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub nodes: u32,
    /// Messages of the backlog phase, and of the pull phase (0 skips them).
    #[arg(long, default_value_t = 100_000)]
    pub backlog: u64,
    /// How long the backlog's ingest, and its drain, may take each.
    #[arg(long, default_value = "10m", value_parser = duration_arg)]
    pub backlog_timeout: Duration,
    /// Consumers of the pull phase, each pulling and acknowledging in turn.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub pull_consumers: u32,
    /// Deliveries each pull of the pull phase asks for (the API's `max`).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pull_batch: u32,
    /// Phases to run, comma-separated (`pull` runs only when named).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "baseline,saturation,rate,backlog"
    )]
    pub phases: Vec<Phase>,
    /// Console sessions kept open on the overview during the load phases, each
    /// loading the page and its live fragment every 10 s (0: none).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub consoles: u32,
    /// Run the gateway with traces exported to this OTLP/HTTP endpoint
    /// (`[telemetry] otlp_endpoint`); off by default.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Run every delivered message through this JavaScript file (a
    /// transformation on the route; see docs/transformations.md).
    #[arg(long, value_name = "FILE")]
    pub transform: Option<std::path::PathBuf>,
    /// Print one JSON object on stdout instead of the table (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Bad flags.
    #[error("{0}")]
    Usage(String),
    /// A local resource failed (temp dir, ports, threads).
    #[error("{0}")]
    Io(String),
    /// The gateway would not start or died.
    #[error("{0}")]
    Gateway(String),
}

impl BenchError {
    /// The process exit code: 2 for usage errors (as clap), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            BenchError::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl BenchArgs {
    /// Checks what clap cannot: ranges that depend on each other, required pairs.
    pub fn validate(&self) -> Result<(), BenchError> {
        let mut problems = Vec::new();
        if self.duration.is_zero() {
            problems.push("--duration must be more than 0".to_string());
        }
        if let Err(e) = load::body_template(self.body_size) {
            problems.push(e);
        }
        if self.body_size > MAX_BODY {
            problems.push(format!("--body-size must be at most {MAX_BODY} bytes"));
        }
        match (self.backend, &self.pg_url) {
            (BackendArg::Postgres, None) => {
                problems.push("--backend postgres needs --pg-url URL".to_string())
            }
            (BackendArg::Sqlite, Some(_)) => {
                problems.push("--pg-url applies only to --backend postgres".to_string())
            }
            _ => {}
        }
        if self.phases.is_empty() {
            problems.push("--phases names no phase".to_string());
        }
        if self.nodes > 1 && self.backend != BackendArg::Postgres {
            problems.push(
                "--nodes above 1 needs --backend postgres (nodes share one database)".to_string(),
            );
        }
        if self.backlog_timeout.is_zero() {
            problems.push("--backlog-timeout must be more than 0".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BenchError::Usage(problems.join("\n")))
        }
    }

    fn runs(&self, p: Phase) -> bool {
        self.phases.contains(&p) && (!matches!(p, Phase::Backlog | Phase::Pull) || self.backlog > 0)
    }
}

fn io(e: impl std::fmt::Display) -> BenchError {
    BenchError::Io(e.to_string())
}

/// Runs the bench and prints its report.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    args.validate()?;
    let load_rt = runtime("bench-load")?;
    let server_rt = runtime("bench-server")?;
    let report = load_rt.block_on(Bench::new(args.clone(), server_rt.handle().clone())?.run())?;
    if args.json {
        eprint!("{}", report.table());
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// Two worker threads: the machine has two cores, and the gateway has its own.
fn runtime(name: &str) -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(io)
}

/// The state of one bench invocation.
struct Bench {
    args: BenchArgs,
    servers: Handle,
    clock: Clock,
    nonce: u64,
    dir: tempfile::TempDir,
    verify: Verify,
    auth: Auth,
    report: Report,
    /// The run's fresh database (`--backend postgres`), dropped with the bench.
    db: Option<ScratchDatabase>,
}

impl Bench {
    fn new(args: BenchArgs, servers: Handle) -> Result<Bench, BenchError> {
        let dir = tempfile::Builder::new()
            .prefix("hookgate-bench-")
            .tempdir()
            .map_err(io)?;
        let params = Params {
            duration_s: args.duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            connections: args.connections,
            rate: args.rate,
            body_size: args.body_size,
            verify: match args.verify {
                OnOff::On => "on".into(),
                OnOff::Off => "off".into(),
            },
            backend: match args.backend {
                BackendArg::Sqlite => "sqlite".into(),
                BackendArg::Postgres => "postgres".into(),
            },
            backlog: if args.runs(Phase::Backlog) || args.runs(Phase::Pull) {
                args.backlog
            } else {
                0
            },
            phases: args
                .phases
                .iter()
                .filter(|p| args.runs(**p))
                .map(|p| p.name().to_string())
                .collect(),
            max_in_flight: MAX_IN_FLIGHT,
            consoles: args.consoles,
            pull_consumers: args.runs(Phase::Pull).then_some(args.pull_consumers),
            pull_batch: args.runs(Phase::Pull).then_some(args.pull_batch),
            nodes: args.nodes,
        };
        let mut report = Report::new(Machine::read(), params);
        report.notes.push(
            "the load generator, the sink and the baseline run in the bench process, \
             the gateway in its own; all share the machine's cores"
                .into(),
        );
        if let Some(t) = &args.transform {
            report.notes.push(format!(
                "every message runs through the transformation {} before its delivery",
                t.display()
            ));
        }
        if let Some(e) = &args.otlp_endpoint {
            report
                .notes
                .push(format!("traces on: the gateway exports its spans to {e}"));
        }
        let mut b = Bench {
            args,
            servers,
            clock: Clock::new(),
            nonce: rand::random(),
            dir,
            verify: Verify::Off,
            auth: Auth::None,
            report,
            db: None,
        };
        b.choose_verify()?;
        Ok(b)
    }

    /// HMAC when this build has the verifier, else bearer (and a note saying so).
    fn choose_verify(&mut self) -> Result<(), BenchError> {
        let secret = hex::encode(rand::random::<[u8; 16]>());
        let mut candidates = Vec::new();
        if self.args.verify == OnOff::On {
            candidates.push(Verify::Hmac {
                secret: secret.clone(),
            });
            candidates.push(Verify::Bearer {
                secret: secret.clone(),
            });
        } else {
            candidates.push(Verify::Off);
        }
        let probe = self.setup("probe", "http://127.0.0.1:9/".into(), false)?;
        let mut refusals = Vec::new();
        for v in candidates {
            let setup = Setup {
                verify: v.clone(),
                ..probe.clone()
            };
            match setup.check() {
                Ok(()) => {
                    if !refusals.is_empty() {
                        self.report.notes.push(format!(
                            "verification used `{}`: {}",
                            v.describe(),
                            refusals.join("; ")
                        ));
                    }
                    self.auth = match &v {
                        Verify::Off => Auth::None,
                        Verify::Hmac { secret } => {
                            Auth::hmac(gateway::SIGNATURE_HEADER, secret.as_bytes())
                                .map_err(BenchError::Io)?
                        }
                        Verify::Bearer { secret } => {
                            Auth::bearer(secret).map_err(BenchError::Io)?
                        }
                    };
                    self.report.verify_used = v.describe().to_string();
                    self.verify = v;
                    return Ok(());
                }
                Err(e) => refusals.push(format!("`{}` is refused ({e})", v.describe())),
            }
        }
        Err(BenchError::Gateway(format!(
            "no usable gateway config: {}",
            refusals.join("; ")
        )))
    }

    /// A gateway setup in `<tempdir>/<name>` on fresh ports; with `pull`, the
    /// source routed to a pull destination that lets every consumer hold a
    /// full batch of leases.
    fn setup(&self, name: &str, sink_url: String, pull: bool) -> Result<Setup, BenchError> {
        Ok(Setup {
            dir: self.dir.path().join(name),
            ingest: free_addr()?,
            admin: free_addr()?,
            token: hex::encode(rand::random::<[u8; 16]>()),
            sink_url,
            backend: match self.args.backend {
                BackendArg::Sqlite => Backend::Sqlite,
                BackendArg::Postgres => Backend::Postgres,
            },
            pg_url: match &self.db {
                Some(db) => Some(db.url().to_string()),
                None => self.args.pg_url.clone(),
            },
            verify: self.verify.clone(),
            max_body: self.args.body_size.max(1 << 20),
            max_in_flight: if pull {
                self.args.pull_consumers * self.args.pull_batch
            } else {
                MAX_IN_FLIGHT
            },
            pull,
            otlp_endpoint: self.args.otlp_endpoint.clone(),
            transform: self
                .args
                .transform
                .as_ref()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        })
    }

    fn workload(&self, addr: std::net::SocketAddr, run: u8) -> Result<Arc<Workload>, BenchError> {
        self.workload_on(vec![addr], run)
    }

    /// A workload whose connections are spread over `nodes` round-robin.
    fn workload_on(
        &self,
        nodes: Vec<std::net::SocketAddr>,
        run: u8,
    ) -> Result<Arc<Workload>, BenchError> {
        let path = format!("/in/{}", gateway::SOURCE);
        let first = *nodes
            .first()
            .ok_or_else(|| BenchError::Usage("no gateway to send to".into()))?;
        Workload::new(
            first,
            &path,
            self.args.body_size,
            self.auth.clone(),
            self.nonce,
            run,
            self.clock,
        )
        .map(|w| Arc::new(w.spread(nodes)))
        .map_err(BenchError::Usage)
    }

    /// Binds a loopback listener and runs `serve` on it on the server runtime.
    fn spawn_server<F, Fut>(
        &self,
        serve: F,
    ) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), BenchError>
    where
        F: FnOnce(tokio::net::TcpListener) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
        l.set_nonblocking(true).map_err(io)?;
        let addr = l.local_addr().map_err(io)?;
        let _guard = self.servers.enter();
        let l = tokio::net::TcpListener::from_std(l).map_err(io)?;
        Ok((addr, self.servers.spawn(serve(l))))
    }

    async fn run(mut self) -> Result<Report, BenchError> {
        let dir = self.dir.path().to_path_buf();
        let probe = tokio::task::spawn_blocking(move || fsync_probe(&dir, FSYNC_PROBES))
            .await
            .map_err(io)?
            .map_err(io)?;
        self.report.fsync_p50_ms = ms(&probe, 0.5);
        self.report.fsync_p99_ms = ms(&probe, 0.99);
        if let (BackendArg::Postgres, Some(server)) = (self.args.backend, &self.args.pg_url) {
            let db = ScratchDatabase::create(server)
                .await
                .map_err(|e| BenchError::Gateway(format!("--pg-url: {e}")))?;
            self.report.notes.push(format!(
                "postgres: a fresh database ({}) on the --pg-url server, dropped at the end",
                db.name()
            ));
            self.db = Some(db);
        }
        let a = &self.args;
        let (want_base, want_sat, want_rate, want_backlog, want_pull) = (
            a.runs(Phase::Baseline),
            a.runs(Phase::Saturation),
            a.runs(Phase::Rate),
            a.runs(Phase::Backlog),
            a.runs(Phase::Pull),
        );
        if want_base {
            self.baseline().await?;
        }
        let stats = Arc::new(SinkStats::new(self.nonce, self.clock));
        let (sink_addr, sink_task) = {
            let s = stats.clone();
            self.spawn_server(move |l| sink::run(l, s))?
        };
        let sink_url = format!("http://{sink_addr}/sink");
        let result = async {
            if want_sat || want_rate {
                self.gateway_load(&stats, &sink_url, want_sat, want_rate)
                    .await?;
            }
            if want_backlog {
                self.backlog(&stats, &sink_url).await?;
            }
            if want_pull {
                self.pull(&stats, &sink_url).await?;
            }
            Ok::<(), BenchError>(())
        }
        .await;
        sink_task.abort();
        result?;
        self.report.duplicate_deliveries = [RUN_SATURATION, RUN_RATE, RUN_BACKLOG]
            .iter()
            .map(|r| stats.snapshot(*r).repeats)
            .sum();
        let foreign = stats.foreign.load(Ordering::Relaxed);
        if foreign > 0 {
            self.report.notes.push(format!(
                "{foreign} deliveries reached the sink (or a pull consumer) without this run's `{}` \
                 header (left over from an earlier run in a shared database, or the header was \
                 not forwarded)",
                load::TAG_HEADER
            ));
        }
        self.report.derive_ratios();
        Ok(self.report)
    }

    fn errors(&mut self, phase: &'static str, r: &LoadReport) {
        self.report.errors.insert(
            phase,
            PhaseErrors {
                non_2xx: r.tally.non_2xx,
                errors: r.tally.errors,
            },
        );
    }

    /// Records the commits between two readings of the gateway's metrics.
    fn commits(
        &mut self,
        phase: &'static str,
        before: Option<CommitTotals>,
        after: Option<CommitTotals>,
        elapsed: Duration,
    ) {
        let (Some(b), Some(a)) = (before, after) else {
            return;
        };
        let n = a.commits - b.commits;
        if n <= 0.0 {
            return;
        }
        self.report.store_commits.insert(
            phase,
            Commits {
                commits_per_s: round(n / elapsed.as_secs_f64(), 1),
                commit_ms_avg: round((a.seconds - b.seconds) / n * 1e3, 3),
                batch_avg: round((a.jobs - b.jobs) / n, 1),
            },
        );
    }

    async fn baseline(&mut self) -> Result<(), BenchError> {
        let (addr, task) = self.spawn_server(baseline::run)?;
        let w = self.workload(addr, RUN_BASELINE)?;
        let live = Arc::new(Live::default());
        let a = &self.args;
        let p = Progress::start("baseline", live.clone(), None, a.warmup + a.duration);
        let r =
            load::closed_loop(w, a.connections as usize, a.warmup, a.duration, None, live).await;
        p.finish(format!("baseline: {:.0} requests/s", r.rps()))
            .await;
        task.abort();
        self.report.baseline_rps = Some(round(r.rps(), 1));
        self.report.baseline_p99_ms = ms(&r.tally.latency_us, 0.99);
        self.errors("baseline", &r);
        Ok(())
    }

    async fn gateway_load(
        &mut self,
        stats: &Arc<SinkStats>,
        sink_url: &str,
        want_sat: bool,
        want_rate: bool,
    ) -> Result<(), BenchError> {
        let n = self.args.nodes as usize;
        let mut setups = Vec::with_capacity(n);
        for i in 0..n {
            let name = if n == 1 {
                "gateway".to_string()
            } else {
                format!("gateway-{i}")
            };
            setups.push(self.setup(&name, sink_url.to_string(), false)?);
        }
        let mut gws = setups
            .iter()
            .map(Gateway::spawn)
            .collect::<Result<Vec<_>, _>>()?;
        for gw in &mut gws {
            gw.wait_healthy(Duration::from_secs(60)).await?;
        }
        if n > 1 {
            self.report.notes.push(format!(
                "{n} gateway nodes on one database; the load generator's connections go to \
                 them round-robin; rss_mb is the largest node's"
            ));
        }
        let consoles =
            consoles::Consoles::start(gws[0].admin, &setups[0].token, self.args.consoles);
        if want_sat {
            self.saturation(&mut gws, stats).await?;
        }
        if want_rate {
            self.fixed_rate(&mut gws, stats).await?;
        }
        let (answered, failed) = consoles.stop();
        if self.args.consoles > 0 {
            self.report.notes.push(format!(
                "{} open consoles on the overview during the load phases: {answered} pages \
                 and fragments answered, {failed} failed",
                self.args.consoles
            ));
        }
        let mem: Vec<_> = gws.iter().filter_map(Gateway::memory).collect();
        if let Some(rss) = mem.iter().map(|m| m.rss_kib).max() {
            self.report.rss_mb = Some(round(kib_to_mb(rss), 1));
        }
        if let Some(hwm) = mem.iter().map(|m| m.hwm_kib).max() {
            self.report.rss_peak_mb = Some(round(kib_to_mb(hwm), 1));
        }
        for gw in &mut gws {
            gw.terminate(Duration::from_secs(10));
        }
        Ok(())
    }

    /// The saturation phase: as many requests as the connections allow; then
    /// waits for the deliveries, so the next phase does not compete with them.
    async fn saturation(
        &mut self,
        gws: &mut [Gateway],
        stats: &Arc<SinkStats>,
    ) -> Result<(), BenchError> {
        let (warmup, duration, conns) = self.phase();
        let w = self.workload_on(gws.iter().map(|g| g.ingest).collect(), RUN_SATURATION)?;
        let sampler = Arc::new(
            nodes::Sampler::new(
                gws.iter().map(|g| g.admin).collect(),
                gws.iter().map(Gateway::pid).collect(),
                self.db.as_ref().map(|d| (d.url(), d.name())),
            )
            .await,
        );
        let live = Arc::new(Live::default());
        let p = Progress::start(
            "saturation",
            live.clone(),
            Some((stats.clone(), RUN_SATURATION)),
            warmup + duration,
        );
        // Deliveries counted at the edges of the measurement window.
        let from = tokio::time::Instant::now() + warmup;
        let edges = {
            let (s, sampler) = (stats.clone(), sampler.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(from).await;
                let a = (s.distinct(RUN_SATURATION), sampler.take().await);
                tokio::time::sleep_until(from + duration).await;
                (a, (s.distinct(RUN_SATURATION), sampler.take().await))
            })
        };
        let before = commit_totals(gws).await;
        let r = load::closed_loop(w, conns, warmup, duration, None, live).await;
        self.commits(
            "saturation",
            before,
            commit_totals(gws).await,
            warmup + duration,
        );
        let ((d0, s0), (d1, s1)) = edges.await.map_err(io)?;
        p.finish(format!("saturation: {:.0} acks/s", r.rps())).await;
        check_alive(gws)?;
        let (per_node, db) = sampler.figures(&s0, &s1, &r.per_node_ok, self.report.machine.cores);
        self.report.saturation_nodes = per_node;
        if let Some(db) = db {
            self.report.db_cpu_share = Some(db.cpu_share);
            self.report.db_cores_used = Some(db.cores_used);
            self.report.db_cpu_us_per_message = db.cpu_us_per_message;
        }
        if let Ok(s) = Arc::try_unwrap(sampler) {
            s.close().await;
        }
        self.report.ingest_rps = Some(round(r.rps(), 1));
        self.report.ingest_p50_ms = ms(&r.tally.latency_us, 0.5);
        self.report.ingest_p99_ms = ms(&r.tally.latency_us, 0.99);
        self.report.delivered_per_s =
            Some(round(load::per_second(d1.saturating_sub(d0), duration), 1));
        self.errors("saturation", &r);
        // The fixed-rate phase must not compete with a delivery backlog.
        let waited = wait_delivered(
            "saturation: delivering the rest",
            stats,
            RUN_SATURATION,
            r.acked_total,
            Duration::from_secs(60) + duration * 4,
        )
        .await;
        match waited {
            Ok(d) => self.report.delivery_catchup_ms = Some(round(d.as_secs_f64() * 1e3, 1)),
            Err(got) => self.report.notes.push(format!(
                "saturation: only {got} of {} accepted messages were delivered before the time-out",
                r.acked_total
            )),
        }
        check_alive(gws)?;
        Ok(())
    }

    /// The fixed-rate phase: `--rate` requests a second; acks and lag.
    async fn fixed_rate(
        &mut self,
        gws: &mut [Gateway],
        stats: &Arc<SinkStats>,
    ) -> Result<(), BenchError> {
        let (warmup, duration, conns) = self.phase();
        let rate = self.args.rate;
        let w = self.workload_on(gws.iter().map(|g| g.ingest).collect(), RUN_RATE)?;
        let live = Arc::new(Live::default());
        let p = Progress::start(
            "fixed rate",
            live.clone(),
            Some((stats.clone(), RUN_RATE)),
            warmup + duration,
        );
        let before = commit_totals(gws).await;
        let r = load::open_loop(w, conns, rate, warmup, duration, live).await;
        self.commits("rate", before, commit_totals(gws).await, warmup + duration);
        p.finish(format!(
            "fixed rate: {:.0}/s, ack p99 {} ms",
            r.rps(),
            ms(&r.tally.latency_us, 0.99).unwrap_or(f64::NAN)
        ))
        .await;
        check_alive(gws)?;
        let h = &r.tally.latency_us;
        self.report.rate_achieved_rps = Some(round(r.rps(), 1));
        self.report.ack_p50_ms = ms(h, 0.5);
        self.report.ack_p99_ms = ms(h, 0.99);
        self.report.ack_p999_ms = ms(h, 0.999);
        self.report.ack_max_ms = ms(h, 1.0);
        self.report.pacer_late_p99_ms = r.pacer_late_us.as_ref().and_then(|l| ms(l, 0.99));
        self.errors("rate", &r);
        if let Err(got) = wait_delivered(
            "fixed rate: delivering the rest",
            stats,
            RUN_RATE,
            r.acked_total,
            Duration::from_secs(60),
        )
        .await
        {
            self.report.notes.push(format!(
                "fixed rate: only {got} of {} accepted messages were delivered before the time-out",
                r.acked_total
            ));
        }
        let lag = stats.snapshot(RUN_RATE).lag_us;
        self.report.lag_p50_ms = ms(&lag, 0.5);
        self.report.lag_p99_ms = ms(&lag, 0.99);
        self.report.lag_p999_ms = ms(&lag, 0.999);
        if r.pacer_late_us
            .as_ref()
            .is_some_and(|l| l.value_at_quantile(0.99) > 1000)
        {
            self.report.notes.push(
                "fixed rate: the pacer ran more than 1 ms late at p99 (the machine is \
                 overloaded); latencies include that delay"
                    .into(),
            );
        }
        Ok(())
    }

    /// A load phase's warm-up, duration and connections.
    fn phase(&self) -> (Duration, Duration, usize) {
        (
            self.args.warmup,
            self.args.duration,
            self.args.connections as usize,
        )
    }

    /// Sends `--backlog` messages to `gw` as fast as the connections allow, and
    /// records the phase's errors (and a note when not all were accepted).
    async fn ingest_counted(
        &mut self,
        gw: &mut Gateway,
        run: u8,
        phase: &'static str,
        label: &'static str,
    ) -> Result<LoadReport, BenchError> {
        let n = self.args.backlog;
        let w = self.workload(gw.ingest, run)?;
        let live = Arc::new(Live::default());
        let p = Progress::counted(label, live.clone(), n);
        let conns = self.args.connections as usize;
        let limit = self.args.backlog_timeout;
        let r = load::closed_loop(w, conns, Duration::ZERO, limit, Some(n), live).await;
        p.finish(format!(
            "{phase}: {} messages accepted at {:.0}/s",
            r.acked_total,
            r.rps()
        ))
        .await;
        gw.check_alive()?;
        self.errors(phase, &r);
        if r.acked_total < n {
            self.report.notes.push(format!(
                "{phase}: {} of {n} messages were accepted",
                r.acked_total
            ));
        }
        Ok(r)
    }

    /// Stops the gateway after a drain (an error if it died meanwhile), with a
    /// note when the drain did not finish in time.
    fn end_drain(
        &mut self,
        gw: &mut Gateway,
        drained: Result<Duration, u64>,
        phase: &str,
        done: &str,
        accepted: u64,
    ) -> Result<(), BenchError> {
        gw.check_alive()?;
        gw.terminate(Duration::from_secs(10));
        if let Err(got) = drained {
            self.report.notes.push(format!(
                "{phase}: only {got} of {accepted} messages were {done} within {:?}",
                self.args.backlog_timeout
            ));
        }
        Ok(())
    }

    async fn backlog(&mut self, stats: &Arc<SinkStats>, sink_url: &str) -> Result<(), BenchError> {
        let limit = self.args.backlog_timeout;
        let setup = self.setup("backlog", sink_url.to_string(), false)?;
        let mut gw = Gateway::spawn(&setup)?;
        gw.wait_healthy(Duration::from_secs(60)).await?;
        let pause = format!("/api/v1/destinations/{}/pause", gateway::DESTINATION);
        let resume = format!("/api/v1/destinations/{}/resume", gateway::DESTINATION);
        match gw.admin_post(&pause).await {
            Some(200) => {}
            other => {
                return Err(BenchError::Gateway(format!(
                    "pausing the destination failed ({other:?})"
                )))
            }
        }

        let r = self
            .ingest_counted(&mut gw, RUN_BACKLOG, "backlog", "backlog: ingest")
            .await?;
        let accepted = r.acked_total;
        self.report.backlog_messages = Some(accepted);
        self.report.backlog_ingest_rps = Some(round(r.rps(), 1));
        let held = gw.memory();
        self.report.backlog_rss_after_ingest_mb = held.map(|m| round(kib_to_mb(m.rss_kib), 1));

        // A crash, then a restart: how soon does delivery resume?
        gw.kill();
        let t0 = Instant::now();
        gw.start()?;
        gw.wait_healthy(Duration::from_secs(120)).await?;
        self.report.restart_to_ready_ms = Some(round(t0.elapsed().as_secs_f64() * 1e3, 1));
        match gw.admin_post(&resume).await {
            Some(200) => {}
            other => {
                return Err(BenchError::Gateway(format!(
                    "resuming the destination after the restart failed ({other:?})"
                )))
            }
        }
        let drained =
            wait_delivered("backlog: draining", stats, RUN_BACKLOG, accepted, limit).await;
        let drain_peak = gw.memory();
        self.end_drain(&mut gw, drained, "backlog", "delivered", accepted)?;

        let s = stats.snapshot(RUN_BACKLOG);
        let t0_ns = self.clock.ns(t0);
        if let Some(first) = s.first_ns {
            self.report.restart_to_first_delivery_ms =
                Some(round(first.saturating_sub(t0_ns) as f64 / 1e6, 1));
        }
        (self.report.backlog_drain_s, self.report.drain_per_s) = drain_rate(&s);
        self.report.backlog_delivered = Some(s.distinct);
        self.report.backlog_rss_restart_peak_mb =
            drain_peak.map(|m| round(kib_to_mb(m.hwm_kib), 1));
        let peak = [held.map(|m| m.hwm_kib), drain_peak.map(|m| m.hwm_kib)]
            .into_iter()
            .flatten()
            .max();
        self.report.backlog_rss_mb = peak.map(|k| round(kib_to_mb(k), 1));
        self.report.notes.push(
            "backlog: the destination is paused through the admin API while messages are \
             ingested; the gateway is then killed with SIGKILL, started again, and the \
             destination resumed as soon as the admin API answers"
                .into(),
        );
        Ok(())
    }

    /// The pull phase: the source routed to a pull destination, `--backlog`
    /// messages ingested, then drained by the consumers ([`pull`]).
    async fn pull(&mut self, stats: &Arc<SinkStats>, sink_url: &str) -> Result<(), BenchError> {
        let limit = self.args.backlog_timeout;
        let setup = self.setup("pull", sink_url.to_string(), true)?;
        let mut gw = Gateway::spawn(&setup)?;
        gw.wait_healthy(Duration::from_secs(60)).await?;
        let r = self
            .ingest_counted(&mut gw, RUN_PULL, "pull", "pull: ingest")
            .await?;
        let accepted = r.acked_total;
        self.report.pull_messages = Some(accepted);
        self.report.pull_ingest_rps = Some(round(r.rps(), 1));

        let target = pull::Target {
            admin: gw.admin,
            token: setup.token.clone(),
            destination: gateway::PULL_DESTINATION.to_string(),
        };
        let (k, b) = (self.args.pull_consumers, self.args.pull_batch);
        let consumers = pull::Consumers::start(target, k, b, stats.clone(), self.clock)
            .map_err(BenchError::Io)?;
        let drained = wait_delivered("pull: draining", stats, RUN_PULL, accepted, limit).await;
        let tally = consumers.stop().await;
        let peak = gw.memory();
        self.end_drain(&mut gw, drained, "pull", "acknowledged", accepted)?;

        let s = stats.snapshot(RUN_PULL);
        (self.report.pull_drain_s, self.report.pull_per_s) = drain_rate(&s);
        self.report.pull_acknowledged = Some(s.distinct);
        self.report.pull_repeats = Some(s.repeats);
        self.report.pull_call_p50_ms = ms(&tally.pull_us, 0.5);
        self.report.pull_call_p99_ms = ms(&tally.pull_us, 0.99);
        self.report.pull_ack_p50_ms = ms(&tally.ack_us, 0.5);
        self.report.pull_ack_p99_ms = ms(&tally.ack_us, 0.99);
        self.report.pull_batch_avg = tally.batch_avg().map(|x| round(x, 1));
        self.report.pull_calls = Some(tally.pulls + tally.empty_pulls);
        self.report.pull_failed_calls = Some(tally.failed_calls);
        self.report.pull_not_recorded = Some(tally.not_recorded);
        self.report.pull_rss_mb = peak.map(|m| round(kib_to_mb(m.hwm_kib), 1));
        self.report.notes.push(format!(
            "pull: the source is routed to a pull destination (max_in_flight {}) instead of \
             the sink; {k} consumers each pull up to {b} deliveries (wait 1s) and acknowledge \
             them all as ok in one call; the drain runs from the first acknowledged delivery \
             to the last",
            setup.max_in_flight
        ));
        Ok(())
    }
}

/// The store commit totals of every node added up (`None` if one did not answer).
async fn commit_totals(gws: &[Gateway]) -> Option<CommitTotals> {
    let mut sum = CommitTotals::default();
    for gw in gws {
        let t = gw.commit_totals().await?;
        sum.commits += t.commits;
        sum.seconds += t.seconds;
        sum.jobs += t.jobs;
    }
    Some(sum)
}

/// An error if any node has exited.
fn check_alive(gws: &mut [Gateway]) -> Result<(), BenchError> {
    gws.iter_mut().try_for_each(Gateway::check_alive)
}

/// A drain's seconds from its first delivery to its last, and its distinct
/// deliveries per second over that span (`None` without a span to divide by).
fn drain_rate(s: &sink::RunStats) -> (Option<f64>, Option<f64>) {
    let (Some(first), Some(last)) = (s.first_ns, s.last_ns) else {
        return (None, None);
    };
    let span = Duration::from_nanos(last.saturating_sub(first));
    let rate = (!span.is_zero()).then(|| round(load::per_second(s.distinct, span), 1));
    (Some(round(span.as_secs_f64(), 3)), rate)
}

/// Syncs the disk probe makes.
const FSYNC_PROBES: usize = 200;

/// Appends 4 KiB to a file in `dir` and syncs it (`fdatasync`), `n` times: the
/// disk's own price of one durable acknowledgement, the floor under ack latency.
fn fsync_probe(dir: &std::path::Path, n: usize) -> std::io::Result<hdrhistogram::Histogram<u64>> {
    use std::io::Write as _;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = [0x5a_u8; 4096];
    let mut h = load::histogram();
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        h.saturating_record((t.elapsed().as_micros() as u64).max(1));
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(h)
}

/// Waits until the sink has `want` distinct messages of `run`, with a progress
/// line. `Ok(time waited)`, or `Err(delivered)` after `timeout`.
async fn wait_delivered(
    label: &'static str,
    stats: &Arc<SinkStats>,
    run: u8,
    want: u64,
    timeout: Duration,
) -> Result<Duration, u64> {
    let t0 = Instant::now();
    let mut last_print = t0;
    loop {
        let got = stats.distinct(run);
        if got >= want {
            clear_line();
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            clear_line();
            return Err(got);
        }
        if last_print.elapsed() >= progress_every() {
            last_print = Instant::now();
            status_line(&format!(
                "{label}: {got}/{want} delivered, {:.1}s",
                t0.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Width the progress line is padded to, so a shorter line erases a longer one.
const LINE: usize = 100;

/// Whether stderr is a terminal: then the progress line is rewritten in place
/// (`\r`) four times a second; otherwise (a log file, a pipe) a plain line is
/// written every few seconds, so logs stay readable.
fn tty() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal()
}

/// How often the progress line changes.
fn progress_every() -> Duration {
    if tty() {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(5)
    }
}

fn status_line(s: &str) {
    let mut e = std::io::stderr().lock();
    if tty() {
        let _ = write!(e, "\r{s:LINE$}");
    } else {
        let _ = writeln!(e, "{s}");
    }
    let _ = e.flush();
}

fn clear_line() {
    if tty() {
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r{:LINE$}\r", "");
        let _ = e.flush();
    }
}

/// Ends the progress line with a summary that stays.
fn summary_line(s: &str) {
    let mut e = std::io::stderr().lock();
    if tty() {
        let _ = writeln!(e, "\r{s:LINE$}");
    } else {
        let _ = writeln!(e, "{s}");
    }
}

/// The progress line of a running phase, rewritten on stderr four times a second.
struct Progress {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// A timed phase of `total` seconds.
    fn start(
        label: &'static str,
        live: Arc<Live>,
        sink: Option<(Arc<SinkStats>, u8)>,
        total: Duration,
    ) -> Progress {
        Self::spawn(label, live, sink, Some(total), None)
    }

    /// A phase of `n` requests.
    fn counted(label: &'static str, live: Arc<Live>, n: u64) -> Progress {
        Self::spawn(label, live, None, None, Some(n))
    }

    fn spawn(
        label: &'static str,
        live: Arc<Live>,
        sink: Option<(Arc<SinkStats>, u8)>,
        total: Option<Duration>,
        count: Option<u64>,
    ) -> Progress {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            let every = progress_every();
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            let (mut last_n, mut last_t) = (0u64, t0);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = s.cancelled() => break,
                }
                let now = Instant::now();
                let n = live.done.load(Ordering::Relaxed);
                let rate = load::per_second(n - last_n, now - last_t);
                (last_n, last_t) = (n, now);
                let mut line = match (total, count) {
                    (Some(t), _) => format!(
                        "{label}: {:.1}/{:.0}s",
                        (now - t0).as_secs_f64(),
                        t.as_secs_f64()
                    ),
                    (_, Some(c)) => format!("{label}: {n}/{c}"),
                    _ => label.to_string(),
                };
                line.push_str(&format!(
                    "  {n} answers, {rate:.0}/s, {} failed",
                    live.failed.load(Ordering::Relaxed)
                ));
                if let Some((stats, run)) = &sink {
                    line.push_str(&format!(", {} delivered", stats.distinct(*run)));
                }
                status_line(&line);
            }
        });
        Progress { stop, task }
    }

    /// Stops the line and prints `summary` in its place.
    async fn finish(self, summary: String) {
        self.stop.cancel();
        let _ = self.task.await;
        summary_line(&summary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, String> {
        let mut v = vec!["bench"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v).map_err(|e| e.to_string())?;
        cli.args.validate().map_err(|e| e.to_string())?;
        Ok(cli.args)
    }

    #[test]
    fn defaults_run_every_phase() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.duration, Duration::from_secs(10));
        assert_eq!((a.connections, a.rate, a.body_size), (64, 2000, 1024));
        assert_eq!(a.verify, OnOff::On);
        assert_eq!(a.backend, BackendArg::Sqlite);
        for p in [
            Phase::Baseline,
            Phase::Saturation,
            Phase::Rate,
            Phase::Backlog,
        ] {
            assert!(a.runs(p), "{p:?}");
        }
        assert!(!a.runs(Phase::Pull), "pull runs only when named");
        assert_eq!((a.pull_consumers, a.pull_batch), (4, 100));
        let a = parse(&["--backlog", "0", "--phases", "rate,backlog,pull"]).unwrap();
        assert!(a.runs(Phase::Rate) && !a.runs(Phase::Backlog) && !a.runs(Phase::Baseline));
        assert!(!a.runs(Phase::Pull));
        let a = parse(&["--phases", "pull", "--pull-batch", "1000"]).unwrap();
        assert!(a.runs(Phase::Pull) && !a.runs(Phase::Backlog));
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        for (args, says) in [
            (&["--duration", "soon"][..], "duration"),
            (&["--duration", "0s"][..], "--duration must be more than 0"),
            (&["--connections", "0"][..], "connections"),
            (&["--body-size", "10"][..], "--body-size must be at least"),
            (
                &["--body-size", "99999999"][..],
                "--body-size must be at most",
            ),
            (&["--verify", "maybe"][..], "maybe"),
            (&["--backend", "postgres"][..], "--pg-url"),
            (
                &["--pg-url", "postgres://x"][..],
                "only to --backend postgres",
            ),
            (&["--phases", "warp"][..], "warp"),
            (&["--rate", "0"][..], "rate"),
            (&["--pull-batch", "1001"][..], "pull-batch"),
            (&["--pull-batch", "0"][..], "pull-batch"),
            (&["--pull-consumers", "0"][..], "pull-consumers"),
        ] {
            let err = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }
}
