//! The public ingest listener (`ANY /in/{source}[/{rest}]`), on hyper directly:
//! the path of every webhook, so it does as little as possible per request.
//!
//! Order of checks: source → `allow_ips` (403) → rate limit (429) → body within
//! `max_body` and `read_timeout` (413/408/400) → handshake or verification (401)
//! → `max_pending` (503) → a free place among `storage.max_waiting` requests
//! waiting for the store (503) → select, route, append. The 2xx is sent only after the
//! store reports the message committed and synced.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::rejects::{Refused, RejectedRequest, Rejects};
use super::route::{Overrides, Routing};
use super::source::{BuildError, Source};
use super::verify::{self, Reason};
use crate::clock::SharedClock;
use crate::config::{Config, Live, SourceConfig};
use crate::dispatch::Dispatcher;
use crate::listener::{Limits, RequestBody};
use crate::select::Inbound;
use crate::store::{encode_headers, Appended, Dedup, MessageId, NewMessage, Store, StoreError};
use crate::telemetry::events::{IngestHandled, IngestOutcome, MessageUnrouted};
use crate::telemetry::trace::{IngestSpan, Traces};

/// Everything the ingest handler needs.
pub struct Ingest {
    /// The sources and limits, which a reload replaces whole; each request
    /// reads them once and keeps them until it is answered.
    pub settings: Arc<Live<Settings>>,
    /// Routes.
    pub routing: Arc<Routing>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Destinations (for each one's first-attempt delay).
    pub dispatcher: Arc<Dispatcher>,
    /// Wall clock.
    pub clock: SharedClock,
    /// Whole-request deadline (also the listener's header timeout, so it is
    /// fixed while running).
    pub read_timeout: Duration,
    /// The last refused requests, with their reasons (written on refusals only).
    pub rejects: Arc<Rejects>,
    /// The tracer, while `[telemetry] otlp_endpoint` is set: with `None`,
    /// a request costs tracing nothing.
    pub traces: Option<Traces>,
}

/// What a reload may change on the ingest path: the sources and the limits
/// read per request.
pub struct Settings {
    /// Sources by name.
    pub sources: HashMap<String, Arc<Source>>,
    /// Largest body.
    pub max_body: u64,
    /// Backpressure threshold.
    pub max_pending: u64,
    /// Requests waiting for the store (`storage.max_waiting`,
    /// `storage.max_waiting_bytes`): when either is used up the answer is 503
    /// at once instead of one more request held.
    pub waiting: Arc<Waiting>,
    /// The two bounds `waiting` was made with.
    pub waiting_bounds: (u32, u64),
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
}

impl Settings {
    /// The settings of `cfg`. A source `reuse` returns is kept as it is (with
    /// its rate limiter's state); the others are built. `waiting` is kept when
    /// its bounds did not change, so requests already waiting still count.
    pub fn build(
        cfg: &Config,
        reuse: &dyn Fn(&SourceConfig) -> Option<Arc<Source>>,
        waiting: Option<&Settings>,
    ) -> Result<Self, BuildError> {
        let mut sources = HashMap::new();
        for s in &cfg.sources {
            let src = match reuse(s) {
                Some(src) => src,
                None => Arc::new(Source::build(s, cfg.storage.retention.0)?),
            };
            sources.insert(src.name.clone(), src);
        }
        let bounds = (cfg.storage.max_waiting, cfg.storage.max_waiting_bytes.0);
        let waiting = match waiting {
            Some(w) if w.waiting_bounds == bounds => w.waiting.clone(),
            _ => Arc::new(Waiting::new(bounds.0, bounds.1)),
        };
        Ok(Settings {
            sources,
            max_body: cfg.server.max_body.0,
            max_pending: cfg.storage.max_pending,
            waiting,
            waiting_bounds: bounds,
            trusted_proxies: cfg.server.trusted_proxies.iter().map(|n| n.0).collect(),
        })
    }
}

type Resp = Response<Full<Bytes>>;

/// The bound on ingest requests waiting for the store: how many, and how many
/// bytes of body they hold. Requests are answered 503 at once beyond either, so
/// memory stays flat while the store is slow or unreachable.
pub struct Waiting {
    requests: tokio::sync::Semaphore,
    /// One permit per KiB.
    kib: tokio::sync::Semaphore,
    kib_total: u32,
}

impl Waiting {
    /// At most `requests` requests holding at most `bytes` of body.
    pub fn new(requests: u32, bytes: u64) -> Self {
        let kib_total = (bytes / 1024).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Waiting {
            requests: tokio::sync::Semaphore::new(requests as usize),
            kib: tokio::sync::Semaphore::new(kib_total as usize),
            kib_total,
        }
    }

