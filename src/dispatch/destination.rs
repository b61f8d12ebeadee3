//! A destination as the dispatcher uses it: its settings checked and turned into
//! ready values (URL, header map, retry policy, signing keys) by
//! [`crate::control::compile`].

use std::time::Duration;

use http::HeaderMap;

use super::retry::RetryPolicy;
use crate::config::{BreakerConfig, ForwardHeaders, RateLimitConfig};
use crate::store::Millis;

/// A Standard Webhooks signing key; after a rotation the old one signs until `until`.
#[derive(Clone)]
pub struct SigningKey {
    /// The `whsec_` secret as given.
    pub secret: String,
    /// Its decoded key bytes.
    pub key: Vec<u8>,
    /// Signs only before this time (the rotation grace), if set.
    pub until: Option<Millis>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

pub use crate::config::def::{DestinationType, Origin};
use crate::select::FilterSpec;

/// Everything needed to deliver to one destination.
#[derive(Debug, Clone)]
pub struct DestinationSpec {
    /// Name.
    pub name: String,
    /// Push (sent to `url`) or pull (leased by a consumer; `url` unused).
    pub kind: DestinationType,
    /// Target URL (a placeholder for a pull destination).
    pub url: url::Url,
    /// The same, as the HTTP client takes it.
    pub uri: http::Uri,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Concurrent requests at most.
    pub max_in_flight: u32,
    /// Requests per second at most.
    pub rate_limit: Option<RateLimitConfig>,
    /// When to retry.
    pub retry: RetryPolicy,
    /// Retry 4xx answers other than 410.
    pub retry_4xx: bool,
    /// Circuit breaker settings.
    pub breaker: Option<BreakerConfig>,
    /// Signing keys (the current one first).
    pub signing: Vec<SigningKey>,
    /// Extra headers.
    pub headers: HeaderMap,
    /// Which original headers pass through.
    pub forward: ForwardHeaders,
    /// Disable after failing this long.
    pub disable_after: Duration,
    /// Config file or API.
    pub origin: Origin,
    /// API destinations: event types of `source` routed here.
    pub event_types: Vec<String>,
    /// API destinations: the source routed here (`api` unless given).
    pub source: String,
    /// API destinations: conditions on the messages routed here.
    pub filter: Vec<FilterSpec>,
    /// The transformation every delivery here runs through (unless its route
    /// names one).
    pub transform: Option<String>,
}

impl DestinationSpec {
    /// Whether a consumer pulls this destination's deliveries.
    pub fn is_pull(&self) -> bool {
        self.kind == DestinationType::Pull
    }

    /// How long a lease lasts: longer than any attempt can take, by `margin`
    /// (`storage.lease_margin`) for the time around the HTTP exchange.
    pub fn lease_ms(&self, margin: Duration) -> i64 {
        (self.timeout + margin).as_millis() as i64
    }

    /// The keys that sign at `now` (expired rotation keys dropped).
    pub fn active_keys(&self, now: Millis) -> impl Iterator<Item = &SigningKey> {
        self.signing
            .iter()
            .filter(move |k| k.until.is_none_or(|u| now < u))
    }
}
