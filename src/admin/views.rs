//! The JSON shapes of the API's answers (SPEC §6), made from the store's read
//! model: the store says what is stored, this module how the API shows it
//! (field names such as `attempt_count` and `response_code`, an attempt's
//! `succeeded`/`failed`), so neither changes with the other.

use serde::Serialize;

use crate::clock::Millis;
use crate::store::{
    AttemptInfo, DeliveryInfo, DeliveryStatus, MessageId, MessageStatus, MessageSummary,
};

/// A message in a listing (and the head of a message's detail).
#[derive(Serialize)]
pub struct MessageView<'a> {
    id: MessageId,
    source: &'a str,
    event_type: Option<&'a str>,
    received_at: Millis,
    status: MessageStatus,
    deliveries: i64,
}

impl<'a> From<&'a MessageSummary> for MessageView<'a> {
    fn from(m: &'a MessageSummary) -> Self {
        MessageView {
            id: m.id,
            source: &m.source,
            event_type: m.event_type.as_deref(),
            received_at: m.received_at,
            status: m.status,
            deliveries: m.deliveries,
        }
    }
}

/// A delivery, with its attempts in a message's detail.
#[derive(Serialize)]
pub struct DeliveryView<'a> {
    id: i64,
    message_id: MessageId,
    destination: &'a str,
    status: DeliveryStatus,
    attempt_count: u32,
    next_attempt_at: Option<Millis>,
    created_at: Millis,
    finished_at: Option<Millis>,
    ordering_key: Option<&'a str>,
    priority: &'static str,
    replayed_by: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<Vec<AttemptView<'a>>>,
}

impl<'a> From<&'a DeliveryInfo> for DeliveryView<'a> {
    fn from(d: &'a DeliveryInfo) -> Self {
        DeliveryView {
            id: d.id,
            message_id: d.message_id,
            destination: &d.destination,
            status: d.status,
            attempt_count: d.attempts,
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
            finished_at: d.finished_at,
            ordering_key: d.ordering_key.as_deref(),
            priority: d.priority,
            replayed_by: d.replayed_by,
            attempts: d
                .attempt_log
                .as_ref()
                .map(|log| log.iter().map(AttemptView::from).collect()),
        }
    }
}

/// One attempt of a delivery.
#[derive(Serialize)]
pub struct AttemptView<'a> {
    attempt: u32,
    status: &'static str,
    started_at: Millis,
    duration_ms: f64,
    response_code: Option<u16>,
    response_body: Option<&'a str>,
    /// Header names to values; a name sent more than once has its values
    /// joined with ", " (as HTTP allows).
    response_headers: serde_json::Map<String, serde_json::Value>,
    error: Option<&'a str>,
}

impl<'a> From<&'a AttemptInfo> for AttemptView<'a> {
    fn from(a: &'a AttemptInfo) -> Self {
        AttemptView {
            attempt: a.attempt,
            status: a.status(),
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            response_code: a.response_status,
            response_body: a.response_body.as_deref(),
            response_headers: joined_headers(&a.response_headers),
            error: a.error.as_deref(),
        }
    }
}

/// Headers as a JSON object, repeated names joined with ", ".
fn joined_headers(h: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (k, v) in h {
        match out.get_mut(k) {
            Some(serde_json::Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(v);
            }
            _ => {
                out.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The API's names, not the store's: `attempt_count`, `response_code`, an
    /// attempt's `status`; `attempts` only when the log was read.
    #[test]
    fn deliveries_and_attempts_keep_the_api_names() {
        let id = MessageId::new();
        let mut d = DeliveryInfo {
            id: 7,
            message_id: id,
            destination: "app".into(),
            status: DeliveryStatus::Pending,
            attempts: 2,
            next_attempt_at: Some(5),
            created_at: 1,
            finished_at: None,
            ordering_key: Some("k".into()),
            priority: "high",
            replayed_by: None,
            attempt_log: None,
        };
        let v = serde_json::to_value(DeliveryView::from(&d)).unwrap();
        assert_eq!(v["attempt_count"], 2);
        assert_eq!(v["status"], "pending");
        assert_eq!(v["message_id"], json!(id.to_string()));
        assert!(v.get("attempts").is_none());
        d.attempt_log = Some(vec![AttemptInfo {
            attempt: 1,
            started_at: 3,
            duration_ms: 1.5,
            response_status: Some(503),
            response_body: Some("busy".into()),
            response_headers: vec![
                ("retry-after".into(), "5".into()),
                ("vary".into(), "accept".into()),
                ("vary".into(), "origin".into()),
            ],
            error: None,
        }]);
        let v = serde_json::to_value(DeliveryView::from(&d)).unwrap();
        assert_eq!(
            v["attempts"],
            json!([{"attempt": 1, "status": "failed", "started_at": 3, "duration_ms": 1.5,
                    "response_code": 503, "response_body": "busy",
                    "response_headers": {"retry-after": "5", "vary": "accept, origin"},
                    "error": null}])
        );
    }
}
