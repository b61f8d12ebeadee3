//! Named internal events: each struct's `emit()` writes its log line and records
//! its metrics, so what is logged and what is counted cannot drift apart.
//!
//! Hot-path events take pre-registered metric handles ([`SourceMetrics`],
//! [`DestinationMetrics`]) so emitting costs no label lookup or allocation.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics::{Counter, Gauge, Histogram, Unit};

use crate::store::{MessageId, Next};

/// The counters: name and description.
const COUNTERS: [(&str, &str); 9] = [
    (
        "hookgate_ingest_requests_total",
        "Ingest requests by source and outcome (stored, duplicate, rejected, ...).",
    ),
    (
        "hookgate_store_corrupt_rows_total",
        "Rows read from the store with a value no hookgate wrote (an unreadable message id, an unknown status), by table; such rows are reported, never delivered.",
    ),
    (
        "hookgate_deliveries_total",
        "Delivery attempt results by destination: delivered, retried (will be tried again) or dead.",
    ),
    (
        "hookgate_unrouted_total",
        "Messages stored that no route takes (delivered nowhere), by source.",
    ),
    (
        "hookgate_store_write_failures_total",
        "Store writes of delivery results that failed (each is retried, with backoff).",
    ),
    (
        "hookgate_replayed_total",
        "Deliveries created or revived by replay, by destination.",
    ),
    (
        "hookgate_alerts_sent_total",
        "Alerts handed to a channel's delivery, by channel and event type.",
    ),
    (
        "hookgate_alerts_suppressed_total",
        "Alerts left out because their channel reached its max_per_hour, by channel.",
    ),
    (
        "hookgate_config_reloads_total",
        "Reloads of the config file (SIGHUP or POST /api/v1/reload), by outcome: applied, or refused (the running config stays).",
    ),
];

/// The gauges: name, unit and description.
const GAUGES: [(&str, Option<Unit>, &str); 7] = [
    (
        "hookgate_pending",
        None,
        "Deliveries waiting (pending or queued behind their ordering key), by destination.",
    ),
    (
        "hookgate_oldest_pending_seconds",
        Some(Unit::Seconds),
        "Age of the oldest waiting delivery, by destination.",
    ),
    (
        "hookgate_dead",
        None,
        "Dead deliveries waiting in the dead-letter queue (replayed ones left it), by destination.",
    ),
    (
        "hookgate_circuit_open",
        None,
        "1 while a destination's circuit breaker is open or half-open, else 0.",
    ),
    (
        "hookgate_store_write_failing",
        None,
        "1 while the store refuses to record delivery results (e.g. a full disk), else 0.",
    ),
    (
        "hookgate_destination_paused",
        None,
        "1 while a destination is paused.",
    ),
    (
        "hookgate_destination_disabled",
        None,
        "1 while a destination is disabled because every attempt failed for disable_after.",
    ),
];

/// The histograms: name, unit and description.
const HISTOGRAMS: [(&str, Option<Unit>, &str); 5] = [
    (
        "hookgate_ingest_seconds",
        Some(Unit::Seconds),
        "Time from a request's arrival to its answer, by source.",
    ),
    (
        "hookgate_delivery_attempt_seconds",
        Some(Unit::Seconds),
        "Duration of each delivery attempt, by destination.",
    ),
    (
        "hookgate_delivery_lag_seconds",
        Some(Unit::Seconds),
        "Time from ingest to a successful delivery, by destination.",
    ),
    (
        "hookgate_store_commit_seconds",
        Some(Unit::Seconds),
        "Duration of each store commit (one group of writes, one sync).",
    ),
    (
        "hookgate_store_commit_batch",
        None,
        "Writes per store commit (the group-commit batch size).",
    ),
];

/// Metric descriptions, registered once with the recorder.
pub fn describe() {
    for (name, about) in COUNTERS {
        describe_counter!(name, about);
    }
    for (name, unit, about) in GAUGES {
        match unit {
            Some(unit) => describe_gauge!(name, unit, about),
            None => describe_gauge!(name, about),
        }
    }
    for (name, unit, about) in HISTOGRAMS {
        match unit {
            Some(unit) => describe_histogram!(name, unit, about),
            None => describe_histogram!(name, about),
        }
    }
}

