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
    let period = Duration::from_secs_f64(1.0 / rl.per_second.max(1e-6));
    let burst = NonZeroU32::new(rl.burst()).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("a positive period")
        .allow_burst(burst);
    DefaultDirectRateLimiter::direct(quota)
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
