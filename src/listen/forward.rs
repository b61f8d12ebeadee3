//! Forwards one leased delivery to the local app as a push delivery would send
//! it: POST, the original body byte for byte, its Content-Type, and the headers
//! the gateway handed out with it (the Standard Webhooks signature among
//! them), through push delivery's own client and exchange
//! ([`crate::dispatch::http::exchange`]: no proxy, no redirects, the answer's
//! status, `Retry-After`, `webhook-delivery: abort-message` and first 4 KiB).
//!
//! That client is not the gateway's: the admin token is never on it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};

use super::client::{AckEntry, Item};
use crate::dispatch::client::DeliveryClient;
use crate::dispatch::http::{connection_header, exchange, Outcome};

/// The request headers to the local app: the delivery's headers (a list
/// value repeats the header), its Content-Type, and push delivery's
/// User-Agent. Names or values that cannot be sent are left out.
pub fn request_headers(item: &Item) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(item.headers.len() + 2);
    for (name, value) in &item.headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        if connection_header(name.as_str()) {
            continue;
        }
        let values: Vec<&str> = match value {
            serde_json::Value::String(s) => vec![s.as_str()],
            serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => continue,
        };
        for v in values {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.append(name.clone(), v);
            }
        }
    }
    if let Some(ct) = item
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert(CONTENT_TYPE, ct);
    }
    // As push delivery: always its own, whatever came with the delivery.
    h.insert(
        USER_AGENT,
        HeaderValue::from_static(crate::dispatch::http::USER_AGENT),
    );
    h
}

/// The original body bytes of a delivery.
pub fn decode_body(item: &Item) -> Result<Bytes, String> {
    use base64::Engine as _;
    match item.body_encoding.as_str() {
        "utf8" => Ok(Bytes::from(item.body.clone().into_bytes())),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(&item.body)
            .map(Bytes::from)
            .map_err(|e| format!("the gateway sent a body that is not valid base64 ({e})")),
        other => Err(format!(
            "the gateway sent a body in an unknown encoding {other:?}"
        )),
    }
}

/// The result to report for the lease `token` after an exchange that took
/// `took`. The gateway classifies the status itself (it knows whether the
/// destination retries 4xx); only an explicit abort of a failed delivery is
/// decided here.
pub fn ack_entry(o: &Outcome, took: Duration, token: &str) -> AckEntry {
    let failed = !o.status.is_some_and(|s| (200..300).contains(&s));
    AckEntry {
        token: token.to_string(),
        result: (o.abort && failed && o.status.is_some()).then_some("dead"),
        status: o.status,
        error: o.error.clone(),
        body: o
            .body
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned()),
        retry_after: o.retry_after.map(|d| d.as_secs()),
        duration_ms: Some(took.as_secs_f64() * 1000.0),
    }
}

/// Sends deliveries to the local app.
#[derive(Clone)]
pub struct Forwarder {
    client: DeliveryClient,
    uri: http::Uri,
    timeout: Duration,
}

impl Forwarder {
    /// A forwarder to `url`, each exchange bounded by `timeout`.
    pub fn new(url: &url::Url, timeout: Duration) -> Result<Forwarder, String> {
        let uri = url
            .as_str()
            .parse()
            .map_err(|e| format!("--forward-to {:?} cannot be used ({e})", url.as_str()))?;
        Ok(Forwarder {
            // The local app is usually on a private address: allowed here.
            client: DeliveryClient::new(false),
            uri,
            timeout,
        })
    }