    /// A place for a request with a body of `len` bytes, if there is one. A body
    /// larger than the whole byte bound waits alone.
    pub fn try_hold(&self, len: usize) -> Option<WaitingPlace<'_>> {
        let kib = (len.div_ceil(1024).max(1) as u64).min(u64::from(self.kib_total)) as u32;
        let request = self.requests.try_acquire().ok()?;
        let bytes = self.kib.try_acquire_many(kib).ok()?;
        Some(WaitingPlace {
            _request: request,
            _bytes: bytes,
        })
    }
}

/// A request's place among those waiting for the store; freed on drop.
pub struct WaitingPlace<'a> {
    _request: tokio::sync::SemaphorePermit<'a>,
    _bytes: tokio::sync::SemaphorePermit<'a>,
}

/// How much of a refused request's body is read and dropped so that the client,
/// still writing, gets to read the answer (Go's server does the same, for 256 KiB).
const DISCARD_MAX: u64 = 4 << 20;

fn plain(status: StatusCode, body: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    if !body.is_empty() {
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    r
}

fn with_retry_after(mut r: Resp, secs: u64) -> Resp {
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
    r
}

/// The client address for `allow_ips`: the peer, or, when the peer is a trusted
/// proxy, the right-most `X-Forwarded-For` entry that is not a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &http::HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for v in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(s) = v.to_str() else { return client };
        for part in s.rsplit(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !is_trusted(&ip) {
                        return ip;
                    }
                }
                Err(_) => return client,
            }
        }
    }
    client
}

