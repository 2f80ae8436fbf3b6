//! The cache's parsers of what clients and origins send never panic and never give a
//! wrong byte range: Cache-Control directives, Range against any body length, entity
//! tag lists and preconditions, and HTTP dates. The first two bytes pick a body length;
//! the rest is one field value, tried as each field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnstile::http::caching::{
    each_directive, evaluate, parse_delta, parse_http_date, parse_range, range, tag_list, RangeAsk,
    Validators,
};
use turnstile::http::codec::parse_request;

fuzz_target!(|data: &[u8]| {
    let Some((len, value)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = u64::from(u16::from_le_bytes(*len));
    each_directive(value, |name, arg| {
        assert!(!name.is_empty());
        assert_eq!(name, name.to_ascii_lowercase());
        if let Some(n) = arg.and_then(parse_delta) {
            assert!(n <= 1 << 31);
        }
    });
    match parse_range(value, len) {
        RangeAsk::Part(start, end) => assert!(start < end && end <= len, "{start}..{end} of {len}"),
        RangeAsk::Whole | RangeAsk::Unsatisfiable => {}
    }
    let _ = parse_http_date(value);
    // As request fields: only a value that makes a valid head line.
    if value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return;
    }
    let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for name in [
        "If-None-Match",
        "If-Match",
        "If-Range",
        "Range",
        "If-Modified-Since",
    ] {
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    let Ok(Some((req, _))) = parse_request(&raw, 1 << 16) else {
        return;
    };
    let _ = tag_list(&req, "if-none-match");
    let held = Validators {
        etag: Some(b"\"x\""),
        last_modified: Some(b"Sun, 06 Nov 1994 08:49:37 GMT"),
        date: Some(b"Sun, 06 Nov 1994 08:49:47 GMT"),
    };
    let _ = evaluate(&req, &held, 1 << 31);
    let no_lm = Validators {
        last_modified: None,
        ..held
    };
    if let RangeAsk::Part(start, end) = range(&req, len, &no_lm) {
        assert!(start < end && end <= len);
    }
});
