//! Request heads: the request line and fields a client sent, parsed strictly (CRLF
//! only, one Host, one unambiguous body framing), with the target split into where the
//! request goes. Pure functions over byte slices: no sockets, callable from any thread.

use super::scan::{check_request_lines, collect_fields, locate_head, range, tokens, trim};
use super::{BodyFraming, Fields, HeadError, MAX_HEADERS};
use crate::http::field_names::names;
use std::borrow::Cow;

/// A parsed request line and header section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Where the method lies in the fields' buffer: see [`RequestHead::method`].
    pub(super) method: (usize, usize),
    /// Where the request target lies: see [`RequestHead::target`].
    target: (usize, usize),
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in order.
    pub headers: Fields,
    /// Decided at parse time, so headers added later cannot change it.
    pub(super) framing: BodyFraming,
    /// Whether the client wants the connection kept open (decided at parse time).
    keep_alive: bool,
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// `Some("http")` or `Some("https")` for absolute-form targets.
    pub scheme: Option<&'static str>,
    /// Lower-cased `host[:port]`, from the URL (absolute form) or the Host header:
    /// borrowed from the head unless lower-casing changed it.
    pub host: Option<Cow<'a, str>>,
    /// Path and query, at least `/` (or `*` for `OPTIONS *`): borrowed from the head
    /// unless it had to gain its leading `/`.
    pub path_and_query: Cow<'a, str>,
}

/// Parses a request head at the start of `buf`. `Ok(None)`: incomplete, read more.
/// The `usize` is the head's length including the blank line.
pub fn parse_request(
    buf: &[u8],
    max_head: usize,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    parse_request_from(buf, max_head, 0)
}

/// As [`parse_request`], for a caller that re-parses as bytes arrive: `searched` is how
/// many leading bytes of `buf` are known to hold no complete head (its length at the
/// previous `Ok(None)`; 0 if unknown), so they are not searched again.
pub fn parse_request_from(
    buf: &[u8],
    max_head: usize,
    searched: usize,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let end = match locate_head(buf, max_head, searched) {
        Ok(Some(end)) => end,
        Ok(None) => return Ok(None),
        // No line end within the limit: the request line alone is too long, and that is
        // its target (RFC 9112 §3: 414), not the header section (431).
        Err(HeadError::TooLarge) if !buf[..buf.len().min(max_head)].contains(&b'\n') => {
            return Err(HeadError::UriTooLong)
        }
        Err(e) => return Err(e),
    };
    let head = &buf[..end];
    check_request_lines(head)?;
    match parse_request_head(head) {
        // A later HTTP/1 minor version is processed as 1.1, the highest this proxy
        // speaks (RFC 9110 §2.5): the request line is read again with that version.
        Err(_) if later_minor(head).is_some() => {
            let mut patched = head.to_vec();
            if let Some(at) = later_minor(head) {
                patched[at] = b'1';
            }
            parse_request_head(&patched).map(|h| Some((h, end)))
        }
        other => other.map(|h| Some((h, end))),
    }
}

/// Where the minor digit of an `HTTP/1.x` version with x > 1 lies in `head`'s request
/// line, if that is its version.
fn later_minor(head: &[u8]) -> Option<usize> {
    // httparse skips empty lines before the request line (RFC 9112 §2.2).
    let start = head.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
    let line_end = start + head[start..].iter().position(|b| *b == b'\r')?;
    match head[start..line_end].rsplit(|b| *b == b' ').next()? {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9'] => Some(line_end - 1),
        _ => None,
    }
}

