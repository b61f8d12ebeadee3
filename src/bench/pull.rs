//! The pull phase's consumers: K tasks, each pulling up to B deliveries from
//! the gateway's pull destination (`POST /api/v1/destinations/{name}/pull`,
//! long-polling up to 1 s) and acknowledging all of them as delivered in one
//! `POST .../ack`, over and over, until stopped.
//!
//! Each delivery whose result the gateway recorded is counted in the shared
//! [`SinkStats`] under its `x-bench` tag (which the gateway hands out among the
//! delivery's headers, as a push delivery forwards it), at the time the ack was
//! answered: so distinct messages, repeats and the drain's first and last
//! moments are counted exactly as the sink counts push deliveries.
//!
//! Invariant: only a result the gateway says it recorded counts; a failed call
//! is counted and tried again, never taken as done.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::load::{histogram, Clock};
use super::sink::SinkStats;

/// How long a pull waits for a delivery to become due.
const WAIT: &str = "1s";
/// How long each lease lasts: far longer than a batch takes to acknowledge.
const LEASE: &str = "60s";
/// The pause after a failed call before the next.
const BACKOFF: Duration = Duration::from_millis(100);
/// How long one call may take (a pull waits up to [`WAIT`]).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer of a pull: only what the consumer reads of each item.
#[derive(Deserialize)]
struct Pulled {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    token: String,
    headers: Tagged,
}

#[derive(Deserialize)]
struct Tagged {
    #[serde(rename = "x-bench")]
    tag: Option<String>,
}

/// The answer of an ack (on success and on a partial failure alike).
#[derive(Deserialize)]
struct Acked {
    #[serde(default)]
    data: Vec<Outcome>,
}

#[derive(Deserialize)]
struct Outcome {
    token: String,
    outcome: String,
}

/// What the consumers measured, merged.
#[derive(Debug, Clone)]
pub struct PullTally {
    /// Latency of the pulls that returned deliveries, in microseconds.
    pub pull_us: Histogram<u64>,
    /// Latency of the acks, in microseconds.
    pub ack_us: Histogram<u64>,
    /// Pulls that returned deliveries.
    pub pulls: u64,
    /// Pulls that returned none (their wait ran out).
    pub empty_pulls: u64,
    /// Deliveries handed out.
    pub items: u64,
    /// Results the gateway did not record (an expired or ended lease).
    pub not_recorded: u64,
    /// Pulls and acks that failed (no answer, or not 200 without per-result outcomes).
    pub failed_calls: u64,
}

impl PullTally {
    fn new() -> Self {
        PullTally {
            pull_us: histogram(),
            ack_us: histogram(),
            pulls: 0,
            empty_pulls: 0,
            items: 0,
            not_recorded: 0,
            failed_calls: 0,
        }
    }

    fn merge(&mut self, o: &PullTally) {
        let _ = self.pull_us.add(&o.pull_us);
        let _ = self.ack_us.add(&o.ack_us);
        self.pulls += o.pulls;
        self.empty_pulls += o.empty_pulls;
        self.items += o.items;
        self.not_recorded += o.not_recorded;
        self.failed_calls += o.failed_calls;
    }

