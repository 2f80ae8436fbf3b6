//! The response-head parser never panics; what it accepts, forwarded to a client, parses
//! again with the same status and the same body framing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnstile::http::codec::{
    parse_response, write_response_head, ForwardResponse, Method, MAX_HEADERS,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, len))) = parse_response(data, 64 * 1024) {
        assert!(len <= data.len());
        let _ = head.keep_alive();
        let _ = head.reason();
        // Forwarding adds up to two fields (Via, Connection): a head near the field limit
        // may become one the client refuses.
        if head.headers.len() + 2 > MAX_HEADERS {
            return;
        }
        let mut out = Vec::new();
        write_response_head(
            &head,
            &mut out,
            &ForwardResponse {
                via: "1.1 fuzz",
                keep_alive: true,
                framing_override: None,
            },
        );
        let (again, n) = parse_response(&out, 1 << 20)
            .expect("a forwarded head parses")
            .expect("a forwarded head is complete");
        assert_eq!(n, out.len());
        assert_eq!(again.status, head.status);
        assert_eq!(again.body(Method::Other), head.body(Method::Other));
    }
});
