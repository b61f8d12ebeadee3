//! Every default of a destination and a route, in one place: the config file,
//! the admin API and the dispatcher all read them from here.

use std::time::Duration;

use super::ForwardHeaders;

/// Per-attempt timeout.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Concurrent requests to one destination at most.
pub const MAX_IN_FLIGHT: u32 = 32;

/// A destination whose every attempt has failed this long is disabled.
pub const DISABLE_AFTER: Duration = Duration::from_secs(5 * 86_400);

/// The retry schedule (delay before each attempt, in seconds), as in docs/configuration.md (`retry`).
pub const RETRY_SCHEDULE: [u64; 8] = [0, 5, 30, 300, 1800, 7200, 18000, 36000];

/// Exponential retry: attempts in all when `max_attempts` is not given.
pub const RETRY_MAX_ATTEMPTS: u32 = 8;

/// Exponential retry: the first retry's delay bound when `initial` is not given.
pub const RETRY_INITIAL: Duration = Duration::from_secs(1);

/// Exponential retry: the largest delay when `max` is not given.
pub const RETRY_MAX: Duration = Duration::from_secs(3600);

/// The burst of a `rate_limit` without `burst`: one second's worth, at least 1.
pub fn rate_limit_burst(per_second: f64) -> u32 {
    per_second.ceil().clamp(1.0, u32::MAX as f64) as u32
}

/// Which headers of the original request are forwarded when
/// `forward_headers` is not given: all of them (but hop-by-hop ones, `Host`
/// and `Content-Length`).
pub const FORWARD_HEADERS: ForwardHeaders = ForwardHeaders::All;

/// How long the old signing secret keeps signing after a rotation.
pub const ROTATION_GRACE: Duration = Duration::from_secs(86_400);

/// The event type patterns of a route or an API destination: every type.
pub fn event_types() -> Vec<String> {
    vec!["*".into()]
}
