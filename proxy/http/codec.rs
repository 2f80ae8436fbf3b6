//! HTTP/1.1 on the wire: request and response heads (with the checks that close off
//! request smuggling), body framing, a streaming chunked-body scanner, and the header
//! rewriting a proxy does when forwarding. Pure functions over byte slices: no sockets.
//!
//! Strict with clients (RFC 9112 §11.2: any ambiguity in how a request is framed is a
//! 400 and a close), liberal with origins except where leniency would create ambiguity.

use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;

/// Most headers a head may carry.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (size, extensions) the scanner accepts.
const MAX_CHUNK_LINE: usize = 1024;
/// Longest trailer line.
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

/// Why a head was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The head is larger than allowed (431).
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
            HeadError::TooLarge => f.write_str("request header section too large"),
            HeadError::Version => f.write_str("HTTP version not supported"),
            HeadError::Bad(why) => write!(f, "bad request: {why}"),
        }
    }
}

impl std::error::Error for HeadError {}

/// One header field, name case preserved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Field name as received.
    pub name: String,
    /// Field value, surrounding whitespace removed.
    pub value: Vec<u8>,
}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Content-Length bytes.
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// A parsed request line and header section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Request target as sent.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in order.
    pub headers: Vec<Header>,
    framing: BodyFraming,
}

/// A parsed status line and header section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header fields in order.
    pub headers: Vec<Header>,
    chunked: Option<bool>,
    length: Option<u64>,
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

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

fn headers_all<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

/// Comma-separated tokens of every `name` field, trimmed and lower-cased.
fn tokens(headers: &[Header], name: &str) -> Vec<String> {
    headers_all(headers, name)
        .flat_map(|v| v.split(|b| *b == b','))
        .map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn keep_alive(headers: &[Header], minor: u8) -> bool {
    let conn = tokens(headers, "connection");
    if conn.iter().any(|t| t == "close") {
        false
    } else {
        minor == 1 || conn.iter().any(|t| t == "keep-alive")
    }
}

/// All Content-Length values, which must agree: Ok(None) when absent.
fn content_length(headers: &[Header]) -> Result<Option<u64>, HeadError> {
    let mut found: Option<u64> = None;
    for v in headers_all(headers, "content-length") {
        for part in v.split(|b| *b == b',') {
            let part = trim(part);
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::Bad("invalid Content-Length"));
            }
            let n: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(HeadError::Bad("Content-Length overflows"))?;
            match found {
                Some(m) if m != n => {
                    return Err(HeadError::Bad("conflicting Content-Length values"))
                }
                _ => found = Some(n),
            }
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

/// The end of the head (just past the blank line), if complete: the first `\n\r\n` or
/// `\n\n`.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|b| *b == b'\n') {
        let at = i + p;
        match &buf[at + 1..] {
            [b'\n', ..] => return Some(at + 2),
            [b'\r', b'\n', ..] => return Some(at + 3),
            _ => i = at + 1,
        }
    }
    None
}

