//! `[[alerts]]`: the alert channels as users write them, their checks, and the
//! destination each one is delivered through.
//!
//! A channel is delivered by hookgate's own durable delivery: each one becomes a
//! file destination named `alerts.<name>` ([`channel_destination`]), compiled by
//! the one path every destination takes. The `alerts.` prefix is reserved, so a
//! user destination never has such a name and no route reaches a channel.

use serde::Deserialize;

use super::check::{bad_name, check_url, valid_name, Problem};
use super::def::{DestinationDef, Origin};
use super::report::Errors;
use super::{Dur, FieldSpans, Priority, RetryConfig, Secret};

/// The prefix of the destinations that deliver alert channels.
pub const CHANNEL_PREFIX: &str = "alerts.";

/// Whether a destination delivers an alert channel.
pub fn is_channel_destination(name: &str) -> bool {
    name.starts_with(CHANNEL_PREFIX)
}

/// A destination's URL as shown by the API and the console: for an alert
/// channel's destination only its origin, since the path of a Slack, Discord or
/// Telegram URL is its secret.
pub fn shown_url(name: &str, url: &url::Url) -> String {
    if is_channel_destination(name) {
        format!("{}/…", url.origin().ascii_serialization())
    } else {
        url.to_string()
    }
}

/// Where a channel's alerts go and in which format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// A Standard Webhooks–signed POST of the alert event as JSON.
    Webhook,
    /// A Slack incoming webhook (`{"text": …}`).
    Slack,
    /// A Telegram bot's `sendMessage` to one chat.
    Telegram,
    /// A Discord webhook (`{"content": …}`).
    Discord,
    /// PagerDuty Events API v2 (trigger and resolve).
    Pagerduty,
}

impl ChannelKind {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Telegram => "telegram",
            ChannelKind::Discord => "discord",
            ChannelKind::Pagerduty => "pagerduty",
        }
    }
}

/// The Telegram Bot API, unless `api_url` says otherwise.
pub const TELEGRAM_API: &str = "https://api.telegram.org";
/// PagerDuty's Events API v2, unless `url` says otherwise.
pub const PAGERDUTY_EVENTS: &str = "https://events.pagerduty.com/v2/enqueue";

/// Which dead messages raise `message.dead` (every list empty: all of them).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadFilter {
    /// Only messages of these sources.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Only deliveries to these destinations.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// Only deliveries of these priorities (a route's `priority`).
    #[serde(default)]
    pub priorities: Vec<Priority>,
}

impl DeadFilter {
    /// Whether a dead delivery passes.
    pub fn matches(&self, source: &str, destination: &str, priority: Priority) -> bool {
        (self.sources.is_empty() || self.sources.iter().any(|s| s == source))
            && (self.destinations.is_empty() || self.destinations.iter().any(|d| d == destination))
            && (self.priorities.is_empty() || self.priorities.contains(&priority))
    }
}

/// `[[alerts]]`: one alert channel, the events it wants and their thresholds.
/// The same fields are the JSON body of `POST /api/v1/alert-channels` and
/// `PUT /api/v1/alert-channels/{name}`.
#[derive(Debug, Clone, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ops", "format": "slack",
    "url": "https://hooks.slack.com/services/T000/B000/XXXX", "events": ["destination.*", "message.dead"],
    "reminder": "1h", "max_per_hour": 20}))]
