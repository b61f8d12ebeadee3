//! A PostgreSQL failover under load: a private primary with a synchronous
//! streaming replica (`initdb`, `pg_basebackup -R`, run by the `postgres` OS
//! user from temporary directories on free ports, so the shared server is never
//! touched), the real binary in front of it, the primary stopped at once
//! (`pg_ctl -m immediate`), the way to it moved to the replica while that is
//! still a read-only standby, then the replica promoted. The way moves in two
//! forms: the same address (a TCP proxy switched to the replica, resetting the
//! connections it had open), and the same name resolved again (a Unix socket
//! directory through a symbolic link re-pointed at the replica's, as a DNS
//! record would be). Nothing acknowledged is lost, nothing is acknowledged
//! while no primary is reachable, readiness follows, and hookgate is never
//! restarted.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate::store::postgres::scratch::REQUIRE_VAR;
use parking_lot::Mutex;
use sqlx::Connection;

use crate::harness::*;
use crate::outage::{assert_all_delivered, check_answers, config, readyz, steady_load, Sent};

/// The newest PostgreSQL server binaries installed the Debian way.
fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Where a server of the pair listens.
#[derive(Debug, Clone, Copy)]
enum Listen {
    /// TCP on this address (and a Unix socket in its socket directory).
    Tcp(SocketAddr),
    /// Only a Unix socket in its socket directory, with this port number.
    Socket(u16),
}

/// One server of the pair.
struct Server {
    data: PathBuf,
    /// Its Unix socket's directory (not the data directory, which
    /// `pg_basebackup` copies with the socket's lock file in it).
    sockets: PathBuf,
    listen: Listen,
    running: bool,
}

impl Server {
    fn port(&self) -> u16 {
        match self.listen {
            Listen::Tcp(a) => a.port(),
            Listen::Socket(port) => port,
        }
    }

    /// The host of PostgreSQL's tools (`-h`): an IP address or a socket
    /// directory.
    fn host(&self) -> String {
        match self.listen {
            Listen::Tcp(a) => a.ip().to_string(),
            Listen::Socket(_) => self.sockets.display().to_string(),
        }
    }

    /// A URL of its `postgres` database.
    fn url(&self) -> String {
        match self.listen {
            Listen::Tcp(a) => format!("postgres://postgres@{a}/postgres"),
            Listen::Socket(port) => socket_url(&self.sockets, port),
        }
    }
}

/// The URL of the `postgres` database behind the socket directory `dir`.
fn socket_url(dir: &Path, port: u16) -> String {
    format!(
        "postgres:///postgres?user=postgres&host={}&port={port}",
        dir.display()
    )
}

/// A primary and its synchronous replica, stopped and removed when dropped.
struct Pair {
    bin: PathBuf,
    /// PostgreSQL refuses to run as root: then its tools run as `postgres`.
    as_postgres: bool,
    primary: Server,
    replica: Server,
    // Last: removed after the servers are stopped.
    dir: tempfile::TempDir,
}

