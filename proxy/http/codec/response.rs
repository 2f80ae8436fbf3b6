//! Response heads: the status line and fields an origin sent, parsed liberally where
//! that stays unambiguous (bare LF, obs-fold), and the body framing they give once the
//! request's [`Method`] and the status are applied. Pure functions over byte slices: no
//! sockets, callable from any thread.

use super::request::{content_length, keep_alive};
use super::scan::{collect_fields, locate_head, range, tokens};
use super::{BodyFraming, Fields, HeadError, MAX_HEADERS};
use crate::http::field_names::names;

/// A parsed status line and header section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Status code, 100 to 599: the valid ones (RFC 9110 §15).
    pub status: u16,
    /// Where the reason phrase lies: see [`ResponseHead::reason`].
    pub(super) reason: (usize, usize),
    /// Header fields in order; a Content-Length beside Transfer-Encoding is removed.
    pub headers: Fields,
    /// The framing the headers give, before the request method and status are applied.
    pub(super) framing: BodyFraming,
    /// Whether the origin will keep the connection open (decided at parse time).
    keep_alive: bool,
    /// Transfer-Encoding names a coding besides `chunked`: see
    /// [`ResponseHead::transfer_coded`].
    transfer_coded: bool,
}

/// The request method as far as the framing of its response cares (RFC 9112 §6.3):
/// see [`framing_method`] and [`ResponseHead::body`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `HEAD`: the response has no body, whatever its fields say.
    Head,
    /// `CONNECT`: a 2xx response has no body; the connection becomes a tunnel.
    Connect,
    /// Any other method: the response's status and fields frame its body.
    Other,
}

/// `method` as far as the framing of its response cares (case-insensitive).
pub fn framing_method(method: &str) -> Method {
    if method.eq_ignore_ascii_case("HEAD") {
        Method::Head
    } else if method.eq_ignore_ascii_case("CONNECT") {
        Method::Connect
    } else {
        Method::Other
    }
}

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete, read more. The
/// `usize` is the head's length including the blank line. Parsing does not depend on
/// the request; its method applies in [`ResponseHead::body`].
pub fn parse_response(
    buf: &[u8],
    max_head: usize,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    parse_response_from(buf, max_head, 0)
}

/// As [`parse_response`], for a caller that re-parses as bytes arrive: `searched` is how
/// many leading bytes of `buf` are known to hold no complete head (its length at the
/// previous `Ok(None)`; 0 if unknown), so they are not searched again (as
/// [`parse_request_from`](super::parse_request_from)).
pub fn parse_response_from(
    buf: &[u8],
    max_head: usize,
    searched: usize,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let Some(end) = locate_head(buf, max_head, searched)? else {
        return Ok(None);
    };
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut raw);
    let parsed = httparse::ParserConfig::default()
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .parse_response(&mut resp, &buf[..end]);
    match parsed {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HeadError::Bad("malformed response head")),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyFields),
        Err(httparse::Error::Version) if buf.starts_with(b"HTTP/") => {
            return Err(HeadError::Version)
        }
        Err(_) => return Err(HeadError::Bad("malformed response head")),
    }
    // RFC 9110 §15: valid status codes lie in 100-599, and a client treats any other
    // as a server error. Relayed, a 999 would reach a client that can do no better,
    // and fall in none of the 1xx-5xx counters: it is an invalid response (a 502).
    let status = resp.code.unwrap_or(0);
    if !(100..=599).contains(&status) {
        return Err(HeadError::Bad("status code outside 100-599"));
    }
    let minor_version = resp.version.unwrap_or(1);
    let head = &buf[..end];
    let reason = range(head, resp.reason.unwrap_or_default().as_bytes());
    let mut headers = collect_fields(head, resp.headers, true);
    let has_te = headers.contains(names::TRANSFER_ENCODING);
    // HTTP/1.0 has no Transfer-Encoding: its framing is faulty (RFC 9112 §6.1), so read
    // to the close, and do not reuse the connection.
    let faulty = has_te && minor_version == 0;
    // A coding other than chunked (`gzip, chunked`, or `gzip` to the close) is a
    // property of this message, not of the representation (RFC 9112 §6.1, §7).
    // So is an HTTP/1.0 message's Transfer-Encoding, which is read to the close with
    // its codings still on, chunked too.
    let transfer_coded = has_te
        && (faulty
            || tokens(&headers, names::TRANSFER_ENCODING)
                .any(|c| !c.eq_ignore_ascii_case(b"chunked")));
    let framing = if has_te {
        let chunked_last = tokens(&headers, names::TRANSFER_ENCODING)
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        // Transfer-Encoding overrides Content-Length, which must not be passed on
        // (RFC 9112 §6.3 (3)), so a bad one is no ambiguity either. A faulty chunked
        // coding frames nothing, so it goes too: forwarded, it would make the next hop
        // frame a close-delimited body as chunked.
        let drop_te = faulty && chunked_last;
        headers.retain(|h| {
            let framing_field = h.name.eq_ignore_ascii_case("content-length")
                || (drop_te && h.name.eq_ignore_ascii_case("transfer-encoding"));
            !framing_field
        });
        if chunked_last && !faulty {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        }
    } else {
        match content_length(&headers)? {
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::UntilClose,
        }
    };
    Ok(Some((
        ResponseHead {
            minor_version,
            status,
            reason,
            keep_alive: !faulty && keep_alive(&headers, minor_version),
            headers,
            framing,
            transfer_coded,
        },
        end,
    )))
}

