//! The alert events: typed, documented JSON (docs/alerts.md), one shape for every
//! type — what happened, to what, since when, the numbers, and a console link.

use serde::{Deserialize, Serialize};

/// The kind of an alert event; `as_str` is its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    /// A destination's circuit breaker opened: attempts stopped.
    #[serde(rename = "destination.circuit_opened")]
    CircuitOpened,
    /// It closed again.
    #[serde(rename = "destination.circuit_closed")]
    CircuitClosed,
    /// A destination's success rate fell below the threshold.
    #[serde(rename = "destination.failing")]
    Failing,
    /// It rose above the recovery threshold.
    #[serde(rename = "destination.recovered")]
    Recovered,
    /// A destination was disabled after failing for `disable_after`.
    #[serde(rename = "destination.disabled")]
    Disabled,
    /// It was enabled again.
    #[serde(rename = "destination.enabled")]
    Enabled,
    /// A delivery was dead-lettered.
    #[serde(rename = "message.dead")]
    MessageDead,
    /// A destination's oldest pending delivery is older than the threshold.
    #[serde(rename = "backlog.stale")]
    BacklogStale,
    /// It is fresh again.
    #[serde(rename = "backlog.recovered")]
    BacklogRecovered,
    /// A source refuses more than a share of its requests (a rotated secret?).
    #[serde(rename = "source.rejections")]
    SourceRejections,
    /// Its refusals fell back under half that share.
    #[serde(rename = "source.recovered")]
    SourceRecovered,
    /// The store refuses or fails writes, its disk is nearly full, or it is unreachable.
    #[serde(rename = "store.degraded")]
    StoreDegraded,
    /// The store takes writes again.
    #[serde(rename = "store.recovered")]
    StoreRecovered,
}

impl EventType {
    /// The `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CircuitOpened => "destination.circuit_opened",
            EventType::CircuitClosed => "destination.circuit_closed",
            EventType::Failing => "destination.failing",
            EventType::Recovered => "destination.recovered",
            EventType::Disabled => "destination.disabled",
            EventType::Enabled => "destination.enabled",
            EventType::MessageDead => "message.dead",
            EventType::BacklogStale => "backlog.stale",
            EventType::BacklogRecovered => "backlog.recovered",
            EventType::SourceRejections => "source.rejections",
            EventType::SourceRecovered => "source.recovered",
            EventType::StoreDegraded => "store.degraded",
            EventType::StoreRecovered => "store.recovered",
        }
    }

    /// Whether it says a condition ended.
    pub fn is_recovery(self) -> bool {
        matches!(
            self,
            EventType::CircuitClosed
                | EventType::Recovered
                | EventType::Enabled
                | EventType::BacklogRecovered
                | EventType::SourceRecovered
                | EventType::StoreRecovered
        )
    }
}

/// How bad it is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A condition ended.
    Info,
    /// Worth a look.
    Warning,
    /// Someone should act.
    Critical,
}

impl Severity {
    /// As written in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The numbers behind an alert (those that apply to its type).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Figures {
    /// Attempts that delivered in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<u64>,
    /// Attempts that did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<u64>,
    /// `succeeded / (succeeded + failed)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// The window the counts are over, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    /// The age of the oldest pending delivery, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_pending_seconds: Option<u64>,
    /// Pending deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
    /// Attempts a dead delivery had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The last answer's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Requests a source got in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// Of them, refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<u64>,
}

/// One alert event, as sent (the `data` of a signed webhook) and as listed by
/// `GET /api/v1/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertEvent {
    /// Unique id of this event (a reminder has its own).
    pub id: String,
    /// The condition it is about: the same for a start, its reminders and its
    /// end (`destination.failing:crm`), for grouping and de-duplication.
    pub key: String,
    /// The type.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// How bad.
    pub severity: Severity,
    /// One line for a person.
    pub summary: String,
    /// The destination it is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The source it is about (`source.rejections`), or of the message (`message.dead`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The message, for `message.dead`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// When the condition started (RFC 3339).
    pub since: String,
    /// When this event was raised (RFC 3339).
    pub at: String,
    /// A reminder of a condition that still holds.
    pub reminder: bool,
    /// The numbers.
    pub figures: Figures,
    /// The console page to look at.
    pub console_url: String,
}

/// The body of a signed webhook alert: the Standard Webhooks shape
/// (`type`, `timestamp`, `data`).
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    /// The event's type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When it was raised.
    pub timestamp: &'a str,
    /// The event.
    pub data: &'a AlertEvent,
}