/// Parses one whole request head (its lines already checked).
fn parse_request_head(head: &[u8]) -> Result<RequestHead, HeadError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HeadError::Bad("malformed request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyFields),
        Err(httparse::Error::Version) => {
            // "HTTP/2.0" is an unsupported version; "GET /a b HTTP/1.1" a malformed line.
            let line = head
                .split(|b| *b == b'\r')
                .find(|l| !l.is_empty() && *l != b"\n")
                .unwrap_or_default();
            let line = line.strip_prefix(b"\n").unwrap_or(line);
            let parts: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
            return match parts.as_slice() {
                [_, _, v] if v.starts_with(b"HTTP/") => Err(HeadError::Version),
                _ => Err(HeadError::Bad("malformed request line")),
            };
        }
        Err(httparse::Error::HeaderName) => {
            return Err(HeadError::Bad(
                "invalid header name (or space before colon)",
            ))
        }
        Err(_) => return Err(HeadError::Bad("malformed request head")),
    }
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    let minor_version = req.version.unwrap_or(1);
    if method.is_empty() {
        return Err(HeadError::Bad("empty method"));
    }
    // No fragment either: neither origin-form nor absolute-URI has one (RFC 9112 §3.2).
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#') {
        return Err(HeadError::Bad("invalid request target"));
    }
    let (method, target) = (
        range(head, method.as_bytes()),
        range(head, target.as_bytes()),
    );
    // No value holds NUL, CR or LF: `check_request_lines` refused them in the head.
    let headers = collect_fields(head, req.headers, false);
    {
        let mut hosts = headers.get_all(names::HOST);
        match (hosts.next(), hosts.next()) {
            (None, _) if minor_version == 1 => return Err(HeadError::Bad("missing Host header")),
            (Some(_), Some(_)) => return Err(HeadError::Bad("several Host headers")),
            (Some(h), None) if !valid_authority(h) => return Err(HeadError::Bad("invalid Host")),
            _ => {}
        }
    }
    let length = content_length(&headers)?;
    let framing = if headers.contains(names::TRANSFER_ENCODING) {
        if length.is_some() {
            return Err(HeadError::Bad("both Content-Length and Transfer-Encoding"));
        }
        if minor_version == 0 {
            return Err(HeadError::Bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        // Chunked once and last frames the body (RFC 9112 §6.3); another coding before
        // it is one this proxy does not decode (501, §6.1).
        let chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
        let codings: Vec<&[u8]> = tokens(&headers, names::TRANSFER_ENCODING).collect();
        match codings.split_last() {
            Some((last, [])) if chunked(last) => {}
            Some((last, before)) if chunked(last) && !before.iter().any(|c| chunked(c)) => {
                return Err(HeadError::UnknownCoding)
            }
            _ => return Err(HeadError::Bad("Transfer-Encoding other than chunked")),
        }
        BodyFraming::Chunked
    } else {
        match length {
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::None,
        }
    };
    Ok(RequestHead {
        method,
        target,
        minor_version,
        keep_alive: keep_alive(&headers, minor_version),
        headers,
        framing,
    })
}

impl RequestHead {
    /// Method, e.g. `GET`.
    pub fn method(&self) -> &str {
        self.headers.str(self.method)
    }

    /// Request target as sent.
    pub fn target(&self) -> &str {
        self.headers.str(self.target)
    }

    /// The first `name` field's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// Every `name` field's value, in order.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.get_all(name)
    }

    /// How the request body is delimited (never `UntilClose`).
    pub fn body(&self) -> BodyFraming {
        self.framing
    }

    /// Whether body bytes follow the head.
    pub fn has_body(&self) -> bool {
        !matches!(self.framing, BodyFraming::None | BodyFraming::Length(0))
    }

    /// Whether the client wants the connection kept open.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether its method is idempotent (RFC 9110 §9.2.2): a request the proxy may send
    /// again on its own when a connection fails before any answer (RFC 9112 §9.3.1).
    pub fn idempotent(&self) -> bool {
        matches!(
            self.method_bytes(),
            b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
        )
    }

    /// The method's bytes, for the hot tests that need no `&str` (no UTF-8 check).
    fn method_bytes(&self) -> &[u8] {
        self.headers.slice(self.method)
    }

    /// What `Max-Forwards` says of a TRACE or OPTIONS request (RFC 9110 §7.6.2): the
    /// hops it may still take (0: this one answers it). None for other methods, or
    /// without a valid value (then it goes on as any request does).
    pub fn max_forwards(&self) -> Option<u64> {
        if !matches!(self.method_bytes(), b"TRACE" | b"OPTIONS") {
            return None;
        }
        let v = std::str::from_utf8(self.header("max-forwards")?)
            .ok()?
            .trim();
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(v.parse().unwrap_or(u64::MAX))
    }

    /// Whether the connection may stay open after an answer of the proxy's own that
    /// leaves the request's body unread: only when there is none, so that no byte of a
    /// body is ever taken as the next request (RFC 9112 §6.3, §9.3).
    pub fn keep_alive_unread(&self) -> bool {
        self.keep_alive && !self.has_body()
    }

    /// Whether the target is absolute-form (`scheme://authority/path`).
    pub fn is_absolute_form(&self) -> bool {
        scheme_len(self.target()).is_some()
    }

    /// Where the request goes: the URL's authority for absolute form (it wins over Host,
    /// RFC 9112 §3.2.2), else the Host header. Only `http://` and `https://` absolute
    /// targets are proxied; authority form (CONNECT) and asterisk form other than
    /// `OPTIONS *` are refused.
    pub fn split_target(&self) -> Result<Target<'_>, HeadError> {
        let host_header = || {
            self.headers
                .get(names::HOST)
                .map(|h| match String::from_utf8_lossy(h) {
                    Cow::Borrowed(h) => lowercase(h),
                    Cow::Owned(h) => Cow::Owned(h.to_ascii_lowercase()),
                })
                .filter(|h| !h.is_empty())
        };
        let t = self.target();
        if t.starts_with('/') {
            return Ok(Target {
                scheme: None,
                host: host_header(),
                path_and_query: Cow::Borrowed(t),
            });
        }
        if t == "*" {
            if self.method() != "OPTIONS" {
                return Err(HeadError::Bad("asterisk-form is only for OPTIONS"));
            }
            return Ok(Target {
                scheme: None,
                host: host_header(),
                path_and_query: Cow::Borrowed("*"),
            });
        }
        let Some(at) = scheme_len(t) else {
            return Err(HeadError::Bad("unsupported request target form"));
        };
        // `https://` is asked of a proxy in plain HTTP (a child of a cache tier asks
        // its parent so); the proxy speaks TLS to the origin.
        let scheme = if t[..at].eq_ignore_ascii_case("http") {
            "http"
        } else if t[..at].eq_ignore_ascii_case("https") {
            "https"
        } else {
            return Err(HeadError::Bad("unsupported scheme in request target"));
        };
        let rest = &t[at + 3..];
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.is_empty() || !valid_authority(authority.as_bytes()) {
            return Err(HeadError::Bad("invalid authority in request target"));
        }
        let path_and_query = match path {
            // An OPTIONS about the whole server, sent through a proxy: its last proxy
            // sends it as `*` (RFC 9112 §3.2.4).
            "" if self.method() == "OPTIONS" => Cow::Borrowed("*"),
            "" => Cow::Borrowed("/"),
            p if p.starts_with('?') => Cow::Owned(format!("/{p}")),
            p => Cow::Borrowed(p),
        };
        Ok(Target {
            scheme: Some(scheme),
            host: Some(lowercase(authority)),
            path_and_query,
        })
    }
}

