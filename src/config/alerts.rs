//! `[[alerts]]`: the alert channels as users write them, their checks, and the
//! destination each one is delivered through.
//!
//! A channel is delivered by hookgate's own durable delivery: each one becomes a
//! file destination named `alerts.<name>` ([`channel_destination`]), compiled by
//! the one path every destination takes. The `alerts.` prefix is reserved, so a
//! user destination never has such a name and no route reaches a channel.

use serde::Deserialize;

use super::check::{bad_name, check_url, valid_name};
use super::def::DestinationDef;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertChannel {
    /// The channel's name (its destination is `alerts.<name>`).
    pub name: String,
    /// `webhook`, `slack`, `telegram`, `discord` or `pagerduty`.
    pub format: ChannelKind,
    /// Where to post: the receiver (webhook), the incoming webhook URL (slack,
    /// discord), or the Events API (pagerduty; default PagerDuty's own).
    #[serde(default)]
    pub url: Option<Secret>,
    /// webhook: the `whsec_` secret the alerts are signed with.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// telegram: the bot's token.
    #[serde(default)]
    pub bot_token: Option<Secret>,
    /// telegram: the chat the bot writes to.
    #[serde(default)]
    pub chat_id: Option<String>,
    /// telegram: the Bot API's base URL (default `https://api.telegram.org`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// pagerduty: the integration's routing key.
    #[serde(default)]
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
        let at = |errs: &mut Errors<'_>, field: &str, msg: String| errs.field(&c.spans, field, msg);
        if !valid_name(&c.name) {
            at(errs, "name", bad_name("alert channel", &c.name));
        }
        if !names.insert(c.name.as_str()) {
            at(
                errs,
                "name",
                format!("alert channel `{}` is defined twice", c.name),
            );
        }
        let need = |errs: &mut Errors<'_>, set: bool, field: &str| {
            if !set {
                errs.field(
                    &c.spans,
                    "format",
                    format!(
                        "an alert channel of format {} needs `{field}`",
                        c.format.as_str()
                    ),
                );
            }
        };
        match c.format {
            ChannelKind::Webhook => {
                need(errs, c.url.is_some(), "url");
                need(errs, c.secret.is_some(), "secret");
                if let Some(s) = &c.secret {
                    if !crate::signing::valid_signing_secret(s.expose()) {
                        at(errs, "secret", super::check::BAD_SIGNING_SECRET.to_string());
                    }
                }
            }
            ChannelKind::Slack | ChannelKind::Discord => need(errs, c.url.is_some(), "url"),
            ChannelKind::Telegram => {
                need(errs, c.bot_token.is_some(), "bot_token");
                need(errs, c.chat_id.is_some(), "chat_id");
            }
            ChannelKind::Pagerduty => need(errs, c.routing_key.is_some(), "routing_key"),
        }
        if let Some(url) = c.target_url() {
            // The URL may hold a token: the error names the field, not the value.
            if check_url(&url).is_err() {
                let field = match c.format {
                    ChannelKind::Telegram => "api_url",
                    _ => "url",
                };
                at(
                    errs,
                    field,
                    format!("`{field}` must be an http:// or https:// URL with a host"),
                );
            }
        }
        for e in &c.events {
            if !EVENT_TYPES.iter().any(|t| glob(e, t)) {
                at(
                    errs,
                    "events",
                    format!(
                        "no alert event is called {e:?}; they are {}",
                        EVENT_TYPES.join(", ")
                    ),
                );
            }
        }
        let rates = [
            ("failing_below", c.failing_below),
            ("warning_below", c.warning_below),
            ("recovered_above", c.recovered_above),
            ("rejections_above", c.rejections_above),
            ("disk_above", c.disk_above),
        ];
        for (field, v) in rates {
            if !(0.0..=1.0).contains(&v) {
                at(
                    errs,
                    field,
                    format!("`{field}` is a share from 0.0 to 1.0, not {v}"),
                );
            }
        }
        if !(c.failing_below <= c.warning_below && c.warning_below < c.recovered_above) {
            at(
                errs,
                "recovered_above",
                "the thresholds must hold failing_below <= warning_below < recovered_above (hysteresis)".into(),
            );
        }
        for (field, d) in [
            ("window", c.window),
            ("reminder", c.reminder),
            ("stale_after", c.stale_after),
        ] {
            if d.0.is_zero() {
                at(errs, field, format!("`{field}` must be longer than 0s"));
            }
        }
        if c.max_per_hour == 0 {
            at(
                errs,
                "max_per_hour",
                "`max_per_hour` must be at least 1 (remove the channel to send none)".into(),
            );
        }
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
