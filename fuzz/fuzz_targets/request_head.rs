//! The request-head parser and its smuggling checks never panic; what they accept has
//! one unambiguous body framing; the chunked scanner never panics or over-consumes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnstile::http::codec::{parse_request, ChunkedScanner};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, len))) = parse_request(data, 64 * 1024) {
        assert!(len <= data.len());
        let _ = head.body();
        let _ = head.keep_alive();
        let _ = head.split_target();
        let mut scanner = ChunkedScanner::new();
        let body = &data[len..];
        let mut at = 0;
        // Feed the rest in uneven pieces, as sockets deliver it.
        for step in [1usize, 7, 3, 64, 1000] {
            if at >= body.len() {
                break;
            }
            let end = (at + step).min(body.len());
            match scanner.scan(&body[at..end]) {
                Ok(r) => {
                    assert!(r.consumed <= end - at);
                    at += r.consumed;
                    if r.done {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
});
