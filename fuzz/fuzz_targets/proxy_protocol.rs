//! The PROXY protocol header reader never panics, and is consistent: a header it
//! accepts lies within the input and is accepted again, with the same client, from any
//! longer buffer that starts with it (the request after the header changes nothing);
//! every strict prefix of an accepted header is incomplete, so a header that comes in
//! pieces is read the same as one that comes whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnstile::http::proxy_protocol::{parse, Header};

fuzz_target!(|data: &[u8]| {
    let max = 4096;
    match parse(data, max) {
        Header::Parsed { len, client } => {
            assert!(len > 0 && len <= data.len());
            assert_eq!(parse(&data[..len], max), Header::Parsed { len, client });
            let mut longer = data[..len].to_vec();
            longer.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(parse(&longer, max), Header::Parsed { len, client });
            for cut in 0..len {
                assert_eq!(parse(&data[..cut], max), Header::Incomplete, "{cut}");
            }
        }
        Header::Incomplete => {
            // More bytes may still make it whole, or malformed: never a panic.
            let mut more = data.to_vec();
            more.extend_from_slice(b"\r\n");
            let _ = parse(&more, max);
        }
        Header::Malformed => {}
    }
});