impl Ingest {
    /// Handles one request; never panics and always answers.
    pub async fn handle(&self, req: Request<RequestBody>, peer: SocketAddr) -> Resp {
        let t0 = Instant::now();
        let (parts, mut body) = req.into_parts();
        let has_body = parts.headers.contains_key(http::header::TRANSFER_ENCODING)
            || parts
                .headers
                .get(CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        let mut body_read = false;
        let set = self.settings.load();
        let span = self
            .traces
            .as_ref()
            .map(|t| t.ingest(&parts.headers, path_source(parts.uri.path())));
        let (mut resp, outcome) = self
            .handle_inner(
                &set,
                &parts,
                &mut body,
                peer,
                t0,
                &mut body_read,
                span.as_ref(),
            )
            .await;
        if let Some(span) = span {
            let id = resp
                .headers()
                .get("hookgate-message-id")
                .and_then(|v| v.to_str().ok());
            span.end(
                outcome.map(IngestOutcome::as_str),
                resp.status().as_u16(),
                id,
            );
        }
        if has_body && !body_read {
            // Answered without taking the body (404, 403, 429, 413, 408): the
            // connection cannot carry another request, and the client is told so.
            // A client still writing its body would meet a reset instead of this
            // answer, so a bounded rest of the body is read and thrown away first.
            self.discard(&parts, &mut body, t0).await;
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let dur = t0.elapsed().as_secs_f64() * 1000.0;
        if let Ok(v) = HeaderValue::from_str(&format!("hookgate;dur={dur:.3}")) {
            resp.headers_mut().insert("server-timing", v);
        }
        resp
    }

    /// Reads and drops what is left of a refused request's body: at most
    /// [`DISCARD_MAX`] bytes and never past the request's `read_timeout`. A body
    /// declared larger than that is not read at all.
    async fn discard(&self, parts: &http::request::Parts, body: &mut RequestBody, t0: Instant) {
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > DISCARD_MAX) {
            return;
        }
        let remaining = self.read_timeout.saturating_sub(t0.elapsed());
        let _ = tokio::time::timeout(remaining, async {
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    seen += d.len() as u64;
                    if seen > DISCARD_MAX {
                        break;
                    }
                }
            }
        })
        .await;
    }

    /// The stages of a request, each of which may refuse it; the refusal is
    /// counted and answered here. Returns the answer and what it counts as.
    #[allow(clippy::too_many_arguments)]
    async fn handle_inner(
        &self,
        set: &Settings,
        parts: &http::request::Parts,
        body: &mut RequestBody,
        peer: SocketAddr,
        t0: Instant,
        body_read: &mut bool,
        span: Option<&IngestSpan>,
    ) -> (Resp, Option<IngestOutcome>) {
        let Some(src) = source(set, parts) else {
            self.record(set, None, parts, peer, &Refusal::UnknownSource);
            return (Refusal::UnknownSource.response(), None);
        };
        match self
            .admit_and_store(set, &src, parts, body, peer, t0, body_read, span)
            .await
        {
            Ok((r, outcome)) => (r, Some(outcome)),
            Err(refusal) => {
                let outcome = refusal.outcome();
                if let Some(outcome) = outcome {
                    handled(&src, outcome, t0, None);
                }
                self.record(set, Some(&src), parts, peer, &refusal);
                (refusal.response(), outcome)
            }
        }
    }

    /// Keeps a refused request in [`Rejects`] with its reason (503s are not kept).
    fn record(
        &self,
        set: &Settings,
        src: Option<&Source>,
        parts: &http::request::Parts,
        peer: SocketAddr,
        refusal: &Refusal,
    ) {
        let ip = client_ip(peer.ip(), &parts.headers, &set.trusted_proxies);
        let Some(reason) = self.reason(set, parts, peer, ip, refusal) else {
            return;
        };
        let name = match src {
            Some(s) => s.name.as_str(),
            None => path_source(parts.uri.path()),
        };
        let body = match refusal {
            Refusal::Unauthorized(f) => Some(&f.body[..]),
            _ => None,
        };
        let entry = RejectedRequest::capture(
            self.clock.now_millis(),
            parts,
            Refused {
                source: name,
                known: src.is_some(),
                client_ip: ip,
                status: refusal.status().as_u16(),
                reason,
                body,
            },
        );
        self.rejects.record(entry);
    }

    /// A refusal's reason in plain words; `None` for one that is not kept.
    fn reason(
        &self,
        set: &Settings,
        parts: &http::request::Parts,
        peer: SocketAddr,
        ip: IpAddr,
        refusal: &Refusal,
    ) -> Option<Reason> {
        Some(match refusal {
            Refusal::UnknownSource => unknown_source(parts.uri.path()),
            Refusal::Forbidden => forbidden(peer.ip(), ip, parts),
            Refusal::RateLimited { retry_after } => Reason::new(
                "rate_limited",
                format!("over the source's `rate_limit`: the sender may retry in {retry_after} s"),
            ),
            Refusal::TooLarge => too_large(parts, set.max_body),
            Refusal::BadBody => Reason::new(
                "bad_body",
                "the body could not be read: the connection broke, or its chunked encoding is malformed",
            ),
            Refusal::Timeout => Reason::new(
                "timeout",
                format!(
                    "the body did not arrive within `server.read_timeout` ({} s)",
                    self.read_timeout.as_secs_f64()
                ),
            ),
            Refusal::Unauthorized(f) => f.reason.clone(),
            Refusal::Busy { .. } => return None,
        })
    }

    /// Checks, reads, verifies and stores one request of a known source, in
    /// the order of the module's header.
    #[allow(clippy::too_many_arguments)]
    async fn admit_and_store(
        &self,
        set: &Settings,
        src: &Source,
        parts: &http::request::Parts,
        body: &mut RequestBody,
        peer: SocketAddr,
        t0: Instant,
        body_read: &mut bool,
        span: Option<&IngestSpan>,
    ) -> Result<(Resp, IngestOutcome), Refusal> {
        check_ip(set, src, parts, peer)?;
        check_rate(src)?;
        let body = self
            .read_body(set.max_body, parts, body, t0, body_read)
            .await?;
        let now_ms = self.clock.now_millis();
        let verifying = span.map(|s| s.child("verify"));
        let verified = verify_request(src, parts, &body, now_ms);
        drop(verifying);
        if let Some(answer) = verified? {
            handled(src, IngestOutcome::Handshake, t0, None);
            return Ok((answer, IngestOutcome::Handshake));
        }
        if self.store.pending_estimate() >= set.max_pending || self.store.is_full() {
            return Err(Refusal::Busy { retry_after: 5 });
        }
        // Held until the store answers; none left means the store is not keeping up.
        let Some(_waiting) = set.waiting.try_hold(body.len()) else {
            return Err(Refusal::Busy { retry_after: 1 });
        };
        let (msg, unrouted) = self.message(src, parts, body, now_ms, span);
        let committing = span.map(|s| s.child("store.commit"));
        let appended = self.store.append(msg).await;
        drop(committing);
        let appended = appended.map_err(|e| Refusal::Busy {
            retry_after: match e {
                StoreError::Full => 30,
                _ => 1,
            },
        })?;
        Ok(stored(src, appended, unrouted, t0))
    }

    /// The body, within `max_body` and what is left of `read_timeout`.
    async fn read_body(
        &self,
        max_body: u64,
        parts: &http::request::Parts,
        body: &mut RequestBody,
        t0: Instant,
        body_read: &mut bool,
    ) -> Result<Bytes, Refusal> {
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_body) {
            return Err(Refusal::TooLarge);
        }
        let remaining = self.read_timeout.saturating_sub(t0.elapsed());
        let collected = tokio::time::timeout(
            remaining,
            Limited::new(&mut *body, max_body as usize).collect(),
        )
        .await;
        match collected {
            Ok(Ok(c)) => {
                *body_read = true;
                Ok(c.to_bytes())
            }
            Ok(Err(e)) if e.is::<LengthLimitError>() => Err(Refusal::TooLarge),
            Ok(Err(_)) => Err(Refusal::BadBody),
            Err(_) => Err(Refusal::Timeout),
        }
    }

    /// The message to store, and the event type to log when no route takes it.
    fn message(
        &self,
        src: &Source,
        parts: &http::request::Parts,
        body: Bytes,
        now_ms: i64,
        span: Option<&IngestSpan>,
    ) -> (NewMessage, Option<Unrouted>) {
        let inbound = Inbound::new(&parts.headers, parts.uri.query(), &body);
        let event_type = src.event_type.iter().find_map(|s| inbound.select_key(s));
        let dedup = src
            .dedup
            .iter()
            .find_map(|s| inbound.select_key(s))
            .map(|key| Dedup {
                key,
                until: now_ms.saturating_add(src.dedup_window.as_millis() as i64),
            });
        let table = self.routing.current();
        let deliveries = table.deliveries(
            &src.name,
            event_type.as_deref(),
            &inbound,
            now_ms,
            &Overrides::default(),
            &|d| {
                self.dispatcher
                    .get(d)
                    .map(|h| h.spec().retry.first_delay())
                    .unwrap_or_default()
            },
        );
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // With tracing, the ingest span's context goes with the message, after
        // the received headers, so that its attempts continue this trace.
        let trace = span.map(IngestSpan::stored_headers).unwrap_or_default();
        let request = request_line(src, parts);
        let headers = encode_headers(
            parts
                .headers
                .iter()
                .filter(|(k, _)| !src.strip_headers.contains(k) && !is_request_line(k.as_str()))
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .chain(trace.iter().map(|(k, v)| (k.as_str(), v.as_bytes())))
                .chain(request.iter().map(|(k, v)| (*k, v.as_bytes()))),
        );
        drop(inbound);
        let unrouted = deliveries.is_empty().then(|| Unrouted {
            event_type: event_type.clone(),
        });
        let msg = NewMessage {
            id: MessageId::new(),
            source: src.name.clone(),
            event_type,
            received_at: now_ms,
            content_type,
            headers,
            body,
            dedup,
            deliveries,
        };
        (msg, unrouted)
    }
}

