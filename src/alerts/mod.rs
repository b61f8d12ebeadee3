//! Alerts: tell a person when delivery goes wrong, without an alert storm.
//!
//! An evaluator task (owned by `tasks`, joined at shutdown) looks once a
//! [`EVERY`] at what the node keeps anyway — each destination's circuit,
//! disabled state and attempt counts (the dispatcher's memory), the store's
//! own view of its writability, the dispatcher's failing result writes, a ping
//! of the store, and every [`STATS_EVERY`] the backlog figures — and turns
//! changes into [`event::AlertEvent`]s, per `[[alerts]]` channel with that
//! channel's thresholds. `message.dead` comes from the dispatcher as it
//! dead-letters a delivery.
//!
//! Invariants:
//! - **No storms.** One event when a condition starts, one when it ends, a
//!   reminder every `reminder` while it lasts; the success rate has hysteresis
//!   (failing below `failing_below`, warning below `warning_below`, recovered
//!   only above `recovered_above`); at most `max_per_hour` alerts per channel,
//!   the rest counted in `hookgate_alerts_suppressed_total`.
//! - **Durable.** An alert is a message appended to the store with one delivery
//!   to the channel's destination (`alerts.<name>`): retried, dead-lettered and
//!   replayable like any other. Only when the store refuses it (the store is
//!   what is degraded) is it sent at once, directly, through the same HTTP
//!   client and signing.
//! - **No loop.** A channel never gets alerts about its own destination, and no
//!   channel gets `message.dead` of an alert's delivery.
//! - **One evaluator.** Conditions of destinations and sources are judged only
//!   while the store says this node leads ([`Store::lead`]: always on one
//!   process; one node of those on a PostgreSQL database), so several nodes
//!   send one alert, not one each. `store.degraded` is each node's own (its
//!   own connection to the store), and `message.dead` comes from the node that
//!   dead-lettered the delivery, so those are judged everywhere.
//! - **Channels change at run time.** The channels are read from
//!   [`Channels`] each round (the config file's and the API's); a channel's
//!   memory is kept by name and dropped with the channel.

pub mod event;
pub mod format;
mod state;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::event::{AlertEvent, EventType, Figures, Severity};
use self::state::{failing_level, ChannelState, Transition};
use crate::clock::{format_rfc3339, Precision, SharedClock};
use crate::config::alerts::{is_channel_destination, AlertChannel};
use crate::control::channels::Channels;
use crate::dispatch::{DeadLetter, Dispatcher};
use crate::store::{MessageId, NewDelivery, NewMessage, Store, StoreError, StoredAlert};
use crate::telemetry::events::AlertRaised;

/// How often conditions are evaluated.
pub const EVERY: Duration = Duration::from_secs(1);
/// How often the backlog figures are read from the store.
pub const STATS_EVERY: Duration = Duration::from_secs(10);
/// How long a ping of the store may take before it counts as unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Past alerts kept for the API and the console.
pub const HISTORY: usize = 500;
/// Per source, the requests it accepted and refused over the last `window`
/// (the console's sampler keeps them; `app` wires it in).
pub type SourceCounts = Arc<dyn Fn(Duration) -> Vec<(String, u64, u64)> + Send + Sync>;

/// The source of the messages that carry alerts.
pub const ALERT_SOURCE: &str = "hookgate.alerts";

/// One alert as raised for one channel, as listed by `GET /api/v1/alerts`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AlertRecord {
    /// The channel.
    pub channel: String,
    /// `queued` (stored for delivery), `sent_directly` (the store refused it),
    /// `suppressed` (the channel's cap), or `failed`.
    pub outcome: String,
    /// The message that carries it, when stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The event.
    pub event: AlertEvent,
}

/// Current conditions and past alerts.
#[derive(Default)]
struct Log {
    /// Conditions that hold now, by key: the event that started each (or its
    /// last reminder).
    current: BTreeMap<String, AlertEvent>,
    /// Alerts raised, newest last, at most [`HISTORY`].
    past: VecDeque<AlertRecord>,
}

