//! The gateway's admin API as `hookgate listen` uses it: lease deliveries of a
//! pull destination (`/pull`), report their results (`/ack`), and create, read
//! and delete the destination.
//!
//! The admin token goes only to the gateway, on this client: the forwarder to
//! the local app is a separate client that never sees it. Errors say whether
//! trying again can help ([`GatewayError::is_transient`]); the session
//! decides what to do about it.

use std::collections::HashMap;
use std::time::Duration;

use http::header::{HeaderValue, AUTHORIZATION};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How long a call may take beyond the long-poll wait it asks for.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// One leased delivery, as `/pull` hands it out.
#[derive(Debug, Clone, Deserialize)]
pub struct Item {
    /// The lease: what the result is reported with.
    pub token: String,
    /// The message's id (`msg_…`).
    pub message_id: String,
    /// Which attempt this is (1 for the first).
    #[serde(default)]
    pub attempt: u32,
    /// The source the message came in on.
    #[serde(default)]
    pub source: String,
    /// The message's event type, when it has one.
    #[serde(default)]
    pub event_type: Option<String>,
    /// The original Content-Type.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The headers a push delivery would carry (Content-Type aside); a name
    /// holds a string, or a list of strings when the header repeats.
    #[serde(default)]
    pub headers: serde_json::Map<String, Value>,
    /// The original body: UTF-8 text, or base64 (see `body_encoding`).
    #[serde(default)]
    pub body: String,
    /// `utf8` or `base64`.
    #[serde(default = "utf8")]
    pub body_encoding: String,
}

fn utf8() -> String {
    "utf8".into()
}

/// One result reported to `/ack`. With `result` left out the gateway
/// classifies `status` as a push delivery would, and an answer with neither
/// (only `error`) is a retry.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AckEntry {
    /// The lease.
    pub token: String,
    /// `release`, or `dead` when the local app asked not to retry; else left
    /// to the gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'static str>,
    /// The local app's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why no answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The first bytes of the local answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The local answer's `Retry-After`, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// How long the local exchange took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

impl AckEntry {
    /// Hands a lease back without an attempt.
    pub fn release(token: String) -> Self {
        AckEntry {
            token,
            result: Some("release"),
            ..AckEntry::default()
        }
    }
}

/// Why a call to the gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No answer: connection refused or reset, DNS, TLS, timeout.
    #[error("{0}")]
    Unreachable(String),
    /// An answer other than the expected one.
    #[error("{status} {code}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The API's error code (empty when the answer had none).
        code: String,
        /// The API's message (or the start of the body).
        message: String,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
        /// `data` of the answer (per-result outcomes of a partial ack).
        data: Option<Value>,
    },
    /// A 2xx answer that does not read as the API's.
    #[error("unexpected answer from the gateway: {0}")]
    Protocol(String),
}

impl GatewayError {
    /// Whether the same call may succeed later: no answer, 5xx, 429, 408.
    pub fn is_transient(&self) -> bool {
        match self {
            GatewayError::Unreachable(_) => true,
            GatewayError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            GatewayError::Protocol(_) => false,
        }
    }

