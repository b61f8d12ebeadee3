//! One HTTP delivery attempt: builds the request (original body and Content-Type,
//! forwarded headers, the destination's headers, the `webhook-*` and
//! `hookgate-*` headers of docs/delivery.md and the Standard Webhooks
//! signature), sends it, keeps the first 4 KiB of the answer, and classifies
//! the outcome.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

use super::client::{DeliveryClient, SendError};
use super::destination::DestinationSpec;
use super::retry::MAX_RETRY_AFTER;
use crate::config::ForwardHeaders;
use crate::store::{decode_headers, encode_headers, Leased, RESPONSE_HEADERS_KEEP};
use crate::telemetry::trace::AttemptSpan;
use crate::transform::Delivery;

/// Bytes of the response body kept for the attempt log.
pub const RESPONSE_KEEP: usize = 4096;
/// Bytes of the response body read at most (so the connection can be reused).
const RESPONSE_DRAIN: usize = 64 * 1024;

/// What one attempt got.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// The first bytes of the response body.
    pub body: Option<Bytes>,
    /// The response's headers, encoded (see [`kept_headers`]).
    pub headers: Option<Bytes>,
    /// `Retry-After`, when the response had a valid one.
    pub retry_after: Option<Duration>,
    /// The response asked not to retry (`webhook-delivery: abort-message`).
    pub abort: bool,
    /// Why no response came (timeout, connection error, refused address).
    pub error: Option<String>,
    /// The address is not allowed (SSRF guard): never retried.
    pub refused: bool,
}

/// Whether an attempt succeeded, may be retried, or must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 2xx.
    Success,
    /// Try again (after `Retry-After` when given).
    Retry(Option<Duration>),
    /// Stop: dead at once.
    Stop,
}

impl Class {
    /// Whether the endpoint itself misbehaved (for the breaker and endpoint health):
    /// retryable failures do, deliberate refusals (4xx) do not.
    pub fn is_endpoint_failure(self) -> bool {
        matches!(self, Class::Retry(_))
    }
}