/// The alerts of a node: the channels, the log, and the feed of dead letters.
pub struct Alerts {
    channels: Arc<Channels>,
    /// Whether this node judged the conditions of destinations and sources
    /// in its last round.
    leading: std::sync::atomic::AtomicBool,
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    clock: SharedClock,
    console: String,
    log: Mutex<Log>,
    dead_tx: mpsc::UnboundedSender<DeadLetter>,
    dead_rx: Mutex<Option<mpsc::UnboundedReceiver<DeadLetter>>>,
    source_counts: std::sync::OnceLock<SourceCounts>,
}

impl Alerts {
    /// The alerts of `channels`; links point into the console at `console`
    /// (its base URL). Dead letters reach it once [`Alerts::hook`] is set on
    /// the dispatcher.
    pub fn new(
        channels: Arc<Channels>,
        store: Arc<dyn Store>,
        dispatcher: Arc<Dispatcher>,
        clock: SharedClock,
        console: String,
    ) -> Arc<Self> {
        let (dead_tx, dead_rx) = mpsc::unbounded_channel();
        Arc::new(Alerts {
            channels,
            leading: std::sync::atomic::AtomicBool::new(false),
            store,
            dispatcher,
            clock,
            console: console.trim_end_matches('/').to_string(),
            log: Mutex::new(Log::default()),
            dead_tx,
            dead_rx: Mutex::new(Some(dead_rx)),
            source_counts: std::sync::OnceLock::new(),
        })
    }

    /// What the dispatcher calls with each dead letter (a channel that wants
    /// `message.dead` may be made at any time, so it is always set).
    pub fn hook(self: &Arc<Self>) -> crate::dispatch::DeadHook {
        let tx = self.dead_tx.clone();
        Arc::new(move |d: DeadLetter| {
            let _ = tx.send(d);
        })
    }

    /// Where `source.rejections` reads the sources' counts (set once, at start).
    pub fn set_source_counts(&self, counts: SourceCounts) {
        let _ = self.source_counts.set(counts);
    }

    /// The conditions that hold now, by key.
    pub fn current(&self) -> Vec<AlertEvent> {
        self.log.lock().current.values().cloned().collect()
    }