impl Pair {
    /// Starts a primary on `primary` and a streaming replica of it on
    /// `replica`, and waits until the replica is its synchronous standby (so
    /// that every commit the primary acknowledges is on the replica too);
    /// `None` (after a `SKIPPED` line) without PostgreSQL's binaries.
    async fn start(test: &str, primary: Listen, replica: Listen) -> Option<Pair> {
        let Some(bin) = pg_bin() else {
            let why = "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin";
            if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") {
                panic!("{test}: {why}; {REQUIRE_VAR}=1 requires them");
            }
            eprintln!("SKIPPED {test}: {why}");
            return None;
        };
        let pair = tokio::task::spawn_blocking(move || Self::create(bin, primary, replica))
            .await
            .unwrap();
        let url = pair.primary.url();
        eventually(
            Duration::from_secs(30),
            "the replica as the primary's synchronous standby",
            || {
                let url = url.clone();
                async move {
                    let mut c = sqlx::PgConnection::connect(&url).await.ok()?;
                    let sync: Option<String> = sqlx::query_scalar(
                        "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'replica'",
                    )
                    .fetch_optional(&mut c)
                    .await
                    .ok()?;
                    (sync.as_deref() == Some("sync")).then_some(())
                }
            },
        )
        .await;
        Some(pair)
    }

    fn create(bin: PathBuf, primary: Listen, replica: Listen) -> Pair {
        let dir = tempfile::Builder::new()
            .prefix("hookgate-failover")
            .tempdir()
            .unwrap();
        let server = |name: &str, listen| Server {
            data: dir.path().join(name),
            sockets: dir.path().join(format!("{name}.sock")),
            listen,
            running: false,
        };
        let (primary, replica) = (server("primary", primary), server("replica", replica));
        for s in [&primary, &replica] {
            std::fs::create_dir(&s.sockets).unwrap();
        }
        let as_postgres = std::fs::metadata("/proc/self").unwrap().uid() == 0;
        if as_postgres {
            let out = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "chown: {out:?}");
        }
        let mut pair = Pair {
            bin,
            as_postgres,
            primary,
            replica,
            dir,
        };
        let primary_data = pair.primary.data.to_str().unwrap().to_string();
        let replica_data = pair.replica.data.to_str().unwrap().to_string();
        let (host, port) = (pair.primary.host(), pair.primary.port().to_string());
        pair.run(
            "initdb",
            &[
                "-D",
                &primary_data,
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            None,
        );
        // An acknowledged commit is on the replica too: the point of the test.
        append_conf(&pair.primary, "synchronous_standby_names = 'replica'\n");
        pair.start_server(true);
        pair.run(
            "pg_basebackup",
            &[
                "-h",
                &host,
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &replica_data,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
            None,
        );
        // Its name to the primary; and, once promoted with no standby of its
        // own, no synchronous standby to wait for (commits would hang).
        append_conf(
            &pair.replica,
            "cluster_name = 'replica'\nsynchronous_standby_names = ''\n",
        );
        pair.start_server(false);
        pair
    }

    /// Runs one of PostgreSQL's tools; panics with its output (and the
    /// server's `log`, if any) if it fails.
    fn run(&self, tool: &str, args: &[&str], log: Option<&Path>) {
        let out = pg_tool(&self.bin, self.as_postgres, tool)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            log.and_then(|l| std::fs::read_to_string(l).ok())
                .unwrap_or_default()
        );
    }

    /// Starts the primary's server (`true`) or the replica's, its log beside
    /// its data directory.
    fn start_server(&mut self, primary: bool) {
        let s = if primary {
            &mut self.primary
        } else {
            &mut self.replica
        };
        // Stopped when dropped from now on, even if the start fails half-way.
        s.running = true;
        let data = s.data.to_str().unwrap().to_string();
        let log = s.data.with_extension("log");
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", log.to_str().unwrap(), "-w", "start"],
            Some(&log),
        );
    }

    /// Stops the primary at once, as a crash would: no checkpoint, open
    /// connections cut.
    async fn kill_primary(&mut self) {
        self.primary.running = false;
        let (bin, as_postgres, data) = (
            self.bin.clone(),
            self.as_postgres,
            self.primary.data.clone(),
        );
        let stopped = tokio::task::spawn_blocking(move || stop_now(&bin, as_postgres, &data))
            .await
            .unwrap();
        assert!(stopped, "pg_ctl stop -m immediate failed");
    }

    /// Promotes the replica to primary and waits until it takes writes.
    fn promote(&self) {
        let data = self.replica.data.to_str().unwrap();
        let log = self.replica.data.with_extension("log");
        self.run("pg_ctl", &["-D", data, "-w", "promote"], Some(&log));
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for s in [&self.primary, &self.replica] {
            if s.running {
                stop_now(&self.bin, self.as_postgres, &s.data);
            }
        }
    }
}