/// The method and path a transformation's request object shows, stored
/// beside the headers when they are not the usual `POST /in/{source}` (so the
/// usual message stores nothing more).
fn request_line(src: &Source, parts: &http::request::Parts) -> Vec<(&'static str, String)> {
    use crate::transform::request::{METHOD_HEADER, PATH_HEADER};
    let mut out = Vec::new();
    if parts.method != http::Method::POST {
        out.push((METHOD_HEADER, parts.method.as_str().to_string()));
    }
    let path = parts.uri.path();
    let plain = path.strip_prefix("/in/") == Some(src.name.as_str());
    if !plain || parts.uri.query().is_some() {
        let target = parts
            .uri
            .path_and_query()
            .map_or(path, |p| p.as_str())
            .to_string();
        out.push((PATH_HEADER, target));
    }
    out
}

/// Whether a received header has the name of a stored request line, which
/// only the gateway writes.
fn is_request_line(name: &str) -> bool {
    use crate::transform::request::{METHOD_HEADER, PATH_HEADER};
    name == METHOD_HEADER || name == PATH_HEADER
}

/// The source named by the path (`/in/{source}[/...]`).
fn source(set: &Settings, parts: &http::request::Parts) -> Option<Arc<Source>> {
    let name = parts
        .uri
        .path()
        .strip_prefix("/in/")
        .map(|rest| rest.split('/').next().unwrap_or(""));
    name.and_then(|n| set.sources.get(n)).cloned()
}

