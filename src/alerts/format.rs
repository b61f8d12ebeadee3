//! The body each channel kind is sent: the event itself (signed webhook), or
//! the JSON that Slack's incoming webhooks, Telegram's `sendMessage`, Discord's
//! webhooks and PagerDuty's Events API v2 document.

use serde_json::{json, Value};

use super::event::{AlertEvent, Envelope, Severity};
use crate::config::alerts::{AlertChannel, ChannelKind};

/// Discord refuses `content` longer than this.
const DISCORD_MAX: usize = 2000;
/// Telegram refuses `text` longer than this.
const TELEGRAM_MAX: usize = 4096;

/// The JSON body of `e` for channel `c`.
pub fn body(c: &AlertChannel, e: &AlertEvent) -> Vec<u8> {
    let v = match c.format {
        ChannelKind::Webhook => serde_json::to_value(Envelope {
            kind: e.kind.as_str(),
            timestamp: &e.at,
            data: e,
        })
        .unwrap_or(Value::Null),
        ChannelKind::Slack => json!({ "text": text(e, true) }),
        ChannelKind::Discord => json!({
            "content": cut(&text(e, false), DISCORD_MAX),
            "allowed_mentions": { "parse": [] },
        }),
        ChannelKind::Telegram => json!({
            "chat_id": c.chat_id.clone().unwrap_or_default(),
            "text": cut(&text(e, false), TELEGRAM_MAX),
            "link_preview_options": { "is_disabled": true },
        }),
        ChannelKind::Pagerduty => pagerduty(c, e),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The message a person reads: what, how bad, since when, the numbers, the link.
/// `slack` writes the link in Slack's `<url|text>` form.
pub fn text(e: &AlertEvent, slack: bool) -> String {
    let mark = match (e.severity, e.kind.is_recovery()) {
        (_, true) => "RESOLVED",
        (Severity::Critical, _) => "CRITICAL",
        (Severity::Warning, _) => "WARNING",
        (Severity::Info, _) => "INFO",
    };
    let again = if e.reminder { " (still)" } else { "" };
    let mut s = format!("[{mark}] {}{again}: {}", e.kind.as_str(), e.summary);
    s.push_str(&format!("\nsince {}", e.since));
    if let Some(id) = &e.message_id {
        s.push_str(&format!("\nmessage {id}"));
    }
    if slack {
        s.push_str(&format!(
            "\n<{}|Open in the hookgate console>",
            e.console_url
        ));
    } else {
        s.push_str(&format!("\n{}", e.console_url));
    }
    s
}

/// A PagerDuty Events v2 event: a start triggers, an end resolves, both under
/// the condition's key.
fn pagerduty(c: &AlertChannel, e: &AlertEvent) -> Value {
    let action = if e.kind.is_recovery() {
        "resolve"
    } else {
        "trigger"
    };
    let severity = match e.severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    };
    json!({
        "routing_key": c.routing_key.as_ref().map(|k| k.expose()).unwrap_or_default(),
        "event_action": action,
        "dedup_key": e.key,
        "payload": {
            "summary": cut(&format!("{}: {}", e.kind.as_str(), e.summary), 1024),
            "source": e.destination.as_deref().unwrap_or("hookgate"),
            "severity": severity,
            "timestamp": e.at,
            "component": e.destination,
            "class": e.kind.as_str(),
            "custom_details": e,
        },
        "links": [{ "href": e.console_url, "text": "hookgate console" }],
    })
}

/// `s` cut to at most `max` characters.
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::event::{EventType, Figures};

    fn channel(format: &str, extra: &str) -> AlertChannel {
        let cfg = crate::config::parse(
            &format!("[[alerts]]\nname = \"c\"\nformat = \"{format}\"\n{extra}\n"),
            "t.toml",
            &|_| None,
        )
        .unwrap();
        cfg.alerts[0].clone()
    }

    fn event(kind: EventType) -> AlertEvent {
        AlertEvent {
            id: "alert_1".into(),
            key: "destination.failing:crm".into(),
            kind,
            severity: Severity::Critical,
            summary: "x".repeat(5000),
            destination: Some("crm".into()),
            source: None,
            message_id: None,
            since: "2026-12-01T09:00:00Z".into(),
            at: "2026-12-01T09:00:01.000Z".into(),
            reminder: false,
            figures: Figures::default(),
            console_url: "http://127.0.0.1:8081/destinations#dest-63726d".into(),
        }
    }

    fn json(c: &AlertChannel, e: &AlertEvent) -> Value {
        serde_json::from_slice(&body(c, e)).unwrap()
    }

    #[test]
    fn pagerduty_triggers_and_resolves_under_one_key() {
        let c = channel("pagerduty", "routing_key = \"R0UT1NG\"");
        let t = json(&c, &event(EventType::Failing));
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["routing_key"], "R0UT1NG");
        assert_eq!(t["dedup_key"], "destination.failing:crm");
        assert_eq!(t["payload"]["severity"], "critical");
        assert!(t["payload"]["summary"].as_str().unwrap().chars().count() <= 1024);
        let r = json(&c, &event(EventType::Recovered));
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(r["dedup_key"], t["dedup_key"]);
        assert_eq!(
            c.target_url().unwrap(),
            crate::config::alerts::PAGERDUTY_EVENTS
        );
    }

    #[test]
    fn chat_texts_fit_their_limits() {
        let d = json(
            &channel("discord", "url = \"http://127.0.0.1:9/d\""),
            &event(EventType::Failing),
        );
        assert_eq!(d["content"].as_str().unwrap().chars().count(), DISCORD_MAX);
        assert_eq!(d["allowed_mentions"]["parse"], serde_json::json!([]));
        let t = json(
            &channel("telegram", "bot_token = \"1:x\"\nchat_id = \"42\""),
            &event(EventType::Failing),
        );
        assert_eq!(t["text"].as_str().unwrap().chars().count(), TELEGRAM_MAX);
        assert_eq!(t["chat_id"], "42");
        let s = json(
            &channel("slack", "url = \"http://127.0.0.1:9/s\""),
            &event(EventType::Recovered),
        );
        let text = s["text"].as_str().unwrap();
        assert!(text.starts_with("[RESOLVED] destination.recovered: "));
        assert!(text.ends_with(
            "<http://127.0.0.1:8081/destinations#dest-63726d|Open in the hookgate console>"
        ));
    }
}
