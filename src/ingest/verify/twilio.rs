//! Twilio (SMS, voice, WhatsApp via Twilio): `X-Twilio-Signature` is the base64
//! HMAC-SHA1, keyed with the account's auth token, of the full URL Twilio called
//! followed by every POST parameter as `name` + `value`, sorted by name and then
//! value (a repeated name is signed once per distinct value). A JSON body is bound
//! instead through the `bodySHA256` query parameter (hex SHA-256 of the body), and
//! is signed with no parameters. With `X-Twilio-Webhooks-Signature-Settings:
//! ...,algorithm=HMAC_SHA256` the HMAC is SHA-256 (a shared key in place of the token).
//!
//! The URL: `url` from the config (the public URL behind a proxy), plus whatever
//! follows `/in/{source}` in the request path, plus the request's own query
//! string; without `url`, the request's `Host`, path and query, with the scheme
//! of `X-Forwarded-Proto` or else both `https` and `http`. As twilio-python
//! does, each URL is tried with and without its port (the default port added
//! when it has none), because Twilio is not consistent about it.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::{
    any_mac_matches, ct_eq, raw_keys, reason, BuildError, Key, Reason, Rejected, Request, Verifier,
    B64_LENIENT,
};
use crate::config::{HmacAlgorithm, Secret};

/// The signature header.
pub const SIGNATURE: &str = "x-twilio-signature";
/// The header that names another algorithm (and a shared key).
pub const SETTINGS: &str = "x-twilio-webhooks-signature-settings";

