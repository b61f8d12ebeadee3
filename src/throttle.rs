//! Rate-limited log lines: a condition that repeats (a full disk refusing every
//! request, a checkpoint failing every 50 ms) is logged once per interval with
//! the number of repeats left out, instead of flooding the log.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often a throttled line is written at most, unless told otherwise.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Lets one log line through per interval and counts the ones held back.
///
/// Cheap enough for hot paths (one uncontended lock), and usable in a `static`.
pub struct Throttle {
    every: Duration,
    state: Mutex<State>,
}

struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// A throttle that lets one line through per `every`.
    pub const fn new(every: Duration) -> Self {
        Throttle {
            every,
            state: parking_lot::const_mutex(State {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// Whether to log now: `Some(n)` with the number of lines held back since the
    /// last one that went through, or `None` to stay quiet.
    pub fn check(&self) -> Option<u64> {
        self.check_at(Instant::now())
    }

    /// [`Throttle::check`] at a given time (for tests).
    pub fn check_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock();
        match s.last {
            Some(t) if now.saturating_duration_since(t) < self.every => {
                s.suppressed += 1;
                None
            }
            _ => {
                s.last = Some(now);
                Some(std::mem::take(&mut s.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_rest() {
        let t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.check_at(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(t.check_at(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(t.check_at(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(t.check_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(t.check_at(t0 + Duration::from_secs(25)), Some(1));
    }
}
