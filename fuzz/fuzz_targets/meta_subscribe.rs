//! The query of Meta's GET subscription handshake.
#![no_main]

use hookgate::ingest::verify::meta::parse_subscribe;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(sub) = parse_subscribe(s) {
            assert!(sub.mode.is_some());
        }
    }
});
