//! What `hookgate listen` prints on stdout: one line per delivery once the
//! gateway has its result (text for people, or one JSON object per line with
//! `--json`), and a summary on exit. Pure formatting: the session decides
//! when to print.

use serde::Serialize;

/// One forwarded (or interrupted) delivery, as shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// When the local answer came (ms since the epoch).
    pub at_ms: i64,
    /// The message's id.
    pub message_id: String,
    /// Its event type, when it has one.
    pub event_type: Option<String>,
    /// Which attempt of this delivery it was (1 for the first).
    pub attempt: u32,
    /// The local app's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why no (complete) answer came: connection refused, timeout.
    pub error: Option<String>,
    /// How long the local exchange took.
    pub duration_ms: f64,
}

impl Delivery {
    /// Whether the local app took it (2xx).
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The result of a delivery whose acknowledgement never reached the gateway.
pub const UNACKNOWLEDGED: &str = "unacknowledged";

/// A few words on a result other than `recorded`, for the text line.
fn result_note(result: &str) -> Option<String> {
    Some(match result {
        "recorded" => return None,
        "lease_expired" => "lease expired before the result came: the gateway retries it".into(),
        "lease_ended" => "already acknowledged or released".into(),
        UNACKNOWLEDGED => {
            "not acknowledged: the gateway hands it out again when the lease ends".into()
        }
        other => format!("the gateway refused the result: {other}"),
    })
}

/// `HH:MM:SS.mmm` (UTC) of a time in ms since the epoch.
fn clock(ms: i64) -> String {
    let t = rfc3339(ms);
    t[11..23].to_string()
}

/// `2026-12-01T03:00:00.123Z` of a time in ms since the epoch.
pub fn rfc3339(ms: i64) -> String {
    crate::clock::format_rfc3339(ms, crate::clock::Precision::Milliseconds)
}

/// A duration for people: `12 ms`, `1.25 s`.
fn duration(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{} ms", ms.round() as u64)
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// The text line of a delivery.
pub fn text_line(d: &Delivery, result: &str) -> String {
    let answer = match (d.status, &d.error) {
        (Some(s), None) => status_text(s),
        (Some(s), Some(e)) => format!("{}; {e}", status_text(s)),
        (None, Some(e)) => format!("error: {e}"),
        (None, None) => "no answer".into(),
    };
    let mut line = format!(
        "{}  {}  {:<20}  #{:<2}  {}  {}",
        clock(d.at_ms),
        d.message_id,
        d.event_type.as_deref().unwrap_or("-"),
        d.attempt,
        answer,
        duration(d.duration_ms)
    );
    if let Some(note) = result_note(result) {
        line.push_str(&format!("  ({note})"));
    }
    line
}

fn status_text(s: u16) -> String {
    match http::StatusCode::from_u16(s)
        .ok()
        .and_then(|c| c.canonical_reason())
    {
        Some(reason) => format!("{s} {reason}"),
        None => s.to_string(),
    }
}

/// A `--json` line, its fields in this order.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    message_id: &'a str,
    event_type: Option<&'a str>,
    attempt: u32,
    status: Option<u16>,
    error: Option<&'a str>,
    duration_ms: f64,
    result: &'a str,
}

/// The `--json` line of a delivery.
pub fn json_line(d: &Delivery, result: &str) -> String {
    serde_json::to_string(&JsonLine {
        time: rfc3339(d.at_ms),
        message_id: &d.message_id,
        event_type: d.event_type.as_deref(),
        attempt: d.attempt,
        status: d.status,
        error: d.error.as_deref(),
        duration_ms: (d.duration_ms * 1000.0).round() / 1000.0,
        result,
    })
    .unwrap_or_default()
}

/// Counts shown when `listen` exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Deliveries sent to the local app (or interrupted on the way).
    pub forwarded: u64,
    /// Of those, answered 2xx.
    pub ok: u64,
    /// Of those, answered otherwise or not at all.
    pub failed: u64,
    /// Leased but not forwarded, handed back to the gateway at exit.
    pub released: u64,
    /// Results that could not be sent to the gateway before exit.
    pub unacknowledged: u64,
}

