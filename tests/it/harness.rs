//! Test harness: runs the gateway on loopback ports with a temp data dir, and
//! a real HTTP receiver whose answers a test controls.
//!
//! A gateway runs in one of two ways, from the same config file:
//! - **in-process** ([`Gateway::start`]): `hookgate::app::start` in the test's
//!   own runtime, bound on port 0. Fast to start and stop; most tests use it.
//! - **the real binary** ([`Gateway::binary`]): `hookgate serve` as a child
//!   process, for what only a process has: kill -9, signals, its log output,
//!   exit codes, resident memory, and metrics.
//!
//! Metrics: the Prometheus recorder is global to a process, so an in-process
//! gateway's `/metrics` shows the sum over every gateway of the test binary
//! running at that moment (tests run in parallel). A recorder per test cannot
//! be installed globally, and a thread-local one would miss the tasks on other
//! worker threads; so tests that read metrics run the binary, and
//! [`Gateway::metrics_text`] refuses an in-process gateway instead of
//! answering with other tests' numbers.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The admin token every test gateway accepts.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The config file of a test gateway: a `[server]` section on `ingest` and
/// `admin` (with `server_extra` lines) unless `body` has its own, a
/// `[storage]` section with a database in `dir` unless `body` has its own,
/// then `body`. Both kinds of start write their config with this.
pub fn config_text(
    body: &str,
    server_extra: &str,
    ingest: SocketAddr,
    admin: SocketAddr,
    dir: &Path,
) -> String {
    let mut text = String::new();
    if !body.contains("[server]") {
        let grace = if server_extra.contains("shutdown_grace") {
            ""
        } else {
            "shutdown_grace = \"5s\"\n"
        };
        text.push_str(&format!(
            "[server]\nlisten = \"{ingest}\"\nadmin_listen = \"{admin}\"\nadmin_tokens = [\"{ADMIN_TOKEN}\"]\n{grace}{server_extra}\n\n"
        ));
    }
    if !body.contains("[storage]") {
        text.push_str(&format!(
            "[storage]\npath = \"{}\"\n\n",
            dir.join("hookgate.db").display()
        ));
    }
    text.push_str(body);
    text
}

/// The usual pipeline: source `app` routed to destination `svc` at `rx`'s
/// `/hook`, with `dest` as extra lines of the destination; the SQLite database
/// at `db` when given (else the gateway's data dir).
pub fn app_to_svc(rx: &Receiver, db: Option<&Path>, dest: &str) -> String {
    let storage = db.map_or(String::new(), |db| {
        format!("[storage]\npath = \"{}\"\n", db.display())
    });
    format!(
        r#"{storage}
[[sources]]
name = "app"

[[destinations]]
name = "svc"
url = "{}"
{dest}

[[routes]]
source = "app"
to = "svc"
"#,
        rx.url("/hook")
    )
}

/// How a [`Gateway`] runs.
enum Node {
    /// `hookgate serve` as a child process (None once stopped).
    Process(Option<Child>),
    /// `hookgate::app::start` in the test's runtime (None once stopped).
    InProcess(Option<hookgate::app::Running>),
}

/// A running gateway, in-process or the real binary.
pub struct Gateway {
    node: Node,
    /// Ingest address.
    pub ingest: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// The data dir (kept across restarts).
    pub dir: Arc<tempfile::TempDir>,
    /// The config file.
    pub config: PathBuf,
    log: PathBuf,
    envs: Vec<(String, String)>,
    /// Extra arguments of `serve`.
    args: Vec<String>,
}

impl Gateway {
    /// Writes a config (see [`config_text`]) and starts the gateway in this
    /// process.
    pub async fn start(body: &str) -> Gateway {
        Self::start_opts(body, "", &[]).await
    }

    /// Like [`Gateway::start`] with extra `[server]` lines and environment
    /// variables (seen by the config's `${VAR}` references only).
    pub async fn start_opts(body: &str, server_extra: &str, envs: &[(&str, &str)]) -> Gateway {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut g = Self::new(body, server_extra, envs, any, any, Node::InProcess(None));
        g.run_in_process().await;
        g
    }