    /// Alerts raised, newest first, at most `limit`: this node's log while it
    /// leads, else the store's (the leader's alerts are kept there); the log
    /// when the store cannot answer.
    pub async fn past(&self, limit: usize) -> Vec<AlertRecord> {
        if !self.leading() {
            if let Ok(kept) = self.store.alert_history(limit).await {
                return kept
                    .into_iter()
                    .filter_map(|a| serde_json::from_value(a.record).ok())
                    .collect();
            }
        }
        self.log
            .lock()
            .past
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Whether this node judges the conditions of destinations and sources
    /// (on PostgreSQL, one node of those sharing the database does).
    pub fn leading(&self) -> bool {
        self.leading.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The channels, in their order (the config file's, then the API's).
    pub fn channels(&self) -> Arc<Vec<AlertChannel>> {
        self.channels.all()
    }

    /// The channels' names.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels().iter().map(|c| c.name.clone()).collect()
    }

    /// Evaluates every [`EVERY`] and sends what changed, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let Some(mut dead_rx) = self.dead_rx.lock().take() else {
            return;
        };
        self.load_history().await;
        let mut eval = Evaluator::default();
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let channels = self.channels.all();
                    if channels.is_empty() {
                        continue;
                    }
                    let obs = self.observe(&mut eval).await;
                    let out = eval.step(&channels, &obs, Instant::now(), &|k, o| self.event(k, o));
                    self.log.lock().current.retain(|k, _| obs.subject_exists(k));
                    self.send_all(&mut eval, &channels, out).await;
                }
                Some(d) = dead_rx.recv() => {
                    let channels = self.channels.all();
                    let out = self.dead(&channels, &d);
                    self.send_all(&mut eval, &channels, out).await;
                }
                _ = stop.cancelled() => break,
            }
        }
    }

    /// Whether this node leads now (a store that cannot say: not).
    async fn lead(&self) -> bool {
        let leads = match tokio::time::timeout(PING_TIMEOUT, self.store.lead()).await {
            Ok(Ok(leads)) => leads,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot tell whether this node leads the alerts");
                false
            }
            Err(_) => false,
        };
        let was = self
            .leading
            .swap(leads, std::sync::atomic::Ordering::Relaxed);
        if was && !leads {
            tracing::info!("this node no longer leads the alerts' evaluation");
        }
        leads
    }

    /// Takes the past alerts the store kept (a failure leaves the log empty).
    async fn load_history(&self) {
        match self.store.alert_history(HISTORY).await {
            Ok(kept) => {
                let mut log = self.log.lock();
                // Oldest first, as the log holds them.
                for a in kept.into_iter().rev() {
                    if let Ok(r) = serde_json::from_value::<AlertRecord>(a.record) {
                        log.past.push_back(r);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the past alerts"),
        }
    }

    /// Keeps an alert in the store, for the log after a restart.
    async fn keep(&self, r: &AlertRecord) {
        let stored = StoredAlert {
            id: format!("{}:{}", r.event.id, r.channel),
            at: self.clock.now_millis(),
            channel: r.channel.clone(),
            outcome: r.outcome.clone(),
            record: serde_json::to_value(r).unwrap_or_default(),
        };
        if let Err(e) = self.store.put_alert(&stored).await {
            tracing::warn!(channel = %r.channel, error = %e, "could not keep an alert in the store");
        }
    }

    /// What the node looks like now.
    async fn observe(&self, eval: &mut Evaluator) -> Observation {
        let store = self.store_problem().await;
        if !self.lead().await {
            // Another node judges destinations and sources.
            return Observation {
                leading: false,
                dests: Vec::new(),
                backlog: HashMap::new(),
                sources: HashMap::new(),
                store,
            };
        }
        let now = Instant::now();
        let mut dests = Vec::new();
        for h in self.dispatcher.all() {
            let spec = h.spec();
            let st = h.state();
            dests.push(DestObs {
                name: spec.name.clone(),
                circuit_open: h.circuit_open(),
                disabled: st.disabled_at.is_some(),
                counts: h.attempt_counts(),
            });
        }
        if eval.stats_at.is_none_or(|t| now >= t) {
            eval.stats_at = Some(now + STATS_EVERY);
            if let Ok(stats) = self.store.destination_stats().await {
                let now_ms = self.clock.now_millis();
                eval.backlog = stats
                    .into_iter()
                    .map(|(name, s)| {
                        let age = s
                            .oldest_pending_at
                            .filter(|_| s.pending > 0)
                            .map(|t| Duration::from_millis((now_ms - t).max(0) as u64));
                        (name, (age, s.pending))
                    })
                    .collect();
            }
        }
        let mut sources = HashMap::new();
        if let Some(counts) = self.source_counts.get() {
            for c in self.channels.all().iter() {
                sources
                    .entry(c.window.0)
                    .or_insert_with(|| counts(c.window.0));
            }
        }
        Observation {
            leading: true,
            dests,
            backlog: eval.backlog.clone(),
            sources,
            store,
        }
    }

    /// Why the store is degraded, if it is.
    async fn store_problem(&self) -> Option<String> {
        match self.store.writable() {
            Err(StoreError::Full) => {
                return Some(
                    "the store is nearly full (storage.max_size or the disk): ingest answers 503"
                        .into(),
                )
            }
            Err(e) => return Some(format!("the store refuses writes: {e}")),
            Ok(()) => {}
        }
        if self.dispatcher.store_write_failing() {
            return Some("the store refuses to record delivery results".into());
        }
        match tokio::time::timeout(PING_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(StoreError::Closed)) => None,
            Ok(Err(e)) => Some(format!("the store cannot be reached: {e}")),
            Err(_) => Some(format!(
                "the store did not answer within {}s",
                PING_TIMEOUT.as_secs()
            )),
        }
    }

    /// The event of a condition's change, with its numbers and link.
    fn event(&self, k: &Change, obs: &Observation) -> AlertEvent {
        let now = self.clock.now_millis();
        let dest = k.subject.destination();
        let (summary, figures, link) = match (&k.subject, k.kind) {
            (Subject::Store, _) => (
                match (&obs.store, k.kind.is_recovery()) {
                    (Some(why), false) => why.clone(),
                    _ => "the store takes writes again".into(),
                },
                Figures::default(),
                format!("{}/", self.console),
            ),
            (Subject::Source(src), kind) => {
                let f = k.figures.clone();
                let (n, refused) = (f.requests.unwrap_or(0), f.refused.unwrap_or(0));
                let share = (refused * 100).checked_div(n).unwrap_or(0);
                let what = if kind == EventType::SourceRejections {
                    "refuses"
                } else {
                    "is back to refusing"
                };
                (
                    format!(
                        "source {src} {what} {share}% of its requests ({refused} of {n} in the last {}s): see why on the Rejected page",
                        f.window_seconds.unwrap_or(0)
                    ),
                    f,
                    format!("{}/rejected?source={src}", self.console),
                )
            }
            (Subject::Destination(d), EventType::Failing | EventType::Recovered) => {
                let f = k.figures.clone();
                let rate = f
                    .success_rate
                    .map_or("-".into(), |r| format!("{:.0}%", r * 100.0));
                let verb = if k.kind == EventType::Failing {
                    "is failing"
                } else {
                    "has recovered"
                };
                (
                    format!(
                        "destination {d} {verb}: success rate {rate} ({} of {} attempts in the last {}s)",
                        f.succeeded.unwrap_or(0),
                        f.succeeded.unwrap_or(0) + f.failed.unwrap_or(0),
                        f.window_seconds.unwrap_or(0)
                    ),
                    f,
                    self.dest_link(d),
                )
            }
            (Subject::Destination(d), kind) => {
                let (age, pending) = obs.backlog.get(d).cloned().unwrap_or((None, 0));
                let figures = Figures {
                    oldest_pending_seconds: age.map(|a| a.as_secs()),
                    pending: Some(pending),
                    ..Default::default()
                };
                let what = match kind {
                    EventType::CircuitOpened => {
                        "circuit breaker opened: attempts are stopped".into()
                    }
                    EventType::CircuitClosed => "circuit breaker closed: attempts resumed".into(),
                    EventType::Disabled => {
                        "was disabled after failing for its disable_after: resume it once it works"
                            .into()
                    }
                    EventType::Enabled => "is enabled again".into(),
                    EventType::BacklogStale => format!(
                        "oldest pending delivery is {}s old ({pending} pending)",
                        age.map_or(0, |a| a.as_secs())
                    ),
                    _ => format!("backlog is fresh again ({pending} pending)"),
                };
                (
                    format!("destination {d}: {what}"),
                    figures,
                    self.dest_link(d),
                )
            }
        };
        AlertEvent {
            id: format!("alert_{}", MessageId::new()),
            key: k.key.clone(),
            kind: k.kind,
            severity: k.severity,
            summary,
            destination: dest.map(str::to_string),
            source: match &k.subject {
                Subject::Source(src) => Some(src.clone()),
                _ => None,
            },
            message_id: None,
            since: format_rfc3339(k.since_ms.unwrap_or(now), Precision::Seconds),
            at: format_rfc3339(now, Precision::Milliseconds),
            reminder: k.reminder,
            figures,
            console_url: link,
        }
    }

    fn dest_link(&self, d: &str) -> String {
        // The destinations page's row of `d` (its id is the name in hex).
        format!("{}/destinations#dest-{}", self.console, hex::encode(d))
    }

    /// The `message.dead` events of a dead letter, for those of `channels` that
    /// want it.
    fn dead(&self, channels: &[AlertChannel], d: &DeadLetter) -> Vec<(usize, AlertEvent)> {
        // An alert's own delivery dying raises nothing (no loop).
        if is_channel_destination(&d.destination) {
            return Vec::new();
        }
        let now = self.clock.now_millis();
        let why = match (d.status, &d.error) {
            (Some(s), _) => format!("answered {s}"),
            (None, Some(e)) => e.clone(),
            (None, None) => "failed".into(),
        };
        let event = AlertEvent {
            id: format!("alert_{}", MessageId::new()),
            key: format!("message.dead:{}:{}", d.destination, d.message_id),
            kind: EventType::MessageDead,
            severity: Severity::Critical,
            summary: format!(
                "a {} message from {} died on its way to {} after {} attempts ({why})",
                d.event_type.as_deref().unwrap_or("untyped"),
                d.source,
                d.destination,
                d.attempts
            ),
            destination: Some(d.destination.clone()),
            source: Some(d.source.clone()),
            message_id: Some(d.message_id.to_string()),
            since: format_rfc3339(now, Precision::Seconds),
            at: format_rfc3339(now, Precision::Milliseconds),
            reminder: false,
            figures: Figures {
                attempts: Some(d.attempts),
                status: d.status,
                ..Default::default()
            },
            console_url: format!("{}/messages/{}", self.console, d.message_id),
        };
        channels
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.wants("message.dead") && c.dead.matches(&d.source, &d.destination, d.priority)
            })
            .map(|(i, _)| (i, event.clone()))
            .collect()
    }

    /// Sends each event to its channel (by its place in `channels`), within
    /// the channel's cap, and logs it.
    async fn send_all(
        &self,
        eval: &mut Evaluator,
        channels: &[AlertChannel],
        out: Vec<(usize, AlertEvent)>,
    ) {
        let now = Instant::now();
        for (i, e) in out {
            let c = &channels[i];
            {
                let mut log = self.log.lock();
                if e.kind.is_recovery() {
                    log.current.remove(&e.key);
                } else if e.kind != EventType::MessageDead {
                    log.current.insert(e.key.clone(), e.clone());
                }
            }
            let allowed = eval
                .channels
                .entry(c.name.clone())
                .or_default()
                .allow(now, c.max_per_hour);
            AlertRaised {
                channel: &c.name,
                event_type: e.kind.as_str(),
                summary: &e.summary,
                suppressed: !allowed,
            }
            .emit();
            let (outcome, message_id) = if allowed {
                self.deliver(c, &e).await
            } else {
                ("suppressed", None)
            };
            let record = AlertRecord {
                channel: c.name.clone(),
                outcome: outcome.into(),
                message_id,
                event: e,
            };
            {
                let mut log = self.log.lock();
                log.past.push_back(record.clone());
                while log.past.len() > HISTORY {
                    log.past.pop_front();
                }
            }
            self.keep(&record).await;
        }
    }

    /// Stores the alert as a message for the channel's destination; sends it
    /// at once when the store refuses it.
    async fn deliver(&self, c: &AlertChannel, e: &AlertEvent) -> (&'static str, Option<String>) {
        let now = self.clock.now_millis();
        let id = MessageId::new();
        let dest = c.destination_name();
        let m = NewMessage {
            id,
            source: ALERT_SOURCE.into(),
            event_type: Some(e.kind.as_str().into()),
            received_at: now,
            content_type: Some("application/json".into()),
            headers: Bytes::new(),
            body: Bytes::from(format::body(c, e)),
            dedup: None,
            deliveries: vec![NewDelivery {
                destination: dest.clone(),
                due_at: now,
                priority: crate::config::Priority::High,
                ordering_key: None,
            }],
        };
        let body = m.body.clone();
        match self.store.append(m).await {
            Ok(a) => ("queued", Some(a.id().to_string())),
            Err(err) => {
                tracing::warn!(channel = %c.name, error = %err, "the store refused an alert; sending it directly");
                match self.dispatcher.send_now(&dest, id, body, now).await {
                    Some(true) => ("sent_directly", None),
                    _ => ("failed", None),
                }
            }
        }
    }
}

