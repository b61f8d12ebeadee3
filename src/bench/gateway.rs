//! The gateway under test: a config written into the bench's temp dir and
//! `hookgate serve` run as a child process of the current executable, so that
//! its memory can be read from `/proc/<pid>/status` and it can be killed and
//! restarted like a real deployment.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BenchError;
use crate::config::Backend;

/// How the bench source authenticates requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// No `verify` table.
    Off,
    /// `{ type = "hmac", header = "X-Signature", algorithm = "sha256", encoding = "hex" }`.
    Hmac {
        /// The shared secret.
        secret: String,
    },
    /// `{ type = "bearer" }`: the fallback while a build has no `hmac` verifier.
    Bearer {
        /// The token.
        secret: String,
    },
}

impl Verify {
    /// How the report names it.
    pub fn describe(&self) -> &'static str {
        match self {
            Verify::Off => "off",
            Verify::Hmac { .. } => "hmac-sha256",
            Verify::Bearer { .. } => "bearer",
        }
    }
}

/// The signature header of the `hmac` verifier.
pub const SIGNATURE_HEADER: &str = "X-Signature";
/// The source name (`/in/bench`).
pub const SOURCE: &str = "bench";
/// The destination name.
pub const DESTINATION: &str = "sink";
/// The pull destination's name (the pull phase).
pub const PULL_DESTINATION: &str = "pull";

/// Everything a gateway config is made from.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Data dir (the SQLite file, the config, the log).
    pub dir: PathBuf,
    /// Ingest listener.
    pub ingest: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// Admin API token.
    pub token: String,
    /// The sink's URL.
    pub sink_url: String,
    /// Which store.
    pub backend: Backend,
    /// PostgreSQL URL (backend postgres).
    pub pg_url: Option<String>,
    /// Source verification.
    pub verify: Verify,
    /// Largest body.
    pub max_body: usize,
    /// Concurrent deliveries (leases, for the pull destination) at most.
    pub max_in_flight: u32,
    /// Route the source to a pull destination instead of the sink.
    pub pull: bool,
    /// Export traces to this OTLP/HTTP endpoint (`[telemetry] otlp_endpoint`).
    pub otlp_endpoint: Option<String>,
    /// Run every message through this script (a transformation on the route).
    pub transform: Option<std::path::PathBuf>,
}