    /// Writes a config (see [`config_text`]) and starts the real binary.
    pub async fn binary(body: &str) -> Gateway {
        Self::binary_opts(body, "", &[]).await
    }

    /// Like [`Gateway::binary`] with extra `[server]` lines and environment variables.
    pub async fn binary_opts(body: &str, server_extra: &str, envs: &[(&str, &str)]) -> Gateway {
        let ingest: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut g = Self::new(body, server_extra, envs, ingest, admin, Node::Process(None));
        g.spawn().await;
        g
    }

    fn new(
        body: &str,
        server_extra: &str,
        envs: &[(&str, &str)],
        ingest: SocketAddr,
        admin: SocketAddr,
        node: Node,
    ) -> Gateway {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let config = dir.path().join("hookgate.toml");
        let text = config_text(body, server_extra, ingest, admin, dir.path());
        std::fs::write(&config, text).unwrap();
        Gateway {
            node,
            ingest,
            admin,
            log: dir.path().join("hookgate.log"),
            dir,
            config,
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: Vec::new(),
        }
    }

    /// Whether this is the real binary.
    pub fn is_binary(&self) -> bool {
        matches!(self.node, Node::Process(_))
    }

    fn child(&mut self) -> &mut Option<Child> {
        match &mut self.node {
            Node::Process(c) => c,
            Node::InProcess(_) => {
                panic!("this needs the real binary: start it with Gateway::binary")
            }
        }
    }

