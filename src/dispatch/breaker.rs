//! The circuit breaker of one destination: after `failures` consecutive failed
//! attempts it opens; while open no attempt is made (and none is counted); after
//! `cooldown` one probe is let through, whose outcome closes or reopens it.
//!
//! Time is passed in (tokio instants), so tests use paused time.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::BreakerConfig;

/// Breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Attempts flow; counts consecutive failures.
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// No attempts until this instant.
    Open {
        /// When a probe may go.
        until: Instant,
    },
    /// One probe is (or may be) in flight.
    HalfOpen {
        /// Whether the probe has been started.
        probing: bool,
    },
}

/// What the breaker allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Any number of attempts (up to the other limits).
    Open,
    /// Exactly one attempt: the probe.
    Probe,
    /// None until the instant (or, if `None`, until the probe in flight ends).
    Wait(Option<Instant>),
}

/// A circuit breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: State,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Self {
        Breaker {
            threshold: cfg.failures.max(1),
            cooldown: cfg.cooldown.0,
            state: State::Closed { failures: 0 },
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the circuit is open or half-open (for metrics: not closed).
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// What may go at `now`.
    pub fn permit(&mut self, now: Instant) -> Permit {
        match self.state {
            State::Closed { .. } => Permit::Open,
            State::Open { until } if now < until => Permit::Wait(Some(until)),
            State::Open { .. } => {
                self.state = State::HalfOpen { probing: false };
                Permit::Probe
            }
            State::HalfOpen { probing: false } => Permit::Probe,
            State::HalfOpen { probing: true } => Permit::Wait(None),
        }
    }

    /// The probe has been started.
    pub fn probe_started(&mut self) {
        if let State::HalfOpen { .. } = self.state {
            self.state = State::HalfOpen { probing: true };
        }
    }

    /// The probe ended without a request (its transformation dropped the
    /// message or failed): the next attempt probes instead.
    pub fn probe_abandoned(&mut self) {
        if let State::HalfOpen { .. } = self.state {
            self.state = State::HalfOpen { probing: false };
        }
    }

    /// An attempt succeeded.
    pub fn on_success(&mut self) {
        self.state = State::Closed { failures: 0 };
    }

    /// An attempt failed at `now`.
    pub fn on_failure(&mut self, now: Instant) {
        self.state = match self.state {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            // A failed probe, or the threshold reached: open.
            State::Closed { .. } | State::HalfOpen { .. } => State::Open {
                until: now + self.cooldown,
            },
            // Late results of attempts started before it opened do not extend it.
            open @ State::Open { .. } => open,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failures: 3,
            cooldown: Dur::secs(60),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_the_next_attempt_probe() {
        let mut b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.on_failure(t);
        }
        let later = t + Duration::from_secs(61);
        assert_eq!(b.permit(later), Permit::Probe);
        b.probe_started();
        assert_eq!(b.permit(later), Permit::Wait(None));
        // Its transformation dropped the message: no request, no verdict.
        b.probe_abandoned();
        assert_eq!(b.permit(later), Permit::Probe);
        assert!(b.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_probes_after_cooldown() {
        let mut b = breaker();
        let t = Instant::now();
        b.on_failure(t);
        b.on_failure(t);
        assert_eq!(b.permit(t), Permit::Open);
        b.on_failure(t);
        assert_eq!(b.permit(t), Permit::Wait(Some(t + Duration::from_secs(60))));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(matches!(b.permit(Instant::now()), Permit::Wait(_)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.permit(Instant::now()), Permit::Probe);
        b.probe_started();
        assert_eq!(
            b.permit(Instant::now()),
            Permit::Wait(None),
            "one probe only"
        );
        b.on_success();
        assert_eq!(b.permit(Instant::now()), Permit::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_a_full_cooldown() {
        let mut b = breaker();
        for _ in 0..3 {
            b.on_failure(Instant::now());
        }
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(b.permit(Instant::now()), Permit::Probe);
        b.probe_started();
        let failed_at = Instant::now();
        b.on_failure(failed_at);
        assert_eq!(
            b.permit(Instant::now()),
            Permit::Wait(Some(failed_at + Duration::from_secs(60)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let mut b = breaker();
        let t = Instant::now();
        b.on_failure(t);
        b.on_failure(t);
        b.on_success();
        b.on_failure(t);
        b.on_failure(t);
        assert_eq!(b.permit(t), Permit::Open);
        assert!(!b.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn late_failures_do_not_extend_an_open_circuit() {
        let mut b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.on_failure(t);
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        b.on_failure(Instant::now());
        assert_eq!(
            b.state(),
            State::Open {
                until: t + Duration::from_secs(60)
            }
        );
    }
}