/// `allow_ips`: the client address (see [`client_ip`]) must be in one of them.
fn check_ip(
    set: &Settings,
    src: &Source,
    parts: &http::request::Parts,
    peer: SocketAddr,
) -> Result<(), Refusal> {
    if src.allow_ips.is_empty() {
        return Ok(());
    }
    let ip = client_ip(peer.ip(), &parts.headers, &set.trusted_proxies);
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    if src.allow_ips.iter().any(|n| n.contains(&ip)) {
        Ok(())
    } else {
        Err(Refusal::Forbidden)
    }
}

/// Why a request is answered without being stored. Each refusal has one
/// status, one body (empty but for an unknown source) and one outcome.
#[derive(Debug)]
enum Refusal {
    /// No source of that name: 404, not counted (there is no source to count for).
    UnknownSource,
    /// The client is not in `allow_ips`: 403.
    Forbidden,
    /// The source's rate limit: 429 with `Retry-After`.
    RateLimited { retry_after: u64 },
    /// The body is larger than `max_body`: 413.
    TooLarge,
    /// The body could not be read: 400.
    BadBody,
    /// The body did not arrive within `read_timeout`: 408.
    Timeout,
    /// Verification (or a handshake) failed: 401, or the handshake's own status.
    Unauthorized(Box<Failed>),
    /// `max_pending`, a full store, no waiting place left, or a failed append:
    /// 503 with `Retry-After`.
    Busy { retry_after: u64 },
}

/// A failed verification: the status, why, and the body that was checked.
#[derive(Debug)]
struct Failed {
    status: StatusCode,
    reason: Reason,
    body: Bytes,
}

