//! Records of the tenants' API (`svix`): applications, event types, the
//! Svix-only fields of endpoints, app-portal tokens. Each is one row of its
//! kind, keyed by `(kind, tenant, id)`, with an optional `uid` unique within
//! `(kind, tenant)`, and its fields as JSON (the store does not read them).
//! Messages, deliveries and attempts of a tenant are the store's own rows
//! (its messages have the tenant's source), so a record never holds them.

use serde_json::Value;

use super::Millis;

/// One record of the tenants' API.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRecord {
    /// What it is (`app`, `event_type`, `endpoint`, `token`).
    pub kind: String,
    /// The application it belongs to; empty for records of no one
    /// application (applications themselves, event types).
    pub tenant: String,
    /// Its id (`app_…`, `ep_…`, an event type's name, a token's hash).
    pub id: String,
    /// The user's alias, unique within `(kind, tenant)`.
    pub uid: Option<String>,
    /// Its fields as JSON.
    pub body: Value,
    /// Created (ms).
    pub created_at: Millis,
    /// Last changed (ms).
    pub updated_at: Millis,
}

/// Which records of one kind and tenant a listing returns: in id order,
/// ascending, after `after` (an id), at most `limit`.
#[derive(Debug, Clone)]
pub struct RecordQuery<'a> {
    /// The kind.
    pub kind: &'a str,
    /// The tenant (empty for records of no one application).
    pub tenant: &'a str,
    /// Only ids after this one.
    pub after: Option<&'a str>,
    /// Only ids before this one (a backwards page); with `after` unset.
    pub before: Option<&'a str>,
    /// Page size (1 to 1000).
    pub limit: usize,
}
