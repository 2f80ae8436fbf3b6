//! HTTP/1.1 on the wire: request and response heads (with the checks that close off
//! request smuggling), body framing, a streaming chunked-body scanner, and the header
//! rewriting a proxy does when forwarding. Pure functions over byte slices: no sockets.
//!
//! Strict with clients (RFC 9112 §11.2: any ambiguity in how a request is framed is a
//! 400 and a close), liberal with origins except where leniency would create ambiguity.
//! Whatever this module accepts has exactly one framing, and what it writes carries the
//! same framing headers it read, so the proxy and the next hop agree where a body ends.

use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;

/// Most header fields a head may carry; more is [`HeadError::TooLarge`].
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (size and extensions, without its CRLF) the scanner accepts.
const MAX_CHUNK_LINE: usize = 1024;
/// Longest trailer line (without its CRLF).
const MAX_TRAILER_LINE: usize = 8192;

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Framing headers. A `Connection` token never removes them: the proxy frames the body
/// by them, so the next hop must see them too.
const FRAMING: &[&str] = &["content-length", "transfer-encoding"];

/// Why a head (or a chunked body) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The head is larger than allowed, or has too many fields (431).
    TooLarge,
    /// Not HTTP/1.0 or HTTP/1.1 (505).
    Version,
    /// Malformed or ambiguous (400), with the reason.
    Bad(&'static str),
}

impl HeadError {
    /// The status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Version => 505,
            HeadError::Bad(_) => 400,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge => f.write_str("header section too large"),
            HeadError::Version => f.write_str("HTTP version not supported"),
            HeadError::Bad(why) => write!(f, "bad message: {why}"),
        }
    }
}

impl std::error::Error for HeadError {}

pub use super::fields::{Field, Fields};

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

/// A parsed request line and header section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Where the method lies in the fields' buffer: see [`RequestHead::method`].
    method: (usize, usize),
    /// Where the request target lies: see [`RequestHead::target`].
    target: (usize, usize),
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in order.
    pub headers: Fields,
    /// Decided at parse time, so headers added later cannot change it.
    framing: BodyFraming,
    /// Whether the client wants the connection kept open (decided at parse time).
    keep_alive: bool,
}

/// A parsed status line and header section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Status code, 100 to 999.
    pub status: u16,
    /// Where the reason phrase lies: see [`ResponseHead::reason`].
    reason: (usize, usize),
    /// Header fields in order; a Content-Length beside Transfer-Encoding is removed.
    pub headers: Fields,
    /// The framing the headers give, before the request method and status are applied.
    framing: BodyFraming,
    /// Whether the origin will keep the connection open (decided at parse time).
    keep_alive: bool,
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `Some("http")` for absolute-form targets.
    pub scheme: Option<String>,
    /// Lower-cased `host[:port]`, from the URL (absolute form) or the Host header.
    pub host: Option<String>,
    /// Path and query, at least `/` (or `*` for `OPTIONS *`).
    pub path_and_query: String,
}

/// Comma-separated tokens of every `name` field, trimmed, empty ones skipped.
fn tokens<'a>(headers: &'a Fields, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .get_all(name)
        .flat_map(|v| v.split(|b| *b == b','))
        .map(trim)
        .filter(|t| !t.is_empty())
}

fn keep_alive(headers: &Fields, minor: u8) -> bool {
    let mut asked = false;
    for t in tokens(headers, "connection") {
        if t.eq_ignore_ascii_case(b"close") {
            return false;
        }
        asked |= t.eq_ignore_ascii_case(b"keep-alive");
    }
    minor == 1 || asked
}