/// How an ingest request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored durably (2xx).
    Stored,
    /// A duplicate of a stored message (2xx, nothing new).
    Duplicate,
    /// A handshake the gateway answered itself.
    Handshake,
    /// Verification failed (401) or the handshake token was wrong (403).
    Unauthorized,
    /// Refused by `allow_ips` (403).
    Forbidden,
    /// Rate limited (429).
    RateLimited,
    /// Body too large (413).
    TooLarge,
    /// Incomplete, slow or malformed request (400/408).
    BadRequest,
    /// The store refused or is over `max_pending` (503).
    Unavailable,
}

impl IngestOutcome {
    const ALL: [IngestOutcome; 9] = [
        IngestOutcome::Stored,
        IngestOutcome::Duplicate,
        IngestOutcome::Handshake,
        IngestOutcome::Unauthorized,
        IngestOutcome::Forbidden,
        IngestOutcome::RateLimited,
        IngestOutcome::TooLarge,
        IngestOutcome::BadRequest,
        IngestOutcome::Unavailable,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            IngestOutcome::Stored => "stored",
            IngestOutcome::Duplicate => "duplicate",
            IngestOutcome::Handshake => "handshake",
            IngestOutcome::Unauthorized => "unauthorized",
            IngestOutcome::Forbidden => "forbidden",
            IngestOutcome::RateLimited => "rate_limited",
            IngestOutcome::TooLarge => "too_large",
            IngestOutcome::BadRequest => "bad_request",
            IngestOutcome::Unavailable => "unavailable",
        }
    }
}

/// Metric handles of one source.
pub struct SourceMetrics {
    name: String,
    outcomes: [Counter; 9],
    seconds: Histogram,
}

impl SourceMetrics {
    /// Registers the handles of a source.
    pub fn new(source: &str) -> Self {
        SourceMetrics {
            name: source.to_string(),
            outcomes: IngestOutcome::ALL.map(|o| {
                counter!("hookgate_ingest_requests_total", "source" => source.to_string(), "outcome" => o.as_str())
            }),
            seconds: histogram!("hookgate_ingest_seconds", "source" => source.to_string()),
        }
    }
}

/// An ingest request was answered.
pub struct IngestHandled<'a> {
    /// The source's handles.
    pub source: &'a SourceMetrics,
    /// How it ended.
    pub outcome: IngestOutcome,
    /// Handling time.
    pub elapsed: Duration,
    /// The message id, when one was stored or matched.
    pub message_id: Option<MessageId>,
}

impl IngestHandled<'_> {
    /// Logs and counts.
    pub fn emit(self) {
        let i = IngestOutcome::ALL
            .iter()
            .position(|o| *o == self.outcome)
            .unwrap_or(0);
        self.source.outcomes[i].increment(1);
        self.source.seconds.record(self.elapsed.as_secs_f64());
        match self.outcome {
            IngestOutcome::Stored | IngestOutcome::Duplicate | IngestOutcome::Handshake => {
                tracing::debug!(
                    source = %self.source.name,
                    outcome = self.outcome.as_str(),
                    message_id = ?self.message_id,
                    micros = self.elapsed.as_micros() as u64,
                    "ingest"
                );
            }
            IngestOutcome::Unavailable => {
                // A full store refuses every request: one line per interval.
                static LOG: crate::throttle::Throttle =
                    crate::throttle::Throttle::new(crate::throttle::LOG_EVERY);
                if let Some(suppressed) = LOG.check() {
                    tracing::warn!(
                        source = %self.source.name,
                        outcome = self.outcome.as_str(),
                        suppressed,
                        "ingest refused: the store is unavailable or full"
                    );
                }
            }
            _ => tracing::info!(
                source = %self.source.name,
                outcome = self.outcome.as_str(),
                "ingest refused"
            ),
        }
    }
}

/// The `destination` label of every tenant endpoint's series (not a name a
/// destination can have).
pub const TENANT_ENDPOINTS: &str = "tenant.*";

/// Metric handles of one destination.
pub struct DestinationMetrics {
    name: String,
    delivered: Counter,
    retried: Counter,
    dead: Counter,
    dropped: Counter,
    transform_failed: Counter,
    attempt_seconds: Histogram,
    lag_seconds: Histogram,
    pending: Gauge,
    oldest: Gauge,
    dead_letters: Gauge,
    circuit: Gauge,
    paused: Gauge,
    disabled: Gauge,
}

