//! Several gateway nodes on one PostgreSQL database (`--nodes N`): what each
//! node and the database did within a measurement window.
//!
//! A [`Sampler`] takes a [`Snapshot`] at each edge of the window: every
//! node's delivered counter and lag histogram (its `/metrics`), every node's
//! CPU time and the database's (`/proc/<pid>/stat`). The database's processes
//! are the backends connected to the bench's database and the server's own
//! background processes (WAL writer, checkpointer, ...), from
//! `pg_stat_activity`; their CPU is readable only when the server runs on this
//! machine, else the database's figures are `None`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::gateway::DESTINATION;
use super::report::round;

/// What one node did in the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeFigures {
    /// Its index (0-based, in start order).
    pub node: usize,
    /// Its 2xx answers per second.
    pub acks_per_s: f64,
    /// Deliveries it made per second (its `hookgate_deliveries_total`).
    pub delivered_per_s: f64,
    /// Mean receipt-to-delivery lag of its deliveries, in milliseconds.
    pub lag_mean_ms: Option<f64>,
    /// Its CPU time as a share of the machine (1.0: every core busy).
    pub cpu_share: Option<f64>,
}

/// The database's part of a window.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct DbFigures {
    /// The database's CPU time as a share of the machine.
    pub cpu_share: f64,
    /// Cores' worth of CPU the database used (CPU seconds per second).
    pub cores_used: f64,
    /// The database's CPU time per acknowledged message, in microseconds
    /// (each one is also delivered: its whole cost to the database).
    pub cpu_us_per_message: Option<f64>,
}

/// One node's counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeSample {
    /// `hookgate_deliveries_total{destination="sink",outcome="delivered"}`.
    pub delivered: f64,
    /// `hookgate_delivery_lag_seconds_sum{destination="sink"}`.
    pub lag_sum_s: f64,
    /// `hookgate_delivery_lag_seconds_count{destination="sink"}`.
    pub lag_count: f64,
    /// CPU ticks of its process.
    pub ticks: Option<u64>,
}

impl NodeSample {
    /// Reads the delivery counters from Prometheus text.
    pub fn parse(text: &str) -> NodeSample {
        let dest = format!("destination=\"{DESTINATION}\"");
        let value = |name: &str, extra: Option<&str>| {
            text.lines()
                .filter_map(|l| {
                    let rest = l.strip_prefix(name)?.strip_prefix('{')?;
                    let (labels, v) = rest.split_once("} ")?;
                    let labels: Vec<&str> = labels.split(',').collect();
                    (labels.contains(&dest.as_str()) && extra.is_none_or(|e| labels.contains(&e)))
                        .then(|| v.trim().parse::<f64>().ok())
                        .flatten()
                })
                .next()
                .unwrap_or(0.0)
        };
        NodeSample {
            delivered: value("hookgate_deliveries_total", Some("outcome=\"delivered\"")),
            lag_sum_s: value("hookgate_delivery_lag_seconds_sum", None),
            lag_count: value("hookgate_delivery_lag_seconds_count", None),
            ticks: None,
        }
    }
}

/// Everything at one edge of a window.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    nodes: Vec<NodeSample>,
    /// CPU ticks of each database process, when the server is on this machine.
    db: Option<HashMap<u32, u64>>,
}

/// Where the database's processes are found.
struct Db {
    pool: sqlx::PgPool,
    name: String,
}

/// Takes snapshots of the nodes and the database.
pub struct Sampler {
    admins: Vec<SocketAddr>,
    pids: Vec<Option<u32>>,
    client: reqwest::Client,
    db: Option<Db>,
    ticks_per_s: f64,
}

impl Sampler {
    /// A sampler of the nodes at `admins` (processes `pids`) and, with
    /// `db = (url, name)`, of the database named `name` at `url`.
    pub async fn new(
        admins: Vec<SocketAddr>,
        pids: Vec<Option<u32>>,
        db: Option<(&str, &str)>,
    ) -> Sampler {
        let db = match db {
            Some((url, name)) => sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .ok()
                .map(|pool| Db {
                    pool,
                    name: name.to_string(),
                }),
            None => None,
        };
        Sampler {
            admins,
            pids,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            db,
            ticks_per_s: clock_ticks_per_s(),
        }
    }

    /// The counters now.
    pub async fn take(&self) -> Snapshot {
        let at = Instant::now();
        let mut nodes = Vec::with_capacity(self.admins.len());
        for (admin, pid) in self.admins.iter().zip(&self.pids) {
            let text = match self
                .client
                .get(format!("http://{admin}/metrics"))
                .send()
                .await
            {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            nodes.push(NodeSample {
                ticks: pid.and_then(cpu_ticks),
                ..NodeSample::parse(&text)
            });
        }
        let db = match &self.db {
            Some(db) => self.db_ticks(db).await,
            None => None,
        };
        Snapshot { at, nodes, db }
    }

    async fn db_ticks(&self, db: &Db) -> Option<HashMap<u32, u64>> {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = $1 OR backend_type <> 'client backend'",
        )
        .bind(&db.name)
        .fetch_all(&db.pool)
        .await
        .ok()?;
        let ticks: HashMap<u32, u64> = pids
            .into_iter()
            .filter_map(|p| {
                let p = u32::try_from(p).ok()?;
                Some((p, cpu_ticks(p)?))
            })
            .collect();
        // No process visible: the server runs elsewhere (or in a container).
        (!ticks.is_empty()).then_some(ticks)
    }

