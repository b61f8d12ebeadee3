//! Telegram: the `secret_token` given to `setWebhook` comes back in the header
//! `X-Telegram-Bot-Api-Secret-Token` of every update.

use super::{any_key_eq, Reason, Rejected, Request, Verifier};
use crate::config::Secret;

/// Checks `X-Telegram-Bot-Api-Secret-Token`.
pub struct Telegram {
    keys: Vec<Secret>,
}

impl Telegram {
    /// A verifier accepting any of `keys`.
    pub fn new(keys: Vec<Secret>) -> Self {
        Telegram { keys }
    }
}

impl Verifier for Telegram {
    fn verify(&self, req: &Request<'_>) -> Result<(), Rejected> {
        let got = req
            .headers
            .get("x-telegram-bot-api-secret-token")
            .ok_or(Rejected::UNAUTHORIZED)?;
        if any_key_eq(&self.keys, got.as_bytes()) {
            Ok(())
        } else {
            Err(Rejected::UNAUTHORIZED)
        }
    }

    fn explain(&self, req: &Request<'_>) -> Reason {
        let name = http::HeaderName::from_static("x-telegram-bot-api-secret-token");
        let r = super::simple::explain_equals(
            req,
            &name,
            "Telegram (set `secret_token` in setWebhook)",
        );
        if r.code == "wrong_credentials" {
            return Reason::new(
                r.code,
                "the `X-Telegram-Bot-Api-Secret-Token` did not match the source's secret: \
                 it must be the `secret_token` given to setWebhook",
            );
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Req;
    use super::*;

    fn v() -> Telegram {
        Telegram::new(vec![Secret::new("old-token"), Secret::new("new-token")])
    }

    #[test]
    fn accepts_any_configured_token() {
        let body = br#"{"update_id":10000}"#;
        for t in ["old-token", "new-token"] {
            let r = Req::post("/in/tg", body).header("X-Telegram-Bot-Api-Secret-Token", t);
            assert_eq!(v().verify(&r.view()), Ok(()));
        }
    }

    #[test]
    fn refuses_missing_wrong_and_near_tokens() {
        let body = b"{}";
        assert!(v().verify(&Req::post("/in/tg", body).view()).is_err());
        for t in [
            "",
            "old-toke",
            "old-token ",
            "OLD-TOKEN",
            "new-tokenx",
            &"x".repeat(8000),
        ] {
            let r = Req::post("/in/tg", body).header("X-Telegram-Bot-Api-Secret-Token", t);
            assert_eq!(v().verify(&r.view()), Err(Rejected::UNAUTHORIZED), "{t:?}");
        }
    }
}