fn convert_headers(raw: &[httparse::Header<'_>]) -> Vec<Header> {
    raw.iter()
        .map(|h| Header {
            name: h.name.to_string(),
            value: trim(h.value).to_vec(),
        })
        .collect()
}

/// Parses a request head at the start of `buf`. `Ok(None)`: incomplete, read more.
/// The `usize` is the head's length including the blank line.
pub fn parse_request(
    buf: &[u8],
    max_head: usize,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let Some(end) = head_end(buf) else {
        return if buf.len() > max_head {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if end > max_head {
        return Err(HeadError::TooLarge);
    }
    let head = &buf[..end];
    for (i, b) in head.iter().enumerate() {
        match *b {
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
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HeadError::Bad("malformed request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => {
            // "HTTP/2.0" is an unsupported version; "b HTTP/1.1" is a malformed line.
            let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
            let parts: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
            return match parts.as_slice() {
                [_, _, v] if v.starts_with(b"HTTP/") => Err(HeadError::Version),
                _ => Err(HeadError::Bad("malformed request line")),
            };
        }
        Err(_) => return Err(HeadError::Bad("malformed request head")),
    }
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default().to_string();
    let minor_version = req.version.unwrap_or(1);
    if method.is_empty() {
        return Err(HeadError::Bad("empty method"));
    }
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(HeadError::Bad("invalid request target"));
    }
    let headers = convert_headers(req.headers);
    for h in &headers {
        if h.value.iter().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
            return Err(HeadError::Bad("control character in a header value"));
        }
    }
    match headers_all(&headers, "host").count() {
        0 if minor_version == 1 => return Err(HeadError::Bad("missing Host header")),
        n if n > 1 => return Err(HeadError::Bad("several Host headers")),
        _ => {}
    }
    let length = content_length(&headers)?;
    let te = tokens(&headers, "transfer-encoding");
    let has_te = headers_all(&headers, "transfer-encoding").next().is_some();
    let framing = if has_te {
        if length.is_some() {
            return Err(HeadError::Bad("both Content-Length and Transfer-Encoding"));
        }
        if minor_version == 0 {
            return Err(HeadError::Bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if te != ["chunked"] {
            return Err(HeadError::Bad("unsupported Transfer-Encoding"));
        }
        BodyFraming::Chunked
    } else {
        match length {
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::None,
        }
    };
    Ok(Some((
        RequestHead {
            method,
            target,
            minor_version,
            headers,
            framing,
        },
        end,
    )))
}

impl RequestHead {
    /// The first `name` field's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header(&self.headers, name)
    }

    /// Every `name` field's value.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        headers_all(&self.headers, name)
    }

    /// How the request body is delimited (never `UntilClose`).
    pub fn body(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the client wants the connection kept open.
    pub fn keep_alive(&self) -> bool {
        keep_alive(&self.headers, self.minor_version)
    }

    /// `Expect: 100-continue`.
    pub fn expects_continue(&self) -> bool {
        self.header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"))
    }

    /// Whether the target is absolute-form (`http://host/path`).
    pub fn is_absolute_form(&self) -> bool {
        !self.target.starts_with('/') && self.target != "*"
    }

    /// Where the request goes: the URL's authority for absolute form (it wins over Host,
    /// RFC 9112 §3.2.2), else the Host header.
    pub fn split_target(&self) -> Result<Target, HeadError> {
        let host_header = || {
            self.header("host")
                .map(|h| String::from_utf8_lossy(h).to_ascii_lowercase())
                .filter(|h| !h.is_empty())
        };
        if self.target.starts_with('/') {
            return Ok(Target {
                scheme: None,
                host: host_header(),
                path_and_query: self.target.clone(),
            });
        }
        if self.target == "*" {
            if self.method != "OPTIONS" {
                return Err(HeadError::Bad("asterisk-form is only for OPTIONS"));
            }
            return Ok(Target {
                scheme: None,
                host: host_header(),
                path_and_query: "*".into(),
            });
        }
        let t = &self.target;
        let rest = match t.get(..7) {
            Some(s) if s.eq_ignore_ascii_case("http://") => &t[7..],
            _ => return Err(HeadError::Bad("unsupported request target")),
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') {
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

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete.
pub fn parse_response(
    buf: &[u8],
    max_head: usize,
    request_method: &str,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let _ = request_method; // framing depends on it, see `ResponseHead::body`
    let Some(end) = head_end(buf) else {
        return if buf.len() > max_head {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if end > max_head {
        return Err(HeadError::TooLarge);
    }
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut raw);
    match resp.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HeadError::Bad("malformed response head")),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => return Err(HeadError::Version),
        Err(_) => return Err(HeadError::Bad("malformed response head")),
    }
    let headers = convert_headers(resp.headers);
    let te = tokens(&headers, "transfer-encoding");
    let has_te = headers_all(&headers, "transfer-encoding").next().is_some();
    // With Transfer-Encoding, Content-Length is ignored (RFC 9112 §6.3), so a bad one
    // there is no ambiguity.
    let length = if has_te {
        None
    } else {
        content_length(&headers)?
    };
    Ok(Some((
        ResponseHead {
            minor_version: resp.version.unwrap_or(1),
            status: resp.code.unwrap_or(0),
            reason: resp.reason.unwrap_or("").to_string(),
            headers,
            chunked: has_te.then(|| te.last().is_some_and(|t| t == "chunked")),
            length,
        },
        end,
    )))
}

impl ResponseHead {
    /// The first `name` field's value.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header(&self.headers, name)
    }

    /// How the body is delimited, for a response to `request_method` (RFC 9112 §6.3).
    pub fn body(&self, request_method: &str) -> BodyFraming {
        if request_method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            return BodyFraming::None;
        }
        match (self.chunked, self.length) {
            (Some(true), _) => BodyFraming::Chunked,
            (Some(false), _) => BodyFraming::UntilClose,
            (None, Some(n)) => BodyFraming::Length(n),
            (None, None) => BodyFraming::UntilClose,
        }
    }

    /// Whether the origin will keep the connection open.
    pub fn keep_alive(&self) -> bool {
        keep_alive(&self.headers, self.minor_version)
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

#[derive(Clone, Debug, PartialEq, Eq)]
enum Chunk {
    Size {
        value: u64,
        digits: usize,
        ext: bool,
        line: usize,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    Trailer {
        line: usize,
    },
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Finds where a chunked body ends while the bytes pass through unchanged (or, with
/// [`ChunkedScanner::decode`], extracts the payload). State carries across calls, so
/// input may be split anywhere.
#[derive(Clone, Debug)]
pub struct ChunkedScanner {
    state: Chunk,
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
            state: Chunk::Size {
                value: 0,
                digits: 0,
                ext: false,
                line: 0,
            },
        }
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
        let bad = HeadError::Bad;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match std::mem::replace(&mut self.state, Chunk::Done) {
                Chunk::Done => {
                    self.state = Chunk::Done;
                    return Ok(ScanResult {
                        consumed: i,
                        done: true,
                    });
                }
                Chunk::Data(n) => {
                    let k = (n.min((input.len() - i) as u64)) as usize;
                    if let Some(o) = out.as_deref_mut() {
                        o.extend_from_slice(&input[i..i + k]);
                    }
                    i += k;
                    self.state = if n - k as u64 == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(n - k as u64)
                    };
                    continue;
                }
                Chunk::Size {
                    value,
                    digits,
                    ext,
                    line,
                } => {
                    if line >= MAX_CHUNK_LINE {
                        return Err(bad("chunk size line too long"));
                    }
                    match b {
                        b'\r' if digits > 0 => Chunk::SizeLf { value },
                        b'\r' | b'\n' => return Err(bad("malformed chunk size")),
                        _ if ext => Chunk::Size {
                            value,
                            digits,
                            ext,
                            line: line + 1,
                        },
                        b';' if digits > 0 => Chunk::Size {
                            value,
                            digits,
                            ext: true,
                            line: line + 1,
                        },
                        b' ' | b'\t' if digits > 0 => Chunk::Size {
                            value,
                            digits,
                            ext,
                            line: line + 1,
                        },
                        _ => {
                            let d = (b as char)
                                .to_digit(16)
                                .ok_or(bad("malformed chunk size"))?;
                            if value > (u64::MAX >> 4) {
                                return Err(bad("chunk size overflows"));
                            }
                            Chunk::Size {
                                value: (value << 4) | u64::from(d),
                                digits: digits + 1,
                                ext,
                                line: line + 1,
                            }
                        }
                    }
                }
                Chunk::SizeLf { value } => match b {
                    b'\n' if value == 0 => Chunk::Trailer { line: 0 },
                    b'\n' => Chunk::Data(value),
                    _ => return Err(bad("malformed chunk size line")),
                },
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    _ => return Err(bad("chunk data longer than its size")),
                },
                Chunk::DataLf => match b {
                    b'\n' => Chunk::Size {
                        value: 0,
                        digits: 0,
                        ext: false,
                        line: 0,
                    },
                    _ => return Err(bad("malformed chunk end")),
                },
                Chunk::Trailer { line } => match b {
                    b'\r' => Chunk::TrailerLf { empty: line == 0 },
                    b'\n' => return Err(bad("bare LF in trailers")),
                    _ if line >= MAX_TRAILER_LINE => return Err(bad("trailer line too long")),
                    _ => Chunk::Trailer { line: line + 1 },
                },
                Chunk::TrailerLf { empty } => match b {
                    b'\n' if empty => {
                        self.state = Chunk::Done;
                        return Ok(ScanResult {
                            consumed: i + 1,
                            done: true,
                        });
                    }
                    b'\n' => Chunk::Trailer { line: 0 },
                    _ => return Err(bad("malformed trailer")),
                },
            };
            i += 1;
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
    let _ = write!(HexWriter(out), "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

struct HexWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for HexWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// How to forward a request.
#[derive(Clone, Debug)]
pub struct ForwardRequest<'a> {
    /// Path and query to send.
    pub path_and_query: &'a str,
    /// Host header value for the origin.
    pub host: &'a str,
    /// This proxy's Via entry, e.g. `1.1 turnstile/0.1.0`.
    pub via: &'a str,
    /// Appended to X-Forwarded-For.
    pub client_ip: Option<IpAddr>,
    /// Ask the origin to keep the connection open.
    pub keep_alive: bool,
}

/// How to forward a response.
#[derive(Clone, Debug)]
pub struct ForwardResponse<'a> {
    /// This proxy's Via entry.
    pub via: &'a str,
    /// Tell the client whether the connection stays open.
    pub keep_alive: bool,
    /// Reserved for re-framing; `None` keeps the origin's framing headers.
    pub framing_override: Option<BodyFraming>,
}

/// Names a forwarded message must not carry: hop-by-hop ones and those its Connection
/// header lists.
fn dropped(headers: &[Header]) -> Vec<String> {
    let mut names: Vec<String> = HOP_BY_HOP.iter().map(|s| s.to_string()).collect();
    names.extend(tokens(headers, "connection"));
    names
}

fn write_fields(headers: &[Header], skip: &[String], extra_skip: &[&str], out: &mut Vec<u8>) {
    for h in headers {
        let lower = h.name.to_ascii_lowercase();
        if skip.contains(&lower) || extra_skip.contains(&lower.as_str()) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `ours` to every existing `name` value, comma-joined.
fn write_appended(headers: &[Header], name: &str, ours: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for v in headers_all(headers, name) {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(ours.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes the request head to send to the origin.
pub fn write_request_head(head: &RequestHead, out: &mut Vec<u8>, opts: &ForwardRequest<'_>) {
    let skip = dropped(&head.headers);
    let _ = write!(
        HexWriter(out),
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        head.method,
        opts.path_and_query,
        opts.host
    );
    write_fields(
        &head.headers,
        &skip,
        &["host", "via", "x-forwarded-for"],
        out,
    );
    write_appended(&head.headers, "Via", opts.via, out);
    if let Some(ip) = opts.client_ip {
        write_appended(&head.headers, "X-Forwarded-For", &ip.to_string(), out);
    }
    out.extend_from_slice(if opts.keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
}

/// Writes the response head to send to the client.
pub fn write_response_head(head: &ResponseHead, out: &mut Vec<u8>, opts: &ForwardResponse<'_>) {
    let skip = dropped(&head.headers);
    let _ = write!(
        HexWriter(out),
        "HTTP/1.1 {} {}\r\n",
        head.status,
        head.reason
    );
    write_fields(&head.headers, &skip, &["via"], out);
    write_appended(&head.headers, "Via", opts.via, out);
    if (100..200).contains(&head.status) {
        out.extend_from_slice(b"\r\n");
        return;
    }
    out.extend_from_slice(if opts.keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
}

/// A complete local response with a text body.
pub fn simple_response(
    status: u16,
    body: &str,
    keep_alive: bool,
    extra_headers: &[(&str, &str)],
    out: &mut Vec<u8>,
) {
    let _ = write!(HexWriter(out), "HTTP/1.1 {status} {}\r\n", reason(status));
    let has_type = extra_headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !has_type {
        out.extend_from_slice(b"Content-Type: text/plain\r\n");
    }
    for (k, v) in extra_headers {
        let _ = write!(HexWriter(out), "{k}: {v}\r\n");
    }
    let body_len = if status == 204 || status == 304 {
        0
    } else {
        body.len()
    };
    let _ = write!(
        HexWriter(out),
        "Content-Length: {body_len}\r\nConnection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    );
    out.extend_from_slice(&body.as_bytes()[..body_len]);
}

/// The standard reason phrase.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request(raw.as_bytes(), 8192)
    }

    fn bad(raw: &str) {
        assert!(
            matches!(req(raw), Err(HeadError::Bad(_))),
            "{raw:?} → {:?}",
            req(raw)
        );
    }

    #[test]
    fn parses_a_request_and_its_framing() {
        let (h, n) = req("POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.method.as_str(), h.target.as_str(), n),
            ("POST", "/a?b", 50)
        );
        assert_eq!(h.body(), BodyFraming::Length(3));
        assert!(h.keep_alive());
        let (h, _) = req("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body(), BodyFraming::Chunked);
        assert_eq!(req("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    }

    #[test]
    fn smuggling_and_ambiguity_are_refused() {
        bad("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        bad("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n");
        bad("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n");
        bad("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n");
        bad("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        bad("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        bad("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        bad("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        bad("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n");
        bad("GET / HTTP/1.1\nHost: x\n\n");
        bad("GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n");
        bad("GET / HTTP/1.1\r\nHost : x\r\n\r\n");
        bad("GET / HTTP/1.1\r\n\r\n");
        bad("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
        bad("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n");
        bad(" / HTTP/1.1\r\nHost: x\r\n\r\n");
        // Identical repeats are one value.
        let (h, _) =
            req("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(h.body(), BodyFraming::Length(3));
    }

    #[test]
    fn size_limits_and_versions() {
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(9000)
        );
        assert_eq!(req(&big), Err(HeadError::TooLarge));
        assert_eq!(
            parse_request("GET / HTTP/1.1\r\nX: aaaaaaaaaa".as_bytes(), 10),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            req("GET / HTTP/2.0\r\nHost: x\r\n\r\n"),
            Err(HeadError::Version)
        );
        assert_eq!(HeadError::TooLarge.status(), 431);
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |raw: &str| req(raw).unwrap().unwrap().0.keep_alive();
        assert!(ka("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn targets_split_by_form() {
        let t = |raw: &str| req(raw).unwrap().unwrap().0.split_target();
        let o = t("GET /p?q HTTP/1.1\r\nHost: WWW.X:8080\r\n\r\n").unwrap();
        assert_eq!(
            (o.scheme, o.host.as_deref(), o.path_and_query.as_str()),
            (None, Some("www.x:8080"), "/p?q")
        );
        let a = t("GET http://Origin:81?x HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
        assert_eq!(
            (a.host.as_deref(), a.path_and_query.as_str()),
            (Some("origin:81"), "/?x")
        );
        assert!(t("GET https://x/ HTTP/1.1\r\nHost: x\r\n\r\n").is_err());
        assert!(t("CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n").is_err());
        assert_eq!(
            t("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap()
                .path_and_query,
            "*"
        );
    }

    #[test]
    fn response_framing_table() {
        let f = |raw: &str, m: &str| {
            parse_response(raw.as_bytes(), 8192, m)
                .unwrap()
                .unwrap()
                .0
                .body(m)
        };
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "GET"),
            BodyFraming::Length(5)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD"),
            BodyFraming::None
        );
        assert_eq!(
            f("HTTP/1.1 204 No Content\r\n\r\n", "GET"),
            BodyFraming::None
        );
        assert_eq!(
            f(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                "GET"
            ),
            BodyFraming::None
        );
        assert_eq!(f("HTTP/1.1 100 Continue\r\n\r\n", "GET"), BodyFraming::None);
        assert_eq!(
            f(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                "GET"
            ),
            BodyFraming::Chunked
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET"),
            BodyFraming::UntilClose
        );
        assert_eq!(f("HTTP/1.0 200 OK\r\n\r\n", "GET"), BodyFraming::UntilClose);
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            8192,
            "GET"
        )
        .is_err());
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n", 8192, "GET"),
            Ok(None)
        );
    }

    const BODY: &[u8] = b"5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";

    #[test]
    fn chunked_scanner_finds_the_end_at_any_split() {
        let end = BODY.len() - 4;
        for split in 0..=BODY.len() {
            let mut s = ChunkedScanner::new();
            let mut out = Vec::new();
            let a = s.decode(&BODY[..split], &mut out).unwrap();
            let total = if a.done {
                a.consumed
            } else {
                assert_eq!(a.consumed, split);
                split + s.decode(&BODY[split..], &mut out).unwrap().consumed
            };
            assert_eq!(total, end, "split at {split}");
            assert_eq!(out, b"hello world");
        }
        // One byte at a time.
        let mut s = ChunkedScanner::new();
        let mut consumed = 0;
        for b in BODY.chunks(1) {
            let r = s.scan(b).unwrap();
            consumed += r.consumed;
            if r.done {
                break;
            }
        }
        assert_eq!(consumed, end);
    }

    #[test]
    fn chunked_scanner_rejects_bad_input() {
        for raw in [
            &b"fffffffffffffffff\r\n"[..],
            b"5\nhello",
            b"5\r\nhelloX",
            b"\r\n",
            b"g\r\n",
            b"0\r\n\r\r",
        ] {
            assert!(
                ChunkedScanner::new().scan(raw).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let long = vec![b'1'; 2000];
        assert!(ChunkedScanner::new().scan(&long).is_err());
    }

    #[test]
    fn forwarding_drops_hop_by_hop_and_appends_via_and_xff() {
        let (h, _) = req("GET /x HTTP/1.1\r\nHost: c\r\nConnection: X-A, close\r\nX-A: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nVia: 1.0 a\r\nX-Forwarded-For: 10.0.0.1\r\nX-B: 2\r\n\r\n").unwrap().unwrap();
        let mut out = Vec::new();
        write_request_head(
            &h,
            &mut out,
            &ForwardRequest {
                path_and_query: "/y",
                host: "origin:81",
                via: "1.1 t",
                client_ip: Some("127.0.0.1".parse().unwrap()),
                keep_alive: true,
            },
        );
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("GET /y HTTP/1.1\r\nHost: origin:81\r\n"),
            "{s}"
        );
        assert!(
            s.contains("X-B: 2\r\n") && s.contains("Via: 1.0 a, 1.1 t\r\n"),
            "{s}"
        );
        assert!(
            s.contains("X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n"),
            "{s}"
        );
        for gone in ["X-A", "Keep-Alive", "TE:", "close"] {
            assert!(!s.contains(gone), "{gone} in {s}");
        }
        assert!(s.ends_with("Connection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn simple_responses_are_complete() {
        let mut out = Vec::new();
        simple_response(404, "nope", false, &[], &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
        );
    }
}
