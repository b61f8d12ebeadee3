//! The generic `hmac` verifier's header: `<prefix><hex or base64>`. The first
//! byte picks the encoding and digest, the text up to the first NUL is the prefix.
#![no_main]

use hookgate::config::{HmacAlgorithm, SigEncoding};
use hookgate::ingest::verify::hmac::parse_signature;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    let (prefix, value) = s.split_once('\0').unwrap_or(("", s));
    let encoding = if mode & 1 == 0 {
        SigEncoding::Hex
    } else {
        SigEncoding::Base64
    };
    let (alg, len) = match (mode >> 1) % 3 {
        0 => (HmacAlgorithm::Sha1, 20),
        1 => (HmacAlgorithm::Sha256, 32),
        _ => (HmacAlgorithm::Sha512, 64),
    };
    if let Some(sig) = parse_signature(value, prefix, encoding, alg) {
        assert_eq!(sig.len(), len);
    }
});