    /// The figures of the window from `a` to `b`, with each node's 2xx answers
    /// within it.
    pub fn figures(
        &self,
        a: &Snapshot,
        b: &Snapshot,
        acks: &[u64],
        cores: usize,
    ) -> (Vec<NodeFigures>, Option<DbFigures>) {
        let secs = b.at.saturating_duration_since(a.at).as_secs_f64();
        if secs <= 0.0 {
            return (Vec::new(), None);
        }
        let machine = secs * cores.max(1) as f64;
        let nodes = a
            .nodes
            .iter()
            .zip(&b.nodes)
            .enumerate()
            .map(|(i, (x, y))| {
                let lags = y.lag_count - x.lag_count;
                NodeFigures {
                    node: i,
                    acks_per_s: round(acks.get(i).copied().unwrap_or(0) as f64 / secs, 1),
                    delivered_per_s: round((y.delivered - x.delivered) / secs, 1),
                    lag_mean_ms: (lags > 0.0)
                        .then(|| round((y.lag_sum_s - x.lag_sum_s) / lags * 1e3, 3)),
                    cpu_share: match (x.ticks, y.ticks) {
                        (Some(t0), Some(t1)) => Some(round(
                            t1.saturating_sub(t0) as f64 / self.ticks_per_s / machine,
                            3,
                        )),
                        _ => None,
                    },
                }
            })
            .collect();
        let db = match (&a.db, &b.db) {
            (Some(x), Some(y)) => {
                // A process that started within the window counts from zero;
                // one that ended within it is missing (the pools keep theirs).
                let ticks: u64 = y
                    .iter()
                    .map(|(pid, t)| t.saturating_sub(x.get(pid).copied().unwrap_or(0)))
                    .sum();
                let cpu_s = ticks as f64 / self.ticks_per_s;
                let acked: u64 = acks.iter().sum();
                Some(DbFigures {
                    cpu_share: round(cpu_s / machine, 3),
                    cores_used: round(cpu_s / secs, 3),
                    cpu_us_per_message: (acked > 0).then(|| round(cpu_s * 1e6 / acked as f64, 1)),
                })
            }
            _ => None,
        };
        (nodes, db)
    }

    /// Closes the database connection.
    pub async fn close(self) {
        if let Some(db) = self.db {
            db.pool.close().await;
        }
    }
}

/// User plus system CPU ticks of a process, from `/proc/<pid>/stat`.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `utime + stime` of a `/proc/<pid>/stat` line (fields 14 and 15; the name
/// in parentheses may hold spaces, so fields are counted after its `)`).
fn parse_stat(line: &str) -> Option<u64> {
    let rest = &line[line.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The kernel's clock ticks per second for `/proc` times (`getconf CLK_TCK`;
/// 100 on Linux when it cannot be asked).
fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_nodes_delivery_counters() {
        let text = "hookgate_deliveries_total{destination=\"other\",outcome=\"delivered\"} 9\n\
            hookgate_deliveries_total{destination=\"sink\",outcome=\"retried\"} 3\n\
            hookgate_deliveries_total{destination=\"sink\",outcome=\"delivered\"} 120\n\
            hookgate_delivery_lag_seconds_sum{destination=\"sink\"} 1.5\n\
            hookgate_delivery_lag_seconds_count{destination=\"sink\"} 100\n";
        let s = NodeSample::parse(text);
        assert_eq!(
            s,
            NodeSample {
                delivered: 120.0,
                lag_sum_s: 1.5,
                lag_count: 100.0,
                ticks: None
            }
        );
        assert_eq!(NodeSample::parse(""), NodeSample::default());
    }

    #[test]
    fn reads_cpu_ticks_past_a_name_with_spaces() {
        let line = "42 (post gres) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 9 0 0";
        assert_eq!(parse_stat(line), Some(300));
        assert_eq!(parse_stat("42 (x) S 1"), None);
        assert!(cpu_ticks(std::process::id()).is_some());
    }

    #[test]
    fn a_window_divides_by_its_length_and_the_cores() {
        let at = Instant::now();
        let node = |delivered, lag_sum_s, lag_count, ticks| NodeSample {
            delivered,
            lag_sum_s,
            lag_count,
            ticks: Some(ticks),
        };
        let a = Snapshot {
            at,
            nodes: vec![node(0.0, 0.0, 0.0, 100), node(10.0, 1.0, 10.0, 0)],
            db: Some(HashMap::from([(1, 50), (2, 10)])),
        };
        let b = Snapshot {
            at: at + Duration::from_secs(2),
            nodes: vec![node(400.0, 2.0, 400.0, 300), node(10.0, 1.0, 10.0, 0)],
            // Process 2 ended; 3 started within the window.
            db: Some(HashMap::from([(1, 250), (3, 40)])),
        };
        let s = Sampler {
            admins: Vec::new(),
            pids: Vec::new(),
            client: reqwest::Client::new(),
            db: None,
            ticks_per_s: 100.0,
        };
        let (nodes, db) = s.figures(&a, &b, &[600, 200], 2);
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].acks_per_s, 300.0);
        assert_eq!(nodes[0].delivered_per_s, 200.0);
        assert_eq!(nodes[0].lag_mean_ms, Some(5.0));
        // 200 ticks = 2 s of CPU over 2 s on 2 cores.
        assert_eq!(nodes[0].cpu_share, Some(0.5));
        assert_eq!(nodes[1].delivered_per_s, 0.0);
        assert_eq!(nodes[1].lag_mean_ms, None, "no delivery, no mean");
        let db = db.unwrap();
        // 200 + 40 ticks = 2.4 s of CPU; 800 messages.
        assert_eq!(db.cores_used, 1.2);
        assert_eq!(db.cpu_share, 0.6);
        assert_eq!(db.cpu_us_per_message, Some(3000.0));
    }
}