/// What one evaluation saw.
pub(crate) struct Observation {
    /// Whether this node judged destinations and sources (else only the store).
    leading: bool,
    dests: Vec<DestObs>,
    /// Per destination: the oldest pending delivery's age and the pending count.
    backlog: HashMap<String, (Option<Duration>, u64)>,
    /// Per window: each source's accepted and refused requests in it.
    sources: HashMap<Duration, Vec<(String, u64, u64)>>,
    /// Why the store is degraded, if it is.
    store: Option<String>,
}

impl Observation {
    /// Whether the subject of condition `key` (`type:name`) is still there.
    fn subject_exists(&self, key: &str) -> bool {
        let Some((kind, name)) = key.split_once(':') else {
            return true;
        };
        if !self.leading {
            // Not judged here: the leader holds these conditions.
            false
        } else if kind.starts_with("source.") {
            // Sources are known only where their counts are read.
            self.sources.is_empty()
                || self
                    .sources
                    .values()
                    .any(|v| v.iter().any(|(s, _, _)| s == name))
        } else {
            self.dests.iter().any(|d| d.name == name)
        }
    }
}

/// One destination as seen.
pub(crate) struct DestObs {
    name: String,
    circuit_open: bool,
    disabled: bool,
    /// Cumulative attempts that delivered and that did not.
    counts: (u64, u64),
}

