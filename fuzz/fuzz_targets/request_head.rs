//! The request-head parser and its smuggling checks never panic; what they accept has
//! one unambiguous body framing, and forwarded (rewritten for the origin) it parses
//! again with the same method and framing; the chunked scanner never panics or
//! over-consumes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use turnstile::http::codec::{
    parse_request, write_request_head, ChunkedScanner, ForwardRequest, MAX_HEADERS,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, len))) = parse_request(data, 64 * 1024) {
        assert!(len <= data.len());
        let _ = head.body();
        let _ = head.keep_alive();
        // Forwarding adds up to four fields (Host, Via, X-Forwarded-For, Connection): a
        // head near the field limit may become one the next hop refuses (431).
        let room = head.headers.len() + 4 <= MAX_HEADERS;
        if let (Ok(target), true) = (head.split_target(), room) {
            let mut out = Vec::new();
            write_request_head(
                &head,
                &mut out,
                &ForwardRequest {
                    path_and_query: &target.path_and_query,
                    host: target.host.as_deref().unwrap_or("origin"),
                    via: "1.1 fuzz",
                    client_ip: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))),
                    keep_alive: true,
                    underscores: data.len() % 2 == 0,
                    max_forwards: None,
                },
            );
            let (again, n) = parse_request(&out, 1 << 20)
                .expect("a forwarded head parses")
                .expect("a forwarded head is complete");
            assert_eq!(n, out.len());
            assert_eq!(again.method(), head.method());
            assert_eq!(again.body(), head.body());
        }
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