    /// Forwards one delivery and reads the answer, within the timeout;
    /// returns it with how long it took.
    pub async fn forward(&self, item: &Item) -> (Outcome, Duration) {
        let started = Instant::now();
        let outcome = match decode_body(item) {
            Ok(body) => {
                exchange(
                    &self.client,
                    &self.uri,
                    request_headers(item),
                    body,
                    self.timeout,
                )
                .await
            }
            Err(e) => Outcome {
                error: Some(e),
                ..Outcome::default()
            },
        };
        (outcome, started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: serde_json::Value) -> Item {
        let mut base = json!({"token": "t", "message_id": "msg_1", "body": "{}"});
        base.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn headers_are_the_deliverys_with_its_content_type() {
        let it = item(json!({
            "content_type": "application/json; charset=utf-8",
            "headers": {
                "webhook-id": "msg_1",
                "webhook-timestamp": "1796094245",
                "webhook-signature": "v1,abc=",
                "hookgate-attempt": "2",
                "x-telegram-bot-api-secret-token": "s",
                "x-twice": ["a", "b"],
                // Never from the item: these belong to a connection or the client.
                "host": "gw.example",
                "content-length": "99",
                "transfer-encoding": "chunked",
                "connection": "close",
                "content-type": "text/plain",
                // Cannot be sent: left out, not fatal.
                "bad name": "x",
                "x-bad-value": "a\nb",
                "x-number": 7,
            }
        }));
        let h = request_headers(&it);
        assert_eq!(h["content-type"], "application/json; charset=utf-8");
        assert_eq!(h["webhook-id"], "msg_1");
        assert_eq!(h["webhook-timestamp"], "1796094245");
        assert_eq!(h["webhook-signature"], "v1,abc=");
        assert_eq!(h["hookgate-attempt"], "2");
        assert_eq!(h["x-telegram-bot-api-secret-token"], "s");
        let twice: Vec<_> = h.get_all("x-twice").iter().collect();
        assert_eq!(twice, ["a", "b"]);
        assert_eq!(h["user-agent"], crate::dispatch::http::USER_AGENT);
        for gone in [
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "x-bad-value",
            "x-number",
            "authorization",
        ] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h.get_all("content-type").iter().count(), 1);
    }

    #[test]
    fn without_a_content_type_none_is_made_up() {
        let h = request_headers(&item(json!({"headers": {"user-agent": "TelegramBot"}})));
        assert!(!h.contains_key("content-type"));
        assert_eq!(
            h["user-agent"],
            crate::dispatch::http::USER_AGENT,
            "push delivery's, as for push"
        );
        assert_eq!(h.get_all("user-agent").iter().count(), 1);
    }

    #[test]
    fn bodies_are_decoded_to_the_original_bytes() {
        let text = item(json!({"body": "héllo", "body_encoding": "utf8"}));
        assert_eq!(decode_body(&text).unwrap(), "héllo".as_bytes());
        let binary = item(json!({"body": "AP8Q", "body_encoding": "base64"}));
        assert_eq!(decode_body(&binary).unwrap(), &[0x00, 0xff, 0x10][..]);
        let bad = item(json!({"body": "!!", "body_encoding": "base64"}));
        assert!(decode_body(&bad).unwrap_err().contains("base64"));
        let odd = item(json!({"body": "x", "body_encoding": "rot13"}));
        assert!(decode_body(&odd).unwrap_err().contains("rot13"));
    }

    #[test]
    fn answers_become_results_the_gateway_classifies() {
        let took = Duration::from_micros(12_500);
        let ok = Outcome {
            status: Some(200),
            body: Some(Bytes::from_static(b"fine")),
            ..Outcome::default()
        };
        let e = ack_entry(&ok, took, "t");
        assert_eq!(e.token, "t");
        assert_eq!(e.result, None);
        assert_eq!(e.status, Some(200));
        assert_eq!(e.body.as_deref(), Some("fine"));
        assert_eq!(e.duration_ms, Some(12.5));
        let busy = Outcome {
            status: Some(429),
            retry_after: Some(Duration::from_secs(30)),
            ..Outcome::default()
        };
        assert_eq!(ack_entry(&busy, took, "t").retry_after, Some(30));
        assert_eq!(ack_entry(&busy, took, "t").result, None);
        let refused = Outcome {
            error: Some("connection failed: Connection refused".into()),
            ..Outcome::default()
        };
        let e = ack_entry(&refused, took, "t");
        assert_eq!((e.status, e.result), (None, None));
        assert!(e.error.is_some());
        let abort = Outcome {
            status: Some(500),
            abort: true,
            ..Outcome::default()
        };
        assert_eq!(ack_entry(&abort, took, "t").result, Some("dead"));
        let abort_ok = Outcome {
            status: Some(200),
            abort: true,
            ..Outcome::default()
        };
        assert_eq!(
            ack_entry(&abort_ok, took, "t").result,
            None,
            "a 2xx is a success"
        );
        let binary = Outcome {
            status: Some(500),
            body: Some(Bytes::from_static(&[0xff, b'x'])),
            ..Outcome::default()
        };
        assert_eq!(
            ack_entry(&binary, took, "t").body.as_deref(),
            Some("\u{fffd}x")
        );
    }

    /// The exchange itself is push delivery's; this checks the wiring to a
    /// real local server: the request as sent, and the answer as read.
    #[tokio::test]
    async fn forwards_to_a_real_local_server() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // The head, then the 3-byte body.
            loop {
                let n = c.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                req.extend_from_slice(&buf[..n]);
                let head = req.windows(4).position(|w| w == b"\r\n\r\n");
                if head.is_some_and(|p| req.len() >= p + 4 + 3) {
                    break;
                }
            }
            c.write_all(b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\ncontent-length: 4\r\n\r\nbusy")
                .await
                .unwrap();
            req
        });
        let url: url::Url = format!("http://{addr}/hook").parse().unwrap();
        let f = Forwarder::new(&url, Duration::from_secs(5)).unwrap();
        let it = item(json!({
            "body": "AP8Q",
            "body_encoding": "base64",
            "content_type": "application/octet-stream",
            "headers": {"webhook-id": "msg_1"},
        }));
        let (o, took) = f.forward(&it).await;
        assert_eq!(o.status, Some(503));
        assert_eq!(o.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(o.body.as_deref(), Some(&b"busy"[..]));
        assert!(took > Duration::ZERO);
        let req = server.await.unwrap();
        let text = String::from_utf8_lossy(&req).to_ascii_lowercase();
        assert!(text.starts_with("post /hook http/1.1"), "{text}");
        assert!(text.contains("webhook-id: msg_1"), "{text}");
        assert!(
            text.contains("content-type: application/octet-stream"),
            "{text}"
        );
        assert!(req.ends_with(&[0x00, 0xff, 0x10]), "the original bytes");
    }

    #[tokio::test]
    async fn a_local_app_that_is_down_is_an_error_to_retry() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url: url::Url = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let f = Forwarder::new(&url, Duration::from_secs(5)).unwrap();
        let (o, _) = f.forward(&item(json!({}))).await;
        assert_eq!(o.status, None);
        assert!(
            o.error.as_deref().unwrap().starts_with("connection failed"),
            "{o:?}"
        );
        let e = ack_entry(&o, Duration::ZERO, "t");
        assert_eq!((e.status, e.result), (None, None), "the gateway retries it");
    }
}
