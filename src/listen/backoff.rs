//! The reconnect schedule of `hookgate listen`: 0.5 s after the first failure,
//! doubling up to 10 s, back to the start after a success.
//!
//! No jitter: one consumer per destination is the common case, and a person
//! watching the terminal reads "trying again in 4s" more easily than 3.7 s.

use std::time::Duration;

/// The first wait.
pub const FIRST: Duration = Duration::from_millis(500);
/// The longest wait.
pub const MAX: Duration = Duration::from_secs(10);

/// Waits between attempts at something that keeps failing.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: FIRST,
            failures: 0,
        }
    }
}

impl Backoff {
    /// A schedule at its start.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes a failure; returns how long to wait before the next attempt.
    pub fn fail(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// Notes a success: the next failure waits [`FIRST`] again.
    pub fn succeed(&mut self) {
        *self = Self::default();
    }

    /// Whether the last attempt failed.
    pub fn failing(&self) -> bool {
        self.failures > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_half_a_second_to_ten() {
        let mut b = Backoff::new();
        let waits: Vec<u128> = (0..8).map(|_| b.fail().as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
        assert!(b.failing());
    }

    #[test]
    fn a_success_starts_over() {
        let mut b = Backoff::new();
        b.fail();
        b.fail();
        b.succeed();
        assert!(!b.failing());
        assert_eq!(b.fail(), FIRST);
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new();
        for _ in 0..10_000 {
            assert!(b.fail() <= MAX);
        }
    }
}