/// All Content-Length values, which must agree: `Ok(None)` when absent.
fn content_length(headers: &Fields) -> Result<Option<u64>, HeadError> {
    let mut found: Option<u64> = None;
    for v in headers.get_all("content-length") {
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

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether `v` can be a Host value or the authority of an absolute-form target
/// (RFC 9110 §7.2: `uri-host [ ":" port ]`, no userinfo). Empty is allowed here.
fn valid_authority(v: &[u8]) -> bool {
    v.iter()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(b))
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

/// The position of the first byte at or after `from` for which `hit` holds, testing
/// eight bytes at a time with `any_in_word` (which may report a word that has none, never
/// miss one that has): heads are scanned for line ends and control bytes on every
/// request, and a byte-at-a-time loop cost more than the rest of the parse.
fn find(
    buf: &[u8],
    from: usize,
    any_in_word: impl Fn(u64) -> bool,
    hit: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut i = from.min(buf.len());
    while let Some(word) = buf.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        if any_in_word(w) {
            if let Some(p) = word.iter().position(|b| hit(*b)) {
                return Some(i + p);
            }
        }
        i += 8;
    }
    buf[i..].iter().position(|b| hit(*b)).map(|p| i + p)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether a byte of `w` is below `n` (exact for n ≤ 128; "hasless" of Bit Twiddling
/// Hacks).
fn has_below(w: u64, n: u8) -> bool {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS != 0
}

/// The first `\n` at or after `from`.
fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    find(
        buf,
        from,
        |w| has_below(w ^ (ONES * u64::from(b'\n')), 1),
        |b| b == b'\n',
    )
}

/// The first byte at or after `from` that is `\r` or below it (NUL, LF among them).
fn find_control(buf: &[u8], from: usize) -> Option<usize> {
    find(buf, from, |w| has_below(w, b'\r' + 1), |b| b <= b'\r')
}

/// The end of the head (just past its blank line), if complete: the first `\n\r\n` or
/// `\n\n` at or after `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from.min(buf.len());
    while let Some(at) = find_lf(buf, i) {
        match &buf[at + 1..] {
            [b'\n', ..] => return Some(at + 2),
            [b'\r', b'\n', ..] => return Some(at + 3),
            _ => i = at + 1,
        }
    }
    None
}

/// Where the head in `buf` ends, looking at no more than `max_head` bytes and skipping
/// what an earlier call already searched. Work per call is bounded by `max_head`.
fn locate_head(buf: &[u8], max_head: usize, searched: usize) -> Result<Option<usize>, HeadError> {
    let window = &buf[..buf.len().min(max_head)];
    // The terminator is at most 3 bytes, so it may have begun in the searched part.
    match head_end(window, searched.saturating_sub(3)) {
        Some(end) => Ok(Some(end)),
        None if buf.len() > max_head => Err(HeadError::TooLarge),
        None => Ok(None),
    }
}

/// Requires CRLF line endings and refuses obs-fold and NUL anywhere in a request head
/// (httparse tolerates bare LF).
fn check_request_lines(head: &[u8]) -> Result<(), HeadError> {
    let mut from = 0;
    while let Some(i) = find_control(head, from) {
        from = i + 1;
        match head[i] {
            b'\n' if i == 0 || head[i - 1] != b'\r' => {
                return Err(HeadError::Bad("bare LF in request head"))
            }
            b'\n' if matches!(head.get(i + 1), Some(b' ' | b'\t')) => {
                return Err(HeadError::Bad("obsolete line folding"))
            }
            b'\r' if head.get(i + 1) != Some(&b'\n') => {
                return Err(HeadError::Bad("bare CR in request head"))
            }
            0 => return Err(HeadError::Bad("NUL in request head")),
            _ => {}
        }
    }
    Ok(())
}

/// The range of `head` that `part`, a slice httparse returned, covers. httparse may
/// return an empty part that is not a slice of the head (a static `""`), so every empty
/// part is the empty range at 0.
fn range(head: &[u8], part: &[u8]) -> (usize, usize) {
    if part.is_empty() {
        return (0, 0);
    }
    let at = part.as_ptr() as usize - head.as_ptr() as usize;
    debug_assert!(at + part.len() <= head.len());
    (at, at + part.len())
}

/// Copies the head once and records httparse's fields as ranges of the copy, values
/// trimmed. With `unfold` (responses: requests refuse obs-fold before this), a value's
/// obs-fold becomes spaces (RFC 9112 §5.2).
fn collect_fields(head: &[u8], raw: &[httparse::Header<'_>], unfold: bool) -> Fields {
    let mut fields = Fields::over(head.to_vec(), raw.len());
    for h in raw {
        let value = range(head, trim(h.value));
        fields.add(range(head, h.name.as_bytes()), value);
        if unfold && find_control(h.value, 0).is_some() {
            for b in fields.slice_mut(value) {
                if matches!(b, b'\r' | b'\n') {
                    *b = b' ';
                }
            }
        }
    }
    fields
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
    let Some(end) = locate_head(buf, max_head, searched)? else {
        return Ok(None);
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
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
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
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(HeadError::Bad("invalid request target"));
    }
    let (method, target) = (
        range(head, method.as_bytes()),
        range(head, target.as_bytes()),
    );
    // No value holds NUL, CR or LF: `check_request_lines` refused them in the head.
    let headers = collect_fields(head, req.headers, false);
    {
        let mut hosts = headers.get_all("host");
        match (hosts.next(), hosts.next()) {
            (None, _) if minor_version == 1 => return Err(HeadError::Bad("missing Host header")),
            (Some(_), Some(_)) => return Err(HeadError::Bad("several Host headers")),
            (Some(h), None) if !valid_authority(h) => return Err(HeadError::Bad("invalid Host")),
            _ => {}
        }
    }
    let length = content_length(&headers)?;
    let framing = if headers.contains("transfer-encoding") {
        if length.is_some() {
            return Err(HeadError::Bad("both Content-Length and Transfer-Encoding"));
        }
        if minor_version == 0 {
            return Err(HeadError::Bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        let mut codings = tokens(&headers, "transfer-encoding");
        match (codings.next(), codings.next()) {
            (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => {}
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

    /// `Expect: 100-continue`.
    pub fn expects_continue(&self) -> bool {
        self.header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"))
    }

    /// Whether the target is absolute-form (`scheme://authority/path`).
    pub fn is_absolute_form(&self) -> bool {
        scheme_len(self.target()).is_some()
    }

    /// Where the request goes: the URL's authority for absolute form (it wins over Host,
    /// RFC 9112 §3.2.2), else the Host header. Only `http://` absolute targets are
    /// proxied; authority form (CONNECT) and asterisk form other than `OPTIONS *` are
    /// refused.
    pub fn split_target(&self) -> Result<Target, HeadError> {
        let host_header = || {
            self.header("host")
                .map(|h| String::from_utf8_lossy(h).to_ascii_lowercase())
                .filter(|h| !h.is_empty())
        };
        let t = self.target();
        if t.starts_with('/') {
            return Ok(Target {
                scheme: None,
                host: host_header(),
                path_and_query: t.to_string(),
            });
        }
        if t == "*" {
            if self.method() != "OPTIONS" {
                return Err(HeadError::Bad("asterisk-form is only for OPTIONS"));
            }
            return Ok(Target {
                scheme: None,
                host: host_header(),
                path_and_query: "*".into(),
            });
        }
        let Some(at) = scheme_len(t) else {
            return Err(HeadError::Bad("unsupported request target form"));
        };
        if !t[..at].eq_ignore_ascii_case("http") {
            return Err(HeadError::Bad("unsupported scheme in request target"));
        }
        let rest = &t[at + 3..];
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.is_empty() || !valid_authority(authority.as_bytes()) {
            return Err(HeadError::Bad("invalid authority in request target"));
        }
        let path_and_query = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Target {
            scheme: Some("http".into()),
            host: Some(authority.to_ascii_lowercase()),
            path_and_query,
        })
    }
}

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete. The framing
/// checks do not depend on `request_method`; pass it again to [`ResponseHead::body`].
pub fn parse_response(
    buf: &[u8],
    max_head: usize,
    request_method: &str,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    parse_response_from(buf, max_head, request_method, 0)
}

/// As [`parse_response`], skipping `searched` bytes known to hold no complete head (see
/// [`parse_request_from`]).
pub fn parse_response_from(
    buf: &[u8],
    max_head: usize,
    request_method: &str,
    searched: usize,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let _ = request_method;
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
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) if buf.starts_with(b"HTTP/") => {
            return Err(HeadError::Version)
        }
        Err(_) => return Err(HeadError::Bad("malformed response head")),
    }
    let status = resp.code.unwrap_or(0);
    if status < 100 {
        return Err(HeadError::Bad("invalid status code"));
    }
    let minor_version = resp.version.unwrap_or(1);
    let head = &buf[..end];
    let reason = range(head, resp.reason.unwrap_or_default().as_bytes());
    let mut headers = collect_fields(head, resp.headers, true);
    let has_te = headers.contains("transfer-encoding");
    // HTTP/1.0 has no Transfer-Encoding: its framing is faulty (RFC 9112 §6.1), so read
    // to the close, and do not reuse the connection.
    let faulty = has_te && minor_version == 0;
    let framing = if has_te {
        let chunked_last = tokens(&headers, "transfer-encoding")
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
        },
        end,
    )))
}

/// `method` as far as the framing of its response cares ([`ResponseHead::body`]):
/// `HEAD`, `CONNECT`, or `GET` standing for every other method.
pub fn framing_method(method: &str) -> &'static str {
    if method.eq_ignore_ascii_case("HEAD") {
        "HEAD"
    } else if method.eq_ignore_ascii_case("CONNECT") {
        "CONNECT"
    } else {
        "GET"
    }
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

    /// How the body is delimited, for a response to `request_method` (RFC 9112 §6.3).
    pub fn body(&self, request_method: &str) -> BodyFraming {
        let bodiless = request_method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
            // The connection becomes a tunnel right after the head.
            || (request_method.eq_ignore_ascii_case("CONNECT")
                && (200..300).contains(&self.status));
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
}

/// Result of feeding bytes to a [`ChunkedScanner`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// Bytes of the input that belong to the body.
    pub consumed: usize,
    /// The body (last chunk and trailers) ended within them.
    pub done: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// At the start of a chunk-size line.
    Size,
    /// After at least one hex digit.
    SizeDigits,
    /// After whitespace following the size: only `;` or the CR may come.
    SizeWs,
    /// In chunk extensions, ignored.
    Ext,
    /// After the size line's CR.
    SizeLf,
    /// In chunk data; `ChunkedScanner::value` bytes to go.
    Data,
    DataCr,
    DataLf,
    /// In a trailer line (or the blank line ending the body).
    Trailer,
    TrailerLf,
    Done,
}