/// Parses an `application/x-www-form-urlencoded` body strictly: `+` is a space,
/// `%XX` a byte (a malformed escape stays as written, as browsers and Python do),
/// empty pieces are skipped, a piece without `=` has an empty value. `None` when a
/// decoded name or value is not UTF-8: Twilio signs text, and mapping bad bytes
/// to U+FFFD would let two different bodies share a signature.
pub fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    fn decode(part: &[u8]) -> Option<String> {
        let plus: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        let bytes: Vec<u8> = percent_encoding::percent_decode(&plus).collect();
        String::from_utf8(bytes).ok()
    }
    body.split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (k, v) = match piece.iter().position(|&b| b == b'=') {
                Some(i) => (&piece[..i], &piece[i + 1..]),
                None => (piece, &b""[..]),
            };
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// The parameter text Twilio appends to the URL: pairs sorted by name, then by
/// value (code point order), each distinct pair once, written `namevalue`.
pub fn canonical_params(mut params: Vec<(String, String)>) -> Vec<u8> {
    params.sort_unstable();
    params.dedup();
    let mut out = Vec::new();
    for (k, v) in &params {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// The two forms of a URL Twilio may have signed: without its port, and with one
/// (the one it has, or the scheme's default: 443 for https, 80 otherwise).
pub fn url_variants(url: &str) -> [String; 2] {
    let Some(scheme_end) = url.find("://") else {
        return [url.to_string(), url.to_string()];
    };
    let auth_start = scheme_end + 3;
    let auth_end = url[auth_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| auth_start + i);
    let authority = &url[auth_start..auth_end];
    // The port is after the last ':' of host:port, past any userinfo and IPv6 brackets.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let port_colon = match host_port.rfind(':') {
        Some(i) if !host_port[i..].contains(']') => Some(i),
        _ => None,
    };
    let port = port_colon.map(|i| &host_port[i + 1..]);
    let has_port = port.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let (head, tail) = (&url[..auth_start], &url[auth_end..]);
    if has_port {
        let cut = auth_start + host_start + port_colon.unwrap_or(host_port.len());
        [format!("{}{}", &url[..cut], tail), url.to_string()]
    } else {
        let default = if url[..scheme_end].eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        // A bare "host:" loses its empty port either way.
        let host = authority.strip_suffix(':').unwrap_or(authority);
        [
            format!("{head}{host}{tail}"),
            format!("{head}{host}:{default}{tail}"),
        ]
    }
}

/// The algorithm of `X-Twilio-Webhooks-Signature-Settings` (`key=..,algorithm=..`):
/// SHA-1 when absent, `None` for one this build does not know (refused).
pub fn parse_settings(value: Option<&str>) -> Option<HmacAlgorithm> {
    let Some(value) = value else {
        return Some(HmacAlgorithm::Sha1);
    };
    for part in value.split(',') {
        if let Some((name, v)) = part.split_once('=') {
            if name.trim() == "algorithm" && !v.trim().is_empty() {
                return match v.trim().to_ascii_uppercase().as_str() {
                    "HMAC_SHA1" => Some(HmacAlgorithm::Sha1),
                    "HMAC_SHA256" => Some(HmacAlgorithm::Sha256),
                    _ => None,
                };
            }
        }
    }
    Some(HmacAlgorithm::Sha1)
}

/// Checks `X-Twilio-Signature`.
pub struct Twilio {
    keys: Vec<Key>,
    url: Option<String>,
}

impl Twilio {
    /// A verifier for any of `keys` (auth tokens); `url` is the source's public
    /// URL as Twilio calls it, without query string.
    pub fn new(keys: Vec<Secret>, url: Option<&str>) -> Result<Self, BuildError> {
        if let Some(u) = url {
            let parsed = url::Url::parse(u).map_err(|source| BuildError::TwilioUrl {
                url: u.to_string(),
                source,
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(BuildError::TwilioNotHttp(u.to_string()));
            }
            if parsed.query().is_some() || parsed.fragment().is_some() {
                return Err(BuildError::TwilioQuery(u.to_string()));
            }
        }
        Ok(Twilio {
            keys: raw_keys(&keys),
            url: url.map(str::to_string),
        })
    }

    /// The URLs (without query) the request may have been sent to.
    fn bases(&self, req: &Request<'_>) -> Vec<String> {
        let path = req.uri.path();
        if let Some(base) = &self.url {
            // What follows /in/{source} is appended: Twilio calling {url}/voice
            // reaches /in/{source}/voice through the proxy.
            let rest = path
                .strip_prefix("/in/")
                .and_then(|r| r.find('/').map(|i| &r[i..]))
                .unwrap_or("");
            return vec![if rest.is_empty() {
                base.clone()
            } else {
                format!("{}{rest}", base.trim_end_matches('/'))
            }];
        }
        let host = req
            .header("host")
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        let Some(host) = host.filter(|h| !h.is_empty()) else {
            return Vec::new();
        };
        let proto = req
            .header("x-forwarded-proto")
            .and_then(|p| p.split(',').next())
            .map(|p| p.trim().to_ascii_lowercase());
        let schemes: &[&str] = match proto.as_deref() {
            Some("https") => &["https"],
            Some("http") => &["http"],
            _ => &["https", "http"],
        };
        schemes
            .iter()
            .map(|s| format!("{s}://{host}{path}"))
            .collect()
    }

    /// The parameter text to sign, or `None` when the body cannot be what Twilio signed.
    fn params(req: &Request<'_>) -> Option<Vec<u8>> {
        let query = req.uri.query().unwrap_or("");
        let body_hash = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "bodySHA256")
            .map(|(_, v)| v.into_owned());
        if let Some(want) = body_hash {
            // JSON bodies: the hash in the (signed) URL binds the body.
            let got = hex::encode(Sha256::digest(req.body));
            return ct_eq(got.as_bytes(), want.as_bytes()).then(Vec::new);
        }
        if req.body.is_empty() {
            return Some(Vec::new());
        }
        let ct = req.header("content-type").unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        let is_form =
            mime.is_empty() || mime.eq_ignore_ascii_case("application/x-www-form-urlencoded");
        // Any other body would be unsigned: the signature covers only the URL.
        if !is_form {
            return None;
        }
        parse_form(req.body).map(canonical_params)
    }
}

impl Verifier for Twilio {
    fn verify(&self, req: &Request<'_>) -> Result<(), Rejected> {
        let alg = parse_settings(req.signature_header(SETTINGS)).ok_or(Rejected::UNAUTHORIZED)?;
        let sig = req
            .signature_header(SIGNATURE)
            .and_then(|s| B64_LENIENT.decode(s.trim()).ok())
            .ok_or(Rejected::UNAUTHORIZED)?;
        let params = Self::params(req).ok_or(Rejected::UNAUTHORIZED)?;
        let query = req.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let mut ok = false;
        for base in self.bases(req) {
            for url in url_variants(&format!("{base}{query}")) {
                ok |= any_mac_matches(
                    alg,
                    &self.keys,
                    &[url.as_bytes(), &params],
                    std::slice::from_ref(&sig),
                );
            }
        }
        if ok {
            Ok(())
        } else {
            Err(Rejected::UNAUTHORIZED)
        }
    }

    fn explain(&self, req: &Request<'_>) -> Reason {
        if parse_settings(req.signature_header(SETTINGS)).is_none() {
            return Reason::malformed(
                "X-Twilio-Webhooks-Signature-Settings",
                "`algorithm=HMAC_SHA1` or `algorithm=HMAC_SHA256`",
            );
        }
        let sig = reason::header(
            req,
            SIGNATURE,
            "X-Twilio-Signature",
            "Twilio",
            "base64",
            |s| B64_LENIENT.decode(s.trim()).ok(),
        );
        if let Err(r) = sig {
            return r;
        }
        if Self::params(req).is_none() {
            return unsigned_body(req);
        }
        self.url_mismatch(req)
    }
}

/// Why the body of a Twilio request cannot be what Twilio signed.
fn unsigned_body(req: &Request<'_>) -> Reason {
    let query = req.uri.query().unwrap_or("");
    if form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "bodySHA256") {
        return Reason::new(
            "body_changed",
            "the body's SHA-256 is not the `bodySHA256` of the URL: the body was changed on the way",
        );
    }
    let ct = req.header("content-type").unwrap_or("");
    if ct.is_empty()
        || ct
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    {
        return Reason::malformed("form body", "its names and values are not UTF-8 text");
    }
    Reason::new(
        "unsigned_body",
        format!(
            "the body is `{}`, not a form post, and the URL has no `bodySHA256`: Twilio signs form posts, \
             and JSON bodies only through `bodySHA256`",
            ct.chars().take(100).collect::<String>()
        ),
    )
}