/// `pg_ctl stop -m immediate` of the server in `data`: whether it worked (a
/// server that is down already fails it).
fn stop_now(bin: &Path, as_postgres: bool, data: &Path) -> bool {
    pg_tool(bin, as_postgres, "pg_ctl")
        .arg("-D")
        .arg(data)
        .args(["-m", "immediate", "-w", "stop"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// A command running PostgreSQL's `tool`, as the `postgres` user if
/// `as_postgres` (the server refuses to run as root). Its output is captured;
/// `pg_ctl` hands the server its log file, so no server keeps these pipes open.
fn pg_tool(bin: &Path, as_postgres: bool, tool: &str) -> Command {
    let exe = bin.join(tool);
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

/// Adds settings to a server's `postgresql.conf` (the last occurrence wins):
/// where it listens, with its Unix socket in its own directory.
fn append_conf(s: &Server, extra: &str) {
    use std::io::Write;
    let tcp = match s.listen {
        Listen::Tcp(a) => a.ip().to_string(),
        Listen::Socket(_) => String::new(),
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(s.data.join("postgresql.conf"))
        .unwrap();
    write!(
        f,
        "\nport = {}\nlisten_addresses = '{tcp}'\nunix_socket_directories = '{}'\nshared_buffers = '32MB'\n{extra}",
        s.port(),
        s.sockets.display()
    )
    .unwrap();
}

/// TCP on a free loopback port.
fn free_tcp() -> Listen {
    Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], free_port())))
}

/// How many requests sent at or after `from` have been answered, and how many
/// of them with 200.
fn answered_since(sent: &Mutex<Vec<Sent>>, from: Instant) -> (usize, usize) {
    let sent = sent.lock();
    let answered = sent.iter().filter(|s| s.at >= from && s.answer.is_ok());
    let ok = answered
        .clone()
        .filter(|s| matches!(s.answer, Ok((200, ..))))
        .count();
    (answered.count(), ok)
}

/// The way from hookgate to the primary, moved to the replica in the failover.
enum Way {
    /// The same address: a TCP proxy, switched to another server.
    Proxy(TcpProxy),
    /// The same name: a symbolic link to the primary's socket directory,
    /// re-pointed at the replica's, so only a connection that resolves the
    /// name again reaches the new server.
    Link(PathBuf, u16),
}

impl Way {
    /// A way to `pair`'s primary: a proxy for servers on TCP, a link for
    /// servers on sockets only.
    async fn to(pair: &Pair) -> Way {
        match pair.primary.listen {
            Listen::Tcp(a) => Way::Proxy(TcpProxy::start(a).await),
            Listen::Socket(port) => {
                let link = pair.dir.path().join("current");
                std::os::unix::fs::symlink(&pair.primary.sockets, &link).unwrap();
                Way::Link(link, port)
            }
        }
    }

    /// The URL hookgate is given.
    fn url(&self) -> String {
        match self {
            Way::Proxy(p) => format!("postgres://postgres@{}/postgres", p.addr),
            Way::Link(link, port) => socket_url(link, *port),
        }
    }

    /// Leads to `to` from now on.
    fn move_to(&self, to: &Server) {
        match (self, to.listen) {
            (Way::Proxy(p), Listen::Tcp(a)) => p.set_upstream(a),
            (Way::Link(link, _), Listen::Socket(_)) => {
                // Replaced in one step, as a resolver sees a new record.
                let next = link.with_extension("next");
                std::os::unix::fs::symlink(&to.sockets, &next).unwrap();
                std::fs::rename(&next, link).unwrap();
            }
            _ => unreachable!("both servers of a pair listen alike"),
        }
    }
}

/// The failover under 100 requests/s through `way`: the primary killed, the
/// way moved to the replica while it is a standby, 150 requests answered
/// there, then the promotion; every request is answered 2xx or 503 with
/// `Retry-After` within the read timeout, none 2xx without a primary,
/// `/readyz` false from the kill (naming the read-only standby) until the
/// promotion and true after it, hookgate never restarted, and every
/// acknowledged message on the promoted replica and delivered.
async fn failover_under_load(test: &str, mut pair: Pair) {
    const RATE: u64 = 100;
    const READ_TIMEOUT: Duration = Duration::from_secs(10);
    let way = Way::to(&pair).await;
    let rx = Receiver::start().await;
    let mut gw =
        Gateway::binary_opts(&config(&way.url(), &rx, ""), "read_timeout = \"10s\"", &[]).await;
    let pid = gw.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let load = steady_load(
        vec![gw.ingest_url("app")],
        Arc::new(vec![AtomicBool::new(true)]),
        RATE,
        READ_TIMEOUT,
        stop.clone(),
        sent.clone(),
    );
    let t0 = Instant::now();
    eventually(
        Duration::from_secs(30),
        "100 acks on the primary",
        || async { (answered_since(&sent, t0).1 >= 100).then_some(()) },
    )
    .await;
    assert_eq!(readyz(&gw).await.0, 200);

    // The primary dies: no primary at all until the promotion.
    pair.kill_primary().await;
    let killed = Instant::now();
    eventually(
        Duration::from_secs(10),
        "not ready without a primary",
        || async { (readyz(&gw).await.0 == 503).then_some(()) },
    )
    .await;
    let not_ready_after = killed.elapsed();

    // The way now leads to the replica, still a read-only standby (moved
    // before the promotion finished): writes there fail with
    // SQLSTATE 25006, which must read as "unavailable", not as ready.
    way.move_to(&pair.replica);
    let switched = Instant::now();
    let mut ready_on_standby = Vec::new();
    while answered_since(&sent, switched).0 < 150 {
        assert!(
            switched.elapsed() < Duration::from_secs(30),
            "requests were not answered while the way led to the standby"
        );
        let (st, v, _) = readyz(&gw).await;
        ready_on_standby.push((st, v));
        // The load runs on meanwhile; this only paces the readiness checks.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, why) = ready_on_standby.last().unwrap().clone();

    let promoting = Instant::now();
    tokio::task::block_in_place(|| pair.promote());
    let promoted = Instant::now();
    eventually(
        Duration::from_secs(30),
        "ready on the new primary",
        || async { (readyz(&gw).await.0 == 200).then_some(()) },
    )
    .await;
    let ready_after = promoted.elapsed();
    eventually(
        Duration::from_secs(30),
        "100 acks on the new primary",
        || async { (answered_since(&sent, promoted).1 >= 100).then_some(()) },
    )
    .await;
    stop.store(true, Relaxed);
    load.await.unwrap();

    // Sent after the kill and answered before the promotion began: 503.
    let sent = sent.lock().clone();
    let (without_primary, acked) =
        check_answers(&sent, t0, (killed, promoting), READ_TIMEOUT, |_| false);
    assert!(
        without_primary >= 150,
        "only {without_primary} requests without a primary"
    );
    let standby_ready: Vec<_> = ready_on_standby
        .iter()
        .filter(|(st, _)| *st != 503)
        .collect();
    assert!(
        standby_ready.is_empty(),
        "/readyz while the way led to a standby: {standby_ready:?}"
    );
    assert!(
        why["reasons"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("read-only")),
        "the reason names the read-only standby: {why}"
    );
    assert!(gw.still_running(), "hookgate exited:\n{}", gw.log());
    assert_eq!(gw.pid(), pid, "hookgate was restarted");

    // Every acknowledged message is on the new primary and is delivered.
    let mut c = sqlx::PgConnection::connect(&pair.replica.url())
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE id = ANY($1)")
        .bind(&acked)
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(
        stored,
        acked.len() as i64,
        "acknowledged messages missing on the promoted replica"
    );
    assert_all_delivered(&rx, &acked).await;
    // A lease taken just before the kill whose answer was lost would hold its
    // delivery until the lease ends (the destination's 5 s timeout plus the
    // 30 s lease_margin): it is handed back when the database is back.
    let delivered_after = promoted.elapsed();
    assert!(
        delivered_after < Duration::from_secs(20),
        "the last acknowledged message was delivered {delivered_after:?} after the promotion"
    );
    eprintln!(
        "{test}: {} requests, {} acknowledged, {without_primary} answered 503 without a primary; \
         not ready {not_ready_after:?} after the kill, ready {ready_after:?} and everything \
         delivered {delivered_after:?} after the promotion",
        sent.len(),
        acked.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: two private PostgreSQL servers of its own and 100 requests/s, about 12 s"]
async fn failover_to_a_promoted_replica_behind_the_same_address_loses_nothing() {
    const TEST: &str = "failover_to_a_promoted_replica_behind_the_same_address_loses_nothing";
    if let Some(pair) = Pair::start(TEST, free_tcp(), free_tcp()).await {
        failover_under_load(TEST, pair).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: two private PostgreSQL servers of its own and 100 requests/s, about 12 s"]
async fn failover_to_a_promoted_replica_by_a_name_resolved_again_loses_nothing() {
    const TEST: &str = "failover_to_a_promoted_replica_by_a_name_resolved_again_loses_nothing";
    // Socket files are named by port: both servers take the same number.
    let port = free_port();
    let (primary, replica) = (Listen::Socket(port), Listen::Socket(port));
    if let Some(pair) = Pair::start(TEST, primary, replica).await {
        failover_under_load(TEST, pair).await;
    }
}