/// Finds where a chunked body ends while the bytes pass through unchanged (or, with
/// [`ChunkedScanner::decode`], extracts the payload). State carries across calls, so
/// input may be split anywhere. Errors are [`HeadError::Bad`]; after one, the body is
/// unusable and the connection must be closed.
#[derive(Clone, Debug)]
pub struct ChunkedScanner {
    state: Chunk,
    /// The chunk size being read, then the data bytes left.
    value: u64,
    /// Bytes of the current size or trailer line so far.
    line: usize,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner::new()
    }
}

impl ChunkedScanner {
    /// A scanner at the start of a body.
    pub fn new() -> ChunkedScanner {
        ChunkedScanner {
            state: Chunk::Size,
            value: 0,
            line: 0,
        }
    }

    /// Whether the whole body has been seen.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Consumes as much of `input` as belongs to the body.
    pub fn scan(&mut self, input: &[u8]) -> Result<ScanResult, HeadError> {
        self.run(input, None)
    }

    /// As [`scan`](Self::scan), appending the payload bytes to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<ScanResult, HeadError> {
        self.run(input, Some(out))
    }

    fn run(
        &mut self,
        input: &[u8],
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<ScanResult, HeadError> {
        let bad = |why| Err(HeadError::Bad(why));
        let mut i = 0;
        while i < input.len() && self.state != Chunk::Done {
            if self.state == Chunk::Data {
                let k = self.value.min((input.len() - i) as u64) as usize;
                if let Some(o) = out.as_deref_mut() {
                    o.extend_from_slice(&input[i..i + k]);
                }
                i += k;
                self.value -= k as u64;
                if self.value == 0 {
                    self.state = Chunk::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            if matches!(
                self.state,
                Chunk::Size | Chunk::SizeDigits | Chunk::SizeWs | Chunk::Ext
            ) && b != b'\r'
            {
                self.line += 1;
                if self.line > MAX_CHUNK_LINE {
                    return bad("chunk size line too long");
                }
            }
            self.state = match (self.state, b) {
                (Chunk::Size | Chunk::SizeDigits, _) if b.is_ascii_hexdigit() => {
                    if self.value > u64::MAX >> 4 {
                        return bad("chunk size overflows");
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    self.value = (self.value << 4) | u64::from(d);
                    Chunk::SizeDigits
                }
                (Chunk::Size, _) => return bad("malformed chunk size"),
                (Chunk::SizeDigits | Chunk::SizeWs, b' ' | b'\t') => Chunk::SizeWs,
                (Chunk::SizeDigits | Chunk::SizeWs | Chunk::Ext, b'\r') => Chunk::SizeLf,
                (Chunk::SizeDigits | Chunk::SizeWs, b';') => Chunk::Ext,
                (Chunk::SizeDigits | Chunk::SizeWs, _) => return bad("malformed chunk size"),
                (Chunk::Ext, b'\n' | 0) => return bad("bad byte in chunk extension"),
                (Chunk::Ext, _) => Chunk::Ext,
                (Chunk::SizeLf, b'\n') => {
                    self.line = 0;
                    if self.value == 0 {
                        Chunk::Trailer
                    } else {
                        Chunk::Data
                    }
                }
                (Chunk::SizeLf, _) => return bad("chunk size line without CRLF"),
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataCr, _) => return bad("chunk data longer than its size"),
                (Chunk::DataLf, b'\n') => Chunk::Size,
                (Chunk::DataLf, _) => return bad("chunk data without CRLF"),
                (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
                (Chunk::Trailer, b'\n' | 0) => return bad("bad byte in trailers"),
                (Chunk::Trailer, b' ' | b'\t') if self.line == 0 => {
                    return bad("obsolete line folding in trailers")
                }
                (Chunk::Trailer, _) if self.line >= MAX_TRAILER_LINE => {
                    return bad("trailer line too long")
                }
                (Chunk::Trailer, _) => {
                    self.line += 1;
                    Chunk::Trailer
                }
                (Chunk::TrailerLf, b'\n') if self.line == 0 => Chunk::Done,
                (Chunk::TrailerLf, b'\n') => {
                    self.line = 0;
                    Chunk::Trailer
                }
                (Chunk::TrailerLf, _) => return bad("trailer line without CRLF"),
                (Chunk::Data | Chunk::Done, _) => self.state,
            };
        }
        Ok(ScanResult {
            consumed: i,
            done: self.state == Chunk::Done,
        })
    }
}

/// Appends one chunk holding `data` (nothing for empty data: that would end the body).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How to forward a request. The strings are written as they are: they come from a
/// target [`RequestHead::split_target`] accepted, or from configuration.
#[derive(Clone, Debug)]
pub struct ForwardRequest<'a> {
    /// Path and query to send.
    pub path_and_query: &'a str,
    /// Host header value for the origin.
    pub host: &'a str,
    /// This proxy's Via entry, e.g. `1.1 turnstile`.
    pub via: &'a str,
    /// Appended to X-Forwarded-For; `None` passes an existing one on unchanged.
    pub client_ip: Option<IpAddr>,
    /// Ask the origin to keep the connection open.
    pub keep_alive: bool,
    /// Forward fields whose name holds `_` (`http.underscores_in_headers`); dropped
    /// otherwise, as nginx does: a `Transfer_Encoding` may mean `Transfer-Encoding` to
    /// a server that maps `_` to `-`.
    pub underscores: bool,
}

/// How to forward a response.
#[derive(Clone, Debug)]
pub struct ForwardResponse<'a> {
    /// This proxy's Via entry.
    pub via: &'a str,
    /// Tell the client whether the connection stays open (ignored for 1xx, forced off
    /// for a close-delimited override).
    pub keep_alive: bool,
    /// `None` (or `Some(BodyFraming::None)`) keeps the origin's framing headers. When the
    /// proxy re-frames the payload (the body with any chunked coding removed):
    /// `Length(n)` sends `Content-Length: n`, `Chunked` sends
    /// `Transfer-Encoding: chunked` (encode with [`encode_chunk`]), `UntilClose` sends
    /// neither and `Connection: close` (headers kept as they are if the origin's body
    /// was close-delimited already). Either way the origin's Content-Length and
    /// Transfer-Encoding are dropped, so only for payloads without other codings.
    pub framing_override: Option<BodyFraming>,
}

/// Names a forwarded message must not carry: hop-by-hop ones and those its Connection
/// header lists, except framing headers.
///
/// Built per forwarded message; allocates only when the Connection header names fields
/// beyond the hop-by-hop ones.
struct Skip<'a> {
    named: Vec<&'a [u8]>,
    extra: &'static [&'static str],
    framing: bool,
    underscored: bool,
}