/// Applications whose endpoints have their own series
/// (`telemetry.per_tenant_metrics`). Only ever added to: a process serves one
/// config's list from its start, and ids never repeat across applications.
static OWN_SERIES: std::sync::RwLock<std::collections::BTreeSet<String>> =
    std::sync::RwLock::new(std::collections::BTreeSet::new());

/// Gives the endpoints of these applications their own series from now on.
pub fn add_per_tenant_metrics(apps: &[String]) {
    let mut g = OWN_SERIES.write().unwrap_or_else(|e| e.into_inner());
    g.extend(apps.iter().map(|a| a.trim().to_string()));
}

/// Whether the endpoints of this application have their own series.
pub fn has_own_series(app: &str) -> bool {
    OWN_SERIES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains(app)
}

impl DestinationMetrics {
    /// Registers the handles of a destination.
    pub fn new(dest: &str) -> Self {
        let d = || dest.to_string();
        DestinationMetrics {
            name: d(),
            delivered: counter!("hookgate_deliveries_total", "destination" => d(), "outcome" => "delivered"),
            retried: counter!("hookgate_deliveries_total", "destination" => d(), "outcome" => "retried"),
            dead: counter!("hookgate_deliveries_total", "destination" => d(), "outcome" => "dead"),
            dropped: counter!("hookgate_deliveries_total", "destination" => d(), "outcome" => "dropped"),
            transform_failed: counter!("hookgate_deliveries_total", "destination" => d(), "outcome" => "transform_failed"),
            attempt_seconds: histogram!("hookgate_delivery_attempt_seconds", "destination" => d()),
            lag_seconds: histogram!("hookgate_delivery_lag_seconds", "destination" => d()),
            pending: gauge!("hookgate_pending", "destination" => d()),
            oldest: gauge!("hookgate_oldest_pending_seconds", "destination" => d()),
            dead_letters: gauge!("hookgate_dead", "destination" => d()),
            circuit: gauge!("hookgate_circuit_open", "destination" => d()),
            paused: gauge!("hookgate_destination_paused", "destination" => d()),
            disabled: gauge!("hookgate_destination_disabled", "destination" => d()),
        }
    }

    /// The handles of a tenant's endpoint (made through the Svix API): its
    /// counters and histograms are those of every tenant endpoint together,
    /// labelled `destination="tenant.*"`, and it sets no gauges, so the number
    /// of series does not grow with the number of tenants and endpoints.
    /// (The endpoints of an application listed in
    /// `telemetry.per_tenant_metrics` use [`DestinationMetrics::new`] instead.)
    pub fn for_tenant_endpoint(dest: &str) -> Self {
        let d = || TENANT_ENDPOINTS.to_string();
        DestinationMetrics {
            name: dest.to_string(),
            delivered: counter!("hookgate_deliveries_total", "destination" => d(), "outcome" => "delivered"),
            retried: counter!("hookgate_deliveries_total", "destination" => d(), "outcome" => "retried"),
            dead: counter!("hookgate_deliveries_total", "destination" => d(), "outcome" => "dead"),
            dropped: counter!("hookgate_deliveries_total", "destination" => d(), "outcome" => "dropped"),
            transform_failed: counter!("hookgate_deliveries_total", "destination" => d(), "outcome" => "transform_failed"),
            attempt_seconds: histogram!("hookgate_delivery_attempt_seconds", "destination" => d()),
            lag_seconds: histogram!("hookgate_delivery_lag_seconds", "destination" => d()),
            pending: Gauge::noop(),
            oldest: Gauge::noop(),
            dead_letters: Gauge::noop(),
            circuit: Gauge::noop(),
            paused: Gauge::noop(),
            disabled: Gauge::noop(),
        }
    }

    /// Sets the waiting-work gauges.
    pub fn set_backlog(&self, pending: u64, oldest_age: Option<Duration>, dead: u64) {
        super::together(|| {
            self.pending.set(pending as f64);
            self.oldest.set(oldest_age.map_or(0.0, |a| a.as_secs_f64()));
            self.dead_letters.set(dead as f64);
        });
    }

    /// Sets the state gauges.
    pub fn set_state(&self, circuit_open: bool, paused: bool, disabled: bool) {
        self.circuit.set(if circuit_open { 1.0 } else { 0.0 });
        self.paused.set(if paused { 1.0 } else { 0.0 });
        self.disabled.set(if disabled { 1.0 } else { 0.0 });
    }
}

