//! The per-channel memory of the alerts: which conditions hold and since when,
//! when each was last sent (for reminders), the success rate's hysteresis, and
//! the hourly cap. Pure: time comes in as arguments.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::event::Severity;
use crate::config::alerts::AlertChannel;

/// What happened to a condition in one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// It started, or got worse.
    Start(Severity),
    /// It still holds and the reminder interval has passed.
    Reminder(Severity),
    /// It ended.
    End,
}

/// A condition's change, with its key and start time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Transition {
    pub key: String,
    pub kind: Kind,
    /// When the condition started (ms since the epoch).
    pub since_ms: i64,
}

/// A condition that holds.
#[derive(Debug, Clone)]
struct Active {
    severity: Severity,
    since_ms: i64,
    last_sent: Instant,
}

/// One channel's memory.
#[derive(Debug, Default)]
pub(crate) struct ChannelState {
    active: HashMap<String, Active>,
    /// When its alerts of the last hour were sent.
    sent: VecDeque<Instant>,
}

/// The window the cap counts over.
const HOUR: Duration = Duration::from_secs(3600);

impl ChannelState {
    /// The severity of a condition that holds.
    pub fn severity(&self, key: &str) -> Option<Severity> {
        self.active.get(key).map(|a| a.severity)
    }

    /// Moves a condition to `want` (holds with that severity, or not) and says
    /// what to tell: a start (or a worsening), a reminder every `reminder`
    /// while it holds, an end.
    pub fn transition(
        &mut self,
        key: &str,
        want: Option<Severity>,
        now: Instant,
        wall_ms: i64,
        reminder: Duration,
    ) -> Option<Transition> {
        let t = |kind, since_ms| {
            Some(Transition {
                key: key.to_string(),
                kind,
                since_ms,
            })
        };
        match (self.active.get_mut(key), want) {
            (None, None) => None,
            (None, Some(s)) => {
                self.active.insert(
                    key.to_string(),
                    Active {
                        severity: s,
                        since_ms: wall_ms,
                        last_sent: now,
                    },
                );
                t(Kind::Start(s), wall_ms)
            }
            (Some(a), Some(s)) if s > a.severity => {
                a.severity = s;
                a.last_sent = now;
                t(Kind::Start(s), a.since_ms)
            }
            (Some(a), Some(_)) if now.duration_since(a.last_sent) >= reminder => {
                a.last_sent = now;
                t(Kind::Reminder(a.severity), a.since_ms)
            }
            (Some(_), Some(_)) => None,
            (Some(_), None) => {
                let a = self.active.remove(key)?;
                t(Kind::End, a.since_ms)
            }
        }
    }

    /// Forgets, without a word, the conditions whose subject is gone (a
    /// destination deleted, a source removed by a reload): `keep` says which stay.
    pub fn forget(&mut self, keep: impl Fn(&str) -> bool) {
        self.active.retain(|k, _| keep(k));
    }

    /// Whether one more alert may go out now within `max_per_hour`; counts it if so.
    pub fn allow(&mut self, now: Instant, max_per_hour: u32) -> bool {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= max_per_hour as usize {
            return false;
        }
        self.sent.push_back(now);
        true
    }
}