    /// Mean deliveries per pull that returned any.
    pub fn batch_avg(&self) -> Option<f64> {
        (self.pulls > 0).then(|| self.items as f64 / self.pulls as f64)
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// Where and how the consumers reach the gateway.
#[derive(Debug, Clone)]
pub struct Target {
    /// The admin listener.
    pub admin: SocketAddr,
    /// An admin token.
    pub token: String,
    /// The pull destination.
    pub destination: String,
}

/// Running consumers.
pub struct Consumers {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<PullTally>>,
}

impl Consumers {
    /// Starts `n` consumers pulling `batch` deliveries at a time; each
    /// recorded delivery is counted in `stats`.
    pub fn start(
        target: Target,
        n: u32,
        batch: u32,
        stats: Arc<SinkStats>,
        clock: Clock,
    ) -> Result<Consumers, String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let stop = CancellationToken::new();
        let base = format!(
            "http://{}/api/v1/destinations/{}",
            target.admin, target.destination
        );
        let tasks = (0..n)
            .map(|_| {
                let c = Consumer {
                    client: client.clone(),
                    pull_url: format!("{base}/pull"),
                    ack_url: format!("{base}/ack"),
                    token: target.token.clone(),
                    pull_body: json!({ "max": batch, "wait": WAIT, "lease": LEASE }).to_string(),
                    stats: stats.clone(),
                    clock,
                    tally: PullTally::new(),
                };
                tokio::spawn(c.run(stop.clone()))
            })
            .collect();
        Ok(Consumers { stop, tasks })
    }

    /// Stops the consumers (a pull waiting for work is dropped) and merges
    /// what they measured.
    pub async fn stop(self) -> PullTally {
        self.stop.cancel();
        let mut all = PullTally::new();
        for t in self.tasks {
            if let Ok(t) = t.await {
                all.merge(&t);
            }
        }
        all
    }
}

/// One consumer's loop.
struct Consumer {
    client: reqwest::Client,
    pull_url: String,
    ack_url: String,
    token: String,
    pull_body: String,
    stats: Arc<SinkStats>,
    clock: Clock,
    tally: PullTally,
}

impl Consumer {
    async fn run(mut self, stop: CancellationToken) -> PullTally {
        while !stop.is_cancelled() {
            let t = Instant::now();
            let pulled = tokio::select! {
                r = self.pull() => r,
                _ = stop.cancelled() => break,
            };
            let items = match pulled {
                Some(items) => items,
                None => {
                    self.tally.failed_calls += 1;
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            };
            if items.is_empty() {
                self.tally.empty_pulls += 1;
                continue;
            }
            self.tally.pull_us.saturating_record(micros(t.elapsed()));
            self.tally.pulls += 1;
            self.tally.items += items.len() as u64;
            self.ack(&items, &stop).await;
        }
        self.tally
    }

    /// One pull: its items, or `None` when it failed.
    async fn pull(&self) -> Option<Vec<Item>> {
        let r = self
            .client
            .post(&self.pull_url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.pull_body.clone())
            .send()
            .await
            .ok()?;
        if r.status() != reqwest::StatusCode::OK {
            return None;
        }
        let bytes = r.bytes().await.ok()?;
        serde_json::from_slice::<Pulled>(&bytes)
            .ok()
            .map(|p| p.data)
    }

    /// Acknowledges every item as delivered, sending again what the gateway
    /// could not take (a 503 applies nothing; a lost answer, maybe all).
    async fn ack(&mut self, items: &[Item], stop: &CancellationToken) {
        let results: Vec<_> = items
            .iter()
            .map(|i| json!({ "token": i.token, "result": "ok" }))
            .collect();
        let body = json!({ "results": results }).to_string();
        let tags: HashMap<&str, Option<&str>> = items
            .iter()
            .map(|i| (i.token.as_str(), i.headers.tag.as_deref()))
            .collect();
        let mut resent = false;
        while !stop.is_cancelled() {
            let t = Instant::now();
            let answer = self
                .client
                .post(&self.ack_url)
                .bearer_auth(&self.token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let acked = match answer {
                Ok(r) if r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    r.bytes().await.ok().and_then(|b| {
                        serde_json::from_slice::<Acked>(&b)
                            .ok()
                            .filter(|a| !a.data.is_empty())
                    })
                }
                _ => None,
            };
            let Some(acked) = acked else {
                self.tally.failed_calls += 1;
                resent = true;
                tokio::time::sleep(BACKOFF).await;
                continue;
            };
            let at = self.clock.now_ns();
            self.tally.ack_us.saturating_record(micros(t.elapsed()));
            for o in &acked.data {
                // After a lost answer, "lease_ended" means the first send recorded it.
                let recorded = o.outcome == "recorded" || (resent && o.outcome == "lease_ended");
                match tags.get(o.token.as_str()) {
                    Some(tag) if recorded => self.stats.arrive(tag.map(str::as_bytes), at),
                    _ => self.tally.not_recorded += 1,
                }
            }
            return;
        }
    }
}