/// Classifies an outcome as docs/delivery.md says (step 3, **Outcome**).
pub fn classify(o: &Outcome, retry_4xx: bool) -> Class {
    if o.refused {
        return Class::Stop;
    }
    let Some(status) = o.status else {
        return Class::Retry(None);
    };
    if (200..300).contains(&status) {
        return Class::Success;
    }
    if o.abort {
        return Class::Stop;
    }
    match status {
        429 | 503 => Class::Retry(o.retry_after),
        408 | 425 => Class::Retry(None),
        410 => Class::Stop,
        400..=499 if !retry_4xx => Class::Stop,
        _ => Class::Retry(None),
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date, clamped to [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// Headers of one connection, or that the client sets itself: never copied
/// from another request.
pub fn connection_header(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "content-type"
            | "expect"
    )
}

/// Hop-by-hop headers and others that must not be forwarded.
fn never_forward(name: &HeaderName) -> bool {
    connection_header(name.as_str())
        || name.as_str().starts_with("webhook-")
        || name.as_str().starts_with("hookgate-")
}

/// The request headers of an attempt.
pub fn request_headers(spec: &DestinationSpec, item: &Leased, now_ms: i64) -> HeaderMap {
    headers_for(spec, item, now_ms, None)
}

/// The request headers of an attempt, of the request a transformation gave
/// when there is one: its headers in place of the received ones, its
/// Content-Type and event type, and a signature over its body.
pub fn headers_for(
    spec: &DestinationSpec,
    item: &Leased,
    now_ms: i64,
    transformed: Option<&Delivery>,
) -> HeaderMap {
    let msg = &item.message;
    let mut h = HeaderMap::with_capacity(16);
    let given: Vec<(String, Vec<u8>)> = match transformed {
        // A transformation's headers are what the script chose to send.
        Some(t) => t
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect(),
        None if spec.forward != ForwardHeaders::None => decode_headers(&msg.headers),
        None => Vec::new(),
    };
    for (k, v) in given {
        let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
            continue;
        };
        if never_forward(&name) {
            continue;
        }
        if let (None, ForwardHeaders::Only(list)) = (transformed, &spec.forward) {
            if !list.iter().any(|l| l == name.as_str()) {
                continue;
            }
        }
        if let Ok(val) = HeaderValue::from_bytes(&v) {
            h.append(name, val);
        }
    }
    for (k, v) in &spec.headers {
        h.insert(k.clone(), v.clone());
    }
    let content_type = match transformed {
        Some(t) => t.content_type.as_deref(),
        None => msg.content_type.as_deref(),
    };
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert(CONTENT_TYPE, ct);
    }
    let body: &[u8] = match transformed {
        Some(t) => &t.body,
        None => &msg.body,
    };
    let id = msg.id.to_string();
    let ts = now_ms / 1000;
    let hv = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""));
    h.insert("webhook-id", hv(&id));
    h.insert("webhook-timestamp", HeaderValue::from(ts));
    let sigs: Vec<String> = spec
        .active_keys(now_ms)
        .map(|k| crate::signing::sign(&k.key, &id, ts, body))
        .collect();
    if !sigs.is_empty() {
        h.insert("webhook-signature", hv(&sigs.join(" ")));
    }
    if crate::config::is_tenant_source(&msg.source) {
        // A tenant's endpoint gets the headers Svix sends, so receivers that
        // verify with Svix's libraries (which read `svix-*` first) keep working.
        for (svix, std) in [
            ("svix-id", "webhook-id"),
            ("svix-timestamp", "webhook-timestamp"),
            ("svix-signature", "webhook-signature"),
        ] {
            if let Some(v) = h.get(std).cloned() {
                h.insert(svix, v);
            }
        }
    }
    h.insert("hookgate-source", hv(&msg.source));
    let event_type = match transformed {
        Some(t) => t.event_type.as_ref().or(msg.event_type.as_ref()),
        None => msg.event_type.as_ref(),
    };
    if let Some(et) = event_type {
        h.insert("hookgate-event-type", hv(et));
    }
    h.insert("hookgate-attempt", HeaderValue::from(item.attempt));
    h
}

/// Sends one attempt and reads its answer, all within the destination's
/// timeout. With `span` (tracing on), the request carries the attempt's
/// `traceparent`; without, a received one goes as `forward_headers` says.
pub async fn send(
    client: &DeliveryClient,
    spec: &DestinationSpec,
    item: &Leased,
    now_ms: i64,
    span: Option<&AttemptSpan>,
    transformed: Option<&Delivery>,
) -> Outcome {
    let mut headers = headers_for(spec, item, now_ms, transformed);
    if let Some(span) = span {
        span.inject(&mut headers);
    }
    headers.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    );
    exchange(
        client,
        &spec.uri,
        headers,
        match transformed {
            Some(t) => t.body.clone(),
            None => item.message.body.clone(),
        },
        spec.timeout,
    )
    .await
}

