//! The last requests ingest refused, with why in plain words: what the console's
//! **Rejected** page and `GET /api/v1/rejected` show, so that "why does my
//! signature fail" is answered by reading, not by guessing.
//!
//! Invariants:
//! - Bounded: at most [`PER_SOURCE`] entries per source and [`TOTAL`] over all
//!   sources (the oldest goes first), plus [`UNKNOWN`] requests for sources that do
//!   not exist (404: wrong paths and scanners, in a ring of their own so they
//!   never push out a real source's entries). An entry holds at most
//!   [`BODY_MAX`] bytes of body, [`HEADERS_MAX`] headers and [`HEADER_BYTES_MAX`]
//!   bytes of them, a path of [`PATH_MAX`] and a reason of [`REASON_MAX`] bytes:
//!   about 13 KiB, so the whole log stays under 15 MiB however hostile the
//!   requests (a usual entry is 1 to 3 KiB).
//! - Written only on the refusal path: an accepted request takes no lock and
//!   allocates nothing here. 503s (the gateway's own backpressure) are not
//!   recorded: they say nothing about the sender, and the metrics count them.
//! - Never a secret: secret and signature headers ([`is_secret_header`]) and
//!   secret-looking query values ([`mask_query`]) are masked before an entry is
//!   kept, and reasons name headers and config keys, never values.
//! - Held in memory only: a restart empties it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::verify::Reason;

/// Entries kept per source.
pub const PER_SOURCE: usize = 100;
/// Entries kept over all sources.
pub const TOTAL: usize = 1000;
/// Entries kept for requests to sources that do not exist.
pub const UNKNOWN: usize = 50;
/// Bytes of body kept.
pub const BODY_MAX: usize = 2048;
/// Headers kept (the rest are counted).
pub const HEADERS_MAX: usize = 64;
/// Bytes kept of all headers' names and values.
pub const HEADER_BYTES_MAX: usize = 8 * 1024;
/// Bytes kept of a header's name.
pub const HEADER_NAME_MAX: usize = 128;
/// Bytes kept of a header's value.
pub const HEADER_VALUE_MAX: usize = 256;
/// Bytes kept of the path and query.
pub const PATH_MAX: usize = 1024;
/// Bytes kept of a reason.
pub const REASON_MAX: usize = 2048;

/// What a masked value is shown as.
pub const MASKED: &str = "(masked)";

/// The secret-header predicate lives beside the selectors, so that the
/// dispatcher (transformations) uses it too.
pub use crate::select::is_secret_header;

/// A query string with the values of secret-looking parameters masked
/// (`hub.verify_token=(masked)`); the rest is kept as sent.
pub fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|piece| match piece.split_once('=') {
            Some((name, _)) => {
                let decoded: String = form_urlencoded::parse(name.as_bytes())
                    .map(|(k, _)| k.into_owned())
                    .collect();
                if is_secret_header(&decoded) {
                    format!("{name}={MASKED}")
                } else {
                    piece.to_string()
                }
            }
            None => piece.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// One header of a refused request, its value masked when secret.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Header {
    /// The name, lower case.
    pub name: String,
    /// The value (at most [`HEADER_VALUE_MAX`] bytes, or [`MASKED`]).
    pub value: String,
}

/// One refused request.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RejectedRequest {
    /// When, in ms since the Unix epoch.
    pub at: i64,
    /// The source, or for an unknown source the name in the path.
    pub source: String,
    /// Whether the source exists.
    pub known: bool,
    /// The method.
    pub method: String,
    /// The path and query (secret query values masked).
    pub path: String,
    /// The client address (as `allow_ips` sees it).
    pub client_ip: String,
    /// The status answered.
    pub status: u16,
    /// The reason's code.
    pub code: &'static str,
    /// The reason in words.
    pub reason: String,
    /// The headers, secrets masked.
    pub headers: Vec<Header>,
    /// Headers left out past [`HEADERS_MAX`].
    pub headers_omitted: usize,
    /// The body's first [`BODY_MAX`] bytes as text (invalid UTF-8 and control
    /// characters replaced), or `None` when it was not read (403, 413, 429…).
    pub body: Option<String>,
    /// The body's whole length, when it was read.
    pub body_len: Option<usize>,
}

/// What a refusal tells the log, besides the request itself.
pub struct Refused<'a> {
    /// The source's name (or the name in the path).
    pub source: &'a str,
    /// Whether that source exists.
    pub known: bool,
    /// The client address.
    pub client_ip: IpAddr,
    /// The status answered.
    pub status: u16,
    /// Why.
    pub reason: Reason,
    /// The body, when it was read.
    pub body: Option<&'a [u8]>,
}