/// What a condition is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subject {
    Destination(String),
    Source(String),
    Store,
}

impl Subject {
    fn destination(&self) -> Option<&str> {
        match self {
            Subject::Destination(d) => Some(d),
            _ => None,
        }
    }
}

/// A condition started, was reminded of, or ended, for one channel.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    key: String,
    subject: Subject,
    kind: EventType,
    severity: Severity,
    since_ms: Option<i64>,
    reminder: bool,
    figures: Figures,
}

/// The evaluator's memory between ticks.
#[derive(Default)]
pub(crate) struct Evaluator {
    /// Per destination: the counts of the last tick, and the deltas of the
    /// ticks within the longest window.
    last: HashMap<String, (u64, u64)>,
    samples: HashMap<String, VecDeque<(Instant, u64, u64)>>,
    backlog: HashMap<String, (Option<Duration>, u64)>,
    stats_at: Option<Instant>,
    /// Each channel's memory, by name.
    channels: HashMap<String, ChannelState>,
}

impl Evaluator {
    /// Takes the observation in and returns the events to send, per channel.
    pub(crate) fn step(
        &mut self,
        channels: &[AlertChannel],
        obs: &Observation,
        now: Instant,
        make: &dyn Fn(&Change, &Observation) -> AlertEvent,
    ) -> Vec<(usize, AlertEvent)> {
        self.count(obs, now, channels.iter().map(|c| c.window.0).max());
        let exists = |key: &str| obs.subject_exists(key);
        // A deleted channel's memory goes with it.
        self.channels
            .retain(|name, _| channels.iter().any(|c| &c.name == name));
        for st in self.channels.values_mut() {
            st.forget(exists);
        }
        let wall = crate::clock::now_millis();
        let mut out = Vec::new();
        for (i, c) in channels.iter().enumerate() {
            let mut j = Judge {
                st: self.channels.entry(c.name.clone()).or_default(),
                changes: Vec::new(),
                now,
                wall,
                reminder: c.reminder.0,
            };
            for d in &obs.dests {
                // A channel never hears about its own destination.
                if d.name != c.destination_name() {
                    let window = window_counts(self.samples.get(&d.name), now, c.window.0);
                    j.destination(c, d, window, obs);
                }
            }
            for (src, accepted, refused) in obs.sources.get(&c.window.0).into_iter().flatten() {
                j.source(c, src, *accepted, *refused);
            }
            let degraded = obs.store.as_ref().map(|_| Severity::Critical);
            j.judge(
                "store.degraded",
                degraded,
                &Subject::Store,
                (EventType::StoreDegraded, EventType::StoreRecovered),
                Figures::default(),
            );
            for ch in j.changes {
                if c.wants(ch.kind.as_str()) {
                    out.push((i, make(&ch, obs)));
                }
            }
        }
        out
    }

