//! Selector strings, and evaluating a selector against an arbitrary body and
//! query: the text up to the first newline is the selector, then the query up to
//! the next newline, then the body.
#![no_main]

use hookgate::select::{Inbound, Selector};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let (Some(sel), Some(query), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (Ok(sel), Ok(query)) = (std::str::from_utf8(sel), std::str::from_utf8(query)) else {
        return;
    };
    let Ok(sel) = sel.parse::<Selector>() else {
        return;
    };
    // What parses prints back to itself.
    assert_eq!(sel.to_string().parse::<Selector>().ok(), Some(sel.clone()));
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let inbound = Inbound::new(&headers, Some(query), body);
    let _ = inbound.select_key(&sel);
});
