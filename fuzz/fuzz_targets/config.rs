//! The config parser: any text gets a config or a list of errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let env = |name: &str| (name == "SECRET").then(|| "s3cret".to_string());
        let _ = hookgate::config::parse(text, "fuzz.toml", &env);
    }
});