impl Summary {
    /// Counts one forwarded delivery.
    pub fn count(&mut self, d: &Delivery) {
        self.forwarded += 1;
        if d.ok() {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
    }

    /// The summary line for people.
    pub fn text(&self) -> String {
        let mut s = format!(
            "forwarded {}: {} ok, {} failed; released {}",
            self.forwarded, self.ok, self.failed, self.released
        );
        if self.unacknowledged > 0 {
            s.push_str(&format!("; {} not acknowledged", self.unacknowledged));
        }
        s
    }

    /// The summary as a `--json` line: one object under `summary`, so that
    /// it cannot be mistaken for a delivery.
    pub fn json(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            summary: &'a Summary,
        }
        serde_json::to_string(&Line { summary: self }).unwrap_or_default()
    }
}

/// Where lines go: stdout, as text or JSON.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// One JSON object per line.
    pub json: bool,
}

impl Output {
    /// Prints a delivery's line.
    pub fn delivery(&self, d: &Delivery, result: &str) {
        if self.json {
            println!("{}", json_line(d, result));
        } else {
            println!("{}", text_line(d, result));
        }
    }

    /// Prints the summary.
    pub fn summary(&self, s: &Summary) {
        if self.json {
            println!("{}", s.json());
        } else {
            println!("{}", s.text());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-12-01T03:04:05.678Z
    const AT: i64 = 1_796_094_245_678;

    fn d() -> Delivery {
        Delivery {
            at_ms: AT,
            message_id: "msg_01JDEMO".into(),
            event_type: Some("message".into()),
            attempt: 1,
            status: Some(200),
            error: None,
            duration_ms: 12.4,
        }
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(AT), "2026-12-01T03:04:05.678Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(clock(AT), "03:04:05.678");
    }

    #[test]
    fn a_text_line_per_delivery() {
        assert_eq!(
            text_line(&d(), "recorded"),
            "03:04:05.678  msg_01JDEMO  message               #1   200 OK  12 ms"
        );
        let failed = Delivery {
            event_type: None,
            attempt: 3,
            status: None,
            error: Some("connection failed: Connection refused (os error 111)".into()),
            duration_ms: 1534.0,
            ..d()
        };
        assert_eq!(
            text_line(&failed, "recorded"),
            "03:04:05.678  msg_01JDEMO  -                     #3   \
             error: connection failed: Connection refused (os error 111)  1.53 s"
        );
        let late = text_line(
            &Delivery {
                status: Some(503),
                ..d()
            },
            "lease_expired",
        );
        assert!(
            late.contains("503 Service Unavailable  12 ms  (lease expired"),
            "{late}"
        );
        assert!(text_line(&d(), "lease_ended").contains("already acknowledged"));
        assert!(text_line(&d(), UNACKNOWLEDGED).contains("not acknowledged"));
        assert!(text_line(&d(), "wrong_destination").contains("refused the result"));
        assert!(text_line(
            &Delivery {
                status: Some(299),
                ..d()
            },
            "recorded"
        )
        .contains(" 299 "));
    }

    #[test]
    fn a_json_line_per_delivery() {
        assert_eq!(
            json_line(&d(), "recorded"),
            r#"{"time":"2026-12-01T03:04:05.678Z","message_id":"msg_01JDEMO","event_type":"message","attempt":1,"status":200,"error":null,"duration_ms":12.4,"result":"recorded"}"#,
            "fields in a fixed order, for people reading it too"
        );
        let v: serde_json::Value = serde_json::from_str(&json_line(&d(), "recorded")).unwrap();
        assert_eq!(
            v,
            json!({
                "time": "2026-12-01T03:04:05.678Z",
                "message_id": "msg_01JDEMO",
                "event_type": "message",
                "attempt": 1,
                "status": 200,
                "error": null,
                "duration_ms": 12.4,
                "result": "recorded",
            })
        );
    }

    #[test]
    fn summary_counts_and_lines() {
        let mut s = Summary::default();
        s.count(&d());
        s.count(&Delivery {
            status: Some(500),
            ..d()
        });
        s.count(&Delivery {
            status: None,
            error: Some("timeout".into()),
            ..d()
        });
        s.released = 2;
        assert_eq!(s.text(), "forwarded 3: 1 ok, 2 failed; released 2");
        s.unacknowledged = 1;
        assert!(s.text().ends_with("; 1 not acknowledged"));
        assert_eq!(
            s.json(),
            r#"{"summary":{"forwarded":3,"ok":1,"failed":2,"released":2,"unacknowledged":1}}"#
        );
    }
}