impl Refusal {
    /// The status answered.
    fn status(&self) -> StatusCode {
        match self {
            Refusal::UnknownSource => StatusCode::NOT_FOUND,
            Refusal::Forbidden => StatusCode::FORBIDDEN,
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BadBody => StatusCode::BAD_REQUEST,
            Refusal::Timeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::Unauthorized(f) => f.status,
            Refusal::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// What it counts as (`hookgate_ingest_requests_total{outcome}`).
    fn outcome(&self) -> Option<IngestOutcome> {
        Some(match self {
            Refusal::UnknownSource => return None,
            Refusal::Forbidden => IngestOutcome::Forbidden,
            Refusal::RateLimited { .. } => IngestOutcome::RateLimited,
            Refusal::TooLarge => IngestOutcome::TooLarge,
            Refusal::BadBody | Refusal::Timeout => IngestOutcome::BadRequest,
            Refusal::Unauthorized(_) => IngestOutcome::Unauthorized,
            Refusal::Busy { .. } => IngestOutcome::Unavailable,
        })
    }

    /// The answer.
    fn response(self) -> Resp {
        let status = self.status();
        match self {
            Refusal::UnknownSource => plain(status, "unknown source\n"),
            Refusal::RateLimited { retry_after } | Refusal::Busy { retry_after } => {
                with_retry_after(plain(status, ""), retry_after)
            }
            _ => plain(status, ""),
        }
    }
}

/// The source name in an ingest path (`/in/{name}/…`), or `""`.
fn path_source(path: &str) -> &str {
    path.strip_prefix("/in/")
        .map(|rest| rest.split('/').next().unwrap_or(""))
        .unwrap_or("")
}

/// Why a path names no source.
fn unknown_source(path: &str) -> Reason {
    let text = if path.starts_with("/in/") && !path_source(path).is_empty() {
        format!(
            "no source named `{}` is configured: ingest URLs are `/in/{{source}}` with a source's `name`",
            path_source(path)
        )
    } else {
        "not an ingest URL: webhooks go to `/in/{source}`".to_string()
    };
    Reason::new("unknown_source", text)
}

/// Why `allow_ips` refused the client `ip` (seen from the peer `peer`).
fn forbidden(peer: IpAddr, ip: IpAddr, parts: &http::request::Parts) -> Reason {
    let how = if peer != ip {
        format!(" (taken from `X-Forwarded-For` of the trusted proxy {peer})")
    } else if parts.headers.contains_key("x-forwarded-for") {
        " (the connection's own address: `X-Forwarded-For` is believed only from `server.trusted_proxies`)".to_string()
    } else {
        String::new()
    };
    Reason::new(
        "forbidden_ip",
        format!("address {ip}{how} is not in the source's `allow_ips`"),
    )
}

/// Why a body is too large: its declared length, or that more arrived than allowed.
fn too_large(parts: &http::request::Parts, max: u64) -> Reason {
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| *n > max);
    let text = match declared {
        Some(n) => format!(
            "the body is {n} bytes (its `Content-Length`), more than `server.max_body` ({max} bytes)"
        ),
        None => format!("the body grew past `server.max_body` ({max} bytes)"),
    };
    Reason::new("too_large", text)
}

/// What is logged of a message that no route takes.
struct Unrouted {
    event_type: Option<String>,
}

/// Counts and logs the outcome of a request of `src`.
fn handled(src: &Source, outcome: IngestOutcome, t0: Instant, id: Option<MessageId>) {
    IngestHandled {
        source: &src.metrics,
        outcome,
        elapsed: t0.elapsed(),
        message_id: id,
    }
    .emit()
}

/// The source's rate limit: a refusal says when to come back.
fn check_rate(src: &Source) -> Result<(), Refusal> {
    let Some(l) = &src.limiter else { return Ok(()) };
    l.check().map_err(|nu| {
        use governor::clock::Clock as _;
        let wait = nu.wait_time_from(governor::clock::DefaultClock::default().now());
        Refusal::RateLimited {
            retry_after: super::source::retry_after_secs(wait),
        }
    })
}

/// The handshake answer when the request is one (`Ok(Some)`), else the
/// signature check.
fn verify_request(
    src: &Source,
    parts: &http::request::Parts,
    body: &Bytes,
    now_ms: i64,
) -> Result<Option<Resp>, Refusal> {
    let Some(v) = &src.verifier else {
        return Ok(None);
    };
    let vreq = verify::Request {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        body,
        now: now_ms.div_euclid(1000),
    };
    let failed = |rej: verify::Rejected| {
        Refusal::Unauthorized(Box::new(Failed {
            status: rej.0,
            reason: v.explain(&vreq),
            body: body.clone(),
        }))
    };
    if let Some(hs) = v.handshake(&vreq) {
        let h = hs.map_err(failed)?;
        let mut r = Response::new(Full::new(h.body));
        *r.status_mut() = h.status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(h.content_type));
        return Ok(Some(r));
    }
    v.verify(&vreq).map(|_| None).map_err(failed)
}