    /// Adds each destination's attempts since the last tick to its samples,
    /// dropping those older than the longest window.
    fn count(&mut self, obs: &Observation, now: Instant, longest: Option<Duration>) {
        let longest = longest.unwrap_or_default();
        // Counts of destinations not seen (gone, or not judged here) start
        // again when seen: no burst of what happened meanwhile.
        let seen = |name: &String| obs.dests.iter().any(|d| &d.name == name);
        self.last.retain(|name, _| seen(name));
        self.samples.retain(|name, _| seen(name));
        for d in &obs.dests {
            let last = self.last.insert(d.name.clone(), d.counts);
            let (ok0, bad0) = last.unwrap_or(d.counts);
            let q = self.samples.entry(d.name.clone()).or_default();
            q.push_back((
                now,
                d.counts.0.saturating_sub(ok0),
                d.counts.1.saturating_sub(bad0),
            ));
            while q
                .front()
                .is_some_and(|(t, _, _)| now.duration_since(*t) > longest)
            {
                q.pop_front();
            }
        }
    }
}

/// The attempts that delivered and that did not within `window` of `now`.
fn window_counts(
    samples: Option<&VecDeque<(Instant, u64, u64)>>,
    now: Instant,
    window: Duration,
) -> (u64, u64) {
    samples.map_or((0, 0), |q| {
        q.iter()
            .filter(|(t, _, _)| now.duration_since(*t) <= window)
            .fold((0, 0), |(a, b), (_, x, y)| (a + x, b + y))
    })
}