pub struct AlertChannel {
    /// The channel's name (its destination is `alerts.<name>`).
    pub name: String,
    /// `webhook`, `slack`, `telegram`, `discord` or `pagerduty`.
    pub format: ChannelKind,
    /// Where to post: the receiver (webhook), the incoming webhook URL (slack,
    /// discord), or the Events API (pagerduty; default PagerDuty's own).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub url: Option<Secret>,
    /// webhook: the `whsec_` secret the alerts are signed with.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// telegram: the bot's token.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub bot_token: Option<Secret>,
    /// telegram: the chat the bot writes to.
    #[serde(default)]
    pub chat_id: Option<String>,
    /// telegram: the Bot API's base URL (default `https://api.telegram.org`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// pagerduty: the integration's routing key.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub routing_key: Option<Secret>,
    /// The event types sent (`destination.failing`, …; globs such as
    /// `destination.*`); default all. A recovery follows its start.
    #[serde(default = "all_events")]
    pub events: Vec<String>,
    /// Which dead messages raise `message.dead`.
    #[serde(default)]
    pub dead: DeadFilter,
    /// Success rate over `window` below which a destination is failing (critical).
    #[serde(default = "defaults::failing_below")]
    pub failing_below: f64,
    /// Success rate below which a destination is failing (warning).
    #[serde(default = "defaults::warning_below")]
    pub warning_below: f64,
    /// Success rate above which a failing destination has recovered.
    #[serde(default = "defaults::recovered_above")]
    pub recovered_above: f64,
    /// The window over which success rates and refusal shares are computed.
    #[serde(default = "defaults::window")]
    pub window: Dur,
    /// Attempts (or requests) a window needs before a rate is judged.
    #[serde(default = "defaults::min_attempts")]
    pub min_attempts: u64,
    /// `backlog.stale` when a destination's oldest pending delivery is older.
    #[serde(default = "defaults::stale_after")]
    pub stale_after: Dur,
    /// `source.rejections` when a source refuses more than this share of requests.
    #[serde(default = "defaults::rejections_above")]
    pub rejections_above: f64,
    /// `store.degraded` when the embedded store's file is fuller than this
    /// share of `storage.max_size`.
    #[serde(default = "defaults::disk_above")]
    pub disk_above: f64,
    /// While a condition lasts, a reminder this often.
    #[serde(default = "defaults::reminder")]
    pub reminder: Dur,
    /// Most alerts sent per hour; more are left out (and counted).
    #[serde(default = "defaults::max_per_hour")]
    pub max_per_hour: u32,
    /// The retry schedule of the channel's deliveries.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Per-attempt timeout of the channel's deliveries.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Where each field is in the file, for errors.
    #[serde(skip)]
    pub spans: FieldSpans,
}

fn all_events() -> Vec<String> {
    vec!["*".into()]
}

/// The thresholds' defaults (the seeds' 80 % / 90 % / 95 % pattern).
mod defaults {
    use super::Dur;
    pub fn failing_below() -> f64 {
        0.8
    }
    pub fn warning_below() -> f64 {
        0.9
    }
    pub fn recovered_above() -> f64 {
        0.95
    }
    pub fn window() -> Dur {
        Dur::secs(300)
    }
    pub fn min_attempts() -> u64 {
        10
    }
    pub fn stale_after() -> Dur {
        Dur::secs(900)
    }
    pub fn rejections_above() -> f64 {
        0.2
    }
    pub fn disk_above() -> f64 {
        0.9
    }
    pub fn reminder() -> Dur {
        Dur::secs(3600)
    }
    pub fn max_per_hour() -> u32 {
        20
    }
}

/// The event types a channel may ask for.
pub const EVENT_TYPES: &[&str] = &[
    "destination.circuit_opened",
    "destination.circuit_closed",
    "destination.failing",
    "destination.recovered",
    "destination.disabled",
    "destination.enabled",
    "message.dead",
    "backlog.stale",
    "backlog.recovered",
    "source.rejections",
    "source.recovered",
    "store.degraded",
    "store.recovered",
];

impl AlertChannel {
    /// The destination that delivers this channel.
    pub fn destination_name(&self) -> String {
        format!("{CHANNEL_PREFIX}{}", self.name)
    }

    /// Whether the channel wants events of `event_type`.
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.iter().any(|p| glob(p, event_type))
    }

    /// The URL the channel's deliveries go to.
    pub fn target_url(&self) -> Option<String> {
        match self.format {
            ChannelKind::Telegram => {
                let base = self.api_url.as_deref().unwrap_or(TELEGRAM_API);
                let token = self.bot_token.as_ref()?.expose();
                Some(format!(
                    "{}/bot{token}/sendMessage",
                    base.trim_end_matches('/')
                ))
            }
            ChannelKind::Pagerduty => Some(
                self.url
                    .as_ref()
                    .map_or(PAGERDUTY_EVENTS, |u| u.expose())
                    .to_string(),
            ),
            _ => self.url.as_ref().map(|u| u.expose().to_string()),
        }
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            let Some(rest) = s.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
        }
    }
}