/// The answer to a stored (or duplicate) message: the source's answer and the
/// message id; and what it counts as.
fn stored(
    src: &Source,
    appended: Appended,
    unrouted: Option<Unrouted>,
    t0: Instant,
) -> (Resp, IngestOutcome) {
    let outcome = match appended {
        Appended::Stored(id) => {
            if let Some(u) = unrouted {
                MessageUnrouted {
                    source: &src.name,
                    event_type: u.event_type.as_deref(),
                    message_id: id,
                }
                .emit();
            }
            IngestOutcome::Stored
        }
        Appended::Duplicate(_) => IngestOutcome::Duplicate,
    };
    handled(src, outcome, t0, Some(appended.id()));
    let a = &src.answer;
    let mut r = Response::new(Full::new(a.body.clone()));
    *r.status_mut() = a.status;
    if let Some(ct) = &a.content_type {
        r.headers_mut().insert(CONTENT_TYPE, ct.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&appended.id().to_string()) {
        r.headers_mut().insert("hookgate-message-id", v);
    }
    (r, outcome)
}

/// Accepts connections until `shutdown`, then lets requests in progress finish.
/// The head of every request is held to [`crate::listener`]'s limits, with
/// `read_timeout` as the header and idle timeout; over TLS with `tls`.
pub async fn serve(
    listener: TcpListener,
    ingest: Arc<Ingest>,
    tls: Option<crate::tls::Acceptor>,
    shutdown: CancellationToken,
) {
    let limits = Limits {
        header_timeout: ingest.read_timeout,
        max_connections: usize::MAX,
    };
    crate::listener::serve(listener, limits, tls, shutdown, move |req, peer| {
        let ingest = ingest.clone();
        async move { ingest.handle(req, peer).await }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Places are bounded by count and by bytes; a body larger than the byte
    /// bound still gets a place when nothing else waits; places come back on drop.
    #[test]
    fn waiting_is_bounded_by_count_and_bytes() {
        let w = Waiting::new(3, 100 * 1024);
        let a = w.try_hold(60 * 1024).unwrap();
        assert!(w.try_hold(50 * 1024).is_none(), "over the byte bound");
        let b = w.try_hold(40 * 1024).unwrap();
        assert!(w.try_hold(0).is_none(), "no byte left");
        drop((a, b));
        let big = w.try_hold(10 << 20).expect("alone, a large body waits");
        assert!(w.try_hold(1).is_none());
        drop(big);
        let held: Vec<_> = (0..3).map(|_| w.try_hold(1).unwrap()).collect();
        assert!(w.try_hold(1).is_none(), "over the count bound");
        drop(held);
        assert!(w.try_hold(1).is_some());
    }

    #[test]
    fn client_ip_believes_only_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.1.1.1".parse().unwrap());
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let outsider: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(client_ip(outsider, &h, &trusted), outsider);
        let mut spoof = http::HeaderMap::new();
        spoof.insert("x-forwarded-for", "garbage, 10.1.1.1".parse().unwrap());
        assert_eq!(
            client_ip(peer, &spoof, &trusted),
            "10.1.1.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, &http::HeaderMap::new(), &trusted), peer);
    }
}