/// One delivery attempt finished.
pub struct DeliveryAttempted<'a> {
    /// The destination's handles.
    pub dest: &'a DestinationMetrics,
    /// The message.
    pub message_id: MessageId,
    /// The delivery.
    pub delivery_id: i64,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// HTTP status, if a response came.
    pub status: Option<u16>,
    /// Error text, if none did.
    pub error: Option<&'a str>,
    /// How long it took.
    pub elapsed: Duration,
    /// What follows.
    pub next: Next,
    /// Ingest-to-now, for successes.
    pub lag: Duration,
}

impl DeliveryAttempted<'_> {
    /// Logs and counts.
    pub fn emit(self) {
        self.dest.attempt_seconds.record(self.elapsed.as_secs_f64());
        let ms = millis(self.elapsed);
        match self.next {
            Next::Delivered => {
                self.dest.delivered.increment(1);
                self.dest.lag_seconds.record(self.lag.as_secs_f64());
                tracing::debug!(
                    message_id = %self.message_id,
                    destination = %self.dest.name,
                    delivery_id = self.delivery_id,
                    attempt = self.attempt,
                    status = self.status,
                    ms,
                    "delivered"
                );
            }
            Next::Retry(at) => {
                self.dest.retried.increment(1);
                tracing::info!(
                    message_id = %self.message_id,
                    destination = %self.dest.name,
                    delivery_id = self.delivery_id,
                    attempt = self.attempt,
                    status = self.status,
                    error = self.error,
                    ms,
                    retry_at_ms = at,
                    "delivery attempt failed; will retry"
                );
            }
            Next::Dead => {
                self.dest.dead.increment(1);
                tracing::warn!(
                    message_id = %self.message_id,
                    destination = %self.dest.name,
                    delivery_id = self.delivery_id,
                    attempt = self.attempt,
                    status = self.status,
                    error = self.error,
                    ms,
                    "delivery is dead (dead-letter queue)"
                );
            }
            Next::Dropped => {
                self.dest.dropped.increment(1);
                tracing::debug!(
                    message_id = %self.message_id,
                    destination = %self.dest.name,
                    delivery_id = self.delivery_id,
                    "dropped by transform"
                );
            }
            Next::TransformFailed => {
                self.dest.transform_failed.increment(1);
                tracing::warn!(
                    message_id = %self.message_id,
                    destination = %self.dest.name,
                    delivery_id = self.delivery_id,
                    error = self.error,
                    ms,
                    "transform failed; the delivery stops (replay it once the script is fixed)"
                );
            }
        }
    }
}

/// A duration in milliseconds for a log line, to the microsecond: `0.175`,
/// never `0.17501999999999998` (which `as_secs_f64() * 1000.0` gives).
pub fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// A message was stored that no route takes: it is kept (and can be replayed
/// once a route exists) but delivered nowhere, which is usually a mistake in
/// the event type or the routes.
pub struct MessageUnrouted<'a> {
    /// The source (`api` for published events).
    pub source: &'a str,
    /// Its event type, when known.
    pub event_type: Option<&'a str>,
    /// The message.
    pub message_id: MessageId,
}

impl MessageUnrouted<'_> {
    /// Counts (`hookgate_unrouted_total{source}`) and logs at debug: a source
    /// kept only for storage would otherwise log every message. The API's
    /// answer carries the warning to whoever published the event.
    pub fn emit(self) {
        counter!("hookgate_unrouted_total", "source" => self.source.to_string()).increment(1);
        tracing::debug!(
            source = self.source,
            event_type = self.event_type,
            message_id = %self.message_id,
            "message stored but no route takes it: delivered nowhere"
        );
    }
}

/// A store commit finished.
pub struct StoreCommitted {
    /// Its duration (writes and sync).
    pub elapsed: Duration,
    /// Jobs in the batch.
    pub batch: usize,
}

impl StoreCommitted {
    /// Records the commit.
    pub fn emit(self) {
        histogram!("hookgate_store_commit_seconds").record(self.elapsed.as_secs_f64());
        histogram!("hookgate_store_commit_batch").record(self.batch as f64);
    }
}

/// A destination's circuit changed state.
pub struct CircuitChanged<'a> {
    /// Destination name.
    pub destination: &'a str,
    /// Whether it is now open.
    pub open: bool,
}