/// The destination that delivers a channel: its URL, signing secret, retry
/// and timeout; compiled like any file destination.
pub fn channel_destination(c: &AlertChannel) -> DestinationDef {
    DestinationDef {
        name: c.destination_name(),
        kind: Default::default(),
        url: c.target_url(),
        event_types: None,
        source: None,
        filter: Vec::new(),
        timeout: c.timeout,
        max_in_flight: Some(1),
        rate_limit: None,
        retry: c.retry.clone(),
        disable_after: None,
        circuit_breaker: None,
        signing_secret: match c.format {
            ChannelKind::Webhook => c.secret.clone(),
            _ => None,
        },
        headers: Default::default(),
        forward_headers: Some(super::ForwardHeaders::None),
        signing_secrets: Vec::new(),
        transform: None,
        spans: FieldSpans::default(),
    }
}

/// Every problem of the `[[alerts]]` tables, each at its field.
pub(super) fn check(channels: &[AlertChannel], errs: &mut Errors<'_>) {
    let mut names = std::collections::HashSet::new();
    for c in channels {
        for p in channel(c) {
            errs.field(&c.spans, &p.dotted(), p.message);
        }
        if !names.insert(c.name.as_str()) {
            errs.field(
                &c.spans,
                "name",
                format!("alert channel `{}` is defined twice", c.name),
            );
        }
    }
}

/// Unknown event types reported one by one, at most.
const MAX_EVENT_PROBLEMS: usize = 5;

/// Every problem of one channel, each at its field: the one check of a
/// channel, from the file or the API. Never a secret's value.
pub fn channel(c: &AlertChannel) -> Vec<Problem> {
    let mut out = Vec::new();
    if !valid_name(&c.name) {
        out.push(Problem::at("name", bad_name("alert channel", &c.name)));
    }
    let mut need = |set: bool, field: &str| {
        if !set {
            out.push(Problem::at(
                "format",
                format!(
                    "an alert channel of format {} needs `{field}`",
                    c.format.as_str()
                ),
            ));
        }
    };
    match c.format {
        ChannelKind::Webhook => {
            need(c.url.is_some(), "url");
            need(c.secret.is_some(), "secret");
        }
        ChannelKind::Slack | ChannelKind::Discord => need(c.url.is_some(), "url"),
        ChannelKind::Telegram => {
            need(c.bot_token.is_some(), "bot_token");
            need(c.chat_id.is_some(), "chat_id");
        }
        ChannelKind::Pagerduty => need(c.routing_key.is_some(), "routing_key"),
    }
    if let (ChannelKind::Webhook, Some(s)) = (c.format, &c.secret) {
        if !crate::signing::valid_signing_secret(s.expose()) {
            out.push(Problem::at("secret", super::check::BAD_SIGNING_SECRET));
        }
    }
    if let Some(url) = c.target_url() {
        // The URL may hold a token: the error names the field, not the value.
        if check_url(&url).is_err() {
            let field = match c.format {
                ChannelKind::Telegram => "api_url",
                _ => "url",
            };
            out.push(Problem::at(
                field,
                format!("`{field}` must be an http:// or https:// URL with a host"),
            ));
        }
    }
    let unknown: Vec<&String> = c
        .events
        .iter()
        .filter(|e| !EVENT_TYPES.iter().any(|t| glob(e, t)))
        .collect();
    // A few are enough to see the mistake; a list of thousands says no more.
    for e in unknown.iter().take(MAX_EVENT_PROBLEMS) {
        let e: String = e.chars().take(80).collect();
        out.push(Problem::at(
            "events",
            format!(
                "no alert event is called {e:?}; they are {}",
                EVENT_TYPES.join(", ")
            ),
        ));
    }
    if unknown.len() > MAX_EVENT_PROBLEMS {
        out.push(Problem::at(
            "events",
            format!(
                "and {} more unknown event types",
                unknown.len() - MAX_EVENT_PROBLEMS
            ),
        ));
    }
    thresholds(c, &mut out);
    // The delivery settings, by the destinations' own check.
    out.extend(
        super::check::destination(&channel_destination(c), Origin::Config)
            .into_iter()
            .filter(|p| {
                matches!(
                    p.path.first().map(String::as_str),
                    Some("retry" | "timeout")
                )
            }),
    );
    out
}

