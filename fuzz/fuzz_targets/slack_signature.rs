//! Slack's `X-Slack-Signature` and the `url_verification` body test.
#![no_main]

use hookgate::ingest::verify::slack::{parse_signature, url_verification_challenge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = url_verification_challenge(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(sig) = parse_signature(s) {
            assert_eq!(sig.len(), 32);
        }
    }
});
