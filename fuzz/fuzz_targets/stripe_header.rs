//! `Stripe-Signature` parsing: never panics; what it returns is well-formed.
#![no_main]

use hookgate::ingest::verify::stripe::parse_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(h) = parse_header(s) {
            assert!(h.timestamp >= 0);
            assert!(!h.v1.is_empty() && h.v1.iter().all(|s| s.len() == 32));
        }
    }
});
