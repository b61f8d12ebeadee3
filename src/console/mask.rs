//! What the console never shows: secret and signature headers, credentials in
//! URLs. Also the body views (JSON pretty-printed without reordering, form posts
//! decoded) and the "Copy as curl" text, which carries no secret.

/// The predicate and the mask are shared with ingest's log of refused requests.
pub use crate::ingest::rejects::{is_secret_header, MASKED};

/// A URL without its user info and query values: `https://host:port/path?…`.
pub fn safe_url(u: &url::Url) -> String {
    let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
    if let Some(p) = u.port() {
        s.push_str(&format!(":{p}"));
    }
    s.push_str(u.path());
    if u.query().is_some() {
        s.push_str("?…");
    }
    s
}

/// A JSON text re-indented with two spaces, keys and numbers exactly as sent;
/// `None` when it is not JSON.
pub fn pretty_json(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).ok()?;
    let text = std::str::from_utf8(body).ok()?;
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // An empty object or array stays on one line.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}') | Some(']')) {
                    out.push(chars.next().expect("peeked"));
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// The fields of a urlencoded form body, when the content type says it is one.
pub fn form_fields(content_type: Option<&str>, body: &[u8]) -> Option<Vec<(String, String)>> {
    let ct = content_type?.to_ascii_lowercase();
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return None;
    }
    Some(form_urlencoded::parse(body).into_owned().collect())
}

/// Headers a replayed request should not carry (hop-by-hop, framing, host).
fn hop_header(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "host"
            | "content-length"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
            | "accept-encoding"
            | "expect"
    )
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A curl command sending the message again to `url`, with every secret and
/// signature header's value replaced by [`MASKED`].
pub fn curl(url: &str, headers: &[(String, Vec<u8>)], body: &[u8]) -> String {
    let mut s = format!("curl -X POST {}", shell_quote(url));
    for (k, v) in headers {
        if hop_header(k) {
            continue;
        }
        let v = if is_secret_header(k) {
            MASKED.to_string()
        } else {
            String::from_utf8_lossy(v).into_owned()
        };
        s.push_str(" \\\n  -H ");
        s.push_str(&shell_quote(&format!("{k}: {v}")));
    }
    if !body.is_empty() {
        s.push_str(" \\\n  --data-binary ");
        s.push_str(&shell_quote(&String::from_utf8_lossy(body)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_secret_headers_are_masked() {
        for h in [
            "Authorization",
            "Stripe-Signature",
            "X-Hub-Signature",
            "X-Hub-Signature-256",
            "X-Twilio-Signature",
            "X-Telegram-Bot-Api-Secret-Token",
            "X-Slack-Signature",
            "X-Shopify-Hmac-Sha256",
            "webhook-signature",
            "Cookie",
            "X-Api-Key",
        ] {
            assert!(is_secret_header(h), "{h}");
        }
        for h in [
            "Content-Type",
            "X-GitHub-Event",
            "X-GitHub-Delivery",
            "webhook-id",
            "User-Agent",
        ] {
            assert!(!is_secret_header(h), "{h}");
        }
    }

    #[test]
    fn json_is_indented_in_its_own_order() {
        let p = pretty_json(br#"{"z":1,"a":{"b":[1,2.50,{}],"c":"x,\"y{"},"e":[]}"#).unwrap();
        assert_eq!(
            p,
            "{\n  \"z\": 1,\n  \"a\": {\n    \"b\": [\n      1,\n      2.50,\n      {}\n    ],\n    \"c\": \"x,\\\"y{\"\n  },\n  \"e\": []\n}"
        );
        assert!(pretty_json(b"not json").is_none());
        assert!(pretty_json(b"{\"a\":").is_none());
    }

    #[test]
    fn urls_lose_credentials_and_query() {
        let u: url::Url = "https://user:pw@example.com:8443/hook?token=abc"
            .parse()
            .unwrap();
        assert_eq!(safe_url(&u), "https://example.com:8443/hook?…");
    }

    #[test]
    fn curl_carries_no_secret() {
        let headers = vec![
            ("Content-Type".to_string(), b"application/json".to_vec()),
            ("Stripe-Signature".to_string(), b"t=1,v1=deadbeef".to_vec()),
            ("Authorization".to_string(), b"Bearer hunter2".to_vec()),
            ("Host".to_string(), b"example.com".to_vec()),
        ];
        let c = curl("http://127.0.0.1:8080/in/s", &headers, b"{\"it's\":1}");
        assert!(!c.contains("deadbeef") && !c.contains("hunter2"), "{c}");
        assert!(!c.contains("example.com"));
        assert!(c.contains("'Stripe-Signature: (masked)'"));
        assert!(c.contains(r#"--data-binary '{"it'\''s":1}'"#), "{c}");
    }
}
