//! Compiling a checked [`DestinationDef`] into the dispatcher's [`DestinationSpec`]:
//! defaults applied, the URL parsed, the header map and the signing keys built.
//! One path for config-file and API destinations.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::def::DestinationDef;
use super::defaults;
use crate::config::RetryConfig;
use crate::dispatch::destination::{DestinationSpec, Origin, SigningKey};
use crate::dispatch::retry::RetryPolicy;

/// Why a definition could not be compiled. [`super::validate::destination`]
/// reports all of these first, with their paths; this is the last word.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The URL does not parse.
    #[error("url {url:?} is not a valid URL: {source}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why.
        source: url::ParseError,
    },
    /// The URL parses but the HTTP client cannot take it.
    #[error("url {url:?} is not usable: {source}")]
    Uri {
        /// The URL as given.
        url: String,
        /// Why.
        source: http::uri::InvalidUri,
    },
    /// An extra header's name is not a header name.
    #[error("header name {0:?} is not valid")]
    HeaderName(String),
    /// An extra header's value is not a header value.
    #[error("the value of header {0:?} is not a valid header value")]
    HeaderValue(String),
    /// A signing secret is not `whsec_` followed by base64.
    #[error("{}", super::validate::BAD_SIGNING_SECRET)]
    SigningSecret,
}

/// The URL a pull destination's spec holds: a reserved name (RFC 6761) that
/// nothing resolves.
const PULL_PLACEHOLDER: &str = "http://pull.invalid/";

/// The runtime spec of a destination defined in `origin`.
pub fn destination(d: &DestinationDef, origin: Origin) -> Result<DestinationSpec, CompileError> {
    // A pull destination is never sent to: its URL is a placeholder no
    // request goes to (the worker of a pull destination makes none).
    let given = d.url.as_deref().unwrap_or(PULL_PLACEHOLDER);
    let url = url::Url::parse(given).map_err(|source| CompileError::Url {
        url: given.to_string(),
        source,
    })?;
    let uri = url
        .as_str()
        .parse::<http::Uri>()
        .map_err(|source| CompileError::Uri {
            url: given.to_string(),
            source,
        })?;
    let retry = d.retry.clone().unwrap_or_default();
    Ok(DestinationSpec {
        name: d.name.clone(),
        kind: d.kind,
        url,
        uri,
        timeout: d.timeout.map_or(defaults::TIMEOUT, |t| t.0),
        max_in_flight: d.max_in_flight.unwrap_or(defaults::MAX_IN_FLIGHT).max(1),
        rate_limit: d.rate_limit,
        retry: retry_policy(&retry),
        retry_4xx: retry.on_4xx,
        breaker: d.circuit_breaker,
        signing: signing_keys(d)?,
        headers: header_map(d)?,
        forward: d
            .forward_headers
            .clone()
            .unwrap_or(defaults::FORWARD_HEADERS),
        disable_after: d.disable_after.map_or(defaults::DISABLE_AFTER, |t| t.0),
        origin,
        event_types: match origin {
            Origin::Api => d.event_types.clone().unwrap_or_else(defaults::event_types),
            Origin::Config | Origin::Channel => Vec::new(),
        },
        source: d
            .source
            .clone()
            .unwrap_or_else(|| crate::config::API_SOURCE.to_string()),
        filter: d.filter.clone(),
        transform: d.transform.clone(),
    })
}

/// The policy of a (validated) retry table, defaults filled in.
pub fn retry_policy(c: &RetryConfig) -> RetryPolicy {
    if let Some(s) = &c.schedule {
        return RetryPolicy::Schedule(s.iter().map(|d| d.0).collect());
    }
    if c.max_attempts.is_some() || c.initial.is_some() || c.max.is_some() {
        return RetryPolicy::Exponential {
            max_attempts: c
                .max_attempts
                .unwrap_or(defaults::RETRY_MAX_ATTEMPTS)
                .max(1),
            initial: c.initial.map_or(defaults::RETRY_INITIAL, |d| d.0),
            max: c.max.map_or(defaults::RETRY_MAX, |d| d.0),
        };
    }
    RetryPolicy::Schedule(
        defaults::RETRY_SCHEDULE
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect(),
    )
}

/// The extra headers, marked sensitive (they often carry credentials).
fn header_map(d: &DestinationDef) -> Result<HeaderMap, CompileError> {
    let mut headers = HeaderMap::new();
    for (k, v) in &d.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| CompileError::HeaderName(k.clone()))?;
        let mut value =
            HeaderValue::from_str(v).map_err(|_| CompileError::HeaderValue(k.clone()))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

/// `signing_secret` (the file's, or one given at creation) first, then the
/// stored keys of an API destination.
fn signing_keys(d: &DestinationDef) -> Result<Vec<SigningKey>, CompileError> {
    let given = d.signing_secret.iter().map(|s| (s.expose(), None));
    let stored = d
        .signing_secrets
        .iter()
        .map(|k| (k.secret.as_str(), k.until));
    given
        .chain(stored)
        .map(|(secret, until)| {
            Ok(SigningKey {
                key: crate::signing::decode_secret(secret).ok_or(CompileError::SigningSecret)?,
                secret: secret.to_string(),
                until,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_to_both_origins_alike() {
        let d: DestinationDef =
            serde_json::from_value(serde_json::json!({"name": "d", "url": "http://127.0.0.1:1/x"}))
                .unwrap();
        for origin in [Origin::Config, Origin::Api] {
            let s = destination(&d, origin).unwrap();
            assert_eq!(s.timeout, defaults::TIMEOUT);
            assert_eq!(s.max_in_flight, defaults::MAX_IN_FLIGHT);
            assert_eq!(s.disable_after, defaults::DISABLE_AFTER);
            assert_eq!(s.retry, retry_policy(&RetryConfig::default()));
            assert_eq!(s.origin, origin);
        }
        assert_eq!(destination(&d, Origin::Api).unwrap().event_types, ["*"]);
    }

    #[test]
    fn default_is_the_spec_schedule() {
        let p = retry_policy(&RetryConfig::default());
        assert_eq!(p.max_attempts(), 8);
        assert_eq!(p.next_delay(7, 0.0), Some(Duration::from_secs(36000)));
        assert_eq!(p.next_delay(8, 0.0), None);
    }

    #[test]
    fn a_bad_header_is_a_typed_error() {
        let d: DestinationDef = serde_json::from_value(serde_json::json!({
            "name": "d", "url": "http://127.0.0.1:1/x", "headers": {"X-A": "a\nb"}
        }))
        .unwrap();
        assert!(matches!(
            destination(&d, Origin::Api),
            Err(CompileError::HeaderValue(h)) if h == "X-A"
        ));
    }
}