/// Whether `name` is one of `list` (case-insensitive).
fn listed(list: &[&str], name: &[u8]) -> bool {
    list.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

impl<'a> Skip<'a> {
    fn new(headers: &'a Fields, extra: &'static [&'static str]) -> Skip<'a> {
        let named = tokens(headers, "connection")
            .filter(|t| !listed(FRAMING, t) && !listed(HOP_BY_HOP, t))
            .collect();
        Skip {
            named,
            extra,
            framing: false,
            underscored: false,
        }
    }

    fn contains(&self, name: &[u8]) -> bool {
        listed(HOP_BY_HOP, name)
            || listed(self.extra, name)
            || (self.framing && listed(FRAMING, name))
            || (self.underscored && name.contains(&b'_'))
            || self.named.iter().any(|n| name.eq_ignore_ascii_case(n))
    }
}

fn write_fields(headers: &Fields, skip: &Skip<'_>, out: &mut Vec<u8>) {
    for (name, value) in headers.raw() {
        if skip.contains(name) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// One `name` field: every existing value, then ours (written by `ours`), comma-joined.
fn write_appended(
    headers: &Fields,
    name: &str,
    out: &mut Vec<u8>,
    ours: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for v in headers.get_all(name) {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    ours(out);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal. Heads are written with `extend_from_slice` and this rather
/// than `write!`: the formatting machinery cost more than the rest of a head.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends `ip` as text (dotted quad for IPv4 without the formatting machinery).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn write_connection(keep_alive: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n"
    } else {
        b"Connection: close\r\n"
    });
}

/// Writes the request head to send to the origin: always HTTP/1.1, the given Host,
/// end-to-end fields in order, the framing the proxy read as one field of its own
/// (`Content-Length: 5, 5` or two equal fields become one `Content-Length: 5`, RFC 9110
/// §8.6: the next hop cannot read a list differently), then Via, X-Forwarded-For and
/// Connection.
pub fn write_request_head(head: &RequestHead, out: &mut Vec<u8>, opts: &ForwardRequest<'_>) {
    let extra: &'static [&'static str] = if opts.client_ip.is_some() {
        &["host", "via", "x-forwarded-for"]
    } else {
        &["host", "via"]
    };
    let mut skip = Skip::new(&head.headers, extra);
    skip.framing = true;
    skip.underscored = !opts.underscores;
    out.reserve(head.headers.byte_len() + opts.path_and_query.len() + opts.via.len() + 96);
    out.extend_from_slice(head.headers.slice(head.method));
    out.push(b' ');
    out.extend_from_slice(opts.path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(opts.host.as_bytes());
    out.extend_from_slice(b"\r\n");
    write_fields(&head.headers, &skip, out);
    match head.framing {
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
    write_appended(&head.headers, "Via", out, |o| {
        o.extend_from_slice(opts.via.as_bytes())
    });
    if let Some(ip) = opts.client_ip {
        write_appended(&head.headers, "X-Forwarded-For", out, |o| push_ip(o, ip));
    }
    write_connection(opts.keep_alive, out);
    out.extend_from_slice(b"\r\n");
}

/// Writes the response head to send to the client: always HTTP/1.1, end-to-end fields
/// in order, Via, and Connection (not on 1xx).
pub fn write_response_head(head: &ResponseHead, out: &mut Vec<u8>, opts: &ForwardResponse<'_>) {
    let mut skip = Skip::new(&head.headers, &["via"]);
    let reframe = match opts.framing_override {
        None | Some(BodyFraming::None) => None,
        Some(BodyFraming::UntilClose) if head.framing == BodyFraming::UntilClose => None,
        Some(f) => Some(f),
    };
    skip.framing = reframe.is_some();
    out.reserve(head.headers.byte_len() + opts.via.len() + 96);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(head.status));
    out.push(b' ');
    out.extend_from_slice(head.headers.slice(head.reason));
    out.extend_from_slice(b"\r\n");
    write_fields(&head.headers, &skip, out);
    match reframe {
        Some(BodyFraming::Length(n)) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Some(BodyFraming::Chunked) => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    write_appended(&head.headers, "Via", out, |o| {
        o.extend_from_slice(opts.via.as_bytes())
    });
    if !(100..200).contains(&head.status) {
        let until_close = opts.framing_override == Some(BodyFraming::UntilClose);
        write_connection(opts.keep_alive && !until_close, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// A complete local response with a text body (none for 1xx, 204 and 304, which
/// cannot have one). `extra_headers` come before the framing; a Content-Type among
/// them replaces `text/plain`.
pub fn simple_response(
    status: u16,
    body: &str,
    keep_alive: bool,
    extra_headers: &[(&str, &str)],
    out: &mut Vec<u8>,
) {
    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
    let has_type = extra_headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !bodiless && !has_type {
        out.extend_from_slice(b"Content-Type: text/plain\r\n");
    }
    for (k, v) in extra_headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    if !bodiless {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    if !(100..200).contains(&status) {
        write_connection(keep_alive, out);
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless {
        out.extend_from_slice(body.as_bytes());
    }
}

/// The standard reason phrase (RFC 9110 §15), or the class's name for others.
pub fn reason(status: u16) -> &'static str {
    known_reason(status).unwrap_or(match status {
        100..=199 => "Informational",
        200..=299 => "Success",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        _ => "Server Error",
    })
}

fn known_reason(status: u16) -> Option<&'static str> {
    match status {
        100 => Some("Continue"),
        101 => Some("Switching Protocols"),
        200 => Some("OK"),
        201 => Some("Created"),
        202 => Some("Accepted"),
        203 => Some("Non-Authoritative Information"),
        204 => Some("No Content"),
        205 => Some("Reset Content"),
        206 => Some("Partial Content"),
        300 => Some("Multiple Choices"),
        301 => Some("Moved Permanently"),
        302 => Some("Found"),
        303 => Some("See Other"),
        304 => Some("Not Modified"),
        307 => Some("Temporary Redirect"),
        308 => Some("Permanent Redirect"),
        400 => Some("Bad Request"),
        401 => Some("Unauthorized"),
        403 => Some("Forbidden"),
        404 => Some("Not Found"),
        405 => Some("Method Not Allowed"),
        406 => Some("Not Acceptable"),
        407 => Some("Proxy Authentication Required"),
        408 => Some("Request Timeout"),
        409 => Some("Conflict"),
        410 => Some("Gone"),
        411 => Some("Length Required"),
        412 => Some("Precondition Failed"),
        413 => Some("Content Too Large"),
        414 => Some("URI Too Long"),
        415 => Some("Unsupported Media Type"),
        416 => Some("Range Not Satisfiable"),
        417 => Some("Expectation Failed"),
        421 => Some("Misdirected Request"),
        422 => Some("Unprocessable Content"),
        426 => Some("Upgrade Required"),
        428 => Some("Precondition Required"),
        429 => Some("Too Many Requests"),
        431 => Some("Request Header Fields Too Large"),
        500 => Some("Internal Server Error"),
        501 => Some("Not Implemented"),
        502 => Some("Bad Gateway"),
        503 => Some("Service Unavailable"),
        504 => Some("Gateway Timeout"),
        505 => Some("HTTP Version Not Supported"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request(raw.as_bytes(), 8192)
    }

    fn head(raw: &str) -> RequestHead {
        match req(raw) {
            Ok(Some((h, _))) => h,
            other => panic!("{raw:?} → {other:?}"),
        }
    }

    fn resp(raw: &str) -> ResponseHead {
        match parse_response(raw.as_bytes(), 8192, "GET") {
            Ok(Some((h, _))) => h,
            other => panic!("{raw:?} → {other:?}"),
        }
    }

    /// A tiny deterministic generator (xorshift64*), for random splits and inputs.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

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
                "TE gzip, chunked",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
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
    }

    #[test]
    fn too_many_fields_are_too_large() {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..MAX_HEADERS - 1 {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(head(&raw).headers.len(), MAX_HEADERS);
        let more = raw.replace("\r\n\r\n", "\r\nX-Last: v\r\n\r\n");
        assert_eq!(req(&more), Err(HeadError::TooLarge));
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
    fn errors_display_their_reason() {
        assert_eq!(
            HeadError::Bad("two Hosts").to_string(),
            "bad message: two Hosts"
        );
        assert_eq!(HeadError::TooLarge.to_string(), "header section too large");
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
    fn expect_100_continue_is_recognised() {
        let ec = |raw: &str| head(raw).expects_continue();
        assert!(ec(
            "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n\r\n"
        ));
        assert!(!ec("PUT / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!ec("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n"));
    }

    #[test]
    fn targets_split_by_form() {
        let t = |raw: &str| head(raw).split_target();
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
                scheme: Some("http".into()),
                host: Some("origin:81".into()),
                path_and_query: "/a?b".into()
            }
        );
        let a = t("GET HTTP://[::1]:81?x HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
        assert_eq!(
            (a.host.as_deref(), a.path_and_query.as_str()),
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
            (star.host.as_deref(), star.path_and_query.as_str()),
            (Some("x"), "*")
        );
        for refused in [
            "GET https://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
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
            let got = parse_response(raw.as_bytes(), 8192, method)
                .unwrap()
                .unwrap()
                .0
                .body(method);
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
        let p = |raw: &str| parse_response(raw.as_bytes(), 8192, "GET");
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 099 Low\r\n\r\n",
            "HTTP/1.1 20 OK\r\n\r\n",
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
            parse_response(b"HTTP/1.1 200 OK\r\nX: aaaaaaaa", 10, "GET"),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\n", 18, "GET"),
            Err(HeadError::TooLarge)
        );
    }

    #[test]
    fn origins_get_leniency_where_it_is_unambiguous() {
        // Bare LF line endings.
        let h = resp("HTTP/1.1 200 OK\nContent-Length: 2\nX: y\n\n");
        assert_eq!(h.body("GET"), BodyFraming::Length(2));
        assert_eq!(h.header("x"), Some(&b"y"[..]));
        let (_, n) = parse_response(b"HTTP/1.1 200 OK\nA: b\n\nzz", 8192, "GET")
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
            "GET",
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

    const BODY: &[u8] =
        b"5;name=v;q=\"x y\"\r\nhello\r\n6 ; e\r\n world\r\n00\r\nX-T: 1\r\nY: 2\r\n\r\nNEXT";
    const BODY_LEN: usize = BODY.len() - 4;

    /// Feeds `BODY` in the given pieces, checking each call's accounting; returns the
    /// decoded payload.
    fn feed(pieces: &[&[u8]]) -> Vec<u8> {
        let (mut scanner, mut decoder) = (ChunkedScanner::new(), ChunkedScanner::new());
        let (mut at, mut out) = (0, Vec::new());
        for piece in pieces {
            let s = scanner.scan(piece).unwrap();
            let d = decoder.decode(piece, &mut out).unwrap();
            assert_eq!(s, d);
            if at + piece.len() <= BODY_LEN {
                assert_eq!(s.consumed, piece.len());
                assert_eq!(s.done, at + piece.len() == BODY_LEN, "at {at}");
            } else {
                assert_eq!(s.consumed, BODY_LEN.saturating_sub(at));
                assert!(s.done);
            }
            at += piece.len();
        }
        assert!(scanner.is_done() && decoder.is_done());
        out
    }

    #[test]
    fn chunked_scanner_ends_exactly_at_every_split() {
        for split in 0..=BODY.len() {
            let out = feed(&[&BODY[..split], &BODY[split..]]);
            assert_eq!(out, b"hello world", "split at {split}");
        }
    }

    #[test]
    fn chunked_scanner_takes_one_byte_at_a_time() {
        let pieces: Vec<&[u8]> = BODY.chunks(1).collect();
        assert_eq!(feed(&pieces), b"hello world");
    }

    #[test]
    fn chunked_scanner_takes_random_splits() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..500 {
            let mut pieces = Vec::new();
            let mut at = 0;
            while at < BODY.len() {
                let n = rng.below(8).min(BODY.len() - at);
                pieces.push(&BODY[at..at + n]);
                at += n;
            }
            assert_eq!(feed(&pieces), b"hello world");
        }
    }

    #[test]
    fn chunked_scanner_stops_when_done() {
        let mut s = ChunkedScanner::new();
        let r = s.scan(b"0\r\n\r\nGET / HTTP/1.1").unwrap();
        assert_eq!(
            r,
            ScanResult {
                consumed: 5,
                done: true
            }
        );
        assert_eq!(
            s.scan(b"more").unwrap(),
            ScanResult {
                consumed: 0,
                done: true
            }
        );
        assert_eq!(
            s.scan(b"").unwrap(),
            ScanResult {
                consumed: 0,
                done: true
            }
        );
        let mut s = ChunkedScanner::new();
        assert_eq!(
            s.scan(b"").unwrap(),
            ScanResult {
                consumed: 0,
                done: false
            }
        );
        // Large sizes are fine as long as they fit in 64 bits.
        let mut s = ChunkedScanner::new();
        assert_eq!(s.scan(b"ffffffffffffffff\r\nab").unwrap().consumed, 20);
        assert!(!s.is_done());
    }

    #[test]
    fn chunked_scanner_refuses_bad_input() {
        let cases: &[(&str, &[u8])] = &[
            ("overflow", b"10000000000000000\r\n"),
            ("overflow by digits", b"fffffffffffffffff"),
            ("bare LF after size", b"5\nhello\r\n"),
            ("bare LF after data", b"5\r\nhello\n0\r\n\r\n"),
            ("CR only after data", b"5\r\nhello\rX"),
            ("bare LF ending the body", b"0\r\n\n"),
            ("bare LF after a trailer", b"0\r\nX: y\n\r\n"),
            ("bare CR in trailer", b"0\r\nX: y\rz\r\n\r\n"),
            ("bad blank line", b"0\r\n\r\r"),
            ("obs-fold in trailers", b"0\r\nX: y\r\n z\r\n\r\n"),
            ("data longer than size", b"5\r\nhelloX"),
            ("no size", b"\r\n"),
            ("bare LF for size", b"\n"),
            ("not hex", b"g\r\n"),
            ("0x prefix", b"0x5\r\n"),
            ("sign", b"+5\r\n"),
            ("leading space", b" 5\r\n"),
            ("space inside the size", b"1 2\r\n"),
            ("extension without a semicolon", b"5 x\r\n"),
            ("bare LF in extension", b"5;a\nhello"),
            ("NUL in extension", b"5;a\0\r\n"),
        ];
        for (what, raw) in cases {
            let got = ChunkedScanner::new().scan(raw);
            assert!(matches!(got, Err(HeadError::Bad(_))), "{what}: {got:?}");
            // Split before the last byte, the error still comes.
            let mut s = ChunkedScanner::new();
            let (a, b) = raw.split_at(raw.len() - 1);
            let got = s.scan(a).and_then(|_| s.scan(b));
            assert!(got.is_err(), "{what} split");
        }
    }

    #[test]
    fn chunk_size_lines_are_limited_to_1024_bytes() {
        let line = |len: usize| {
            let mut l = b"1;".to_vec();
            l.resize(len, b'e');
            l.extend_from_slice(b"\r\nx\r\n");
            l
        };
        assert!(ChunkedScanner::new().scan(&line(MAX_CHUNK_LINE)).is_ok());
        assert!(ChunkedScanner::new()
            .scan(&line(MAX_CHUNK_LINE + 1))
            .is_err());
        // Leading zeros count too.
        let mut zeros = vec![b'0'; MAX_CHUNK_LINE + 1];
        zeros.extend_from_slice(b"1\r\n");
        assert!(ChunkedScanner::new().scan(&zeros).is_err());
        let mut zeros = vec![b'0'; MAX_CHUNK_LINE - 1];
        zeros.extend_from_slice(b"1\r\n");
        assert!(ChunkedScanner::new().scan(&zeros).is_ok());
    }

    #[test]
    fn encoded_chunks_decode_back() {
        let mut body = Vec::new();
        encode_chunk(b"", &mut body);
        assert!(body.is_empty(), "an empty chunk would end the body");
        let big = vec![b'q'; 300];
        encode_chunk(b"abc", &mut body);
        encode_chunk(&big, &mut body);
        body.extend_from_slice(LAST_CHUNK);
        assert!(body.starts_with(b"3\r\nabc\r\n12c\r\nqq"));
        let mut out = Vec::new();
        let r = ChunkedScanner::new().decode(&body, &mut out).unwrap();
        assert_eq!(
            r,
            ScanResult {
                consumed: body.len(),
                done: true
            }
        );
        assert_eq!(out.len(), 303);
        assert_eq!(&out[..3], b"abc");
    }

    fn forward(raw: &str, client_ip: Option<IpAddr>, keep_alive: bool) -> String {
        let mut out = Vec::new();
        write_request_head(
            &head(raw),
            &mut out,
            &ForwardRequest {
                path_and_query: "/y?z",
                host: "origin:81",
                via: "1.1 t",
                client_ip,
                keep_alive,
                underscores: false,
            },
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_content_length_list_of_one_value_is_forwarded_as_one_field() {
        for raw in [
            "POST /x HTTP/1.1\r\nHost: c\r\nContent-Length: 5, 5\r\n\r\n",
            "POST /x HTTP/1.1\r\nHost: c\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
            "POST /x HTTP/1.1\r\nHost: c\r\nContent-Length:  005 \r\n\r\n",
        ] {
            let s = forward(raw, None, true);
            assert_eq!(s.matches("Content-Length").count(), 1, "{s}");
            assert!(s.contains("\r\nContent-Length: 5\r\n"), "{s}");
        }
        let s = forward(
            "POST /x HTTP/1.1\r\nHost: c\r\nTransfer-Encoding:  Chunked\r\n\r\n",
            None,
            true,
        );
        assert!(s.contains("\r\nTransfer-Encoding: chunked\r\n"), "{s}");
        assert_eq!(s.matches("ransfer-").count(), 1, "{s}");
    }

    #[test]
    fn fields_with_an_underscore_are_dropped_unless_allowed() {
        let raw =
            "GET /x HTTP/1.1\r\nHost: c\r\nTransfer_Encoding: chunked\r\nX_A: 1\r\nX-B: 2\r\n\r\n";
        let s = forward(raw, None, true);
        assert!(!s.contains('_'), "{s}");
        assert!(s.contains("\r\nX-B: 2\r\n"), "{s}");
        let mut out = Vec::new();
        write_request_head(
            &head(raw),
            &mut out,
            &ForwardRequest {
                path_and_query: "/x",
                host: "c",
                via: "v",
                client_ip: None,
                keep_alive: true,
                underscores: true,
            },
        );
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains("\r\nX_A: 1\r\n") && s.contains("Transfer_Encoding"),
            "{s}"
        );
    }

    #[test]
    fn forwarded_requests_lose_hop_by_hop_fields_and_gain_via_and_xff() {
        let s = forward(
            "POST /x HTTP/1.1\r\nHost: c\r\nConnection: X-A, close\r\nX-A: 1\r\nx-a: 2\r\n\
             Keep-Alive: 5\r\nProxy-Connection: k\r\nProxy-Authenticate: a\r\n\
             Proxy-Authorization: b\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\n\
             Via: 1.0 a\r\nX-Forwarded-For: 10.0.0.1\r\nX-B: 2\r\nContent-Length: 3\r\n\r\n",
            Some("127.0.0.1".parse().unwrap()),
            true,
        );
        assert_eq!(
            s,
            "POST /y?z HTTP/1.1\r\nHost: origin:81\r\nX-B: 2\r\nContent-Length: 3\r\n\
             Via: 1.0 a, 1.1 t\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n\
             Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn forwarded_requests_without_via_or_client_ip() {
        let s = forward(
            "GET /x HTTP/1.0\r\nX-Forwarded-For: 10.0.0.1\r\nTransfer-Encoding-Not: 1\r\n\r\n",
            None,
            false,
        );
        assert_eq!(
            s,
            "GET /y?z HTTP/1.1\r\nHost: origin:81\r\nX-Forwarded-For: 10.0.0.1\r\n\
             Transfer-Encoding-Not: 1\r\nVia: 1.1 t\r\nConnection: close\r\n\r\n"
        );
        let s = forward(
            "GET /x HTTP/1.1\r\nHost: c\r\n\r\n",
            Some("::1".parse().unwrap()),
            true,
        );
        assert!(s.contains("\r\nX-Forwarded-For: ::1\r\n"), "{s}");
    }

    #[test]
    fn connection_tokens_never_remove_framing_headers() {
        let s = forward(
            "POST /x HTTP/1.1\r\nHost: c\r\nConnection: Content-Length, Transfer-Encoding\r\nContent-Length: 3\r\n\r\n",
            None,
            true,
        );
        assert!(s.contains("\r\nContent-Length: 3\r\n"), "{s}");
        let s = forward(
            "POST /x HTTP/1.1\r\nHost: c\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
            None,
            true,
        );
        assert!(s.contains("\r\nTransfer-Encoding: chunked\r\n"), "{s}");
        let h = resp("HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 3\r\n\r\n");
        let mut out = Vec::new();
        write_response_head(
            &h,
            &mut out,
            &ForwardResponse {
                via: "v",
                keep_alive: true,
                framing_override: None,
            },
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("\r\nContent-Length: 3\r\n"));
    }

    fn forward_response(
        raw: &str,
        keep_alive: bool,
        framing_override: Option<BodyFraming>,
    ) -> String {
        let mut out = Vec::new();
        write_response_head(
            &resp(raw),
            &mut out,
            &ForwardResponse {
                via: "1.1 t",
                keep_alive,
                framing_override,
            },
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn forwarded_responses_lose_hop_by_hop_fields_and_gain_via() {
        let s = forward_response(
            "HTTP/1.0 200 Fine\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nKeep-Alive: timeout=5\r\n\
             Via: 1.0 o\r\nContent-Length: 3\r\nX-B: 2\r\n\r\n",
            true,
            None,
        );
        assert_eq!(
            s,
            "HTTP/1.1 200 Fine\r\nContent-Length: 3\r\nX-B: 2\r\nVia: 1.0 o, 1.1 t\r\n\
             Connection: keep-alive\r\n\r\n"
        );
        let s = forward_response("HTTP/1.1 100 Continue\r\n\r\n", true, None);
        assert_eq!(s, "HTTP/1.1 100 Continue\r\nVia: 1.1 t\r\n\r\n");
        let s = forward_response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            None,
        );
        assert_eq!(
            s,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVia: 1.1 t\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn framing_overrides_replace_the_framing_headers() {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n";
        assert_eq!(
            forward_response(chunked, true, Some(BodyFraming::Length(11))),
            "HTTP/1.1 200 OK\r\nX: y\r\nContent-Length: 11\r\nVia: 1.1 t\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            forward_response(chunked, true, Some(BodyFraming::UntilClose)),
            "HTTP/1.1 200 OK\r\nX: y\r\nVia: 1.1 t\r\nConnection: close\r\n\r\n"
        );
        let close = "HTTP/1.1 200 OK\r\nX: y\r\n\r\n";
        assert_eq!(
            forward_response(close, true, Some(BodyFraming::Chunked)),
            "HTTP/1.1 200 OK\r\nX: y\r\nTransfer-Encoding: chunked\r\nVia: 1.1 t\r\nConnection: keep-alive\r\n\r\n"
        );
        let length = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(
            forward_response(length, true, Some(BodyFraming::Chunked)),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVia: 1.1 t\r\nConnection: keep-alive\r\n\r\n"
        );
        // Already close-delimited: kept as it is, but the connection closes.
        let gzip = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(
            forward_response(gzip, true, Some(BodyFraming::UntilClose)),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nVia: 1.1 t\r\nConnection: close\r\n\r\n"
        );
        // No body: framing headers are metadata and stay.
        assert_eq!(
            forward_response(length, true, Some(BodyFraming::None)),
            forward_response(length, true, None)
        );
    }

    #[test]
    fn a_faulty_chunked_framing_is_not_forwarded() {
        let h = resp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(h.body("GET"), BodyFraming::UntilClose);
        let mut out = Vec::new();
        let opts = ForwardResponse {
            via: "1.1 t",
            keep_alive: false,
            framing_override: None,
        };
        write_response_head(&h, &mut out, &opts);
        let (again, _) = parse_response(&out, 8192, "GET").unwrap().unwrap();
        assert_eq!(
            again.body("GET"),
            BodyFraming::UntilClose,
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        assert!(!again.keep_alive());
    }

    #[test]
    fn word_scans_find_what_byte_scans_find() {
        // Every byte value at every position of buffers around the word size, over a
        // background of each byte value, from every start.
        for len in 0..20 {
            for background in [b'a', b' ', b'\t', 0x0e, 0x7f, 0x80, 0xff] {
                for at in 0..len {
                    for v in 0..=255u8 {
                        let mut buf = vec![background; len];
                        buf[at] = v;
                        for from in 0..=len {
                            let naive = |hit: &dyn Fn(u8) -> bool| {
                                buf[from..].iter().position(|b| hit(*b)).map(|p| from + p)
                            };
                            assert_eq!(find_lf(&buf, from), naive(&|b| b == b'\n'));
                            assert_eq!(find_control(&buf, from), naive(&|b| b <= b'\r'));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn simple_responses_are_complete() {
        let mut out = Vec::new();
        simple_response(404, "nope", false, &[], &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
        );
        let mut out = Vec::new();
        simple_response(
            200,
            "{}",
            true,
            &[("Content-Type", "application/json"), ("X-A", "b")],
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: b\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}"
        );
        let mut out = Vec::new();
        simple_response(204, "ignored", true, &[], &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
        // What we write, we parse back.
        let mut out = Vec::new();
        simple_response(503, "busy", true, &[], &mut out);
        let (h, n) = parse_response(&out, 8192, "GET").unwrap().unwrap();
        assert_eq!(
            (h.status, h.body("GET"), &out[n..]),
            (503, BodyFraming::Length(4), &b"busy"[..])
        );
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason(200), "OK");
        assert_eq!(reason(431), "Request Header Fields Too Large");
        assert_eq!(reason(505), "HTTP Version Not Supported");
        assert_eq!(reason(299), "Success");
        assert_eq!(reason(499), "Client Error");
        assert_eq!(reason(0), "Server Error");
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
                let _ = (h.keep_alive(), h.split_target(), h.expects_continue());
                let mut out = Vec::new();
                let opts = ForwardRequest {
                    path_and_query: "/",
                    host: "h",
                    via: "v",
                    client_ip: None,
                    keep_alive: true,
                    underscores: rng.below(2) == 0,
                };
                write_request_head(&h, &mut out, &opts);
                let (again, _) = parse_request(&out, 1 << 16).unwrap().unwrap();
                assert_eq!(again.body(), h.body(), "{out:?}");
            }
            if let Ok(Some((h, n))) = parse_response(&data, max, "GET") {
                assert!(n <= data.len());
                let _ = (h.body("GET"), h.keep_alive());
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
