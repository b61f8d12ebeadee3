//! The consuming loop of `hookgate listen`: lease deliveries (`/pull`),
//! forward each to the local app, report each result (`/ack`), until stopped.
//!
//! One task owns all the state and reacts to one event at a time (a pull,
//! forward or ack finished; a timer; the stop signal). Invariants:
//! - at most `concurrency` forwards run, and a pull asks for no more than the
//!   free places, so nothing leased waits in a local queue;
//! - a result is kept until the gateway has answered for it: a failed ack is
//!   sent again after a backoff, and whatever cannot be sent by the end is
//!   printed and counted as unacknowledged, never dropped silently;
//! - on stop: no new pull; a pull under way may still answer for a moment
//!   (its deliveries are released); forwards under way finish within the
//!   grace, or are reported as interrupted; then the results are sent.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinHandle, JoinSet};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::client::{AckEntry, Gateway, GatewayError, Item};
use super::display::{Delivery, Output, Summary, UNACKNOWLEDGED};
use super::forward::{ack_entry, Forwarder};

/// After a stop, how long a pull under way may still answer.
const PULL_SETTLE: Duration = Duration::from_secs(1);
/// After the forwards' grace, how long the last results may take to reach
/// the gateway.
const ACK_GRACE: Duration = Duration::from_secs(5);
/// Most results per ack.
const ACK_BATCH: usize = 1000;
/// Most deliveries per pull (the API's limit).
const PULL_MAX: usize = 1000;

/// How a session runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The pull destination.
    pub destination: String,
    /// Most forwards at once.
    pub concurrency: usize,
    /// How long a pull waits for a delivery.
    pub wait: Duration,
    /// How long a lease lasts.
    pub lease: Duration,
    /// How long forwards under way may take to finish after a stop.
    pub grace: Duration,
    /// Stop after this many deliveries.
    pub max: Option<u64>,
}

/// A result waiting for the gateway.
struct Outstanding {
    entry: AckEntry,
    /// The line to print once the gateway answered (none for a release).
    shown: Option<Delivery>,
}

/// A forward under way.
struct Started {
    token: String,
    message_id: String,
    event_type: Option<String>,
    attempt: u32,
    at: std::time::Instant,
}

impl Started {
    /// The result of a forward that never finished.
    fn interrupted(self, why: String) -> Outstanding {
        let duration_ms = self.at.elapsed().as_secs_f64() * 1000.0;
        Outstanding {
            entry: AckEntry {
                token: self.token,
                error: Some(why.clone()),
                duration_ms: Some(duration_ms),
                ..AckEntry::default()
            },
            shown: Some(Delivery {
                at_ms: crate::clock::now_millis(),
                message_id: self.message_id,
                event_type: self.event_type,
                attempt: self.attempt,
                status: None,
                error: Some(why),
                duration_ms,
            }),
        }
    }
}

/// A finished forward.
struct Forwarded {
    entry: AckEntry,
    delivery: Delivery,
}

/// When the phases of a stop end.
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    pull: Instant,
    forwards: Instant,
    end: Instant,
}

/// What woke the session.
enum Event {
    Stop,
    Pulled(Result<Vec<Item>, GatewayError>),
    Forwarded(Result<(Id, Forwarded), JoinError>),
    Acked(Result<HashMap<String, String>, GatewayError>),
    /// A backoff ended.
    Wake,
    PullSettled,
    GraceOver,
    End,
}

/// The state of one run.
pub struct Session {
    gw: Gateway,
    fwd: Forwarder,
    s: Settings,
    out: Output,
    summary: Summary,
    forwards: JoinSet<Forwarded>,
    started: HashMap<Id, Started>,
    outstanding: VecDeque<Outstanding>,
    pull: Option<JoinHandle<Result<Vec<Item>, GatewayError>>>,
    pull_at: Option<Instant>,
    pull_backoff: Backoff,
    ack: Option<(Vec<Outstanding>, JoinHandle<AckAnswer>)>,
    ack_at: Option<Instant>,
    ack_backoff: Backoff,
    /// Deliveries leased so far (for `--max`).
    leased: u64,
    /// A call failed for want of an answer, and none has succeeded since.
    unreachable: bool,
    stopping: Option<Deadlines>,
}

