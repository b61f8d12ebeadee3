//! The request object a script receives, and what its answer becomes.
//!
//! In: `method`, `path`, `query` (an object of parameters), `headers` (names
//! lower-case; secret and signature headers removed, [`is_secret_header`]),
//! `body` (parsed JSON for a JSON content type, the fields of a form post,
//! else the text), `source`, `event_type`.
//!
//! Out: an object whose `body` is sent (a string as it is, anything else as
//! JSON with `Content-Type: application/json`), whose `headers` are the
//! request's headers, and whose `event_type` is sent as `hookgate-event-type`.
//! `method`, `path` and `query` are the received request's, for the script to
//! read: the destination's URL and method are used.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::select::is_secret_header;

/// The stored header that keeps a request's method, when not `POST`.
pub const METHOD_HEADER: &str = "hookgate-method";
/// The stored header that keeps a request's path and query, when they are not
/// the plain ingest path of its source (`/in/{source}`).
pub const PATH_HEADER: &str = "hookgate-path";

/// The request object given to `transform(request, context)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Request {
    /// `POST`, `GET`, …
    pub method: String,
    /// The path it was received on.
    pub path: String,
    /// The query parameters (a repeated one: an array of its values).
    pub query: Map<String, Value>,
    /// Headers, lower-case, secrets and signatures left out.
    pub headers: Map<String, Value>,
    /// Parsed JSON, form fields, or text.
    pub body: Value,
    /// The source's name.
    pub source: String,
    /// The event type, when known.
    pub event_type: Option<String>,
}

/// The parts of a stored message a request object is made from.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// The source's name.
    pub source: &'a str,
    /// The event type.
    pub event_type: Option<&'a str>,
    /// The Content-Type.
    pub content_type: Option<&'a str>,
    /// The stored headers, decoded.
    pub headers: &'a [(String, Vec<u8>)],
    /// The body.
    pub body: &'a [u8],
}

impl Request {
    /// The request object of a stored message.
    pub fn from_parts(p: Parts<'_>) -> Self {
        let mut method = "POST".to_string();
        let mut target = format!("/in/{}", p.source);
        let mut headers = Map::new();
        for (k, v) in p.headers {
            let k = k.to_ascii_lowercase();
            let v = String::from_utf8_lossy(v).into_owned();
            if k == METHOD_HEADER {
                method = v;
            } else if k == PATH_HEADER {
                target = v;
            } else if k.starts_with("hookgate-") || is_secret_header(&k) {
                continue;
            } else {
                match headers.get_mut(&k) {
                    // A repeated header: its values joined, as HTTP allows.
                    Some(Value::String(s)) => {
                        s.push_str(", ");
                        s.push_str(&v);
                    }
                    _ => {
                        headers.insert(k, Value::String(v));
                    }
                }
            }
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), fields(q)),
            None => (target, Map::new()),
        };
        Request {
            method,
            path,
            query,
            headers,
            body: body(p.content_type, p.body),
            source: p.source.to_string(),
            event_type: p.event_type.map(str::to_string),
        }
    }
}

/// The body as a script sees it.
fn body(content_type: Option<&str>, body: &[u8]) -> Value {
    let ct = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if ct == "application/json" || ct.ends_with("+json") {
        if let Ok(v) = serde_json::from_slice(body) {
            return v;
        }
    } else if ct == "application/x-www-form-urlencoded" {
        return Value::Object(fields(&String::from_utf8_lossy(body)));
    }
    Value::String(String::from_utf8_lossy(body).into_owned())
}

/// URL-encoded fields as an object (a repeated name: an array of its values);
/// secret-looking names left out only for queries is the caller's concern.
fn fields(text: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in form_urlencoded::parse(text.as_bytes()) {
        let v = Value::String(v.into_owned());
        match out.get_mut(k.as_ref()) {
            Some(Value::Array(a)) => a.push(v),
            Some(prev) => {
                let first = prev.take();
                *prev = Value::Array(vec![first, v]);
            }
            None => {
                out.insert(k.into_owned(), v);
            }
        }
    }
    out
}

/// What is delivered after a transformation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The body to send.
    pub body: bytes::Bytes,
    /// Its Content-Type.
    pub content_type: Option<String>,
    /// The headers to send in place of the received ones (before the
    /// destination's own and hookgate's).
    pub headers: Vec<(String, String)>,
    /// The event type to send.
    pub event_type: Option<String>,
}

impl Delivery {
    /// The delivery a script's answer describes; `original_type` is the
    /// message's Content-Type, kept for a string body without one.
    pub fn from_output(out: &Value, original_type: Option<&str>) -> Result<Self, String> {
        let Value::Object(o) = out else {
            return Err("transform must return an object or null".into());
        };
        let mut headers = Vec::new();
        let mut content_type = None;
        match o.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(h)) => {
                for (k, v) in h {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => continue,
                        _ => {
                            return Err(format!("header {k:?}: a header's value must be a string"))
                        }
                    };
                    if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                        return Err(format!("{k:?} is not a valid header name"));
                    }
                    if http::HeaderValue::from_str(&v).is_err() {
                        return Err(format!(
                            "the value of header {k:?} is not a valid header value"
                        ));
                    }
                    if k.eq_ignore_ascii_case("content-type") {
                        content_type = Some(v);
                    } else {
                        headers.push((k.to_ascii_lowercase(), v));
                    }
                }
            }
            Some(_) => return Err("headers must be an object of header names to strings".into()),
        }
        let (body, content_type) = match o.get("body") {
            None | Some(Value::Null) => (bytes::Bytes::new(), content_type),
            Some(Value::String(s)) => (
                bytes::Bytes::from(s.clone().into_bytes()),
                content_type.or_else(|| original_type.map(str::to_string)),
            ),
            Some(v) => (
                bytes::Bytes::from(serde_json::to_vec(v).expect("a JSON value serializes")),
                Some("application/json".to_string()),
            ),
        };
        let event_type = match o.get("event_type") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err("event_type must be a string".into()),
        };
        Ok(Delivery {
            body,
            content_type,
            headers,
            event_type,
        })
    }
}