    /// The HTTP status, when an answer came.
    pub fn status(&self) -> Option<u16> {
        match self {
            GatewayError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's error code, when an answer came.
    pub fn code(&self) -> &str {
        match self {
            GatewayError::Status { code, .. } => code,
            _ => "",
        }
    }

    /// The wait the gateway asked for (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The innermost cause of a reqwest error ("Connection refused (os error
/// 111)"), after what kind of failure it was.
fn describe(e: &reqwest::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    let mut depth = 0;
    while let Some(s) = inner.source() {
        inner = s;
        depth += 1;
    }
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "error"
    };
    if depth == 0 {
        format!("{kind}: {e}")
    } else {
        format!("{kind}: {inner}")
    }
}

/// A client of one gateway's admin API.
#[derive(Clone)]
pub struct Gateway {
    http: reqwest::Client,
    /// The admin address without a trailing `/`.
    base: String,
    auth: HeaderValue,
}

impl Gateway {
    /// A client of the admin API at `base` (`http[s]://host:port[/prefix]`)
    /// with an admin token, trusting the system's CAs and `ca`. Refuses a
    /// token that cannot be a header value (without repeating it).
    pub fn new(
        base: &url::Url,
        token: &str,
        ca: &[reqwest::Certificate],
    ) -> Result<Gateway, String> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            "--token has characters that cannot be sent in an HTTP header".to_string()
        })?;
        auth.set_sensitive(true);
        let mut http = reqwest::Client::builder();
        for c in ca {
            http = http.add_root_certificate(c.clone());
        }
        let http = http
            .connect_timeout(Duration::from_secs(10))
            // A redirect would be followed without the token, or as a GET:
            // report it instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hookgate-listen/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(Gateway {
            http,
            base: base.as_str().trim_end_matches('/').to_string(),
            auth,
        })
    }

    /// The URL of a destination's path (`suffix` starts with `/` or is empty).
    fn destination_url(&self, name: &str, suffix: &str) -> String {
        format!(
            "{}/api/v1/destinations/{}{suffix}",
            self.base,
            crate::console::layout::path_segment(name)
        )
    }

    /// Sends a call and reads its JSON answer; a status other than `ok`
    /// is an error carrying the API's code and message.
    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
        timeout: Duration,
        ok: u16,
    ) -> Result<Value, GatewayError> {
        let mut req = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone())
            .timeout(timeout);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| GatewayError::Unreachable(describe(&e)))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                crate::dispatch::http::parse_retry_after(v, std::time::SystemTime::now())
            });
        let text = resp
            .bytes()
            .await
            .map_err(|e| GatewayError::Unreachable(describe(&e)))?;
        if status == ok {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&text).map_err(|e| {
                GatewayError::Protocol(format!("{status} with a body that is not JSON ({e})"))
            });
        }
        let v: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        let code = v["error"]["code"].as_str().unwrap_or_default().to_string();
        let message = match v["error"]["message"].as_str() {
            Some(m) => m.to_string(),
            None => String::from_utf8_lossy(&text[..text.len().min(200)])
                .trim()
                .to_string(),
        };
        Err(GatewayError::Status {
            status,
            code,
            message,
            retry_after,
            data: v.get("data").cloned(),
        })
    }

    /// Leases up to `max` deliveries of `dest`, waiting up to `wait` for the
    /// first; the leases last `lease`.
    pub async fn pull(
        &self,
        dest: &str,
        max: usize,
        wait: Duration,
        lease: Duration,
    ) -> Result<Vec<Item>, GatewayError> {
        let body = json!({
            "max": max,
            "wait": format!("{}ms", wait.as_millis()),
            "lease": format!("{}ms", lease.as_millis()),
        });
        let url = self.destination_url(dest, "/pull");
        let v = self
            .call(
                reqwest::Method::POST,
                url,
                Some(body),
                wait + CALL_TIMEOUT,
                200,
            )
            .await?;
        let data = v
            .get("data")
            .cloned()
            .ok_or_else(|| GatewayError::Protocol("a pull answer without `data`".into()))?;
        serde_json::from_value(data)
            .map_err(|e| GatewayError::Protocol(format!("a leased delivery does not read: {e}")))
    }

    /// Reports results; returns the gateway's outcome per token (`recorded`,
    /// `lease_expired`, …). An answer that applied only some of them (4xx
    /// with `data`) is not an error: each result has its outcome.
    pub async fn ack(
        &self,
        dest: &str,
        results: &[AckEntry],
    ) -> Result<HashMap<String, String>, GatewayError> {
        let url = self.destination_url(dest, "/ack");
        let body = json!({ "results": results });
        let data = match self
            .call(reqwest::Method::POST, url, Some(body), CALL_TIMEOUT, 200)
            .await
        {
            Ok(v) => v.get("data").cloned().unwrap_or(Value::Null),
            Err(GatewayError::Status {
                status,
                data: Some(data),
                ..
            }) if (400..500).contains(&status) && data.is_array() => data,
            Err(e) => return Err(e),
        };
        let outcomes = data
            .as_array()
            .ok_or_else(|| GatewayError::Protocol("an ack answer without `data`".into()))?
            .iter()
            .filter_map(|o| {
                Some((
                    o["token"].as_str()?.to_string(),
                    o["outcome"].as_str()?.to_string(),
                ))
            })
            .collect();
        Ok(outcomes)
    }

    /// A destination as the API shows it.
    pub async fn destination(&self, name: &str) -> Result<Value, GatewayError> {
        let url = self.destination_url(name, "");
        self.call(reqwest::Method::GET, url, None, CALL_TIMEOUT, 200)
            .await
    }

    /// Creates a destination (201).
    pub async fn create(&self, definition: Value) -> Result<Value, GatewayError> {
        let url = format!("{}/api/v1/destinations", self.base);
        self.call(
            reqwest::Method::POST,
            url,
            Some(definition),
            CALL_TIMEOUT,
            201,
        )
        .await
    }

    /// Removes a destination made through the API (204).
    pub async fn delete(&self, name: &str) -> Result<(), GatewayError> {
        let url = self.destination_url(name, "");
        self.call(reqwest::Method::DELETE, url, None, CALL_TIMEOUT, 204)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_entries_leave_out_what_they_do_not_say() {
        let v = serde_json::to_value(AckEntry::release("t1".into())).unwrap();
        assert_eq!(v, json!({"token": "t1", "result": "release"}));
        let v = serde_json::to_value(AckEntry {
            token: "t2".into(),
            status: Some(503),
            body: Some("busy".into()),
            retry_after: Some(30),
            duration_ms: Some(12.5),
            ..AckEntry::default()
        })
        .unwrap();
        assert_eq!(
            v,
            json!({"token": "t2", "status": 503, "body": "busy", "retry_after": 30, "duration_ms": 12.5})
        );
    }

    #[test]
    fn items_read_the_contracts_shape() {
        let item: Item = serde_json::from_value(json!({
            "token": "tok",
            "message_id": "msg_1",
            "delivery_id": 123,
            "attempt": 2,
            "source": "telegram",
            "event_type": null,
            "received_at": "2026-12-01T03:00:00.123Z",
            "lease_expires_at": "2026-12-01T03:00:30.123Z",
            "ordering_key": null,
            "priority": "normal",
            "content_type": "application/json",
            "headers": {"webhook-id": "msg_1", "x-twice": ["a", "b"]},
            "body": "eyJ9",
            "body_encoding": "base64"
        }))
        .unwrap();
        assert_eq!(item.attempt, 2);
        assert_eq!(item.event_type, None);
        assert_eq!(item.body_encoding, "base64");
        assert_eq!(item.headers.len(), 2);
    }

    #[test]
    fn transient_errors() {
        let st = |status| GatewayError::Status {
            status,
            code: String::new(),
            message: String::new(),
            retry_after: None,
            data: None,
        };
        assert!(GatewayError::Unreachable("refused".into()).is_transient());
        for s in [500, 502, 503, 504, 429, 408] {
            assert!(st(s).is_transient(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 410, 422] {
            assert!(!st(s).is_transient(), "{s}");
        }
        assert!(!GatewayError::Protocol("html".into()).is_transient());
    }

    #[test]
    fn names_are_one_path_segment() {
        let g = Gateway::new(&"http://gw.example:8081/".parse().unwrap(), "t", &[]).unwrap();
        assert_eq!(
            g.destination_url("dev alice/x", "/pull"),
            "http://gw.example:8081/api/v1/destinations/dev%20alice%2Fx/pull"
        );
        let g = Gateway::new(&"https://gw.example/hookgate".parse().unwrap(), "t", &[]).unwrap();
        assert_eq!(
            g.destination_url("d", ""),
            "https://gw.example/hookgate/api/v1/destinations/d"
        );
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused_without_repeating_it() {
        let e = Gateway::new(&"http://gw".parse().unwrap(), "s3cr3t\nx", &[])
            .err()
            .unwrap();
        assert!(e.contains("--token"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
