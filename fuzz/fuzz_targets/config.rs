//! The config parser: any text gets a config or a list of errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Bytes that are not UTF-8 become U+FFFD, so every input reaches the parser.
    let text = String::from_utf8_lossy(data);
    let env = |name: &str| (name == "SECRET").then(|| "s3cret".to_string());
    if let Err(errs) = hookgate::config::parse(&text, "fuzz.toml", &env) {
        assert!(!errs.0.is_empty(), "an error result lists at least one error");
    }
});