/// The shares, their hysteresis, the durations and the cap.
fn thresholds(c: &AlertChannel, out: &mut Vec<Problem>) {
    let rates = [
        ("failing_below", c.failing_below),
        ("warning_below", c.warning_below),
        ("recovered_above", c.recovered_above),
        ("rejections_above", c.rejections_above),
        ("disk_above", c.disk_above),
    ];
    for (field, v) in rates {
        if !(0.0..=1.0).contains(&v) {
            out.push(Problem::at(
                field,
                format!("`{field}` is a share from 0.0 to 1.0, not {v}"),
            ));
        }
    }
    if !(c.failing_below <= c.warning_below && c.warning_below < c.recovered_above) {
        out.push(Problem::at(
            "recovered_above",
            "the thresholds must hold failing_below <= warning_below < recovered_above (hysteresis)",
        ));
    }
    for (field, d) in [
        ("window", c.window),
        ("reminder", c.reminder),
        ("stale_after", c.stale_after),
    ] {
        if d.0.is_zero() {
            out.push(Problem::at(
                field,
                format!("`{field}` must be longer than 0s"),
            ));
        }
    }
    if c.max_per_hour == 0 {
        out.push(Problem::at(
            "max_per_hour",
            "`max_per_hour` must be at least 1 (remove the channel to send none)",
        ));
    }
}

/// A table with more problems than this is reported only this far.
const MAX_JSON_PROBLEMS: usize = 64;

