//! Failed-login limiting: at most [`MAX_FAILURES`] wrong tokens per client
//! address in a [`WINDOW_MS`] window; after that the login form answers 429 with
//! `Retry-After` until the window ends, without looking at the token.
//!
//! Invariants:
//! - Memory is bounded: at most [`MAX_CLIENTS`] addresses are tracked; when the
//!   table is full, expired windows are dropped first, then the window that
//!   started earliest (so a flood of addresses can only shorten someone's
//!   window, never grow the table).
//! - Only failures count; a successful login clears its address.

use std::collections::HashMap;
use std::net::IpAddr;

use parking_lot::Mutex;

use crate::store::Millis;

/// Wrong tokens allowed per address per window.
pub const MAX_FAILURES: u32 = 5;
/// The window (one minute).
pub const WINDOW_MS: i64 = 60_000;
/// Addresses tracked at once.
pub const MAX_CLIENTS: usize = 4096;

/// Failed logins per client address, in fixed windows.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    inner: Mutex<HashMap<Option<IpAddr>, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Millis,
    failures: u32,
}

impl LoginLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Some(seconds to wait)` when `ip` has used up its failures in the
    /// current window. `None` is an unknown address (all such share one window).
    pub fn blocked(&self, ip: Option<IpAddr>, now: Millis) -> Option<u64> {
        let map = self.inner.lock();
        let w = map.get(&ip)?;
        let end = w.start.saturating_add(WINDOW_MS);
        (w.failures >= MAX_FAILURES && now < end).then(|| ((end - now + 999) / 1000) as u64)
    }

    /// Counts one failed login from `ip`.
    pub fn failed(&self, ip: Option<IpAddr>, now: Millis) {
        let mut map = self.inner.lock();
        if !map.contains_key(&ip) && map.len() >= MAX_CLIENTS {
            map.retain(|_, w| now < w.start.saturating_add(WINDOW_MS));
            if map.len() >= MAX_CLIENTS {
                let oldest = map.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| *k);
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        let w = map.entry(ip).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now >= w.start.saturating_add(WINDOW_MS) {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// Forgets `ip` (after a successful login).
    pub fn succeeded(&self, ip: Option<IpAddr>) {
        self.inner.lock().remove(&ip);
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> Option<IpAddr> {
        Some(IpAddr::from(n.to_be_bytes()))
    }

    #[test]
    fn five_failures_then_blocked_until_the_window_ends() {
        let l = LoginLimiter::new();
        for i in 0..MAX_FAILURES {
            assert_eq!(l.blocked(ip(1), 1000 + i as i64), None);
            l.failed(ip(1), 1000 + i as i64);
        }
        assert_eq!(l.blocked(ip(1), 1010), Some(60));
        assert_eq!(l.blocked(ip(1), 60_500), Some(1));
        assert_eq!(l.blocked(ip(1), 61_000), None);
        assert_eq!(
            l.blocked(ip(2), 1010),
            None,
            "other addresses are not blocked"
        );
        l.failed(ip(1), 61_000);
        assert_eq!(l.blocked(ip(1), 61_001), None, "a new window starts afresh");
    }

    #[test]
    fn success_clears_and_memory_is_bounded() {
        let l = LoginLimiter::new();
        l.failed(ip(1), 0);
        l.succeeded(ip(1));
        assert!(l.is_empty());
        for n in 0..(MAX_CLIENTS as u32 + 100) {
            l.failed(ip(n), i64::from(n));
        }
        assert_eq!(l.len(), MAX_CLIENTS);
        for _ in 0..MAX_FAILURES {
            l.failed(ip(u32::MAX), 10_000);
        }
        assert!(l.blocked(ip(u32::MAX), 10_001).is_some());
    }
}