/// At most `max` bytes of `s`, cut on a character boundary, with `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Bytes as text: invalid UTF-8 and control characters (but newlines and tabs)
/// become U+FFFD.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// The headers to keep, secrets masked: at most [`HEADERS_MAX`] of them and
/// [`HEADER_BYTES_MAX`] bytes in all.
fn kept_headers(headers: &http::HeaderMap) -> Vec<Header> {
    let mut kept = Vec::new();
    let mut bytes = 0;
    for (k, v) in headers.iter().take(HEADERS_MAX) {
        let value = if is_secret_header(k.as_str()) {
            MASKED.to_string()
        } else {
            let b = v.as_bytes();
            cut(
                &text(&b[..b.len().min(HEADER_VALUE_MAX + 4)]),
                HEADER_VALUE_MAX,
            )
        };
        let name = cut(k.as_str(), HEADER_NAME_MAX);
        bytes += name.len() + value.len();
        if bytes > HEADER_BYTES_MAX {
            break;
        }
        kept.push(Header { name, value });
    }
    kept
}

impl RejectedRequest {
    /// The entry for a refused request, masked and truncated.
    pub fn capture(at: i64, parts: &http::request::Parts, r: Refused<'_>) -> Self {
        let mut path = parts.uri.path().to_string();
        if let Some(q) = parts.uri.query() {
            path.push('?');
            path.push_str(&mask_query(q));
        }
        let headers = kept_headers(&parts.headers);
        let body = r.body.map(|b| {
            // Replacement characters make a text longer than its bytes: cut it too.
            let t = cut(&text(&b[..b.len().min(BODY_MAX)]), BODY_MAX);
            if b.len() > BODY_MAX && !t.ends_with('…') {
                format!("{t}…")
            } else {
                t
            }
        });
        RejectedRequest {
            at,
            source: cut(r.source, 200),
            known: r.known,
            method: cut(parts.method.as_str(), 32),
            path: cut(&path, PATH_MAX),
            client_ip: r.client_ip.to_string(),
            status: r.status,
            code: r.reason.code,
            reason: cut(&r.reason.text, REASON_MAX),
            headers_omitted: parts.headers.len().saturating_sub(headers.len()),
            headers,
            body,
            body_len: r.body.map(<[u8]>::len),
        }
    }
}

/// An entry and its place in the order of arrival.
type Entry = (u64, Arc<RejectedRequest>);

#[derive(Default)]
struct Rings {
    next: u64,
    by_source: HashMap<String, VecDeque<Entry>>,
    known_len: usize,
    unknown: VecDeque<Entry>,
}

/// The log of refused requests (see the module's invariants).
#[derive(Default)]
pub struct Rejects {
    rings: Mutex<Rings>,
}

impl Rejects {
    /// An empty log.
    pub fn new() -> Self {
        Rejects::default()
    }

    /// Keeps `r`, dropping the oldest entries past the bounds.
    pub fn record(&self, r: RejectedRequest) {
        let r = Arc::new(r);
        let mut g = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        let rings = &mut *g;
        let seq = rings.next;
        rings.next += 1;
        if !r.known {
            rings.unknown.push_back((seq, r));
            if rings.unknown.len() > UNKNOWN {
                rings.unknown.pop_front();
            }
            return;
        }
        let ring = rings.by_source.entry(r.source.clone()).or_default();
        ring.push_back((seq, r));
        rings.known_len += 1;
        if ring.len() > PER_SOURCE {
            ring.pop_front();
            rings.known_len -= 1;
        }
        if rings.known_len > TOTAL {
            rings.drop_oldest();
        }
    }

    /// Up to `limit` entries, newest first, of `source` if given.
    pub fn list(&self, source: Option<&str>, limit: usize) -> Vec<Arc<RejectedRequest>> {
        let mut all: Vec<Entry> = {
            let g = self.rings.lock().unwrap_or_else(|e| e.into_inner());
            let known = g
                .by_source
                .iter()
                .filter(|(s, _)| source.is_none_or(|w| w == s.as_str()));
            let unknown = g
                .unknown
                .iter()
                .filter(|(_, r)| source.is_none_or(|w| w == r.source));
            known
                .flat_map(|(_, ring)| ring.iter())
                .chain(unknown)
                .cloned()
                .collect()
        };
        all.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        all.into_iter().take(limit).map(|(_, r)| r).collect()
    }
}

