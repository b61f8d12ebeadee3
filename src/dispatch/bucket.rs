//! A token bucket for a destination's `rate_limit`, owned by its dispatcher.
//!
//! Why not `governor`: the dispatcher needs to ask "how many requests may start
//! now?" to lease exactly that many deliveries, which a GCRA limiter does not
//! answer. This bucket is small, exact and takes its time from the caller
//! (tokio instants), so tests run on paused time. Ingest rate limits, which only
//! need yes/no, use `governor`.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::RateLimitConfig;

/// Tokens refill at `rate` per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(cfg: &RateLimitConfig, now: Instant) -> Self {
        let burst = cfg.burst() as f64;
        TokenBucket {
            rate: cfg.per_second,
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.at {
            let dt = now.duration_since(self.at).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.at = now;
        }
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Instant) -> u32 {
        self.refill(now);
        // A tiny epsilon absorbs floating-point error in the refill.
        (self.tokens + 1e-9).floor().max(0.0) as u32
    }

    /// Takes one token; false if none is available.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens + 1e-9 >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next whole token will be available.
    pub fn next_token_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens + 1e-9 >= 1.0 {
            now
        } else {
            now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(per_second: f64, burst: Option<u32>) -> TokenBucket {
        TokenBucket::new(&RateLimitConfig { per_second, burst }, Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn forty_at_ten_per_second_take_at_least_three_seconds() {
        let mut b = bucket(10.0, None);
        let start = Instant::now();
        let mut sent = 0;
        while sent < 40 {
            let now = Instant::now();
            if b.take(now) {
                sent += 1;
            } else {
                tokio::time::sleep_until(b.next_token_at(now)).await;
            }
        }
        // 10 at once (the burst), then 30 at 10/s.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(2900), "{took:?}");
        assert!(took <= Duration::from_millis(3100), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_burst_plus_rate_times_elapsed() {
        let mut b = bucket(5.0, Some(2));
        let start = Instant::now();
        let mut taken = 0u32;
        for _ in 0..1000 {
            tokio::time::advance(Duration::from_millis(37)).await;
            let now = Instant::now();
            while b.take(now) {
                taken += 1;
            }
            let allowed = 2.0 + 5.0 * now.duration_since(start).as_secs_f64();
            assert!(taken as f64 <= allowed + 1e-6);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn available_counts_whole_tokens() {
        let mut b = bucket(2.0, Some(4));
        assert_eq!(b.available(Instant::now()), 4);
        for _ in 0..4 {
            assert!(b.take(Instant::now()));
        }
        assert_eq!(b.available(Instant::now()), 0);
        let next = b.next_token_at(Instant::now());
        assert_eq!(next - Instant::now(), Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!(b.available(Instant::now()), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_rates() {
        let mut b = bucket(0.5, Some(1));
        assert!(b.take(Instant::now()));
        assert!(!b.take(Instant::now()));
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(!b.take(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(b.take(Instant::now()));
    }
}
