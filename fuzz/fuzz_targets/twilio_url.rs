//! Twilio's URL variants (with and without the port) and its settings header.
#![no_main]

use hookgate::ingest::verify::twilio::{parse_settings, url_variants};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let [without, with] = url_variants(s);
        // Idempotent: the variants of a variant are the same pair.
        if s.contains("://") {
            assert_eq!(url_variants(&with)[1], with);
            let _ = without;
        }
        let _ = parse_settings(Some(s));
    }
});