impl Rings {
    /// Drops the oldest entry of any known source (and its ring once empty).
    fn drop_oldest(&mut self) {
        let oldest = self
            .by_source
            .iter()
            .filter_map(|(s, ring)| ring.front().map(|(seq, _)| (*seq, s.clone())))
            .min();
        if let Some((_, s)) = oldest {
            if let Some(ring) = self.by_source.get_mut(&s) {
                ring.pop_front();
                self.known_len -= 1;
                if ring.is_empty() {
                    self.by_source.remove(&s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &[u8])]) -> http::request::Parts {
        let mut b = http::Request::builder().method("POST").uri(uri);
        for (k, v) in headers {
            b = b.header(*k, http::HeaderValue::from_bytes(v).unwrap());
        }
        b.body(()).unwrap().into_parts().0
    }

    fn entry(source: &str, known: bool, body: Option<&[u8]>) -> RejectedRequest {
        RejectedRequest::capture(
            1,
            &parts("/in/x", &[]),
            Refused {
                source,
                known,
                client_ip: "127.0.0.1".parse().unwrap(),
                status: 401,
                reason: Reason::mismatch("no"),
                body,
            },
        )
    }

    #[test]
    fn rings_are_bounded_per_source_overall_and_for_unknown_sources() {
        let log = Rejects::new();
        for i in 0..(PER_SOURCE + 10) {
            log.record(entry("a", true, Some(format!("{i}").as_bytes())));
        }
        let a = log.list(Some("a"), usize::MAX);
        assert_eq!(a.len(), PER_SOURCE);
        assert_eq!(
            a[0].body.as_deref(),
            Some(format!("{}", PER_SOURCE + 9).as_str()),
            "newest first"
        );
        // Many sources: the total bound drops the oldest of any source, so `a` goes first.
        for s in 0..TOTAL {
            log.record(entry(&format!("s{s}"), true, None));
        }
        assert_eq!(log.list(None, usize::MAX).len(), TOTAL);
        assert!(log.list(Some("a"), usize::MAX).is_empty());
        for _ in 0..(UNKNOWN * 3) {
            log.record(entry("nope", false, None));
        }
        assert_eq!(log.list(Some("nope"), usize::MAX).len(), UNKNOWN);
        assert_eq!(
            log.list(None, usize::MAX).len(),
            TOTAL + UNKNOWN,
            "unknown ones push out none"
        );
        assert_eq!(log.list(None, 3).len(), 3);
    }

    #[test]
    fn bodies_headers_and_paths_are_truncated_and_masked() {
        let big = vec![b'a'; 10_000];
        let long_value = vec![b'v'; 5000];
        let p = parts(
            "/in/x/%3Cscript%3E?hub.verify_token=hunter2&n=1",
            &[
                ("x-twilio-signature", b"c2VjcmV0"),
                ("authorization", b"Bearer hunter2"),
                ("x-long", &long_value),
                ("x-binary", b"\x80\xff"),
            ],
        );
        let mut body = big.clone();
        body[0] = 0;
        body[1] = 0xff;
        let r = RejectedRequest::capture(
            1,
            &p,
            Refused {
                source: "x",
                known: true,
                client_ip: "10.1.2.3".parse().unwrap(),
                status: 401,
                reason: Reason::mismatch("r".repeat(10_000)),
                body: Some(&body),
            },
        );
        assert_eq!(r.path, "/in/x/%3Cscript%3E?hub.verify_token=(masked)&n=1");
        let h = |n: &str| {
            r.headers
                .iter()
                .find(|h| h.name == n)
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(h("x-twilio-signature"), MASKED);
        assert_eq!(h("authorization"), MASKED);
        assert!(h("x-long").len() <= HEADER_VALUE_MAX + '…'.len_utf8());
        assert_eq!(h("x-binary"), "\u{FFFD}\u{FFFD}");
        let b = r.body.clone().unwrap();
        assert!(b.starts_with("\u{FFFD}\u{FFFD}aaa"));
        assert!(b.ends_with('…'));
        assert!(b.len() <= BODY_MAX + '…'.len_utf8());
        assert_eq!(r.body_len, Some(10_000));
        assert!(r.reason.len() <= REASON_MAX + '…'.len_utf8());
        let debug = format!("{r:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("c2VjcmV0"));
    }

    #[test]
    fn many_headers_are_counted_not_kept() {
        let names: Vec<String> = (0..200).map(|i| format!("x-h{i}")).collect();
        let hs: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
        let r = RejectedRequest::capture(
            1,
            &parts("/in/x", &hs),
            Refused {
                source: "x",
                known: true,
                client_ip: "127.0.0.1".parse().unwrap(),
                status: 413,
                reason: Reason::new("too_large", "big"),
                body: None,
            },
        );
        assert_eq!(r.headers.len(), HEADERS_MAX);
        assert_eq!(r.headers_omitted, 200 - HEADERS_MAX);
        assert!(r.body.is_none());
    }

    #[test]
    fn secret_query_values_are_masked_however_written() {
        assert_eq!(
            mask_query("hub.mode=subscribe&hub%2Everify_token=x&api_key=y&flag&sig=&a=1"),
            "hub.mode=subscribe&hub%2Everify_token=(masked)&api_key=(masked)&flag&sig=&a=1"
        );
        assert_eq!(mask_query("Signature=abc"), "Signature=(masked)");
    }

    #[test]
    fn secret_names_are_recognised() {
        for n in [
            "Authorization",
            "X-Twilio-Signature",
            "X-Telegram-Bot-Api-Secret-Token",
            "Stripe-Signature",
            "x-api-key",
        ] {
            assert!(is_secret_header(n), "{n}");
        }
        for n in ["content-type", "user-agent", "x-github-event"] {
            assert!(!is_secret_header(n), "{n}");
        }
    }
}