/// A channel from the API's JSON (a request body or a stored row), with every
/// problem at its field: a key of a bad type or unknown is reported and taken
/// out, so the rest is still read and checked (as the file's tables are).
/// Messages are the config's words, never the value found.
pub fn from_json(
    obj: &serde_json::Map<String, serde_json::Value>,
) -> Result<AlertChannel, Vec<Problem>> {
    let mut obj = obj.clone();
    let mut problems = Vec::new();
    let mut removed = Vec::new();
    let parsed = loop {
        if problems.len() >= MAX_JSON_PROBLEMS {
            break None;
        }
        let value = serde_json::Value::Object(obj.clone());
        let e = match serde_path_to_error::deserialize::<_, AlertChannel>(value) {
            Ok(c) => break Some(c),
            Err(e) => e,
        };
        let message = e.inner().to_string();
        let message = message
            .rfind(" at line ")
            .map_or(message.as_str(), |i| &message[..i]);
        let mut keys: Vec<String> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        // An unknown or missing key is named by the message, at its parent's path.
        let named = |prefix: &str| {
            message
                .strip_prefix(prefix)
                .and_then(|r| r.split('`').next())
                .map(str::to_string)
        };
        let missing = named("missing field `");
        if let (Some(k), true) = (
            named("unknown field `").or(missing.clone()),
            keys.is_empty(),
        ) {
            keys.push(k);
        }
        let top = keys.first().cloned();
        let follow_on = missing.is_some_and(|f| removed.contains(&f));
        if !follow_on {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            problems.push(Problem::at_keys(&keys, super::reword(message)));
        }
        match top.filter(|k| obj.remove(k).is_some()) {
            Some(k) => removed.push(k),
            None => break None,
        }
    };
    match parsed {
        Some(c) => {
            // A check of a field taken out would only repeat its problem.
            let mentions_removed = |p: &Problem| {
                removed
                    .iter()
                    .any(|k| p.path.first() == Some(k) || p.message.contains(&format!("`{k}`")))
            };
            problems.extend(channel(&c).into_iter().filter(|p| !mentions_removed(p)));
            if problems.is_empty() {
                Ok(c)
            } else {
                Err(problems)
            }
        }
        None => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_event_types() {
        assert!(glob("*", "message.dead"));
        assert!(glob("destination.*", "destination.failing"));
        assert!(!glob("destination.*", "message.dead"));
        assert!(glob("message.dead", "message.dead"));
        assert!(!glob("message.dea", "message.dead"));
    }

    #[test]
    fn dead_filter_empty_takes_all() {
        let f = DeadFilter::default();
        assert!(f.matches("a", "b", Priority::Low));
        let f = DeadFilter {
            sources: vec!["leads".into()],
            priorities: vec![Priority::High],
            ..Default::default()
        };
        assert!(f.matches("leads", "crm", Priority::High));
        assert!(!f.matches("leads", "crm", Priority::Normal));
        assert!(!f.matches("other", "crm", Priority::High));
    }

    fn errors(text: &str) -> String {
        crate::config::parse(text, "t.toml", &|_| None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_problem_of_a_channel_is_reported_at_its_field() {
        let e = errors(
            "[[alerts]]\nname = \"hook\"\nformat = \"webhook\"\nurl = \"ftp://x\"\nevents = [\"destination.fail\"]\nfailing_below = 0.97\nmax_per_hour = 0\n",
        );
        assert!(e.contains("needs `secret`"), "{e}");
        assert!(e.contains("t.toml:4:"), "the url's line: {e}");
        assert!(
            e.contains("no alert event is called \"destination.fail\""),
            "{e}"
        );
        assert!(e.contains("hysteresis"), "{e}");
        assert!(e.contains("max_per_hour"), "{e}");
        assert!(!e.contains("ftp://x"), "the URL may hold a secret: {e}");
    }

    fn json_problems(v: serde_json::Value) -> Vec<(String, String)> {
        from_json(v.as_object().unwrap())
            .unwrap_err()
            .iter()
            .map(|p| (p.pointer(), p.message.clone()))
            .collect()
    }

    #[test]
    fn json_problems_are_all_reported_at_their_fields_without_values() {
        let p = json_problems(serde_json::json!({
            "name": "a b", "format": "webhook", "url": "ftp://hunter2@x/",
            "secret": "whsec_x", "window": 5, "max_per_hour": 0, "bogus": 1,
            "events": ["destination.fail"],
        }));
        let at = |ptr: &str| p.iter().filter(|(q, _)| q == ptr).count();
        for ptr in [
            "/name",
            "/url",
            "/secret",
            "/window",
            "/max_per_hour",
            "/bogus",
            "/events",
        ] {
            assert_eq!(at(ptr), 1, "one problem at {ptr}: {p:?}");
        }
        assert!(p.iter().all(|(_, m)| !m.contains("hunter2")), "{p:?}");
        // A missing field is named where it belongs.
        let p = json_problems(serde_json::json!({"name": "x"}));
        assert_eq!(p[0].0, "/format", "{p:?}");
        // A bad type says what was expected, never the value.
        let p =
            json_problems(serde_json::json!({"name": "x", "format": "slack", "url": ["hunter2"]}));
        assert_eq!(
            p.len(),
            1,
            "the missing url follows from the bad one: {p:?}"
        );
        assert_eq!(p[0].0, "/url");
        assert!(!p[0].1.contains("hunter2"), "{p:?}");
        // Thousands of unknown events give a few problems, not thousands.
        let many: Vec<String> = (0..5000).map(|i| format!("x{i}")).collect();
        let p = json_problems(
            serde_json::json!({"name": "x", "format": "slack", "url": "http://h/", "events": many}),
        );
        assert!(p.len() <= 6, "{}", p.len());
        let ok = from_json(
            serde_json::json!({"name": "x", "format": "slack", "url": "http://h/"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(ok.events, ["*"]);
    }

    #[test]
    fn a_channel_is_delivered_by_a_destination_of_its_own() {
        let cfg = crate::config::parse(
            "[[alerts]]\nname = \"tg\"\nformat = \"telegram\"\nbot_token = \"1:x\"\nchat_id = \"7\"\n",
            "t.toml",
            &|_| None,
        )
        .unwrap();
        assert_eq!(cfg.destinations.len(), 1);
        let d = &cfg.destinations[0];
        assert_eq!(d.name, "alerts.tg");
        assert_eq!(
            d.url.as_deref(),
            Some("https://api.telegram.org/bot1:x/sendMessage")
        );
        let spec =
            crate::control::compile::destination(d, super::super::def::Origin::Config).unwrap();
        assert_eq!(
            shown_url(&spec.name, &spec.url),
            "https://api.telegram.org/…"
        );
        // Users cannot take the prefix.
        let e = errors("[[destinations]]\nname = \"alerts.x\"\nurl = \"http://127.0.0.1:1/\"\n");
        assert!(
            e.contains("kept for the destinations of `[[alerts]]`"),
            "{e}"
        );
    }
}