/// Whether a destination is failing, from the attempts of the window and
/// whether it already was: a judgement needs `min_attempts`; a healthy one
/// starts failing below `warning_below` (warning) or `failing_below`
/// (critical); a failing one recovers only above `recovered_above`, and
/// keeps its severity between (it may get worse, never better but by
/// recovering). Too few attempts change nothing.
pub(crate) fn failing_level(
    ok: u64,
    bad: u64,
    current: Option<Severity>,
    c: &AlertChannel,
) -> Option<Severity> {
    let n = ok + bad;
    if n < c.min_attempts.max(1) {
        return current;
    }
    let rate = ok as f64 / n as f64;
    let level = if rate < c.failing_below {
        Some(Severity::Critical)
    } else if rate < c.warning_below {
        Some(Severity::Warning)
    } else {
        None
    };
    match current {
        None => level,
        Some(_) if rate > c.recovered_above => None,
        Some(s) => Some(level.map_or(s, |l| l.max(s))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> AlertChannel {
        let cfg = crate::config::parse(
            "[[alerts]]\nname = \"ops\"\nformat = \"slack\"\nurl = \"http://127.0.0.1:9/\"\nmin_attempts = 10\n",
            "t.toml",
            &|_| None,
        )
        .unwrap();
        cfg.alerts[0].clone()
    }

    #[test]
    fn hysteresis_of_the_success_rate() {
        let c = channel();
        // Too few attempts: nothing changes.
        assert_eq!(failing_level(0, 9, None, &c), None);
        assert_eq!(
            failing_level(0, 9, Some(Severity::Warning), &c),
            Some(Severity::Warning)
        );
        // 85 %: warning; 70 %: critical; 92 %: healthy.
        assert_eq!(failing_level(85, 15, None, &c), Some(Severity::Warning));
        assert_eq!(failing_level(70, 30, None, &c), Some(Severity::Critical));
        assert_eq!(failing_level(92, 8, None, &c), None);
        // Failing: 92 % is not recovered yet (below 95 %), and it stays critical.
        assert_eq!(
            failing_level(92, 8, Some(Severity::Critical), &c),
            Some(Severity::Critical)
        );
        assert_eq!(
            failing_level(70, 30, Some(Severity::Warning), &c),
            Some(Severity::Critical)
        );
        assert_eq!(failing_level(96, 4, Some(Severity::Critical), &c), None);
    }

    #[tokio::test(start_paused = true)]
    async fn one_start_reminders_at_the_interval_one_end() {
        let mut s = ChannelState::default();
        let r = Duration::from_secs(60);
        let t0 = Instant::now();
        let start = s
            .transition("k", Some(Severity::Critical), t0, 1000, r)
            .unwrap();
        assert_eq!(start.kind, Kind::Start(Severity::Critical));
        assert_eq!(
            s.transition(
                "k",
                Some(Severity::Critical),
                t0 + Duration::from_secs(59),
                2000,
                r
            ),
            None
        );
        let rem = s
            .transition(
                "k",
                Some(Severity::Critical),
                t0 + Duration::from_secs(60),
                3000,
                r,
            )
            .unwrap();
        assert_eq!(rem.kind, Kind::Reminder(Severity::Critical));
        assert_eq!(rem.since_ms, 1000);
        let end = s
            .transition("k", None, t0 + Duration::from_secs(61), 4000, r)
            .unwrap();
        assert_eq!(end.kind, Kind::End);
        assert_eq!(
            s.transition("k", None, t0 + Duration::from_secs(62), 5000, r),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_gone_subject_is_forgotten_without_an_end() {
        let mut s = ChannelState::default();
        let (t0, r) = (Instant::now(), Duration::from_secs(60));
        s.transition(
            "destination.failing:gone",
            Some(Severity::Critical),
            t0,
            0,
            r,
        );
        s.transition(
            "destination.failing:here",
            Some(Severity::Critical),
            t0,
            0,
            r,
        );
        s.forget(|k| k.ends_with(":here"));
        assert_eq!(s.severity("destination.failing:gone"), None);
        assert_eq!(
            s.severity("destination.failing:here"),
            Some(Severity::Critical)
        );
        // No reminder, no end for the forgotten one.
        assert_eq!(
            s.transition("destination.failing:gone", None, t0 + r, 1, r),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_counts_over_an_hour() {
        let mut s = ChannelState::default();
        let t0 = Instant::now();
        assert!(s.allow(t0, 2));
        assert!(s.allow(t0 + Duration::from_secs(1), 2));
        assert!(!s.allow(t0 + Duration::from_secs(2), 2));
        assert!(s.allow(t0 + HOUR, 2));
        assert!(!s.allow(t0 + HOUR, 2));
    }
}
