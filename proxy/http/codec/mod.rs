//! HTTP/1.1 on the wire: request and response heads (with the checks that close off
//! request smuggling), body framing, a streaming chunked-body scanner, and the header
//! rewriting a proxy does when forwarding. Pure functions over byte slices: no sockets
//! and no shared state, so any thread may call them.
//!
//! Strict with clients (RFC 9112 §11.2: any ambiguity in how a request is framed is a
//! 400 and a close), liberal with origins except where leniency would create ambiguity.
//! Whatever this module accepts has exactly one framing, and what it writes carries the
//! same framing headers it read, so the proxy and the next hop agree where a body ends.
//!
//! The parts:
//! - `scan`: finding where a head ends and checking its lines, a word at a time;
//! - `request`: request heads ([`parse_request`], [`RequestHead`], [`Target`]);
//! - `response`: response heads ([`parse_response`], [`ResponseHead`]) and the
//!   [`Method`] their body framing depends on;
//! - `body`: chunked bodies ([`ChunkedScanner`], [`encode_chunk`]);
//! - `forward`: the heads written to the next hop ([`write_request_head`],
//!   [`write_response_head`]);
//! - `answer`: responses the proxy makes itself ([`simple_response`]).
//!
//! This file holds what they share: [`HeadError`], [`BodyFraming`] and [`MAX_HEADERS`].

use std::fmt;

mod answer;
mod body;
mod forward;
mod request;
mod response;
mod scan;
#[cfg(test)]
pub(crate) mod test_util;

pub use super::fields::{Field, Fields};
pub use answer::simple_response;
pub use body::{encode_chunk, ChunkedScanner, ScanResult, LAST_CHUNK};
pub(crate) use forward::{write_date, write_date_now, Skip};
pub use forward::{write_request_head, write_response_head, ForwardRequest, ForwardResponse};
pub use request::{parse_request, parse_request_from, RequestHead, Target};
pub use response::{framing_method, parse_response, parse_response_from, Method, ResponseHead};
pub(crate) use scan::tokens;

/// Most header fields a head may carry, whatever its size; more is
/// [`HeadError::TooManyFields`] (431 for a request, 502 for a response).
pub const MAX_HEADERS: usize = 128;

/// Why a head (or a chunked body) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The head is larger than allowed (431).
    TooLarge,
    /// The head has more than [`MAX_HEADERS`] fields (431), however small it is.
    TooManyFields,
    /// Not HTTP/1.0 or HTTP/1.1 (505).
    Version,
    /// The request line alone is longer than the head may be (414, RFC 9112 §3).
    UriTooLong,
    /// A request body in a transfer coding the proxy does not decode, chunked last
    /// (501, RFC 9112 §6.1).
    UnknownCoding,
    /// Malformed or ambiguous (400), with the reason.
    Bad(&'static str),
}

impl HeadError {
    /// The status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge | HeadError::TooManyFields => 431,
            HeadError::UriTooLong => 414,
            HeadError::UnknownCoding => 501,
            HeadError::Version => 505,
            HeadError::Bad(_) => 400,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge => f.write_str("header section too large"),
            HeadError::TooManyFields => write!(f, "more than {MAX_HEADERS} header fields"),
            HeadError::UriTooLong => f.write_str("request line too long"),
            HeadError::UnknownCoding => f.write_str("transfer coding not implemented"),
            HeadError::Version => f.write_str("HTTP version not supported"),
            HeadError::Bad(why) => write!(f, "bad message: {why}"),
        }
    }
}

impl std::error::Error for HeadError {}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Content-Length bytes.
    Length(u64),
    /// Transfer-Encoding with `chunked` last: see [`ChunkedScanner`].
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

#[cfg(test)]
mod tests {
    use super::test_util::Rng;
    use super::*;

    #[test]
    fn errors_display_their_reason() {
        assert_eq!(
            HeadError::Bad("two Hosts").to_string(),
            "bad message: two Hosts"
        );
        assert_eq!(HeadError::TooLarge.to_string(), "header section too large");
        assert_eq!(
            HeadError::TooManyFields.to_string(),
            "more than 128 header fields"
        );
    }

    /// Arbitrary and mutated inputs never panic, and what is accepted is consistent.
    #[test]
    fn arbitrary_input_never_panics() {
        let seeds: &[&[u8]] = &[
            b"POST http://h:1/a?b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"GET /a HTTP/1.0\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: [::1]:8\r\n\r\n",
        ];
        let alphabet = b"\r\n :;,/?*0123456789abcdefABCDEFHTP.\t\0\x7f\xff";
        let mut rng = Rng(42);
        for round in 0..20_000 {
            let mut data = seeds[round % seeds.len()].to_vec();
            for _ in 0..rng.below(6) {
                let at = rng.below(data.len() + 1);
                let b = alphabet[rng.below(alphabet.len())];
                match rng.below(3) {
                    0 if at < data.len() => data[at] = b,
                    1 if at < data.len() => {
                        data.remove(at);
                    }
                    _ => data.insert(at, b),
                }
            }
            if round % 7 == 0 {
                data = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            }
            let max = 16 + rng.below(128);
            if let Ok(Some((h, n))) = parse_request(&data, max) {
                assert!(n <= data.len() && n <= max);
                assert_ne!(h.body(), BodyFraming::UntilClose);
                let _ = (h.keep_alive(), h.split_target());
                let mut out = Vec::new();
                let opts = ForwardRequest {
                    path_and_query: "/",
                    host: "h",
                    via: "v",
                    client_ip: None,
                    keep_alive: true,
                    underscores: rng.below(2) == 0,
                    max_forwards: None,
                };
                write_request_head(&h, &mut out, &opts);
                let (again, _) = parse_request(&out, 1 << 16).unwrap().unwrap();
                assert_eq!(again.body(), h.body(), "{out:?}");
            }
            if let Ok(Some((h, n))) = parse_response(&data, max) {
                assert!(n <= data.len());
                let _ = (h.body(Method::Other), h.keep_alive());
            }
            let mut s = ChunkedScanner::new();
            let mut out = Vec::new();
            let mut at = 0;
            while at < data.len() {
                let end = (at + 1 + rng.below(9)).min(data.len());
                match s.decode(&data[at..end], &mut out) {
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
            assert!(out.len() <= data.len());
        }
    }
}
