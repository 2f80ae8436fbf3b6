//! What the unit tests of the codec and of the HTTP rules share: parsing a head that
//! must parse, and a small deterministic generator for random splits and inputs. Test
//! builds only.

use super::{parse_request, parse_response, HeadError, RequestHead, ResponseHead};

/// `raw` parsed as a request with room for 8 KiB of head.
pub(crate) fn req(raw: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
    parse_request(raw.as_bytes(), 8192)
}

/// `raw` parsed as a complete, valid request head.
pub(crate) fn head(raw: &str) -> RequestHead {
    match req(raw) {
        Ok(Some((h, _))) => h,
        other => panic!("{raw:?} → {other:?}"),
    }
}

/// `GET / HTTP/1.1` to host `h` with `fields` (each line ending in CRLF) added.
pub(crate) fn request_with(fields: &str) -> RequestHead {
    head(&format!("GET / HTTP/1.1\r\nHost: h\r\n{fields}\r\n"))
}

/// `raw` parsed as a complete, valid response head.
pub(crate) fn resp(raw: &str) -> ResponseHead {
    match parse_response(raw.as_bytes(), 8192) {
        Ok(Some((h, _))) => h,
        other => panic!("{raw:?} → {other:?}"),
    }
}

/// A tiny deterministic generator (xorshift64*), for random splits and inputs.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `head` (a response head as text) without its one `Date` line, whose value is now:
/// for exact compares of heads Turnstile dates itself (RFC 9110 §6.6.1).
pub(crate) fn undated(head: &str) -> String {
    let at = head.find("\r\nDate: ").expect("a Date") + 2;
    let end = at + head[at..].find("\r\n").unwrap() + 2;
    assert!(!head[end..].contains("\r\nDate: "), "two Dates: {head}");
    format!("{}{}", &head[..at], &head[end..])
}