impl ResponseHead {
    /// Reason phrase as received (empty if it held non-ASCII bytes).
    pub fn reason(&self) -> &str {
        self.headers.str(self.reason)
    }

    /// The first `name` field's value.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// Every `name` field's value, in order.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.get_all(name)
    }

    /// How the body is delimited, for a response to a `request_method` request (RFC 9112
    /// §6.3).
    pub fn body(&self, request_method: Method) -> BodyFraming {
        let bodiless = request_method == Method::Head
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
            // The connection becomes a tunnel right after the head.
            || (request_method == Method::Connect && (200..300).contains(&self.status));
        if bodiless {
            BodyFraming::None
        } else {
            self.framing
        }
    }

    /// Whether the origin will keep the connection open (by its headers; a body read
    /// to the close ends it regardless).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether its Transfer-Encoding names a coding besides `chunked` (`gzip, chunked`,
    /// `gzip` read to the close), or is an HTTP/1.0 message's (faulty framing, read to
    /// the close with its chunks still on, RFC 9112 §6.1). Such a body is relayed as it came, its codings named,
    /// to a client that can read them: the proxy decodes none of them but chunked, so
    /// it cannot store the payload (transfer codings are hop-by-hop, RFC 9112 §6.1, §7)
    /// nor hand it to an HTTP/1.0 client, which knows no Transfer-Encoding.
    pub fn transfer_coded(&self) -> bool {
        self.transfer_coded
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::resp;
    use super::super::{write_response_head, ForwardResponse};
    use super::*;

    #[test]
    fn response_framing_table() {
        let cl5 = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let table: &[(&str, &str, BodyFraming)] = &[
            (cl5, "GET", BodyFraming::Length(5)),
            (cl5, "HEAD", BodyFraming::None),
            (cl5, "head", BodyFraming::None),
            (chunked, "HEAD", BodyFraming::None),
            (chunked, "GET", BodyFraming::Chunked),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                "GET",
                BodyFraming::None,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                "GET",
                BodyFraming::None,
            ),
            ("HTTP/1.1 100 Continue\r\n\r\n", "GET", BodyFraming::None),
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
                "GET",
                BodyFraming::None,
            ),
            (
                "HTTP/1.1 103 Early Hints\r\n\r\n",
                "POST",
                BodyFraming::None,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", "CONNECT", BodyFraming::None),
            (
                "HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n",
                "CONNECT",
                BodyFraming::Length(2),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                "GET",
                BodyFraming::Chunked,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n",
                "GET",
                BodyFraming::Chunked,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                "GET",
                BodyFraming::UntilClose,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "GET",
                BodyFraming::UntilClose,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                "GET",
                BodyFraming::Chunked,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                "GET",
                BodyFraming::Chunked,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", "GET", BodyFraming::UntilClose),
            ("HTTP/1.0 200 OK\r\n\r\n", "GET", BodyFraming::UntilClose),
            (
                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "GET",
                BodyFraming::UntilClose,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n",
                "GET",
                BodyFraming::Length(7),
            ),
        ];
        for (raw, method, want) in table {
            let got = parse_response(raw.as_bytes(), 8192)
                .unwrap()
                .unwrap()
                .0
                .body(framing_method(method));
            assert_eq!(got, *want, "{method} → {raw:?}");
        }
    }

    #[test]
    fn content_length_beside_transfer_encoding_is_dropped() {
        let h = resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n",
        );
        assert_eq!(h.header("content-length"), None);
        let mut out = Vec::new();
        write_response_head(
            &h,
            &mut out,
            &ForwardResponse {
                via: "1.1 t",
                keep_alive: true,
                framing_override: None,
            },
        );
        let s = String::from_utf8(out).unwrap();
        assert!(!s.to_ascii_lowercase().contains("content-length"), "{s}");
        assert!(s.contains("Transfer-Encoding: chunked\r\n"), "{s}");
    }

    #[test]
    fn bad_responses_are_refused() {
        let p = |raw: &str| parse_response(raw.as_bytes(), 8192);
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 099 Low\r\n\r\n",
            "HTTP/1.1 20 OK\r\n\r\n",
            "HTTP/1.1 600 Beyond\r\n\r\n",
            "HTTP/1.1 999 Library\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
            "junk\r\n\r\n",
        ] {
            assert!(
                matches!(p(raw), Err(HeadError::Bad(_))),
                "{raw:?} → {:?}",
                p(raw)
            );
        }
        assert_eq!(p("HTTP/2.0 200 OK\r\n\r\n"), Err(HeadError::Version));
        assert_eq!(p("HTTP/1.1 200 OK\r\n"), Ok(None));
        assert_eq!(p(""), Ok(None));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nX: aaaaaaaa", 10),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\n", 18),
            Err(HeadError::TooLarge)
        );
        let fields: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            p(&format!("HTTP/1.1 200 OK\r\n{fields}\r\n")),
            Err(HeadError::TooManyFields)
        );
    }

    #[test]
    fn origins_get_leniency_where_it_is_unambiguous() {
        // Bare LF line endings.
        let h = resp("HTTP/1.1 200 OK\nContent-Length: 2\nX: y\n\n");
        assert_eq!(h.body(Method::Other), BodyFraming::Length(2));
        assert_eq!(h.header("x"), Some(&b"y"[..]));
        let (_, n) = parse_response(b"HTTP/1.1 200 OK\nA: b\n\nzz", 8192)
            .unwrap()
            .unwrap();
        assert_eq!(n, 22);
        // obs-fold becomes spaces, so what is forwarded is one line.
        let h = resp("HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n");
        let x = h.header("x").unwrap();
        assert!(x.starts_with(b"a") && x.ends_with(b"b"), "{x:?}");
        assert!(!x.contains(&b'\r') && !x.contains(&b'\n'), "{x:?}");
        // Interim responses parse like any other.
        let (h, n) = parse_response(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
            8192,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.status, h.reason(), n), (100, "Continue", 25));
        // Empty parts (no reason, a non-ASCII one, an empty value) read back empty,
        // whether or not httparse returned them as slices of the head.
        for raw in [
            "HTTP/1.1 200\r\nX:\r\nY: \r\nZ: z\r\n\r\n",
            "HTTP/1.1 200 \r\nX:\r\nY: \r\nZ: z\r\n\r\n",
            "HTTP/1.1 200 Caf\u{e9}\r\nX:\r\nY: \r\nZ: z\r\n\r\n",
        ] {
            let h = resp(raw);
            assert_eq!(h.reason(), "", "{raw:?}");
            let fields: Vec<_> = h.headers.iter().map(|f| (f.name, f.value)).collect();
            assert_eq!(
                fields,
                [("X", &b""[..]), ("Y", b""), ("Z", b"z")],
                "{raw:?}"
            );
        }
    }

    #[test]
    fn resumed_search_finds_a_terminator_split_across_reads() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1"[..],
            b"HTTP/1.1 200 OK\nContent-Length: 0\n\nHTTP/1.1",
        ] {
            let whole = parse_response(raw, 8192).unwrap().unwrap();
            // Grow the buffer one byte at a time, passing the previous length as the hint.
            let mut searched = 0;
            let found = (0..=raw.len()).find_map(|len| {
                match parse_response_from(&raw[..len], 8192, searched).unwrap() {
                    None => {
                        searched = len;
                        None
                    }
                    Some(got) => Some((got, len)),
                }
            });
            let (got, len) = found.expect("complete");
            assert_eq!(got, whole);
            assert_eq!(len, whole.1, "found as soon as it was complete");
        }
    }

    #[test]
    fn codings_besides_chunked_are_noticed() {
        for (te, coded) in [
            ("chunked", false),
            ("Chunked", false),
            ("gzip, chunked", true),
            ("gzip", true),
            ("chunked, gzip", true),
        ] {
            let h = resp(&format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n"
            ));
            assert_eq!(h.transfer_coded(), coded, "{te}");
        }
        let split =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(resp(split).transfer_coded());
        assert!(!resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n").transfer_coded());
        // HTTP/1.0 has no chunked coding: read to the close with it still on.
        assert!(resp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").transfer_coded());
    }

    #[test]
    fn response_keep_alive_rules() {
        assert!(resp("HTTP/1.1 200 OK\r\n\r\n").keep_alive());
        assert!(!resp("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keep_alive());
        assert!(!resp("HTTP/1.0 200 OK\r\n\r\n").keep_alive());
        assert!(resp("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").keep_alive());
        // Faulty framing (RFC 9112 §6.1): never reused.
        assert!(!resp(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .keep_alive());
    }
}