    /// Loads the config file and starts it in this process. The addresses it
    /// bound are written back to the file, so a restart binds the same ones.
    async fn run_in_process(&mut self) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let envs = self.envs.clone();
        let env = move |k: &str| {
            envs.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(k).ok())
        };
        let file = self.config.display().to_string();
        let cfg = hookgate::config::parse(&text, &file, &env)
            .unwrap_or_else(|e| panic!("bad test config:\n{e}\n{text}"));
        let running = hookgate::app::start(cfg, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("the gateway did not start: {e}"));
        let (ingest, admin) = (running.ingest_addr, running.admin_addr);
        if (ingest, admin) != (self.ingest, self.admin) {
            let text = text
                .replacen(&self.ingest.to_string(), &ingest.to_string(), 1)
                .replacen(&self.admin.to_string(), &admin.to_string(), 1);
            std::fs::write(&self.config, text).unwrap();
            self.ingest = ingest;
            self.admin = admin;
        }
        self.node = Node::InProcess(Some(running));
    }

    async fn spawn(&mut self) {
        // A port picked by `free_port` can be taken by someone else before the
        // gateway binds it; then pick new ones and try again.
        for _ in 0..5 {
            let log_len = std::fs::metadata(&self.log).map_or(0, |m| m.len());
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
                .arg("serve")
                .arg("--config")
                .arg(&self.config)
                .args(&self.args)
                .env("HOOKGATE_LOG", "info")
                .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            self.node = Node::Process(Some(child));
            match self.try_wait_healthy().await {
                Ok(()) => return,
                Err(early) => {
                    let new_log = std::fs::read_to_string(&self.log).unwrap_or_default();
                    let tail = new_log.get(log_len as usize..).unwrap_or("");
                    if !tail.contains("cannot listen on") {
                        panic!("{early}:\n{new_log}");
                    }
                    let text = std::fs::read_to_string(&self.config).unwrap();
                    let ingest: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
                    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
                    let text = text
                        .replace(&self.ingest.to_string(), &ingest.to_string())
                        .replace(&self.admin.to_string(), &admin.to_string());
                    std::fs::write(&self.config, text).unwrap();
                    self.ingest = ingest;
                    self.admin = admin;
                }
            }
        }
        panic!("hookgate could not bind free ports:\n{}", self.log());
    }

    /// Waits until `/healthz` answers (panics after 20 s with the log).
    pub async fn wait_healthy(&mut self) {
        if let Err(e) = self.try_wait_healthy().await {
            panic!("{e}:\n{}", self.log());
        }
    }

    /// Waits until `/healthz` answers; an error if the process exits first.
    async fn try_wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = client();
        loop {
            if let Some(status) = self.child().as_mut().and_then(|c| c.try_wait().unwrap()) {
                *self.child() = None;
                return Err(format!("hookgate exited early ({status})"));
            }
            if let Ok(r) = client
                .get(format!("http://{}/healthz", self.admin))
                .send()
                .await
            {
                // Our own health answer, not another server that took the port.
                let ours = r.status().is_success()
                    && r.text().await.is_ok_and(|t| t.contains("\"status\""));
                if ours {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                panic!("hookgate did not become healthy:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the binary logged so far (an in-process gateway's log is not
    /// captured: start it with [`Gateway::binary`] to read it).
    pub fn log(&self) -> String {
        assert!(
            self.is_binary(),
            "the log needs the real binary: start it with Gateway::binary"
        );
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process with SIGKILL (no chance to flush anything).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child().take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child().take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                panic!("hookgate did not exit after SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and returns at once (to watch the drain from outside).
    pub fn signal_term(&mut self) {
        let c = self.child().as_ref().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
    }

    /// Whether the process started last is still running (it neither exited
    /// nor was restarted).
    pub fn still_running(&mut self) -> bool {
        self.child()
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        match &self.node {
            Node::Process(c) => c.as_ref().expect("running").id(),
            Node::InProcess(_) => {
                panic!("this needs the real binary: start it with Gateway::binary")
            }
        }
    }

    /// Resident memory of the process in bytes (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    /// Stops an in-process gateway the way SIGTERM stops the binary (drain
    /// within the grace, close the store) and waits until it has stopped.
    pub async fn stop(&mut self) {
        let Node::InProcess(running) = &mut self.node else {
            panic!("stop the binary with terminate() or kill9()");
        };
        if let Some(r) = running.take() {
            r.stop();
            r.wait().await;
        }
    }

    /// Takes a point of the console overview now, instead of waiting for the
    /// sampler's next one (in-process only).
    pub async fn sample_overview(&self) {
        let Node::InProcess(Some(r)) = &self.node else {
            panic!("sample the overview of a running in-process gateway");
        };
        r.overview().sample_now().await;
    }

    /// Starts it again on the same config, ports and data.
    pub async fn restart(&mut self) {
        match &self.node {
            Node::Process(c) => {
                assert!(c.is_none(), "stop it first");
                self.spawn().await;
            }
            Node::InProcess(r) => {
                assert!(r.is_none(), "stop it first");
                self.run_in_process().await;
            }
        }
    }

    /// Like [`Gateway::restart`] with extra arguments of `serve` (kept for later restarts).
    pub async fn restart_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self.restart().await;
    }

    /// Runs `serve` on the same config and data, expecting it to fail at start;
    /// returns its exit code and what it printed to stderr.
    pub fn start_fails(&self) -> (Option<i32>, String) {
        assert!(
            matches!(self.node, Node::Process(None)),
            "needs a stopped binary gateway"
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("hookgate kept running");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        (child.wait().unwrap().code(), err)
    }

    /// The URL of a source.
    pub fn ingest_url(&self, source: &str) -> String {
        format!("http://{}/in/{source}", self.ingest)
    }

    /// An admin URL (path starts with `/`).
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// GET an admin API path with the token; returns status and JSON.
    pub async fn api_get(&self, path: &str) -> (StatusCode, serde_json::Value) {
        let r = client()
            .get(self.admin_url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let st = r.status();
        (st, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// POST JSON to an admin API path with the token; returns status and JSON.
    pub async fn api_post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        let r = client()
            .post(self.admin_url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let st = r.status();
        (st, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Any method on an admin API path with the token and an optional JSON
    /// body; returns status and JSON.
    pub async fn api_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = client()
            .request(method, self.admin_url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let st = r.status();
        (st, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Waits until the store holds a final status (`delivered`, `dead`, or a
    /// transformation's `dropped` or `transform_failed`)
    /// for every delivery of message `id`, and returns the message as the API
    /// shows it. From then on the dispatcher has nothing of it left to send,
    /// so what the receiver got is final: tests assert on that instead of
    /// sleeping and checking that nothing more arrived.
    pub async fn settled(&self, id: &str) -> serde_json::Value {
        eventually(Duration::from_secs(20), "the message settled", || async {
            let (_, v) = self.api_get(&format!("/api/v1/messages/{id}")).await;
            let ds = v["deliveries"].as_array()?;
            let done = !ds.is_empty()
                && ds.iter().all(|d| {
                    ["delivered", "dead", "dropped", "transform_failed"]
                        .contains(&d["status"].as_str().unwrap_or_default())
                });
            done.then_some(v)
        })
        .await
    }

    /// Waits until the store lists no pending message (see [`Gateway::settled`]).
    pub async fn nothing_pending(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, v) = self
                .api_get("/api/v1/messages?status=pending&limit=1")
                .await;
            let Some(first) = v["data"].as_array().and_then(|d| d.first()).cloned() else {
                return;
            };
            if Instant::now() > deadline {
                // What is still pending, with its deliveries and attempts.
                let id = first["id"].as_str().unwrap_or_default();
                let (_, detail) = self.api_get(&format!("/api/v1/messages/{id}")).await;
                let (_, dests) = self.api_get("/api/v1/destinations").await;
                panic!(
                    "timed out waiting for nothing pending: {detail:#}\ndestinations: {dests:#}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The Prometheus text of `/metrics` (of the binary only: see the
    /// module's header for why).
    pub async fn metrics_text(&self) -> String {
        assert!(
            self.is_binary(),
            "metrics are process-wide: read them from Gateway::binary"
        );
        client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        match &mut self.node {
            Node::Process(_) => self.kill9(),
            // The rest of the shutdown runs on the test's runtime while it lasts.
            Node::InProcess(r) => {
                if let Some(r) = r.take() {
                    r.stop();
                }
            }
        }
    }
}

/// A test HTTP client (no proxy, short timeouts).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the receiver answers: status, extra headers, body.
pub type Answer = (u16, Vec<(String, String)>, String);

type Behaviour = Box<dyn FnMut(&Received) -> Answer + Send>;

/// A real HTTP receiver on a free loopback port.
pub struct Receiver {
    /// Its address.
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    delay: Arc<Mutex<Duration>>,
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver answering 200 to everything.
    pub async fn start() -> Receiver {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// A receiver on a given address.
    pub async fn start_at(addr: SocketAddr) -> Receiver {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let behaviour: Arc<Mutex<Behaviour>> =
            Arc::new(Mutex::new(Box::new(|_| (200, vec![], "ok".into()))));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let (g, b, d, n, m) = (
            got.clone(),
            behaviour.clone(),
            delay.clone(),
            now.clone(),
            max.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let (g, b, d, n, m) = (g.clone(), b.clone(), d.clone(), n.clone(), m.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (g, b, d, n, m) =
                            (g.clone(), b.clone(), d.clone(), n.clone(), m.clone());
                        async move {
                            let c = n.fetch_add(1, Ordering::SeqCst) + 1;
                            m.fetch_max(c, Ordering::SeqCst);
                            let at = Instant::now();
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let rec = Received {
                                method: parts.method.to_string(),
                                path: parts.uri.to_string(),
                                headers: parts.headers,
                                body,
                                at,
                            };
                            let (status, headers, text) = (b.lock())(&rec);
                            g.lock().push(rec);
                            let wait = *d.lock();
                            if !wait.is_zero() {
                                tokio::time::sleep(wait).await;
                            }
                            n.fetch_sub(1, Ordering::SeqCst);
                            let mut r = Response::new(Full::new(Bytes::from(text)));
                            *r.status_mut() = StatusCode::from_u16(status).unwrap();
                            for (k, v) in headers {
                                r.headers_mut().insert(
                                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                    v.parse().unwrap(),
                                );
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            got,
            behaviour,
            delay,
            now,
            max,
            task,
        }
    }

    /// The URL of a path on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sets how it answers from now on.
    pub fn respond(&self, f: impl FnMut(&Received) -> Answer + Send + 'static) {
        *self.behaviour.lock() = Box::new(f);
    }

    /// Holds every answer this long (to observe concurrency).
    pub fn set_delay(&self, d: Duration) {
        *self.delay.lock() = d;
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().clone()
    }

    /// How many requests so far.
    pub fn count(&self) -> usize {
        self.got.lock().len()
    }

    /// The most requests it ever handled at once.
    pub fn max_concurrent(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    /// Waits until `n` requests arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.count();
            if c >= n {
                return self.received();
            }
            if Instant::now() > deadline {
                panic!("receiver got {c} requests, expected {n}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until a request with each of `ids` as its `webhook-id` arrived, or
    /// `timeout` passed; returns every request so far either way (the caller
    /// asserts, naming what is missing). Counting requests would not do: a
    /// message delivered twice (at-least-once) would stand in for one not yet
    /// delivered.
    pub async fn wait_for_ids(&self, ids: &[String], timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            let seen: std::collections::HashSet<&str> =
                got.iter().filter_map(|r| r.header("webhook-id")).collect();
            if ids.iter().all(|id| seen.contains(id.as_str())) || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops accepting connections (the port closes).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The message id (`Hookgate-Message-Id`) of an ingest answer.
pub fn message_id(r: &reqwest::Response) -> String {
    r.headers()["hookgate-message-id"]
        .to_str()
        .unwrap()
        .to_string()
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads a fixture file of `shared/fixtures` copied into `tests/fixtures`.
pub fn fixture(name: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// What a [`TcpProxy`] does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Relays bytes both ways.
    Forward,
    /// Resets every connection, open ones included (a server that is down).
    Refuse,
    /// Accepts and keeps connections but relays nothing, open ones included (a
    /// network that drops packets); they are closed when the mode changes.
    Blackhole,
}

/// A TCP proxy on a free loopback port in front of a real server, to cut the
/// way to it without stopping it (other tests share the server), or to move
/// it to another server behind the same address (a failover).
pub struct TcpProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    mode: tokio::sync::watch::Sender<ProxyMode>,
    upstream: tokio::sync::watch::Sender<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, watch) = tokio::sync::watch::channel(ProxyMode::Forward);
        let (upstream, to) = tokio::sync::watch::channel(upstream);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(Self::relay(client, to.clone(), watch.clone()));
            }
        });
        TcpProxy {
            addr,
            mode,
            upstream,
            task,
        }
    }

    async fn relay(
        mut client: tokio::net::TcpStream,
        mut to: tokio::sync::watch::Receiver<SocketAddr>,
        mut watch: tokio::sync::watch::Receiver<ProxyMode>,
    ) {
        let mut server = None;
        let mut current = *watch.borrow_and_update();
        let upstream = *to.borrow_and_update();
        if current == ProxyMode::Forward {
            match tokio::net::TcpStream::connect(upstream).await {
                Ok(mut s) => {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut s) => return,
                        r = watch.wait_for(|m| *m != ProxyMode::Forward) => {
                            current = r.map(|m| *m).unwrap_or(ProxyMode::Refuse);
                        }
                        // Another server behind the address knows nothing of
                        // this connection: it is reset.
                        _ = to.changed() => current = ProxyMode::Refuse,
                    }
                    server = Some(s);
                }
                Err(_) => current = ProxyMode::Refuse,
            }
        }
        if current == ProxyMode::Blackhole {
            // Hold both ends, relay nothing.
            let _ = watch.wait_for(|m| *m != ProxyMode::Blackhole).await;
            drop(server);
            return;
        }
        // A zero linger resets at once; it never blocks.
        #[allow(deprecated)]
        let _ = client.set_linger(Some(Duration::ZERO));
        drop(server);
    }

    /// Changes what it does, for open connections too.
    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// Forwards new connections to `upstream` from now on, and resets the
    /// open ones (the same address, another server).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        self.upstream.send_replace(upstream);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.mode.send_replace(ProxyMode::Refuse);
    }
}

/// A fresh database, a proxy to its server, and the database's URL through
/// the proxy; `None` when the test is skipped (no PostgreSQL server answers).
pub async fn proxied_db(
    test: &str,
) -> Option<(
    hookgate::store::postgres::scratch::ScratchDatabase,
    TcpProxy,
    String,
)> {
    let db = hookgate::store::postgres::scratch::ScratchDatabase::for_test(test).await?;
    let mut url = url::Url::parse(db.url()).unwrap();
    let host = url.host_str().unwrap().to_string();
    let upstream: SocketAddr = tokio::net::lookup_host((host.as_str(), url.port().unwrap_or(5432)))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = TcpProxy::start(upstream).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    Some((db, proxy, url.to_string()))
}
