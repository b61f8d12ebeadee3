//! `X-Shopify-Hmac-Sha256`.
#![no_main]

use hookgate::ingest::verify::shopify::parse_signature;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(sig) = parse_signature(s) {
            assert_eq!(sig.len(), 32);
        }
    }
});
