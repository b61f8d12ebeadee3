//! The strict `application/x-www-form-urlencoded` parser and Twilio's parameter
//! canonicalisation: never panics, and the canonical text does not depend on
//! the order of the pairs.
#![no_main]

use hookgate::ingest::verify::twilio::{canonical_params, parse_form};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(pairs) = parse_form(data) {
        let mut reversed = pairs.clone();
        reversed.reverse();
        assert_eq!(canonical_params(pairs), canonical_params(reversed));
    }
});