/// Posts one request and reads its answer, all within `timeout`: the exchange
/// of push delivery, and of `hookgate listen` with the local app.
pub async fn exchange(
    client: &DeliveryClient,
    uri: &http::Uri,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Outcome {
    let exchange = async {
        let resp = client.post(uri, headers, body).await?;
        Ok::<_, SendError>(read_response(resp).await)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Outcome {
            error: Some(match e {
                SendError::Connect(d) => format!("connection failed: {d}"),
                SendError::Other(d) => format!("error: {d}"),
            }),
            ..Outcome::default()
        },
        Err(_) => Outcome {
            error: Some(format!(
                "timeout: no complete answer within {}",
                crate::config::Dur(timeout)
            )),
            ..Outcome::default()
        },
    }
}

/// A response's headers for the attempt log, encoded, in the order received,
/// up to [`RESPONSE_HEADERS_KEEP`] bytes: a header that would pass it is left
/// out, with the ones after it.
pub fn kept_headers(h: &http::HeaderMap) -> Bytes {
    let mut size = 0usize;
    let kept = h.iter().take_while(|(k, v)| {
        size += 8 + k.as_str().len() + v.len();
        size <= RESPONSE_HEADERS_KEEP
    });
    encode_headers(kept.map(|(k, v)| (k.as_str(), v.as_bytes())))
}

/// The User-Agent of deliveries.
pub const USER_AGENT: &str = concat!("hookgate/", env!("CARGO_PKG_VERSION"));

/// Reads the status, `Retry-After`, `webhook-delivery` and the first bytes of the body.
async fn read_response(resp: http::Response<hyper::body::Incoming>) -> Outcome {
    use http_body_util::BodyExt as _;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let abort = resp
        .headers()
        .get("webhook-delivery")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("abort-message"));
    let headers = kept_headers(resp.headers());
    let mut body = resp.into_body();
    let mut kept = BytesMut::new();
    let mut read = 0usize;
    let mut error = None;
    // Read up to RESPONSE_DRAIN so that the connection can go back to the pool;
    // a longer answer closes it.
    while read <= RESPONSE_DRAIN {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(chunk) = frame.into_data() {
                    read += chunk.len();
                    if kept.len() < RESPONSE_KEEP {
                        let take = (RESPONSE_KEEP - kept.len()).min(chunk.len());
                        kept.extend_from_slice(&chunk[..take]);
                    }
                }
            }
            None => break,
            Some(Err(e)) => {
                // The status counts; a broken body is noted.
                error = Some(format!("reading the response body: {e}"));
                break;
            }
        }
    }
    Outcome {
        status: Some(status),
        body: (!kept.is_empty()).then(|| kept.freeze()),
        headers: Some(headers),
        retry_after,
        abort,
        error,
        refused: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(status: u16) -> Outcome {
        Outcome {
            status: Some(status),
            ..Outcome::default()
        }
    }

    #[test]
    fn classifies_per_the_spec() {
        assert_eq!(classify(&o(200), false), Class::Success);
        assert_eq!(classify(&o(204), false), Class::Success);
        assert_eq!(classify(&o(500), false), Class::Retry(None));
        assert_eq!(classify(&o(502), false), Class::Retry(None));
        assert_eq!(classify(&o(408), false), Class::Retry(None));
        assert_eq!(classify(&o(425), false), Class::Retry(None));
        assert_eq!(classify(&o(400), false), Class::Stop);
        assert_eq!(classify(&o(404), false), Class::Stop);
        assert_eq!(classify(&o(400), true), Class::Retry(None));
        assert_eq!(classify(&o(410), true), Class::Stop);
        assert_eq!(classify(&o(302), false), Class::Retry(None));
        let mut ra = o(429);
        ra.retry_after = Some(Duration::from_secs(2));
        assert_eq!(
            classify(&ra, false),
            Class::Retry(Some(Duration::from_secs(2)))
        );
        assert_eq!(classify(&o(503), false), Class::Retry(None));
        let mut abort = o(500);
        abort.abort = true;
        assert_eq!(classify(&abort, false), Class::Stop);
        let err = Outcome {
            error: Some("timeout".into()),
            ..Outcome::default()
        };
        assert_eq!(classify(&err, false), Class::Retry(None));
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    /// Response headers are kept in order up to the cap; the ones that would
    /// pass it are left out whole, never cut.
    #[test]
    fn kept_response_headers_are_bounded() {
        let mut h = http::HeaderMap::new();
        h.insert("x-first", http::HeaderValue::from_static("1"));
        for i in 0..100 {
            let name = http::HeaderName::try_from(format!("x-filler-{i}")).unwrap();
            h.insert(name, http::HeaderValue::from_str(&"v".repeat(100)).unwrap());
        }
        let kept = crate::store::decode_headers(&kept_headers(&h));
        assert!(kept.len() > 1 && kept.len() < 101, "{}", kept.len());
        assert!(kept_headers(&h).len() <= RESPONSE_HEADERS_KEEP);
        assert!(kept.iter().all(|(_, v)| v.len() == 100 || v == b"1"));
        assert!(kept_headers(&http::HeaderMap::new()).is_empty());
    }
}
