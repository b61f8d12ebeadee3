//! Time, injected: everything that schedules, limits or checks tolerances asks a
//! [`Clock`], so tests can run on tokio's paused time instead of sleeping.

use std::sync::Arc;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The current wall-clock time in milliseconds.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> Millis;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> Millis {
        now_millis()
    }
}

/// Wall time that advances with tokio's clock (and so stands still, or jumps,
/// under `tokio::time::pause()`).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_millis: Millis,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `base_millis` now.
    pub fn starting_at(base_millis: Millis) -> Self {
        TokioClock {
            base_millis,
            base: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_millis(&self) -> Millis {
        self.base_millis + self.base.elapsed().as_millis() as Millis
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// A tokio instant `ms` milliseconds after now (or now if `ms` is negative).
pub fn instant_in(ms: i64) -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_millis(ms.max(0) as u64)
}

/// Milliseconds since the epoch of an RFC 3339 time (`2026-01-31T12:00:00Z`,
/// with an offset or `Z`); the one parser of times given to the API.
pub fn parse_rfc3339(v: &str) -> Option<Millis> {
    let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// How much of a second [`format_rfc3339`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Whole seconds: `2026-01-31T12:00:00Z`.
    Seconds,
    /// Milliseconds: `2026-01-31T12:00:00.250Z`.
    Milliseconds,
}

/// Milliseconds since the epoch as RFC 3339 in UTC (what [`parse_rfc3339`]
/// reads back); the one formatter of such times. A time the calendar cannot
/// write (beyond year 9999) is written as the epoch.
pub fn format_rfc3339(ms: Millis, precision: Precision) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let seconds = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    );
    match precision {
        Precision::Seconds => format!("{seconds}Z"),
        Precision::Milliseconds => format!("{seconds}.{:03}Z", t.millisecond()),
    }
}

/// A time as a person types it into a form: RFC 3339, or a `datetime-local`
/// field's `2026-01-31T12:00` (with or without seconds) taken as UTC.
pub fn parse_form_time(v: &str) -> Option<Millis> {
    let v = v.trim();
    if let Some(t) = parse_rfc3339(v) {
        return Some(t);
    }
    let with_zone = match v.len() {
        16 => format!("{v}:00Z"),
        19 => format!("{v}Z"),
        _ => return None,
    };
    parse_rfc3339(&with_zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_are_utc() {
        assert_eq!(parse_form_time("1970-01-01T00:01"), Some(60_000));
        assert_eq!(parse_form_time("1970-01-01T00:01:02"), Some(62_000));
        assert_eq!(parse_form_time(" 1970-01-01T00:00:01Z "), Some(1000));
        for bad in [
            "",
            "yesterday",
            "1970-01-01",
            "1970-13-01T00:00",
            "1970-01-01T00:00:00:00Z",
        ] {
            assert_eq!(parse_form_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_what_it_parses() {
        let at = parse_rfc3339("2026-12-01T03:04:05.678Z").unwrap();
        assert_eq!(
            format_rfc3339(at, Precision::Milliseconds),
            "2026-12-01T03:04:05.678Z"
        );
        assert_eq!(
            format_rfc3339(at, Precision::Seconds),
            "2026-12-01T03:04:05Z"
        );
        assert_eq!(
            format_rfc3339(0, Precision::Milliseconds),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_rfc3339(Millis::MAX, Precision::Seconds),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:01+01:00"), Some(1000));
        assert_eq!(
            parse_rfc3339("2026-01-31T12:00:00.250Z"),
            Some(1_769_860_800_250)
        );
        for bad in [
            "",
            "tomorrow",
            "2026-01-31",
            "2026-13-01T00:00:00Z",
            "2026-01-31T12:00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
