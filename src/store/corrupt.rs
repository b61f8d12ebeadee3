//! Rows the store cannot read back: a value no hookgate wrote (an id that is
//! not a ULID, an unknown status code). Such a row is an error, logged and
//! counted once where it is found; it is never given an invented value, so a
//! message is never delivered under a made-up `webhook-id`.

use metrics::counter;

use super::{DeliveryStatus, MessageId};

/// A value in a stored row that hookgate cannot have written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt row in table {table}: {column} is {value:?}")]
pub struct CorruptRow {
    /// The table of the row.
    pub table: &'static str,
    /// The column whose value cannot be read.
    pub column: &'static str,
    /// The value as found.
    pub value: String,
}

impl CorruptRow {
    /// Logs the row and counts it (`hookgate_store_corrupt_rows_total{table}`).
    pub(super) fn emit(self) -> Self {
        counter!("hookgate_store_corrupt_rows_total", "table" => self.table).increment(1);
        tracing::error!(
            table = self.table,
            column = self.column,
            value = %self.value,
            "corrupt row in the store: it is not read, delivered or listed"
        );
        self
    }
}

/// Reads a message id stored as text; reports the row when it is not one.
pub fn message_id(table: &'static str, value: &str) -> Result<MessageId, CorruptRow> {
    value.parse().map_err(|()| {
        CorruptRow {
            table,
            column: "message id",
            value: value.to_string(),
        }
        .emit()
    })
}

/// Reads a priority rank; reports the row when the rank is unknown.
pub fn priority(table: &'static str, rank: i64) -> Result<crate::config::Priority, CorruptRow> {
    crate::config::Priority::from_rank(rank).ok_or_else(|| {
        CorruptRow {
            table,
            column: "priority",
            value: rank.to_string(),
        }
        .emit()
    })
}

/// Reads a delivery status code; reports the row when the code is unknown.
pub fn delivery_status(table: &'static str, code: i64) -> Result<DeliveryStatus, CorruptRow> {
    DeliveryStatus::from_code(code).ok_or_else(|| {
        CorruptRow {
            table,
            column: "status",
            value: code.to_string(),
        }
        .emit()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_no_hookgate_wrote_are_errors() {
        let id = MessageId::new();
        assert_eq!(message_id("messages", &id.to_string()), Ok(id));
        let e = message_id("messages", "not-a-ulid").unwrap_err();
        assert_eq!(e.value, "not-a-ulid");
        let e = crate::store::StoreError::from(e);
        assert!(matches!(e, crate::store::StoreError::Corrupt(_)));
        assert!(e.to_string().contains("corrupt"), "{e}");
        assert_eq!(delivery_status("deliveries", 3), Ok(DeliveryStatus::Dead));
        assert!(delivery_status("deliveries", 9).is_err());
        assert!(delivery_status("deliveries", -1).is_err());
        assert_eq!(priority("deliveries", 2), Ok(crate::config::Priority::Low));
        assert!(priority("deliveries", 3).is_err());
    }
}
