//! Retry policy: when the next attempt of a failed delivery is due, or that it is dead.
//!
//! Built from the `retry` table by `control::compile::retry_policy`. A
//! `schedule` lists the delay before each attempt (the first entry before
//! attempt 1). The exponential form waits a uniformly random time between zero
//! and `min(max, initial * 2^(n-1))` before retry `n` ("full jitter").

use std::time::Duration;

/// Longest `Retry-After` honoured; longer asks are shortened to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// When attempts are made.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryPolicy {
    /// Fixed delays: entry `i` before attempt `i + 1`.
    Schedule(Vec<Duration>),
    /// Exponential backoff with full jitter.
    Exponential {
        /// Attempts in all.
        max_attempts: u32,
        /// Bound of the first retry's delay.
        initial: Duration,
        /// Largest bound.
        max: Duration,
    },
}

impl RetryPolicy {
    /// Attempts in all.
    pub fn max_attempts(&self) -> u32 {
        match self {
            RetryPolicy::Schedule(s) => s.len().max(1) as u32,
            RetryPolicy::Exponential { max_attempts, .. } => *max_attempts,
        }
    }

    /// Delay before the first attempt.
    pub fn first_delay(&self) -> Duration {
        match self {
            RetryPolicy::Schedule(s) => s.first().copied().unwrap_or_default(),
            RetryPolicy::Exponential { .. } => Duration::ZERO,
        }
    }

    /// The delay before the next attempt after `failures` failed attempts
    /// (counted since the delivery started or was replayed), or `None` when no
    /// attempt is left. `jitter` is a uniform sample in `[0, 1)`.
    pub fn next_delay(&self, failures: u32, jitter: f64) -> Option<Duration> {
        if failures >= self.max_attempts() {
            return None;
        }
        match self {
            RetryPolicy::Schedule(s) => s.get(failures as usize).copied(),
            RetryPolicy::Exponential { initial, max, .. } => {
                let exp = failures.saturating_sub(1).min(63);
                let bound = initial
                    .checked_mul(1u32.checked_shl(exp.min(31)).unwrap_or(u32::MAX))
                    .unwrap_or(*max)
                    .min(*max);
                Some(bound.mul_f64(jitter.clamp(0.0, 1.0)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(v: &[u64]) -> RetryPolicy {
        RetryPolicy::Schedule(v.iter().map(|s| Duration::from_secs(*s)).collect())
    }

    #[test]
    fn schedule_gives_each_delay_then_stops() {
        let p = secs(&[0, 5, 30]);
        assert_eq!(p.first_delay(), Duration::ZERO);
        assert_eq!(p.max_attempts(), 3);
        assert_eq!(p.next_delay(1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(p.next_delay(2, 0.5), Some(Duration::from_secs(30)));
        assert_eq!(p.next_delay(3, 0.5), None);
    }

    #[test]
    fn exponential_doubles_up_to_max_with_full_jitter() {
        let p = RetryPolicy::Exponential {
            max_attempts: 6,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        // jitter just under 1 shows the bound.
        let bound = |n| p.next_delay(n, 0.999_999).unwrap().as_secs_f64().round() as u64;
        assert_eq!(bound(1), 1);
        assert_eq!(bound(2), 2);
        assert_eq!(bound(3), 4);
        assert_eq!(bound(4), 8);
        assert_eq!(bound(5), 10);
        assert_eq!(p.next_delay(6, 0.5), None);
        assert_eq!(p.next_delay(3, 0.0), Some(Duration::ZERO));
    }

    /// Driving a schedule with tokio's paused clock: each retry waits its delay.
    #[tokio::test(start_paused = true)]
    async fn a_schedule_on_paused_time() {
        let p = secs(&[0, 5, 30]);
        let start = tokio::time::Instant::now();
        let mut failures = 0;
        let mut attempts_at = vec![];
        tokio::time::sleep(p.first_delay()).await;
        loop {
            attempts_at.push(start.elapsed().as_secs());
            failures += 1;
            match p.next_delay(failures, 0.0) {
                Some(d) => tokio::time::sleep(d).await,
                None => break,
            }
        }
        assert_eq!(attempts_at, vec![0, 5, 35]);
    }

    proptest! {
        #[test]
        fn exponential_delays_stay_within_bounds(
            max_attempts in 1u32..100, initial_ms in 1u64..100_000, max_ms in 1u64..10_000_000,
            n in 0u32..200, jitter in 0.0f64..1.0,
        ) {
            let p = RetryPolicy::Exponential {
                max_attempts,
                initial: Duration::from_millis(initial_ms.min(max_ms)),
                max: Duration::from_millis(max_ms),
            };
            match p.next_delay(n, jitter) {
                Some(d) => {
                    prop_assert!(n < max_attempts);
                    prop_assert!(d <= Duration::from_millis(max_ms));
                }
                None => prop_assert!(n >= max_attempts),
            }
        }

        #[test]
        fn schedules_end_after_their_length(v in proptest::collection::vec(0u64..100_000, 1..20), n in 0u32..40) {
            let p = secs(&v);
            prop_assert_eq!(p.next_delay(n, 0.3).is_some(), (n as usize) < v.len());
        }
    }
}
