//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): the
//! `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` scheme used to sign outbound
//! deliveries and to check inbound `standard-webhooks`/`svix` requests.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Decodes a `whsec_<base64>` secret (the prefix is optional) into key bytes.
/// The padding may be left off, as the reference libraries allow.
pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let raw = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = B64
        .decode(raw)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(raw))
        .ok()?;
    (!key.is_empty()).then_some(key)
}

/// Whether a secret is fit for signing outbound deliveries: `whsec_` and 16 to
/// 128 bytes of base64 key (senders mint 24 to 64).
pub fn valid_signing_secret(secret: &str) -> bool {
    secret.starts_with("whsec_")
        && decode_secret(secret).is_some_and(|k| (16..=128).contains(&k.len()))
}

/// Makes a new random `whsec_` secret with 32 bytes of key.
pub fn new_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!("whsec_{}", B64.encode(key))
}

/// The HMAC of `"{msg_id}.{timestamp}.{body}"`, not yet finalized.
fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature `v1,<base64>` of one message with one key.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = mac(key, msg_id, timestamp, body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// Checks a `webhook-signature` header value (space-separated `v1,<base64>` entries)
/// against one key, in constant time per entry. Entries of other versions are ignored.
pub fn verify(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let mac = mac(key, msg_id, timestamp, body);
    let mut ok = false;
    for entry in header.split(' ') {
        let Some(sig) = entry.strip_prefix("v1,") else {
            continue;
        };
        if let Ok(bytes) = B64.decode(sig) {
            // `verify_slice` compares in constant time; every entry is checked.
            ok |= mac.clone().verify_slice(&bytes).is_ok();
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_reference_vector() {
        let key = decode_secret(SECRET).unwrap();
        assert_eq!(sign(&key, ID, TS, BODY), SIG);
    }

    #[test]
    fn verifies_any_of_several_entries() {
        let key = decode_secret(SECRET).unwrap();
        assert!(verify(&key, ID, TS, BODY, SIG));
        assert!(verify(&key, ID, TS, BODY, &format!("v1,AAAA v2,xyz {SIG}")));
        assert!(!verify(&key, ID, TS, b"{}", SIG));
        assert!(!verify(&key, ID, TS + 1, BODY, SIG));
        assert!(!verify(&key, ID, TS, BODY, ""));
        assert!(!verify(&key, ID, TS, BODY, "v1,%%%"));
    }

    #[test]
    fn new_secrets_decode() {
        let s = new_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(decode_secret(&s).unwrap().len(), 32);
        assert!(decode_secret("whsec_").is_none());
        assert!(decode_secret("whsec_!!").is_none());
        assert!(valid_signing_secret(&s));
        assert!(valid_signing_secret(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        ));
        assert!(!valid_signing_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        assert!(!valid_signing_secret("whsec_bm9wZQ=="));
        assert!(!valid_signing_secret("nope"));
    }
}
