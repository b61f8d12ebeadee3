//! `webhook-signature` (Standard Webhooks, Svix).
#![no_main]

use hookgate::ingest::verify::standard_webhooks::parse_signatures;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        for sig in parse_signatures(s) {
            assert_eq!(sig.len(), 32);
        }
    }
});