impl CircuitChanged<'_> {
    /// Logs the change.
    pub fn emit(self) {
        if self.open {
            tracing::warn!(
                destination = self.destination,
                "circuit opened: attempts stop for the cooldown"
            );
        } else {
            tracing::info!(
                destination = self.destination,
                "circuit closed: attempts resume"
            );
        }
    }
}

/// A destination was disabled by endpoint health, or enabled again.
pub struct DestinationHealthChanged<'a> {
    /// Destination name.
    pub destination: &'a str,
    /// Whether it is now disabled.
    pub disabled: bool,
}

impl DestinationHealthChanged<'_> {
    /// Logs the change.
    pub fn emit(self) {
        if self.disabled {
            tracing::error!(
                destination = self.destination,
                "destination disabled: every attempt has failed for disable_after; messages keep queueing"
            );
        } else {
            tracing::info!(destination = self.destination, "destination enabled");
        }
    }
}

/// Deliveries were created or revived by a replay.
pub struct Replayed<'a> {
    /// Destination name, when one.
    pub destination: Option<&'a str>,
    /// How many.
    pub count: u64,
}

impl Replayed<'_> {
    /// Logs and counts.
    pub fn emit(self) {
        let d = self.destination.unwrap_or("*").to_string();
        counter!("hookgate_replayed_total", "destination" => d.clone()).increment(self.count);
        tracing::info!(destination = %d, count = self.count, "replay");
    }
}

/// A store write of attempt results failed; the results are kept and written
/// again after `retry_in`. Counted every time, logged at most once per
/// [`throttle::LOG_EVERY`](crate::throttle::LOG_EVERY).
pub struct ResultsUnrecorded<'a> {
    /// Destination name.
    pub destination: &'a str,
    /// Results in the failed write.
    pub attempts: usize,
    /// Why it failed.
    pub error: &'a crate::store::StoreError,
    /// When the write is tried again.
    pub retry_in: Duration,
}

impl ResultsUnrecorded<'_> {
    /// Counts, and logs unless a line was written recently.
    pub fn emit(self) {
        static LOG: crate::throttle::Throttle =
            crate::throttle::Throttle::new(crate::throttle::LOG_EVERY);
        counter!("hookgate_store_write_failures_total").increment(1);
        if let Some(suppressed) = LOG.check() {
            tracing::error!(
                destination = self.destination,
                attempts = self.attempts,
                error = %self.error,
                retry_in_ms = self.retry_in.as_millis() as u64,
                suppressed,
                "could not record delivery results; holding them (not re-sending) and retrying the write"
            );
        }
    }
}

/// Whether writes of delivery results are failing changed (any destination).
pub struct StoreWriteHealthChanged {
    /// True when writes started failing, false when they work again.
    pub failing: bool,
}

impl StoreWriteHealthChanged {
    /// Sets the gauge and logs the change.
    pub fn emit(self) {
        gauge!("hookgate_store_write_failing").set(if self.failing { 1.0 } else { 0.0 });
        if self.failing {
            tracing::error!(
                "the store refuses to record delivery results: new attempts wait until it recovers"
            );
        } else {
            tracing::info!("the store records delivery results again");
        }
    }
}

/// A reload of the config file was applied: what changed (names, never
/// values) and the settings that need a restart to take effect.
pub struct ConfigReloaded<'a> {
    /// What changed, in words (`source `a` added, 1 route removed`), or
    /// `nothing changed`.
    pub changes: &'a str,
    /// Settings changed in the file that keep their running value until a restart.
    pub needs_restart: &'a [&'static str],
}

impl ConfigReloaded<'_> {
    /// Logs and counts.
    pub fn emit(self) {
        counter!("hookgate_config_reloads_total", "outcome" => "applied").increment(1);
        if self.needs_restart.is_empty() {
            tracing::info!("config reloaded: {}", self.changes);
        } else {
            tracing::warn!(
                "config reloaded: {}; needs a restart: {}",
                self.changes,
                self.needs_restart.join(", ")
            );
        }
    }
}

/// A reload of the config file was refused; the running config stays.
pub struct ConfigReloadRefused<'a> {
    /// Each problem, one line each, as `hookgate check` prints them.
    pub errors: &'a [String],
}