type AckAnswer = Result<HashMap<String, String>, GatewayError>;

/// Awaits a task that may not exist (then never).
async fn maybe<T>(h: Option<&mut JoinHandle<T>>) -> Result<T, JoinError> {
    match h {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

/// A task's gateway answer; a task that died is as if the gateway had not answered.
fn answer<T>(r: Result<Result<T, GatewayError>, JoinError>) -> Result<T, GatewayError> {
    r.unwrap_or_else(|e| Err(GatewayError::Unreachable(format!("internal error: {e}"))))
}

/// A duration for the log: `500ms`, `2s`.
fn human(d: Duration) -> String {
    crate::config::Dur(d).to_string()
}

impl Session {
    /// A session, not yet started.
    pub fn new(gw: Gateway, fwd: Forwarder, s: Settings, out: Output) -> Session {
        Session {
            gw,
            fwd,
            s,
            out,
            summary: Summary::default(),
            forwards: JoinSet::new(),
            started: HashMap::new(),
            outstanding: VecDeque::new(),
            pull: None,
            pull_at: None,
            pull_backoff: Backoff::new(),
            ack: None,
            ack_at: None,
            ack_backoff: Backoff::new(),
            leased: 0,
            unreachable: false,
            stopping: None,
        }
    }

    /// Runs until `stop` (or `--max`), then finishes as the module's header
    /// says. Returns the counts, and the error that ended it early (bad
    /// token, destination gone).
    pub async fn run(mut self, stop: CancellationToken) -> (Summary, Result<(), String>) {
        let result = self.run_loop(&stop).await;
        if result.is_err() {
            self.abandon();
        }
        (self.summary, result)
    }

    async fn run_loop(&mut self, stop: &CancellationToken) -> Result<(), String> {
        loop {
            if self.stopping.is_none() && stop.is_cancelled() {
                self.begin_stop();
            }
            self.start_calls();
            if self.stopping.is_some()
                && self.forwards.is_empty()
                && self.pull.is_none()
                && self.ack.is_none()
                && self.outstanding.is_empty()
            {
                return Ok(());
            }
            match self.next_event(stop).await {
                Event::Stop => self.begin_stop(),
                Event::Pulled(r) => {
                    self.pull = None;
                    self.on_pulled(r)?;
                }
                Event::Forwarded(r) => self.on_forwarded(r),
                Event::Acked(r) => {
                    let (batch, _) = self.ack.take().expect("an ack was under way");
                    self.on_acked(batch, r)?;
                }
                Event::Wake => {}
                Event::PullSettled => {
                    // Its leases, if it got any, run out and are handed out again.
                    if let Some(h) = self.pull.take() {
                        h.abort();
                    }
                }
                Event::GraceOver => self.interrupt_forwards().await,
                Event::End => {
                    self.abandon();
                    return Ok(());
                }
            }
        }
    }

    /// Waits for the next thing to react to.
    async fn next_event(&mut self, stop: &CancellationToken) -> Event {
        let stopping = self.stopping;
        // A deadline for timers whose branch is disabled (never reached).
        let far = Instant::now() + Duration::from_secs(365 * 86_400);
        let (pulling, forwarding, acking) = (
            self.pull.is_some(),
            !self.forwards.is_empty(),
            self.ack.is_some(),
        );
        let (pull_at, ack_at) = (self.pull_at, self.ack_at);
        let ack_task = self.ack.as_mut().map(|(_, h)| h);
        tokio::select! {
            _ = stop.cancelled(), if stopping.is_none() => Event::Stop,
            r = maybe(self.pull.as_mut()), if pulling => Event::Pulled(answer(r)),
            Some(r) = self.forwards.join_next_with_id(), if forwarding => Event::Forwarded(r),
            r = maybe(ack_task), if acking => Event::Acked(answer(r)),
            _ = sleep_until(pull_at.unwrap_or(far)), if pull_at.is_some() => Event::Wake,
            _ = sleep_until(ack_at.unwrap_or(far)), if ack_at.is_some() => Event::Wake,
            _ = sleep_until(stopping.map_or(far, |d| d.pull)),
                if stopping.is_some() && pulling => Event::PullSettled,
            _ = sleep_until(stopping.map_or(far, |d| d.forwards)),
                if stopping.is_some() && forwarding => Event::GraceOver,
            _ = sleep_until(stopping.map_or(far, |d| d.end)), if stopping.is_some() => Event::End,
        }
    }

    /// Starts a pull and an ack when they are due and have something to do.
    fn start_calls(&mut self) {
        let now = Instant::now();
        if self.pull_at.is_some_and(|t| t <= now) {
            self.pull_at = None;
        }
        if self.ack_at.is_some_and(|t| t <= now) {
            self.ack_at = None;
        }
        let left = self
            .s
            .max
            .map_or(usize::MAX, |m| m.saturating_sub(self.leased) as usize);
        let all_done = left == 0 && self.forwards.is_empty() && self.pull.is_none();
        if self.s.max.is_some() && all_done && self.stopping.is_none() {
            self.begin_stop();
        }
        let free = self.s.concurrency.saturating_sub(self.forwards.len());
        let n = free.min(left).min(PULL_MAX);
        if self.stopping.is_none() && self.pull.is_none() && self.pull_at.is_none() && n > 0 {
            let (gw, s) = (self.gw.clone(), self.s.clone());
            self.pull = Some(tokio::spawn(async move {
                gw.pull(&s.destination, n, s.wait, s.lease).await
            }));
        }
        if self.ack.is_none() && self.ack_at.is_none() && !self.outstanding.is_empty() {
            let take = self.outstanding.len().min(ACK_BATCH);
            let batch: Vec<Outstanding> = self.outstanding.drain(..take).collect();
            let entries: Vec<AckEntry> = batch.iter().map(|o| o.entry.clone()).collect();
            let (gw, dest) = (self.gw.clone(), self.s.destination.clone());
            let task = tokio::spawn(async move { gw.ack(&dest, &entries).await });
            self.ack = Some((batch, task));
        }
    }

    /// Stops leasing; sets when each phase of the stop ends.
    fn begin_stop(&mut self) {
        let now = Instant::now();
        self.stopping = Some(Deadlines {
            pull: now + PULL_SETTLE.min(self.s.grace),
            forwards: now + self.s.grace,
            end: now + self.s.grace + ACK_GRACE,
        });
        self.pull_at = None;
    }

    fn on_pulled(&mut self, r: Result<Vec<Item>, GatewayError>) -> Result<(), String> {
        let items = match r {
            Ok(items) => items,
            Err(e) if e.is_transient() => {
                let wait = self
                    .pull_backoff
                    .fail()
                    .max(e.retry_after().unwrap_or_default());
                eprintln!("{}; trying again in {}", trouble(&e), human(wait));
                self.pull_at = Some(Instant::now() + wait);
                self.unreachable = true;
                return Ok(());
            }
            Err(e) => return Err(fatal(&e, &self.s.destination, "leasing deliveries")),
        };
        self.pull_backoff.succeed();
        self.reached();
        for item in items {
            let over_max = self.s.max.is_some_and(|m| self.leased >= m);
            if self.stopping.is_some() || over_max {
                self.outstanding.push_back(Outstanding {
                    entry: AckEntry::release(item.token),
                    shown: None,
                });
                continue;
            }
            self.leased += 1;
            let started = Started {
                token: item.token.clone(),
                message_id: item.message_id.clone(),
                event_type: item.event_type.clone(),
                attempt: item.attempt,
                at: std::time::Instant::now(),
            };
            let fwd = self.fwd.clone();
            let handle = self.forwards.spawn(async move {
                let (outcome, took) = fwd.forward(&item).await;
                let delivery = Delivery {
                    at_ms: crate::clock::now_millis(),
                    message_id: item.message_id,
                    event_type: item.event_type,
                    attempt: item.attempt,
                    status: outcome.status,
                    error: outcome.error.clone(),
                    duration_ms: took.as_secs_f64() * 1000.0,
                };
                Forwarded {
                    entry: ack_entry(&outcome, took, &item.token),
                    delivery,
                }
            });
            self.started.insert(handle.id(), started);
        }
        Ok(())
    }

    fn on_forwarded(&mut self, r: Result<(Id, Forwarded), JoinError>) {
        let done = match r {
            Ok((id, f)) => {
                self.started.remove(&id);
                Outstanding {
                    entry: f.entry,
                    shown: Some(f.delivery),
                }
            }
            Err(e) => match self.started.remove(&e.id()) {
                Some(s) => s.interrupted(format!("internal error: {e}")),
                None => return,
            },
        };
        if let Some(d) = &done.shown {
            self.summary.count(d);
        }
        self.outstanding.push_back(done);
    }

    fn on_acked(&mut self, batch: Vec<Outstanding>, r: AckAnswer) -> Result<(), String> {
        let outcomes = match r {
            Ok(o) => o,
            Err(e) => {
                let n = batch.len();
                for o in batch.into_iter().rev() {
                    self.outstanding.push_front(o);
                }
                if !e.is_transient() {
                    return Err(fatal(&e, &self.s.destination, "reporting results"));
                }
                let wait = self
                    .ack_backoff
                    .fail()
                    .max(e.retry_after().unwrap_or_default());
                // While pulls fail too, their line says it already.
                if !self.pull_backoff.failing() || self.stopping.is_some() {
                    eprintln!(
                        "could not report {n} result{}: {}; trying again in {}",
                        if n == 1 { "" } else { "s" },
                        trouble(&e),
                        human(wait)
                    );
                }
                self.ack_at = Some(Instant::now() + wait);
                self.unreachable = true;
                return Ok(());
            }
        };
        self.ack_backoff.succeed();
        self.reached();
        for o in batch {
            let result = outcomes
                .get(&o.entry.token)
                .map_or("unknown", String::as_str);
            match &o.shown {
                Some(d) => self.out.delivery(d, result),
                None if result == "recorded" => self.summary.released += 1,
                None => {}
            }
        }
        Ok(())
    }

    /// The gateway answered: says so if it had not been reachable.
    fn reached(&mut self) {
        if std::mem::take(&mut self.unreachable) {
            eprintln!("connected to the gateway again");
        }
    }

    /// The grace is over: forwards still under way are reported as failed.
    async fn interrupt_forwards(&mut self) {
        self.forwards.abort_all();
        while let Some(r) = self.forwards.join_next_with_id().await {
            // Some may have finished meanwhile: those count as they are.
            if let Ok(done) = r {
                self.on_forwarded(Ok(done));
            }
        }
        let why = format!(
            "listen stopped before the local app answered (within the {} grace)",
            human(self.s.grace)
        );
        for (_, s) in self.started.drain().collect::<Vec<_>>() {
            let o = s.interrupted(why.clone());
            if let Some(d) = &o.shown {
                self.summary.count(d);
            }
            self.outstanding.push_back(o);
        }
    }

    /// Gives up on what is left: stops every task, and prints and counts
    /// every result the gateway did not get.
    fn abandon(&mut self) {
        if let Some(h) = self.pull.take() {
            h.abort();
        }
        self.forwards.abort_all();
        let mut left: Vec<Outstanding> = Vec::new();
        if let Some((batch, h)) = self.ack.take() {
            h.abort();
            left.extend(batch);
        }
        left.extend(self.outstanding.drain(..));
        let why = "listen stopped before the local app answered".to_string();
        for (_, s) in self.started.drain().collect::<Vec<_>>() {
            let o = s.interrupted(why.clone());
            if let Some(d) = &o.shown {
                self.summary.count(d);
            }
            left.push(o);
        }
        if left.is_empty() {
            return;
        }
        for o in &left {
            if let Some(d) = &o.shown {
                self.out.delivery(d, UNACKNOWLEDGED);
            }
        }
        self.summary.unacknowledged += left.len() as u64;
        eprintln!(
            "{} result{} could not be reported to the gateway: it hands those deliveries out again when their leases end",
            left.len(),
            if left.len() == 1 { "" } else { "s" }
        );
    }
}

/// A transient failure for the log.
fn trouble(e: &GatewayError) -> String {
    match e {
        GatewayError::Unreachable(_) => format!("cannot reach the gateway ({e})"),
        _ => format!("the gateway answered {e}"),
    }
}

/// The message of an error that ends the session.
pub fn fatal(e: &GatewayError, destination: &str, doing: &str) -> String {
    match (e.status(), e.code()) {
        (Some(401), _) => {
            "the gateway refused the token (401): check --token or HOOKGATE_TOKEN".into()
        }
        (Some(403), _) => format!("the token may not do this ({e})"),
        (Some(404), "not_found") => {
            format!("the gateway has no destination named {destination:?}")
        }
        (Some(404), "") => format!(
            "{doing} failed: the gateway answered 404 without an API error: is --gateway its admin address, and a version with pull destinations?"
        ),
        (Some(409), "not_pull") => not_pull(destination),
        _ => format!("{doing} failed: {e}"),
    }
}

/// The message for a destination that is not a pull destination.
pub fn not_pull(destination: &str) -> String {
    format!(
        "{destination:?} is a push destination: listen consumes a pull destination (type = \"pull\"), or makes one with --create --source S"
    )
}

/// Retries a call while it fails transiently, with the reconnect backoff and
/// a line per failure; `None` when `stop` came first.
pub async fn until_answered<T, F, Fut>(
    what: &str,
    stop: &CancellationToken,
    mut call: F,
) -> Option<Result<T, GatewayError>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, GatewayError>>,
{
    let mut backoff = Backoff::new();
    loop {
        let r = tokio::select! {
            r = call() => r,
            _ = stop.cancelled() => return None,
        };
        match r {
            Err(e) if e.is_transient() => {
                let wait = backoff.fail().max(e.retry_after().unwrap_or_default());
                eprintln!("{what}: {}; trying again in {}", trouble(&e), human(wait));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return None,
                }
            }
            r => return Some(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: &str) -> GatewayError {
        GatewayError::Status {
            status,
            code: code.into(),
            message: "m".into(),
            retry_after: None,
            data: None,
        }
    }

    /// Transient failures are retried on the backoff schedule (on tokio's
    /// paused clock: 0.5 s, then 1 s); the first other answer ends it.
    #[tokio::test(start_paused = true)]
    async fn until_answered_retries_on_the_schedule() {
        let stop = CancellationToken::new();
        let start = Instant::now();
        let mut calls = 0;
        let r = until_answered("reading", &stop, || {
            calls += 1;
            let n = calls;
            async move {
                match n {
                    1 => Err(GatewayError::Unreachable("refused".into())),
                    2 => Err(status(503, "store_unavailable")),
                    _ => Ok(n),
                }
            }
        })
        .await;
        assert_eq!(r.unwrap().unwrap(), 3);
        assert_eq!(start.elapsed(), Duration::from_millis(1500));

        let r: Option<Result<(), _>> =
            until_answered("reading", &stop, || async { Err(status(401, "")) }).await;
        assert_eq!(r.unwrap().unwrap_err().status(), Some(401), "not retried");
    }

    /// A `Retry-After` longer than the backoff is honoured.
    #[tokio::test(start_paused = true)]
    async fn until_answered_honours_retry_after() {
        let stop = CancellationToken::new();
        let start = Instant::now();
        let mut first = true;
        let r = until_answered("reading", &stop, || {
            let busy = std::mem::take(&mut first);
            async move {
                if busy {
                    Err(GatewayError::Status {
                        status: 503,
                        code: String::new(),
                        message: String::new(),
                        retry_after: Some(Duration::from_secs(3)),
                        data: None,
                    })
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(r.unwrap().is_ok());
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_retries() {
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            s.cancel();
        });
        let r: Option<Result<(), _>> = until_answered("reading", &stop, || async {
            Err(GatewayError::Unreachable("refused".into()))
        })
        .await;
        assert!(r.is_none());
    }

    #[test]
    fn fatal_messages_say_what_to_do() {
        let bad_token = fatal(&status(401, "unauthorized"), "dev", "leasing");
        assert!(
            bad_token.contains("--token or HOOKGATE_TOKEN"),
            "{bad_token}"
        );
        let gone = fatal(&status(404, "not_found"), "dev", "leasing");
        assert_eq!(gone, "the gateway has no destination named \"dev\"");
        let not_api = fatal(&status(404, ""), "dev", "leasing deliveries");
        assert!(not_api.contains("admin address"), "{not_api}");
        let push = fatal(&status(409, "not_pull"), "dev", "leasing");
        assert!(push.contains("\"dev\" is a push destination"), "{push}");
        let other = fatal(&status(400, "invalid_request"), "dev", "reporting results");
        assert_eq!(other, "reporting results failed: 400 invalid_request: m");
    }
}