/// A TOML string literal (paths and URLs may hold quotes or backslashes).
fn lit(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl Setup {
    /// The config file's text.
    pub fn config(&self) -> String {
        let storage = match self.backend {
            Backend::Sqlite => format!(
                "backend = \"sqlite\"\npath = {}",
                lit(&self.dir.join("hookgate.db").display().to_string())
            ),
            Backend::Postgres => format!(
                "backend = \"postgres\"\nurl = {}",
                lit(self.pg_url.as_deref().unwrap_or_default())
            ),
        };
        let verify = match &self.verify {
            Verify::Off => String::new(),
            Verify::Hmac { secret } => format!(
                "verify = {{ type = \"hmac\", header = {}, secret = {}, algorithm = \"sha256\", encoding = \"hex\" }}\n",
                lit(SIGNATURE_HEADER),
                lit(secret)
            ),
            Verify::Bearer { secret } => {
                format!("verify = {{ type = \"bearer\", secret = {} }}\n", lit(secret))
            }
        };
        // Only one destination is routed, so a message is delivered once.
        let (to, pull) = if self.pull {
            (
                PULL_DESTINATION,
                format!(
                    "\n[[destinations]]\nname = \"{PULL_DESTINATION}\"\ntype = \"pull\"\n\
                     max_in_flight = {}\nretry = {{ schedule = [\"0s\", \"1s\", \"5s\", \"30s\"] }}\n",
                    self.max_in_flight
                ),
            )
        } else {
            (DESTINATION, String::new())
        };
        let telemetry = self
            .otlp_endpoint
            .as_deref()
            .map(|e| format!("[telemetry]\notlp_endpoint = {}\n", lit(e)))
            .unwrap_or_default();
        let transform = self
            .transform
            .as_ref()
            .map(|f| {
                format!(
                    "transform = \"bench\"\n\n[[transforms]]\nname = \"bench\"\nfile = {}\n",
                    lit(&f.display().to_string())
                )
            })
            .unwrap_or_default();
        format!(
            r#"# Written by `hookgate bench`.
[server]
listen = "{ingest}"
admin_listen = "{admin}"
admin_tokens = [{token}]
max_body = "{max_body}B"
shutdown_grace = "5s"

[storage]
{storage}

{telemetry}[[sources]]
name = "{SOURCE}"
{verify}
[[destinations]]
name = "{DESTINATION}"
url = {sink}
timeout = "10s"
max_in_flight = {mif}
retry = {{ schedule = ["0s", "1s", "5s", "30s"] }}
{pull}
[[routes]]
source = "{SOURCE}"
to = "{to}"
{transform}"#,
            ingest = self.ingest,
            admin = self.admin,
            token = lit(&self.token),
            max_body = self.max_body,
            sink = lit(&self.sink_url),
            mif = self.max_in_flight,
        )
    }

    /// Checks the config the way `serve` will (parse, validate, build the
    /// source): `Err` says why it would not start.
    pub fn check(&self) -> Result<(), String> {
        let text = self.config();
        let cfg =
            crate::config::parse(&text, "bench.toml", &|_| None).map_err(|e| e.to_string())?;
        for s in &cfg.sources {
            crate::ingest::source::Source::build(s, cfg.storage.retention.0)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A free loopback address (bound, then released for the child to take).
pub fn free_addr() -> Result<SocketAddr, BenchError> {
    let l = StdListener::bind("127.0.0.1:0").map_err(|e| BenchError::Io(e.to_string()))?;
    l.local_addr().map_err(|e| BenchError::Io(e.to_string()))
}

/// Memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident set now (VmRSS), KiB.
    pub rss_kib: u64,
    /// Peak resident set (VmHWM), KiB.
    pub hwm_kib: u64,
}

impl Memory {
    /// Reads a process's memory; `None` if it is gone or `/proc` is missing.
    pub fn of(pid: u32) -> Option<Memory> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Memory::parse(&text)
    }

    fn parse(status: &str) -> Option<Memory> {
        let field = |name: &str| {
            status.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        };
        Some(Memory {
            rss_kib: field("VmRSS")?,
            hwm_kib: field("VmHWM")?,
        })
    }
}

/// Totals of the store's commit histograms, read from `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommitTotals {
    /// Commits so far.
    pub commits: f64,
    /// Seconds spent in them (writes and sync).
    pub seconds: f64,
    /// Jobs committed (messages, attempt records, ...).
    pub jobs: f64,
}

impl CommitTotals {
    /// Reads `hookgate_store_commit_seconds` and `hookgate_store_commit_batch`
    /// sums and counts from Prometheus text.
    pub fn parse(text: &str) -> CommitTotals {
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        CommitTotals {
            commits: value("hookgate_store_commit_seconds_count"),
            seconds: value("hookgate_store_commit_seconds_sum"),
            jobs: value("hookgate_store_commit_batch_sum"),
        }
    }
}

/// KiB as MB (10^6 bytes, as `free` and most dashboards mean by "MB").
pub fn kib_to_mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// A running `hookgate serve` child.
pub struct Gateway {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    /// Ingest address.
    pub ingest: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    token: String,
    client: reqwest::Client,
}

impl Gateway {
    /// Writes the config into `setup.dir` and starts the child.
    pub fn spawn(setup: &Setup) -> Result<Gateway, BenchError> {
        std::fs::create_dir_all(&setup.dir).map_err(|e| BenchError::Io(e.to_string()))?;
        let config = setup.dir.join("bench.toml");
        std::fs::write(&config, setup.config()).map_err(|e| BenchError::Io(e.to_string()))?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| BenchError::Io(e.to_string()))?;
        let mut g = Gateway {
            child: None,
            config,
            log: setup.dir.join("hookgate.log"),
            ingest: setup.ingest,
            admin: setup.admin,
            token: setup.token.clone(),
            client,
        };
        g.start()?;
        Ok(g)
    }

    /// Starts (or restarts) the child on the same config, ports and data.
    pub fn start(&mut self) -> Result<(), BenchError> {
        let exe = std::env::current_exe()
            .map_err(|e| BenchError::Io(format!("cannot find the hookgate executable: {e}")))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| BenchError::Io(e.to_string()))?;
        let child = Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env_remove("HOOKGATE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| BenchError::Io(format!("cannot start the gateway: {e}")))?;
        self.child = Some(child);
        Ok(())
    }

    /// The child's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The child's memory now.
    pub fn memory(&self) -> Option<Memory> {
        self.pid().and_then(Memory::of)
    }

    /// An error if the child has exited.
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        let exited = match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten(),
            None => return Err(BenchError::Gateway("the gateway is not running".into())),
        };
        match exited {
            Some(status) => {
                self.child = None;
                Err(BenchError::Gateway(format!(
                    "the gateway exited ({status}); its log ends with:\n{}",
                    self.log_tail(20)
                )))
            }
            None => Ok(()),
        }
    }

    /// Waits until `/healthz` answers 200.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<(), BenchError> {
        let deadline = Instant::now() + timeout;
        let url = format!("http://{}/healthz", self.admin);
        loop {
            self.check_alive()?;
            if let Ok(r) = self.client.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(BenchError::Gateway(format!(
                    "the gateway did not become healthy within {timeout:?}; its log ends with:\n{}",
                    self.log_tail(20)
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// `POST`s an admin API path with the token; the status, or `None` when the
    /// admin listener did not answer.
    pub async fn admin_post(&self, path: &str) -> Option<u16> {
        self.client
            .post(format!("http://{}{path}", self.admin))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// The store's commit totals so far (`None` when `/metrics` does not answer).
    pub async fn commit_totals(&self) -> Option<CommitTotals> {
        let r = self
            .client
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .ok()?;
        Some(CommitTotals::parse(&r.text().await.ok()?))
    }

    /// Kills the child with SIGKILL: no flush, no drain (a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the child with SIGTERM (a graceful drain), SIGKILL after `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // std can only send SIGKILL, and `unsafe` (libc) is off limits: the
        // `kill` command sends SIGTERM.
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + grace;
        while sent && Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// The last `n` lines of the child's log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(verify: Verify, backend: Backend) -> Setup {
        Setup {
            dir: PathBuf::from("/tmp/x \"quoted\""),
            ingest: "127.0.0.1:1".parse().unwrap(),
            admin: "127.0.0.1:2".parse().unwrap(),
            token: "tok".into(),
            sink_url: "http://127.0.0.1:3/sink".into(),
            backend,
            pg_url: Some("postgres://u@127.0.0.1/db".into()),
            verify,
            max_body: 1 << 20,
            max_in_flight: 64,
            pull: false,
            otlp_endpoint: None,
            transform: None,
        }
    }

    #[test]
    fn a_transform_runs_on_the_route() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t \"quoted\".js");
        std::fs::write(&file, "function transform(r) { return r; }").unwrap();
        let s = Setup {
            transform: Some(file),
            ..setup(Verify::Off, Backend::Sqlite)
        };
        let text = s.config();
        let cfg = crate::config::parse(&text, "bench.toml", &|_| None)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.routes[0].transform.as_deref(), Some("bench"));
        assert_eq!(
            cfg.transforms[0].text(),
            Some("function transform(r) { return r; }")
        );
    }

    #[test]
    fn configs_parse_for_every_verify_mode_and_backend() {
        for v in [
            Verify::Off,
            Verify::Bearer { secret: "s".into() },
            Verify::Hmac { secret: "s".into() },
        ] {
            for b in [Backend::Sqlite, Backend::Postgres] {
                let text = setup(v.clone(), b).config();
                let cfg = crate::config::parse(&text, "bench.toml", &|_| None)
                    .unwrap_or_else(|e| panic!("{e}\n{text}"));
                assert_eq!(cfg.storage.backend, b);
                assert_eq!(cfg.sources.len(), 1);
                assert_eq!(cfg.telemetry.otlp_endpoint, None);
            }
        }
    }

    #[test]
    fn the_pull_setup_routes_the_source_to_a_pull_destination_only() {
        let s = Setup {
            pull: true,
            max_in_flight: 400,
            ..setup(Verify::Off, Backend::Sqlite)
        };
        let text = s.config();
        let cfg = crate::config::parse(&text, "bench.toml", &|_| None)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let pull = cfg
            .destinations
            .iter()
            .find(|d| d.name == PULL_DESTINATION)
            .unwrap();
        assert_eq!(pull.kind, crate::config::def::DestinationType::Pull);
        assert_eq!(pull.max_in_flight, Some(400));
        assert_eq!(cfg.routes.len(), 1);
        assert!(s.check().is_ok());
        assert!(!setup(Verify::Off, Backend::Sqlite)
            .config()
            .contains("type = \"pull\""));
    }

    #[test]
    fn bearer_and_off_build_in_this_build() {
        assert!(
            setup(Verify::Bearer { secret: "s".into() }, Backend::Sqlite)
                .check()
                .is_ok()
        );
        assert!(setup(Verify::Off, Backend::Sqlite).check().is_ok());
    }

    #[test]
    fn reads_commit_totals_from_prometheus_text() {
        let text = "# TYPE hookgate_store_commit_seconds summary\n\
            hookgate_store_commit_seconds_bucket{le=\"0.001\"} 3\n\
            hookgate_store_commit_seconds_sum 0.5\n\
            hookgate_store_commit_seconds_count 40\n\
            hookgate_store_commit_batch_sum 1200\n\
            hookgate_store_commit_batch_count 40\n";
        assert_eq!(
            CommitTotals::parse(text),
            CommitTotals {
                commits: 40.0,
                seconds: 0.5,
                jobs: 1200.0
            }
        );
        assert_eq!(CommitTotals::parse(""), CommitTotals::default());
    }

    #[test]
    fn reads_proc_status() {
        let m = Memory::parse("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n").unwrap();
        assert_eq!(
            m,
            Memory {
                rss_kib: 1024,
                hwm_kib: 2048
            }
        );
        assert!(Memory::parse("Name:\tx\n").is_none());
        let me = Memory::of(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.hwm_kib >= me.rss_kib);
    }
}
