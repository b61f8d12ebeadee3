//! `hookgate echo`: a receiver for trying things out. It prints each request
//! (method, path, headers, body) and answers 200; with a secret it also says
//! whether the Standard Webhooks signature holds.

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the echo receiver says of a request's signature.
pub fn signature_verdict(key: &[u8], headers: &http::HeaderMap, body: &[u8], now: i64) -> String {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(sig)) = (
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
    ) else {
        return "signature: MISSING (no webhook-id, webhook-timestamp or webhook-signature)".into();
    };
    let Ok(ts) = ts.parse::<i64>() else {
        return "signature: INVALID (webhook-timestamp is not a number)".into();
    };
    if (now - ts).abs() > 300 {
        return format!("signature: INVALID (timestamp {ts} is more than 5 minutes from now)");
    }
    if crate::signing::verify(key, id, ts, body, sig) {
        "signature: valid".into()
    } else {
        "signature: INVALID".into()
    }
}

/// Why the echo receiver could not run.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    /// `--secret` is not a Standard Webhooks secret (the value is not repeated).
    #[error("--secret must be a Standard Webhooks secret: whsec_ followed by base64 (as `signing_secret` shows it)")]
    Secret,
    /// The address would not bind (or its host name would not resolve).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// Accepting connections failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The key of an echo `--secret`: only the `whsec_` form, so that a secret
/// pasted from somewhere else is refused rather than silently mis-decoded.
pub fn parse_secret(secret: &str) -> Result<Vec<u8>, EchoError> {
    if !secret.starts_with("whsec_") {
        return Err(EchoError::Secret);
    }
    crate::signing::decode_secret(secret).ok_or(EchoError::Secret)
}

/// Runs the echo receiver until the process is stopped. `listen` is
/// `host:port`, where the host may be a name (`localhost:9000`).
pub async fn run(listen: &str, secret: Option<String>) -> Result<(), EchoError> {
    let key = secret
        .as_deref()
        .map(parse_secret)
        .transpose()?
        .map(Arc::new);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| EchoError::Bind {
            addr: listen.to_string(),
            source,
        })?;
    eprintln!(
        "hookgate echo listening on http://{}",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let key = key.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let key = key.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    let mut out = format!("{} {}\n", parts.method, parts.uri);
                    for (k, v) in &parts.headers {
                        out.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
                    }
                    out.push('\n');
                    out.push_str(&String::from_utf8_lossy(&body));
                    out.push('\n');
                    if let Some(k) = &key {
                        let now = crate::store::now_millis() / 1000;
                        out.push_str(&signature_verdict(k, &parts.headers, &body, now));
                        out.push('\n');
                    }
                    out.push_str("----\n");
                    let _ = std::io::stdout().lock().write_all(out.as_bytes());
                    let mut r = Response::new(Full::new(Bytes::from_static(b"ok\n")));
                    *r.status_mut() = StatusCode::OK;
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_must_have_the_whsec_form() {
        assert!(parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(parse_secret("whsec_").is_err(), "no key at all");
        for bad in ["notwhsec", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!"] {
            let e = parse_secret(bad).unwrap_err().to_string();
            assert!(e.contains("whsec_"), "{e}");
            assert!(!e.contains(bad), "the secret is never echoed: {e}");
        }
    }

    #[test]
    fn verdicts() {
        let key = crate::signing::decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let mut h = http::HeaderMap::new();
        assert!(signature_verdict(&key, &h, b"x", 100).contains("MISSING"));
        let sig = crate::signing::sign(&key, "msg_1", 100, b"x");
        h.insert("webhook-id", "msg_1".parse().unwrap());
        h.insert("webhook-timestamp", "100".parse().unwrap());
        h.insert("webhook-signature", sig.parse().unwrap());
        assert_eq!(signature_verdict(&key, &h, b"x", 100), "signature: valid");
        assert!(signature_verdict(&key, &h, b"y", 100).contains("INVALID"));
        assert!(signature_verdict(&key, &h, b"x", 1000).contains("5 minutes"));
    }
}