impl Twilio {
    /// The signature did not match: over which URL it was computed, and what to set.
    fn url_mismatch(&self, req: &Request<'_>) -> Reason {
        let query = req
            .uri
            .query()
            .map(|q| format!("?{}", crate::ingest::rejects::mask_query(q)))
            .unwrap_or_default();
        let urls: Vec<String> = self
            .bases(req)
            .iter()
            .map(|b| format!("{b}{query}"))
            .collect();
        let Some(first) = urls.first() else {
            return Reason::mismatch(
                "the request has no `Host` to rebuild the URL Twilio called: set `url` on the source \
                 to the exact public URL configured in Twilio",
            );
        };
        let text = if self.url.is_some() {
            format!(
                "the X-Twilio-Signature did not match a signature computed over the URL {first} \
                 (the source's `url`, with the form parameters): Twilio signs the exact URL configured \
                 for the number or service, so `url` must be that URL (scheme, host, port and path); \
                 else the auth token is not the account's"
            )
        } else {
            let others: Vec<&str> = urls[1..].iter().map(String::as_str).collect();
            let or = if others.is_empty() {
                String::new()
            } else {
                format!(" (or {})", others.join(", "))
            };
            format!(
                "the X-Twilio-Signature did not match a signature computed over the URL {first}{or} \
                 (with the form parameters); Twilio signs the exact public URL it calls: set `url` \
                 on the source to that URL"
            )
        };
        Reason::mismatch(text)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Req;
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use proptest::prelude::*;

    // twilio-python `tests/unit/test_request_validator.py`: token "12345", the
    // URI, the parameters and each expected signature below.
    const TOKEN: &str = "12345";
    const FORM: &str = "CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309&To=%2B18005551212&Caller=%2B14158675309";
    const EXPECTED: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    const FORM_CT: &str = "application/x-www-form-urlencoded";

    fn twilio(url: Option<&str>) -> Twilio {
        Twilio::new(vec![Secret::new(TOKEN)], url).unwrap()
    }

    fn form_req(uri: &str, body: &str, sig: &str) -> Req {
        Req::post(uri, body.as_bytes())
            .header("Content-Type", FORM_CT)
            .header("X-Twilio-Signature", sig)
    }

    fn ok(v: &Twilio, r: Req) -> bool {
        v.verify(&r.view()).is_ok()
    }

    #[test]
    fn compute_signature_with_url_config() {
        let v = twilio(Some("https://mycompany.com/myapp.php"));
        // test_compute_signature / test_validation: the query is the request's own.
        assert!(ok(&v, form_req("/in/tw?foo=1&bar=2", FORM, EXPECTED)));
        // The same parameters in another order are the same signature.
        let shuffled = "Caller=%2B14158675309&To=%2B18005551212&From=%2B14158675309&Digits=1234&CallSid=CA1234567890ABCDE";
        assert!(ok(&v, form_req("/in/tw?foo=1&bar=2", shuffled, EXPECTED)));
        // Tampered value, missing parameter, extra parameter, other query, wrong token.
        let tampered = FORM.replace("Digits=1234", "Digits=1235");
        assert!(!ok(&v, form_req("/in/tw?foo=1&bar=2", &tampered, EXPECTED)));
        let missing = FORM.replace("&Digits=1234", "");
        assert!(!ok(&v, form_req("/in/tw?foo=1&bar=2", &missing, EXPECTED)));
        assert!(!ok(
            &v,
            form_req("/in/tw?foo=1&bar=2", &format!("{FORM}&X=1"), EXPECTED)
        ));
        assert!(!ok(&v, form_req("/in/tw?foo=1&bar=3", FORM, EXPECTED)));
        assert!(!ok(&v, form_req("/in/tw", FORM, EXPECTED)));
        let other = Twilio::new(
            vec![Secret::new("54321")],
            Some("https://mycompany.com/myapp.php"),
        )
        .unwrap();
        assert!(!ok(&other, form_req("/in/tw?foo=1&bar=2", FORM, EXPECTED)));
        // Rotation: the right token among others.
        let both = Twilio::new(
            vec![Secret::new("54321"), Secret::new(TOKEN)],
            Some("https://mycompany.com/myapp.php"),
        )
        .unwrap();
        assert!(ok(&both, form_req("/in/tw?foo=1&bar=2", FORM, EXPECTED)));
    }

    #[test]
    fn a_mismatch_names_the_url_signed_and_what_to_set() {
        let v = twilio(Some("https://mycompany.com/myapp.php"));
        let r = v.explain(&form_req("/in/tw?foo=1", FORM, "c2lnbmF0dXJl").view());
        assert_eq!(r.code, "signature_mismatch");
        assert!(
            r.text
                .contains("over the URL https://mycompany.com/myapp.php?foo=1"),
            "{}",
            r.text
        );
        assert!(r.text.contains("the source's `url`"), "{}", r.text);
        assert!(
            !r.text.contains("c2lnbmF0dXJl"),
            "the received signature is not shown"
        );
        let v = twilio(None);
        let req =
            form_req("/in/tw?auth_token=x", FORM, EXPECTED).header("Host", "gw.internal:8080");
        let r = v.explain(&req.view());
        assert!(
            r.text
                .contains("https://gw.internal:8080/in/tw?auth_token=(masked) (or http://"),
            "{}",
            r.text
        );
        assert!(r.text.contains("set `url` on the source"), "{}", r.text);
        let json = Req::post("/in/tw", b"{}")
            .header("Content-Type", "application/json")
            .header("X-Twilio-Signature", EXPECTED);
        assert_eq!(v.explain(&json.view()).code, "unsigned_body");
        let r = v.explain(
            &Req::post("/in/tw", b"")
                .header("X-Twilio-Signature", "!!")
                .view(),
        );
        assert_eq!(r.code, "malformed_header");
    }

    #[test]
    fn repeated_keys_are_sorted_by_value() {
        // test_compute_signature_duplicate_multi_dict / _query_dict.
        let v = twilio(Some("https://mycompany.com/myapp.php"));
        let body = "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234";
        assert!(ok(
            &v,
            form_req("/in/tw?foo=1&bar=2", body, "IK+Dwps556ElfBT0I3Rgjkr1wJU=")
        ));
        let reordered = "Digits=1234&Sid=CA123&Digits=5678&SidAccount=AC123";
        assert!(ok(
            &v,
            form_req(
                "/in/tw?foo=1&bar=2",
                reordered,
                "IK+Dwps556ElfBT0I3Rgjkr1wJU="
            )
        ));
    }

    #[test]
    fn ports_are_tried_both_ways() {
        // test_validation_removes_port_on_https: Twilio signed without the port.
        let v = twilio(Some("https://mycompany.com:1234/myapp.php"));
        assert!(ok(&v, form_req("/in/tw?foo=1&bar=2", FORM, EXPECTED)));
        // test_validation_removes_port_on_http: signed with the port (1234).
        let v = twilio(Some("http://mycompany.com:1234/myapp.php"));
        assert!(ok(
            &v,
            form_req("/in/tw?foo=1&bar=2", FORM, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=")
        ));
        // test_validation_adds_port_on_https / _on_http: signed with :443 / :80.
        let v = twilio(Some("https://mycompany.com/myapp.php"));
        assert!(ok(
            &v,
            form_req("/in/tw?foo=1&bar=2", FORM, "kvajT1Ptam85bY51eRf/AJRuM3w=")
        ));
        let v = twilio(Some("http://mycompany.com/myapp.php"));
        assert!(ok(
            &v,
            form_req("/in/tw?foo=1&bar=2", FORM, "0ZXoZLH/DfblKGATFgpif+LLRf4=")
        ));
        // But not the https signature over http.
        assert!(!ok(&v, form_req("/in/tw?foo=1&bar=2", FORM, EXPECTED)));
    }

    #[test]
    fn json_body_through_body_sha256() {
        // test_validation_of_body_succeeds.
        let body = r#"{"property": "value", "boolean": true}"#;
        let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        let v = twilio(Some("https://mycompany.com/myapp.php"));
        let uri = format!("/in/tw?foo=1&bar=2&bodySHA256={hash}");
        let r = |body: &str| {
            Req::post(&uri, body.as_bytes())
                .header("Content-Type", "application/json")
                .header("X-Twilio-Signature", "a9nBmqA0ju/hNViExpshrM61xv4=")
        };
        assert!(ok(&v, r(body)));
        // A different body no longer has that hash.
        assert!(!ok(&v, r(r#"{"property": "value", "boolean": false}"#)));
        // A JSON body without bodySHA256 is not covered by any signature.
        let unsigned = Req::post("/in/tw?foo=1&bar=2", body.as_bytes())
            .header("Content-Type", "application/json")
            .header("X-Twilio-Signature", EXPECTED);
        assert!(!ok(&v, unsigned));
    }

    #[test]
    fn url_from_host_and_forwarded_proto() {
        let v = twilio(None);
        // Behind a TLS proxy that keeps Host and path.
        let r = form_req("/myapp.php?foo=1&bar=2", FORM, EXPECTED)
            .header("Host", "mycompany.com")
            .header("X-Forwarded-Proto", "https");
        assert!(ok(&v, r));
        // No X-Forwarded-Proto: https and http are both tried.
        let r = form_req("/myapp.php?foo=1&bar=2", FORM, EXPECTED).header("Host", "mycompany.com");
        assert!(ok(&v, r));
        let r = form_req(
            "/myapp.php?foo=1&bar=2",
            FORM,
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
        )
        .header("Host", "mycompany.com:1234");
        assert!(ok(&v, r));
        // A proxy that says http: the https signature does not hold.
        let r = form_req("/myapp.php?foo=1&bar=2", FORM, EXPECTED)
            .header("Host", "mycompany.com")
            .header("X-Forwarded-Proto", "http");
        assert!(!ok(&v, r));
        // Another host, or no host at all.
        let r = form_req("/myapp.php?foo=1&bar=2", FORM, EXPECTED).header("Host", "evil.example");
        assert!(!ok(&v, r));
        assert!(!ok(&v, form_req("/myapp.php?foo=1&bar=2", FORM, EXPECTED)));
    }

    #[test]
    fn sub_paths_are_appended_to_the_configured_url() {
        let v = twilio(Some("https://mycompany.com/"));
        let sig = |url: &str| {
            let m = super::super::mac(
                HmacAlgorithm::Sha1,
                TOKEN.as_bytes(),
                &[url.as_bytes(), b"Digits1234"],
            );
            B64.encode(m)
        };
        assert!(ok(
            &v,
            form_req(
                "/in/tw/voice?x=1",
                "Digits=1234",
                &sig("https://mycompany.com/voice?x=1")
            )
        ));
        assert!(ok(
            &v,
            form_req("/in/tw", "Digits=1234", &sig("https://mycompany.com/"))
        ));
        assert!(!ok(
            &v,
            form_req(
                "/in/tw/sms",
                "Digits=1234",
                &sig("https://mycompany.com/voice")
            )
        ));
    }

    #[test]
    fn sha256_settings_header() {
        // Made by twilio-python 9.13.0: RequestValidator("12345").compute_signature(
        //   "https://mycompany.com/myapp.php?foo=1&bar=2", params, "HMAC_SHA256").
        let v = twilio(Some("https://mycompany.com/myapp.php"));
        let sig = "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s=";
        let r = form_req("/in/tw?foo=1&bar=2", FORM, sig).header(
            "X-Twilio-Webhooks-Signature-Settings",
            "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
        );
        assert!(ok(&v, r));
        // The SHA-1 signature under a SHA-256 claim, and an unknown algorithm.
        let r = form_req("/in/tw?foo=1&bar=2", FORM, EXPECTED).header(
            "X-Twilio-Webhooks-Signature-Settings",
            "algorithm=HMAC_SHA256",
        );
        assert!(!ok(&v, r));
        let r = form_req("/in/tw?foo=1&bar=2", FORM, EXPECTED)
            .header("X-Twilio-Webhooks-Signature-Settings", "algorithm=HMAC_MD5");
        assert!(!ok(&v, r));
        // A settings header without an algorithm is the classic SHA-1.
        let r = form_req("/in/tw?foo=1&bar=2", FORM, EXPECTED)
            .header("X-Twilio-Webhooks-Signature-Settings", "key=k");
        assert!(ok(&v, r));
    }

    #[test]
    fn malformed_and_hostile_input() {
        let v = twilio(Some("https://mycompany.com/myapp.php"));
        for sig in ["", "%%%", "RSOYDt4T1cUTdK1PDd93", &"A".repeat(20_000)] {
            assert!(
                !ok(&v, form_req("/in/tw?foo=1&bar=2", FORM, sig)),
                "{sig:?}"
            );
        }
        // No signature header.
        let r = Req::post("/in/tw?foo=1&bar=2", FORM.as_bytes()).header("Content-Type", FORM_CT);
        assert!(!ok(&v, r));
        // A form whose decoded bytes are not UTF-8 is refused, not mangled.
        assert!(!ok(&v, form_req("/in/tw", "Body=%FF%FE", EXPECTED)));
        assert!(parse_form(b"Body=%FF").is_none());
        let raw = Req::post("/in/tw", b"Body=\xff")
            .header("Content-Type", FORM_CT)
            .header("X-Twilio-Signature", EXPECTED);
        assert!(!ok(&v, raw));
        // An empty body (a GET-style callback) signs the URL alone.
        let url = "https://mycompany.com/myapp.php?CallSid=CA1";
        let sig = B64.encode(super::super::mac(
            HmacAlgorithm::Sha1,
            TOKEN.as_bytes(),
            &[url.as_bytes()],
        ));
        assert!(ok(
            &v,
            Req::post("/in/tw?CallSid=CA1", b"").header("X-Twilio-Signature", &sig)
        ));
        assert!(!ok(
            &v,
            Req::post("/in/tw?CallSid=CA2", b"").header("X-Twilio-Signature", &sig)
        ));
    }

    #[test]
    fn form_parser_details() {
        assert_eq!(
            parse_form(b"a=1&&b=&c&d=x+y%2Bz&e=%zz&=v").unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), String::new()),
                ("c".into(), String::new()),
                ("d".into(), "x y+z".into()),
                ("e".into(), "%zz".into()),
                (String::new(), "v".into()),
            ]
        );
        assert_eq!(parse_form(b"").unwrap(), vec![]);
        assert_eq!(
            parse_form("Body=caf%C3%A9+%F0%9F%98%80".as_bytes()).unwrap(),
            vec![("Body".into(), "caf\u{e9} \u{1F600}".into())]
        );
        assert_eq!(
            canonical_params(vec![
                ("b".into(), "2".into()),
                ("a".into(), "9".into()),
                ("b".into(), "1".into()),
                ("b".into(), "2".into()),
            ]),
            b"a9b1b2".to_vec()
        );
    }

    #[test]
    fn url_variant_details() {
        assert_eq!(
            url_variants("https://h.com/p?q=1"),
            [
                "https://h.com/p?q=1".to_string(),
                "https://h.com:443/p?q=1".to_string()
            ]
        );
        assert_eq!(
            url_variants("http://h.com:8080/p"),
            [
                "http://h.com/p".to_string(),
                "http://h.com:8080/p".to_string()
            ]
        );
        assert_eq!(
            url_variants("http://u:pw@[::1]:8080?x"),
            [
                "http://u:pw@[::1]?x".to_string(),
                "http://u:pw@[::1]:8080?x".to_string()
            ]
        );
        assert_eq!(
            url_variants("https://[::1]/"),
            [
                "https://[::1]/".to_string(),
                "https://[::1]:443/".to_string()
            ]
        );
        assert_eq!(url_variants("nonsense")[0], "nonsense");
    }

    #[test]
    fn bad_urls_are_refused_at_build() {
        for u in [
            "ftp://x.com/",
            "https://x.com/?a=1",
            "https://x.com/#f",
            "not a url",
            "/relative",
        ] {
            assert!(Twilio::new(vec![Secret::new("t")], Some(u)).is_err(), "{u}");
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300), s in "\\PC{0,120}") {
            if let Some(p) = parse_form(&body) {
                let _ = canonical_params(p);
            }
            let _ = url_variants(&s);
            let _ = url_variants(&format!("https://{s}"));
            let _ = parse_settings(Some(&s));
        }

        #[test]
        fn form_round_trips(pairs in proptest::collection::vec(("\\PC{0,12}", "\\PC{0,12}"), 0..8)) {
            let body: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter())
                .finish();
            let parsed = parse_form(body.as_bytes()).unwrap();
            // Empty pairs ("=" with empty name and value) serialise to "=" and come back.
            prop_assert_eq!(parsed, pairs);
        }
    }
}