impl ConfigReloadRefused<'_> {
    /// Logs and counts.
    pub fn emit(self) {
        counter!("hookgate_config_reloads_total", "outcome" => "refused").increment(1);
        tracing::error!(
            "config reload refused, the running config stays: {} error{}\n{}",
            self.errors.len(),
            if self.errors.len() == 1 { "" } else { "s" },
            self.errors.join("\n")
        );
    }
}

/// An action taken in the web console; it names what it was done to, never a
/// secret.
pub struct ConsoleAction<'a> {
    /// What was done, in words (`destination created`, `signing secret rotated`…).
    pub action: &'static str,
    /// The destination or source it was done to.
    pub name: &'a str,
    /// The message it stored, if any.
    pub message_id: Option<&'a str>,
}

impl ConsoleAction<'_> {
    /// Logs.
    pub fn emit(self) {
        tracing::info!(
            name = self.name,
            message_id = self.message_id,
            "console: {}",
            self.action
        );
    }
}

/// A console login was refused: a wrong token, or too many of them
/// (`limited`) from `client`.
pub struct ConsoleLoginRefused {
    /// The client's address, when known.
    pub client: Option<std::net::IpAddr>,
    /// Refused by the failed-login limit, without looking at the token.
    pub limited: bool,
}

impl ConsoleLoginRefused {
    /// Logs and counts.
    pub fn emit(self) {
        let reason = if self.limited {
            "limited"
        } else {
            "wrong_token"
        };
        counter!("hookgate_console_login_refused_total", "reason" => reason).increment(1);
        tracing::warn!(client = ?self.client, reason, "console login refused");
    }
}

/// An alert was raised for a channel: sent, or left out by the channel's cap.
pub struct AlertRaised<'a> {
    /// The channel's name.
    pub channel: &'a str,
    /// The event type.
    pub event_type: &'static str,
    /// One line about it.
    pub summary: &'a str,
    /// Left out: the channel had sent `max_per_hour` alerts in the last hour.
    pub suppressed: bool,
}

impl AlertRaised<'_> {
    /// Counts and logs.
    pub fn emit(self) {
        let channel = self.channel.to_string();
        if self.suppressed {
            counter!("hookgate_alerts_suppressed_total", "channel" => channel).increment(1);
            tracing::warn!(
                channel = self.channel,
                event = self.event_type,
                summary = self.summary,
                "alert left out: the channel reached its max_per_hour"
            );
        } else {
            counter!("hookgate_alerts_sent_total", "channel" => channel, "type" => self.event_type)
                .increment(1);
            tracing::info!(
                channel = self.channel,
                event = self.event_type,
                summary = self.summary,
                "alert raised"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_millis_are_rounded_to_the_microsecond() {
        let d = Duration::from_nanos(175_020);
        assert_eq!(
            format!("{}", d.as_secs_f64() * 1000.0),
            "0.17501999999999998",
            "the naive conversion this replaces"
        );
        assert_eq!(format!("{}", millis(d)), "0.175");
        assert_eq!(format!("{}", millis(Duration::from_millis(1250))), "1250");
        assert_eq!(format!("{}", millis(Duration::from_micros(1))), "0.001");
    }

    /// A destination's value of a gauge in Prometheus text.
    fn gauge_value(text: &str, name: &str, dest: &str) -> f64 {
        let prefix = format!("{name}{{destination=\"{dest}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
    }

    /// `hookgate_oldest_pending_seconds` is 0 in every scrape that shows
    /// `hookgate_pending` 0, and only then, however the scrape falls between
    /// backlog updates. (Without `together`, a scrape preempted between the
    /// two gauges showed pending 0 beside the previous age.)
    #[test]
    fn a_scrape_never_shows_half_a_backlog_update() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let handle = crate::telemetry::metrics_handle();
        let dest = "backlog-consistency-check";
        let m = Arc::new(DestinationMetrics::new(dest));
        m.set_backlog(0, None, 0);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (m, stop) = (m.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    m.set_backlog(3, Some(Duration::from_secs(7)), 0);
                    m.set_backlog(0, None, 0);
                }
            })
        };
        for _ in 0..500 {
            let text = crate::telemetry::render(&handle);
            let pending = gauge_value(&text, "hookgate_pending", dest);
            let oldest = gauge_value(&text, "hookgate_oldest_pending_seconds", dest);
            assert_eq!(
                pending == 0.0,
                oldest == 0.0,
                "pending {pending} beside oldest {oldest}"
            );
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
    }
}