/// `s` in ASCII lower case, borrowed when it is already (a host name usually is).
fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Whether the sender of a head with these fields and minor version wants the
/// connection kept open: 1.1 unless `close`, 1.0 only with `keep-alive`.
pub(super) fn keep_alive(headers: &Fields, minor: u8) -> bool {
    let mut asked = false;
    for t in tokens(headers, names::CONNECTION) {
        if t.eq_ignore_ascii_case(b"close") {
            return false;
        }
        asked |= t.eq_ignore_ascii_case(b"keep-alive");
    }
    minor == 1 || asked
}

/// All Content-Length values, which must agree: `Ok(None)` when absent.
pub(super) fn content_length(headers: &Fields) -> Result<Option<u64>, HeadError> {
    let mut found: Option<u64> = None;
    for v in headers.get_all(names::CONTENT_LENGTH) {
        for part in v.split(|b| *b == b',') {
            let part = trim(part);
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::Bad("invalid Content-Length"));
            }
            let n = part.iter().try_fold(0u64, |n, d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            });
            let n = n.ok_or(HeadError::Bad("Content-Length overflows"))?;
            if found.is_some_and(|m| m != n) {
                return Err(HeadError::Bad("conflicting Content-Length values"));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// Whether `v` can be a Host value or the authority of an absolute-form target
/// (RFC 9110 §7.2: `uri-host [ ":" port ]`, no userinfo; RFC 3986 §3.2.2: an
/// IP-literal in brackets, or a reg-name or IPv4 address; `port = *DIGIT`). Empty is
/// allowed here.
fn valid_authority(v: &[u8]) -> bool {
    // unreserved and sub-delims: what a reg-name holds besides pct-encoded octets.
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(b);
    let (host_ok, port) = match v.strip_prefix(b"[") {
        Some(rest) => {
            let Some(close) = rest.iter().position(|b| *b == b']') else {
                return false;
            };
            let literal = &rest[..close];
            let ok = !literal.is_empty() && literal.iter().all(|b| plain(b) || *b == b':');
            (ok, &rest[close + 1..])
        }
        None => {
            let at = v.iter().position(|b| *b == b':').unwrap_or(v.len());
            (reg_name(&v[..at], plain), &v[at..])
        }
    };
    host_ok
        && match port.split_first() {
            None => true,
            Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
            Some(_) => false,
        }
}

/// Whether `s` is a reg-name (or an IPv4 address, which is one too): bytes `plain`
/// takes, and `%` with two hex digits (RFC 3986 §3.2.2).
fn reg_name(mut s: &[u8], plain: impl Fn(&u8) -> bool) -> bool {
    while let Some((b, rest)) = s.split_first() {
        s = match (b, rest) {
            (b'%', [h, l, tail @ ..]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => tail,
            (b, rest) if plain(b) => rest,
            _ => return false,
        };
    }
    true
}

/// Length of the `scheme` of an absolute-form target (`scheme://...`), if it is one.
fn scheme_len(target: &str) -> Option<usize> {
    let at = target.find("://")?;
    let scheme = &target.as_bytes()[..at];
    let ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    ok.then_some(at)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{head, req};
    use super::*;

    #[test]
    fn parses_request_line_headers_and_length() {
        let raw = "POST /a?b HTTP/1.1\r\nHost: x\r\nX-Case: One\r\nx-case:  two \r\nContent-Length: 3\r\n\r\nabcGET";
        let (h, n) = req(raw).unwrap().unwrap();
        assert_eq!(n, raw.len() - 6);
        assert_eq!(
            (h.method(), h.target(), h.minor_version),
            ("POST", "/a?b", 1)
        );
        let names: Vec<&str> = h.headers.iter().map(|h| h.name).collect();
        assert_eq!(names, ["Host", "X-Case", "x-case", "Content-Length"]);
        assert_eq!(h.header("X-CASE"), Some(&b"One"[..]));
        assert_eq!(
            h.headers_all("x-Case").collect::<Vec<_>>(),
            [&b"One"[..], b"two"]
        );
        assert_eq!(h.header("missing"), None);
        assert_eq!(h.body(), BodyFraming::Length(3));
        assert!(!h.is_absolute_form());
    }

    #[test]
    fn request_framing_is_length_chunked_or_none() {
        let f = |raw: &str| head(raw).body();
        assert_eq!(f("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), BodyFraming::None);
        assert_eq!(
            f("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  ChUnKeD \r\n\r\n"),
            BodyFraming::Chunked
        );
        assert_eq!(
            f("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
            BodyFraming::Length(0)
        );
        assert_eq!(
            f("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 007\r\n\r\n"),
            BodyFraming::Length(7)
        );
        assert_eq!(
            f("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n"),
            BodyFraming::Length(u64::MAX)
        );
        // Identical repeats, as fields or as a list, are one value.
        assert_eq!(
            f("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"),
            BodyFraming::Length(3)
        );
        assert_eq!(
            f("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3 ,3\r\n\r\n"),
            BodyFraming::Length(3)
        );
        // HTTP/1.0 needs no Host.
        assert_eq!(f("GET / HTTP/1.0\r\n\r\n"), BodyFraming::None);
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        for raw in [
            "",
            "GET",
            "GET / HTTP/1.1",
            "GET / HTTP/1.1\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n\r",
        ] {
            assert_eq!(req(raw), Ok(None), "{raw:?}");
        }
    }

    #[test]
    fn smuggling_and_ambiguity_are_refused() {
        let cases: &[(&str, &str)] = &[
            (
                "CL and TE",
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            (
                "TE then CL",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            ),
            (
                "differing CL fields",
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            ),
            ("differing CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n"),
            ("CL list with a hole", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3,\r\n\r\n"),
            ("signed CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n"),
            ("negative CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
            ("hex CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n"),
            ("CL with junk", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3a\r\n\r\n"),
            ("CL with inner space", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n"),
            ("empty CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n"),
            (
                "CL overflow",
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n",
            ),
            ("TE gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
            (
                "TE chunked, chunked",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            ),
            (
                "TE chunked, gzip",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            ),
            (
                "TE chunked twice",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            ("TE empty", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n"),
            ("TE chunkedx", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunkedx\r\n\r\n"),
            ("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ("obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"),
            ("obs-fold with tab", "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n"),
            ("space before first field", "GET / HTTP/1.1\r\n Host: x\r\n\r\n"),
            ("bare LF everywhere", "GET / HTTP/1.1\nHost: x\n\n"),
            ("bare LF after request line", "GET / HTTP/1.1\nHost: x\r\n\r\n"),
            ("bare LF in fields", "GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n"),
            ("bare LF at the end", "GET / HTTP/1.1\r\nHost: x\r\n\n"),
            ("bare CR in a value", "GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n"),
            ("space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n"),
            ("tab before colon", "GET / HTTP/1.1\r\nHost\t: x\r\n\r\n"),
            ("NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n"),
            ("missing Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n"),
            ("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            ("two Hosts, same value", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
            ("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"),
            ("Host with a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
            ("Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            ("Host with a port of letters", "GET / HTTP/1.1\r\nHost: a:xx\r\n\r\n"),
            ("Host with two ports", "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n"),
            ("Host with stray brackets", "GET / HTTP/1.1\r\nHost: ]]a[[\r\n\r\n"),
            ("Host with an unclosed literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"),
            ("Host with junk after a literal", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"),
            ("Host with an empty literal", "GET / HTTP/1.1\r\nHost: []\r\n\r\n"),
            ("Host with a bad escape", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n"),
            ("fragment in target", "GET /a#f HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("fragment in absolute target", "GET http://x/a#f HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("control byte in target", "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("DEL in target", "GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("empty method", " / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("no target", "GET HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("HTTP/0.9 line", "GET /\r\n\r\n"),
            ("lower-case version", "GET / http/1.1\r\nHost: x\r\n\r\n"),
            ("only a blank line", "\r\n\r\n"),
        ];
        for (what, raw) in cases {
            let got = req(raw);
            assert!(
                matches!(got, Err(HeadError::Bad(_))),
                "{what}: {raw:?} → {got:?}"
            );
            assert_eq!(got.unwrap_err().status(), 400);
        }
    }

    #[test]
    fn hosts_of_every_authority_form_are_accepted() {
        for host in [
            "a",
            "a:8080",
            "a:",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:81",
            "[v1.x]",
            "a%41b",
            "",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(req(&raw).is_ok_and(|r| r.is_some()), "{host:?}");
        }
    }

    #[test]
    fn a_coding_before_chunked_is_not_implemented() {
        for te in [
            "gzip, chunked",
            "identity, chunked",
            "x\r\nTransfer-Encoding: chunked",
        ] {
            let raw = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n");
            let got = req(&raw);
            assert_eq!(got, Err(HeadError::UnknownCoding), "{te:?}");
            assert_eq!(got.unwrap_err().status(), 501);
        }
    }

    #[test]
    fn a_leading_empty_line_is_ignored() {
        let (h, n) = req("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.method(), n), ("GET", 29));
    }

    #[test]
    fn oversized_heads_are_too_large_complete_or_not() {
        let raw = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"; // 27 bytes
        assert!(parse_request(raw.as_bytes(), 27).unwrap().is_some());
        assert_eq!(parse_request(raw.as_bytes(), 26), Err(HeadError::TooLarge));
        // Incomplete: fine up to the limit, too large past it.
        let partial = b"GET / HTTP/1.1\r\nX: aaaa";
        assert_eq!(parse_request(partial, partial.len()), Ok(None));
        assert_eq!(
            parse_request(partial, partial.len() - 1),
            Err(HeadError::TooLarge)
        );
        // A complete head followed by a large body is not too large.
        let mut with_body = raw.as_bytes().to_vec();
        with_body.extend(std::iter::repeat_n(b'z', 100_000));
        assert_eq!(parse_request(&with_body, 64).unwrap().unwrap().1, 27);
        // A long field.
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(9000)
        );
        assert_eq!(req(&big), Err(HeadError::TooLarge));
        assert_eq!(HeadError::TooLarge.status(), 431);
        // A request line longer than the limit: its target is too long (414), complete
        // or not.
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200));
        assert_eq!(
            parse_request(long.as_bytes(), 100),
            Err(HeadError::UriTooLong)
        );
        assert_eq!(
            parse_request(&long.as_bytes()[..150], 100),
            Err(HeadError::UriTooLong)
        );
        assert_eq!(HeadError::UriTooLong.status(), 414);
    }

    #[test]
    fn too_many_fields_are_refused_however_small() {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..MAX_HEADERS - 1 {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(head(&raw).headers.len(), MAX_HEADERS);
        let more = raw.replace("\r\n\r\n", "\r\nX-Last: v\r\n\r\n");
        assert_eq!(req(&more), Err(HeadError::TooManyFields));
        assert_eq!(HeadError::TooManyFields.status(), 431);
    }

    #[test]
    fn only_http_1_0_and_1_1_are_spoken() {
        for raw in [
            "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            "GET / HTTP/3\r\nHost: x\r\n\r\n",
            "GET / HTTP/0.9\r\nHost: x\r\n\r\n",
        ] {
            assert_eq!(req(raw), Err(HeadError::Version), "{raw:?}");
        }
        assert_eq!(HeadError::Version.status(), 505);
        assert_eq!(head("GET / HTTP/1.0\r\n\r\n").minor_version, 0);
    }

    #[test]
    fn later_http_1_minor_versions_are_processed_as_1_1() {
        // RFC 9110 §2.5: a recipient processes a higher minor version as the highest
        // it speaks.
        for raw in [
            "GET /a HTTP/1.2\r\nHost: x\r\n\r\n",
            "\r\nGET /a HTTP/1.9\r\nHost: x\r\n\r\n",
        ] {
            let (h, len) = req(raw).unwrap().unwrap();
            assert_eq!((h.minor_version, h.target(), len), (1, "/a", raw.len()));
            assert!(h.keep_alive());
        }
        // Still a 1.1 request: Host is required.
        assert_eq!(
            req("GET / HTTP/1.5\r\n\r\n"),
            Err(HeadError::Bad("missing Host header"))
        );
    }

    #[test]
    fn resumed_search_finds_a_terminator_split_across_reads() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
        let whole = parse_request(raw, 8192).unwrap().unwrap();
        // Grow the buffer one byte at a time, passing the previous length as the hint.
        let mut searched = 0;
        for len in 0..=raw.len() {
            match parse_request_from(&raw[..len], 8192, searched).unwrap() {
                None => searched = len,
                Some(got) => {
                    assert_eq!(got, whole);
                    assert_eq!(len, 27, "found as soon as it was complete");
                    return;
                }
            }
        }
        panic!("never complete");
    }

    #[test]
    fn keep_alive_follows_version_and_connection_tokens() {
        let ka = |raw: &str| head(raw).keep_alive();
        assert!(ka("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(ka(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: X-A , CLOSE\r\n\r\n"
        ));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: x\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.0\r\nConnection: x-keep-alive\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: te, keep-alive\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
    }

    #[test]
    fn targets_split_by_form() {
        // The parts, owned: a target borrows from its head.
        let t = |raw: &str| {
            head(raw).split_target().map(|t| Target {
                scheme: t.scheme,
                host: t.host.map(|h| Cow::Owned(h.into_owned())),
                path_and_query: Cow::Owned(t.path_and_query.into_owned()),
            })
        };
        // Borrowed from the head unless lower-casing or a leading `/` changed them.
        let h = head("GET http://origin:81?q HTTP/1.1\r\nHost: other\r\n\r\n");
        let a = h.split_target().unwrap();
        assert!(matches!(a.host, Some(Cow::Borrowed("origin:81"))));
        assert!(matches!(a.path_and_query, Cow::Owned(ref p) if p == "/?q"));
        let h = head("GET /p HTTP/1.1\r\nHost: Mixed.Case\r\n\r\n");
        let o = h.split_target().unwrap();
        assert!(matches!(o.host, Some(Cow::Owned(ref h)) if h == "mixed.case"));
        assert!(matches!(o.path_and_query, Cow::Borrowed("/p")));
        let o = t("GET /p?q HTTP/1.1\r\nHost: WWW.X:8080\r\n\r\n").unwrap();
        assert_eq!(
            o,
            Target {
                scheme: None,
                host: Some("www.x:8080".into()),
                path_and_query: "/p?q".into()
            }
        );
        assert_eq!(t("GET / HTTP/1.0\r\n\r\n").unwrap().host, None);
        // Absolute form: the URL's authority wins over Host.
        let a = t("GET http://Origin:81/a?b HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
        assert_eq!(
            a,
            Target {
                scheme: Some("http"),
                host: Some("origin:81".into()),
                path_and_query: "/a?b".into()
            }
        );
        let a = t("GET HTTP://[::1]:81?x HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
        assert_eq!(
            (a.host.as_deref(), &*a.path_and_query),
            (Some("[::1]:81"), "/?x")
        );
        assert_eq!(
            t("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap()
                .path_and_query,
            "/"
        );
        assert!(head("GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n").is_absolute_form());
        assert!(!head("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n").is_absolute_form());
        let star = t("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            (star.host.as_deref(), &*star.path_and_query),
            (Some("x"), "*")
        );
        // Through a proxy, an OPTIONS about the whole server has an empty path, and its
        // last proxy sends it as `*` (RFC 9112 §3.2.4).
        let abs = t("OPTIONS http://x:81 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            (abs.host.as_deref(), &*abs.path_and_query),
            (Some("x:81"), "*")
        );
        let abs = t("OPTIONS http://x/ HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(&*abs.path_and_query, "/");
        for refused in [
            "GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http:///a HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://u@h/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://h\"/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET 1http://h/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET a HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let got = t(refused);
            assert!(
                matches!(got, Err(HeadError::Bad(_))),
                "{refused:?} → {got:?}"
            );
        }
    }
}
