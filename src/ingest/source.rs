//! A source as ingest uses it: its verifier, selectors, limits and answer,
//! resolved from its config and its provider's preset.

use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota};
use http::{HeaderValue, StatusCode};
use ipnet::IpNet;

use super::verify::{self, Verifier};
use crate::config::{RateLimitConfig, SourceConfig};
use crate::select::Selector;
use crate::telemetry::events::SourceMetrics;

/// The answer to an accepted message.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status (2xx).
    pub status: StatusCode,
    /// Content-Type, if a body is sent.
    pub content_type: Option<HeaderValue>,
    /// Body.
    pub body: Bytes,
}

/// One ingest endpoint, ready to serve.
pub struct Source {
    /// Name (`/in/{name}`).
    pub name: String,
    /// Verification, if configured.
    pub verifier: Option<Box<dyn Verifier>>,
    /// Event type selectors, first value wins.
    pub event_type: Vec<Selector>,
    /// Dedup key selectors, first value wins.
    pub dedup: Vec<Selector>,
    /// How long dedup keys are remembered.
    pub dedup_window: Duration,
    /// Rate limit.
    pub limiter: Option<DefaultDirectRateLimiter>,
    /// Allowed client networks (empty: all).
    pub allow_ips: Vec<IpNet>,
    /// Answer to accepted requests.
    pub answer: Answer,
    /// Metric handles.
    pub metrics: SourceMetrics,
    /// Headers not kept: the gateway's own credential (basic, bearer, header, telegram).
    pub strip_headers: Vec<http::HeaderName>,
}

/// A GCRA limiter for a rate and burst.
pub fn limiter(rl: &RateLimitConfig) -> DefaultDirectRateLimiter {
    DefaultDirectRateLimiter::direct(quota(rl))
}

/// The GCRA quota of a rate and burst (the limiter's clock is the caller's).
fn quota(rl: &RateLimitConfig) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rl.per_second.max(1e-6));
    let burst = NonZeroU32::new(rl.burst()).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("a positive period")
        .allow_burst(burst)
}

/// `Retry-After` for a refused request: the wait until a request passes, in
/// whole seconds rounded up (a client that waits that long is let through).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Why a source could not be built from its (validated) config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Its verifier could not be built.
    #[error("source `{name}`: {source}")]
    Verify {
        /// The source.
        name: String,
        /// Why.
        source: verify::BuildError,
    },
    /// `response.status` is not an HTTP status.
    #[error("source `{name}`: response.status {status} is not an HTTP status")]
    Status {
        /// The source.
        name: String,
        /// The number given.
        status: u16,
    },
    /// `response.content_type` is not a header value.
    #[error("source `{name}`: response.content_type is not a valid header value")]
    ContentType {
        /// The source.
        name: String,
    },
}

impl Source {
    /// Builds a source from its config; `retention` is the default dedup window.
    pub fn build(cfg: &SourceConfig, retention: Duration) -> Result<Self, BuildError> {
        let name = cfg.name.get_ref().clone();
        let (verifier, preset) = match &cfg.verify {
            Some(v) => {
                let v = v.get_ref();
                let verifier = verify::build(v).map_err(|source| BuildError::Verify {
                    name: name.clone(),
                    source,
                })?;
                (Some(verifier), verify::preset(v.kind))
            }
            None => (None, verify::Preset::default()),
        };
        let event_type = match &cfg.event_type {
            Some(s) => vec![s.clone()],
            None => preset.event_type.clone(),
        };
        let dedup = match cfg.dedup.as_ref().and_then(|d| d.key.clone()) {
            Some(k) => vec![k],
            None => preset.dedup.clone(),
        };
        let dedup_window = cfg
            .dedup
            .as_ref()
            .and_then(|d| d.window)
            .map_or(retention, |w| w.0);
        let r = cfg.response.clone().unwrap_or_default();
        let p = preset.response;
        let status = r.status.or(p.status).unwrap_or(200);
        let content_type = r.content_type.or(p.content_type);
        let body = r.body.or(p.body).unwrap_or_default();
        let answer = Answer {
            status: StatusCode::from_u16(status).map_err(|_| BuildError::Status {
                name: name.clone(),
                status,
            })?,
            content_type: match content_type {
                Some(ct) => Some(
                    HeaderValue::from_str(&ct)
                        .map_err(|_| BuildError::ContentType { name: name.clone() })?,
                ),
                None => None,
            },
            body: Bytes::from(body),
        };
        use crate::config::VerifyKind;
        let strip_headers = match cfg.verify.as_ref().map(|v| v.get_ref()) {
            Some(v) if matches!(v.kind, VerifyKind::Basic | VerifyKind::Bearer) => {
                vec![http::header::AUTHORIZATION]
            }
            // Telegram's secret token is a credential too (a signature is not).
            Some(v) if v.kind == VerifyKind::Telegram => {
                vec![http::HeaderName::from_static(
                    "x-telegram-bot-api-secret-token",
                )]
            }
            Some(v) if v.kind == VerifyKind::Header => v
                .header
                .as_deref()
                .and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok())
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        Ok(Source {
            strip_headers,
            metrics: SourceMetrics::new(&name),
            name,
            verifier,
            event_type,
            dedup,
            dedup_window,
            limiter: cfg.rate_limit.as_ref().map(limiter),
            allow_ips: cfg.allow_ips.iter().map(|n| n.0).collect(),
            answer,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::{Clock as _, FakeRelativeClock};
    use governor::RateLimiter;

    use super::{quota, retry_after_secs};
    use crate::config::RateLimitConfig;

    /// The integration test checks the 429 and its header; the refill is
    /// checked here, on a clock the test moves (no waiting).
    #[test]
    fn a_limited_source_passes_again_after_retry_after_and_refills_at_its_rate() {
        let rl = RateLimitConfig {
            per_second: 1.0,
            burst: Some(3),
        };
        let clock = FakeRelativeClock::default();
        let l = RateLimiter::direct_with_clock(quota(&rl), clock.clone());
        for i in 0..3 {
            assert!(l.check().is_ok(), "request {i} of the burst");
        }
        let refused = l.check().unwrap_err();
        let retry = retry_after_secs(refused.wait_time_from(clock.now()));
        assert_eq!(retry, 1, "one token a second");
        // Just before the time it named, still refused; at it, one passes.
        clock.advance(Duration::from_millis(999));
        assert!(l.check().is_err());
        clock.advance(Duration::from_millis(1));
        assert!(l.check().is_ok(), "after Retry-After a request passes");
        assert!(l.check().is_err(), "and only one: the rate, not the burst");
        // A long quiet spell refills the burst, no more.
        clock.advance(Duration::from_secs(60));
        for i in 0..3 {
            assert!(l.check().is_ok(), "request {i} after the refill");
        }
        assert!(l.check().is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 0);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }
}
