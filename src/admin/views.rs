//! The JSON shapes of the API's answers (SPEC §6), made from the store's read
//! model: the store says what is stored, this module how the API shows it
//! (field names such as `attempt_count` and `response_code`, an attempt's
//! `succeeded`/`failed`), so neither changes with the other.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::Millis;
use crate::store::{
    AttemptInfo, DeliveryInfo, DeliveryStatus, MessageId, MessageStatus, MessageSummary,
};

/// A message in a listing (and the head of a message's detail).
#[derive(Serialize, ToSchema)]
pub struct MessageView<'a> {
    /// `msg_` and a ULID.
    #[schema(value_type = String, example = "msg_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK")]
    id: MessageId,
    /// The source it came from (`api` for published events).
    source: &'a str,
    /// Its event type, when the source's preset or the publisher gives one.
    event_type: Option<&'a str>,
    /// When it was received, in ms since the Unix epoch.
    #[schema(value_type = i64)]
    received_at: Millis,
    status: MessageStatus,
    /// Deliveries made for it.
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
#[derive(Serialize, ToSchema)]
pub struct DeliveryView<'a> {
    id: i64,
    #[schema(value_type = String, example = "msg_01JDQ6TQ1R9W5V1HB3Q4Z2N7XK")]
    message_id: MessageId,
    destination: &'a str,
    status: DeliveryStatus,
    /// Attempts made so far.
    attempt_count: u32,
    /// When the next attempt is due (ms since the Unix epoch).
    #[schema(value_type = Option<i64>)]
    next_attempt_at: Option<Millis>,
    #[schema(value_type = i64)]
    created_at: Millis,
    #[schema(value_type = Option<i64>)]
    finished_at: Option<Millis>,
    ordering_key: Option<&'a str>,
    /// `high`, `normal` or `low`.
    #[schema(example = "normal")]
    priority: &'static str,
    /// The delivery a replay made in place of this one.
    replayed_by: Option<i64>,
    /// Each attempt (only in a message's detail).
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
#[derive(Serialize, ToSchema)]
pub struct AttemptView<'a> {
    attempt: u32,
    /// `succeeded` or `failed`.
    #[schema(example = "succeeded")]
    status: &'static str,
    #[schema(value_type = i64)]
    started_at: Millis,
    duration_ms: f64,
    /// The HTTP status the destination answered.
    response_code: Option<u16>,
    /// The first 4 KiB of the response body.
    response_body: Option<&'a str>,
    /// Header names to values; a name sent more than once has its values
    /// joined with ", " (as HTTP allows).
    response_headers: BTreeMap<String, String>,
    /// Why the attempt failed, when it got no answer.
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
            response_headers: joined_headers(
                a.response_headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone())),
            ),
            error: a.error.as_deref(),
        }
    }
}

/// Headers as a JSON object, repeated names joined with ", ".
pub fn joined_headers<'h>(
    h: impl IntoIterator<Item = (&'h str, String)>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::<String, String>::new();
    for (k, v) in h {
        match out.get_mut(k) {
            Some(prev) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            None => {
                out.insert(k.to_string(), v);
            }
        }
    }
    out
}

/// A page of a listing and the cursor of the next one.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    /// The items, newest first.
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// A listing that is never paged: `{"data": [...]}`.
#[derive(Serialize, ToSchema)]
pub struct List<T> {
    /// The items.
    pub data: Vec<T>,
}

/// A page of messages.
pub type MessagePage<'a> = Page<MessageView<'a>>;
/// A page of deliveries.
pub type DeliveryPage<'a> = Page<DeliveryView<'a>>;

/// How a body is given: as text when it is UTF-8, else base64.
#[derive(Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// The body's bytes are valid UTF-8 and given as they are.
    Utf8,
    /// Standard base64 of the body's bytes.
    Base64,
}

/// A body as text, or base64 when it is not UTF-8.
pub fn body_text(body: &[u8]) -> (String, BodyEncoding) {
    use base64::Engine as _;
    match std::str::from_utf8(body) {
        Ok(t) => (t.to_string(), BodyEncoding::Utf8),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(body),
            BodyEncoding::Base64,
        ),
    }
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