/// One channel's judgement of the conditions in one evaluation.
struct Judge<'a> {
    st: &'a mut ChannelState,
    changes: Vec<Change>,
    now: Instant,
    wall: i64,
    reminder: Duration,
}

impl Judge<'_> {
    /// Moves condition `key` to `want` and adds the change it calls for: the
    /// first of `kinds` for a start or reminder, the second for an end.
    fn judge(
        &mut self,
        key: &str,
        want: Option<Severity>,
        subject: &Subject,
        kinds: (EventType, EventType),
        figures: Figures,
    ) {
        let t = self
            .st
            .transition(key, want, self.now, self.wall, self.reminder);
        push(&mut self.changes, t, subject, kinds.0, kinds.1, figures);
    }

    /// A destination's circuit, disabled state, success rate (`ok`, `bad` in
    /// the window) and backlog.
    fn destination(
        &mut self,
        c: &AlertChannel,
        d: &DestObs,
        (ok, bad): (u64, u64),
        obs: &Observation,
    ) {
        let subject = Subject::Destination(d.name.clone());
        let on = |b: bool| b.then_some(Severity::Critical);
        let key = |kind: EventType| format!("{}:{}", kind.as_str(), d.name);
        let pairs = [
            (
                EventType::CircuitOpened,
                EventType::CircuitClosed,
                on(d.circuit_open),
            ),
            (EventType::Disabled, EventType::Enabled, on(d.disabled)),
        ];
        for (start, end, want) in pairs {
            self.judge(
                &key(start),
                want,
                &subject,
                (start, end),
                Figures::default(),
            );
        }
        let failing = key(EventType::Failing);
        let level = failing_level(ok, bad, self.st.severity(&failing), c);
        let figures = Figures {
            succeeded: Some(ok),
            failed: Some(bad),
            success_rate: (ok + bad > 0).then(|| ok as f64 / (ok + bad) as f64),
            window_seconds: Some(c.window.0.as_secs()),
            ..Default::default()
        };
        self.judge(
            &failing,
            level,
            &subject,
            (EventType::Failing, EventType::Recovered),
            figures,
        );
        let (age, _) = obs.backlog.get(&d.name).cloned().unwrap_or((None, 0));
        let stale_key = key(EventType::BacklogStale);
        let stale = match (age, self.st.severity(&stale_key)) {
            // Fresh again only below half the threshold (hysteresis).
            (Some(a), Some(_)) => a * 2 >= c.stale_after.0,
            (Some(a), None) => a >= c.stale_after.0,
            (None, _) => false,
        };
        self.judge(
            &stale_key,
            stale.then_some(Severity::Warning),
            &subject,
            (EventType::BacklogStale, EventType::BacklogRecovered),
            Figures::default(),
        );
    }

    /// A source's refused share over the window.
    fn source(&mut self, c: &AlertChannel, src: &str, accepted: u64, refused: u64) {
        let key = format!("source.rejections:{src}");
        let n = accepted + refused;
        let share = refused as f64 / n.max(1) as f64;
        let on = match self.st.severity(&key) {
            held if n < c.min_attempts.max(1) => held.is_some(),
            // Over only below half the threshold (hysteresis).
            Some(_) => share * 2.0 > c.rejections_above,
            None => share > c.rejections_above,
        };
        let figures = Figures {
            requests: Some(n),
            refused: Some(refused),
            window_seconds: Some(c.window.0.as_secs()),
            ..Default::default()
        };
        self.judge(
            &key,
            on.then_some(Severity::Warning),
            &Subject::Source(src.to_string()),
            (EventType::SourceRejections, EventType::SourceRecovered),
            figures,
        );
    }
}

/// Adds the change a transition calls for.
fn push(
    out: &mut Vec<Change>,
    t: Option<Transition>,
    subject: &Subject,
    start: EventType,
    end: EventType,
    figures: Figures,
) {
    let Some(t) = t else { return };
    let (kind, severity, reminder) = match t.kind {
        state::Kind::Start(s) => (start, s, false),
        state::Kind::Reminder(s) => (start, s, true),
        state::Kind::End => (end, Severity::Info, false),
    };
    out.push(Change {
        key: t.key,
        subject: subject.clone(),
        kind,
        severity,
        since_ms: Some(t.since_ms),
        reminder,
        figures,
    });
}
