//! The simple verifiers: `basic` (HTTP basic auth, `secret = "user:password"`),
//! `bearer` (`Authorization: Bearer <secret>`) and `header` (a named header
//! equal to the secret).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http::HeaderName;

use super::{any_key_eq, Reason, Rejected, Request, Verifier};
use crate::config::Secret;

/// HTTP basic authentication.
pub struct Basic {
    keys: Vec<Secret>,
}

impl Basic {
    /// Accepts any of `keys` (each `user:password`).
    pub fn new(keys: Vec<Secret>) -> Self {
        Basic { keys }
    }
}

impl Verifier for Basic {
    fn verify(&self, req: &Request<'_>) -> Result<(), Rejected> {
        let v = req.header("authorization").ok_or(Rejected::UNAUTHORIZED)?;
        let (scheme, cred) = v.split_once(' ').ok_or(Rejected::UNAUTHORIZED)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(Rejected::UNAUTHORIZED);
        }
        let decoded = B64
            .decode(cred.trim())
            .map_err(|_| Rejected::UNAUTHORIZED)?;
        if any_key_eq(&self.keys, &decoded) {
            Ok(())
        } else {
            Err(Rejected::UNAUTHORIZED)
        }
    }

    fn explain(&self, req: &Request<'_>) -> Reason {
        explain_authorization(req, "Basic")
    }
}

/// Why an `Authorization: {scheme} …` check failed.
fn explain_authorization(req: &Request<'_>, scheme: &str) -> Reason {
    match req.header("authorization") {
        None => Reason::missing(
            "Authorization",
            &format!("a sender given the source's {scheme} credentials"),
        ),
        Some(v)
            if !v
                .split_once(' ')
                .is_some_and(|(s, _)| s.eq_ignore_ascii_case(scheme)) =>
        {
            Reason::malformed("Authorization", &format!("`{scheme} …`"))
        }
        Some(_) => Reason::new(
            "wrong_credentials",
            format!("the {scheme} credentials did not match the source's secret"),
        ),
    }
}

/// Why a header that must equal a secret refused the request.
pub(super) fn explain_equals(req: &Request<'_>, name: &HeaderName, sender: &str) -> Reason {
    if req.headers.contains_key(name) {
        Reason::new(
            "wrong_credentials",
            format!("the `{name}` header did not match the source's secret"),
        )
    } else {
        Reason::missing(name.as_str(), sender)
    }
}

/// A bearer token.
pub struct Bearer {
    keys: Vec<Secret>,
}

impl Bearer {
    /// Accepts any of `keys`.
    pub fn new(keys: Vec<Secret>) -> Self {
        Bearer { keys }
    }
}

impl Verifier for Bearer {
    fn verify(&self, req: &Request<'_>) -> Result<(), Rejected> {
        let v = req.header("authorization").ok_or(Rejected::UNAUTHORIZED)?;
        let (scheme, token) = v.split_once(' ').ok_or(Rejected::UNAUTHORIZED)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Rejected::UNAUTHORIZED);
        }
        if any_key_eq(&self.keys, token.trim().as_bytes()) {
            Ok(())
        } else {
            Err(Rejected::UNAUTHORIZED)
        }
    }

    fn explain(&self, req: &Request<'_>) -> Reason {
        explain_authorization(req, "Bearer")
    }
}

/// A named header equal to a secret.
pub struct HeaderEquals {
    name: HeaderName,
    keys: Vec<Secret>,
}

impl HeaderEquals {
    /// Accepts requests whose header `name` equals any of `keys`.
    pub fn new(name: HeaderName, keys: Vec<Secret>) -> Self {
        HeaderEquals { name, keys }
    }
}

impl Verifier for HeaderEquals {
    fn verify(&self, req: &Request<'_>) -> Result<(), Rejected> {
        let v = req.headers.get(&self.name).ok_or(Rejected::UNAUTHORIZED)?;
        if any_key_eq(&self.keys, v.as_bytes()) {
            Ok(())
        } else {
            Err(Rejected::UNAUTHORIZED)
        }
    }

    fn explain(&self, req: &Request<'_>) -> Reason {
        explain_equals(req, &self.name, "the configured sender")
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Req;
    use super::*;

    #[test]
    fn basic_auth() {
        let v = Basic::new(vec![Secret::new("user:pa:ss")]);
        let ok = format!("Basic {}", B64.encode("user:pa:ss"));
        assert!(v
            .verify(&Req::post("/", b"").header("Authorization", &ok).view())
            .is_ok());
        let lower = format!("basic {}", B64.encode("user:pa:ss"));
        assert!(v
            .verify(&Req::post("/", b"").header("Authorization", &lower).view())
            .is_ok());
        for bad in [
            format!("Basic {}", B64.encode("user:wrong")),
            format!("Bearer {}", B64.encode("user:pa:ss")),
            "Basic %%%".to_string(),
            "Basic".to_string(),
            String::new(),
        ] {
            assert!(
                v.verify(&Req::post("/", b"").header("Authorization", &bad).view())
                    .is_err(),
                "{bad:?}"
            );
        }
        assert!(v.verify(&Req::post("/", b"").view()).is_err());
    }

    #[test]
    fn bearer_tokens_with_rotation() {
        let v = Bearer::new(vec![Secret::new("t1"), Secret::new("t2")]);
        for t in ["Bearer t1", "bearer t2", "Bearer  t1 "] {
            assert!(
                v.verify(&Req::post("/", b"").header("Authorization", t).view())
                    .is_ok(),
                "{t}"
            );
        }
        for t in ["Bearer t3", "Bearer", "t1", "Basic t1", "Bearer t1x"] {
            assert!(
                v.verify(&Req::post("/", b"").header("Authorization", t).view())
                    .is_err(),
                "{t}"
            );
        }
    }

    #[test]
    fn named_header() {
        let v = HeaderEquals::new(HeaderName::from_static("x-api-key"), vec![Secret::new("k")]);
        assert!(v
            .verify(&Req::post("/", b"").header("X-Api-Key", "k").view())
            .is_ok());
        assert!(v
            .verify(&Req::post("/", b"").header("X-Api-Key", "K").view())
            .is_err());
        assert!(v
            .verify(&Req::post("/", b"").header("X-Other", "k").view())
            .is_err());
    }
}
