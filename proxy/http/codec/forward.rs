//! The heads a proxy forwards: a request rewritten for the origin and a response
//! rewritten for the client, without hop-by-hop fields, with Via (and X-Forwarded-For),
//! Connection, and the framing the proxy read written as one canonical field. Pure
//! functions over byte slices: no sockets, callable from any thread.

use super::scan::tokens;
use super::{BodyFraming, Fields, RequestHead, ResponseHead};
use crate::http::field_names::{name_bit, name_bits, names, Name, FRAMING_BITS, HOP_BY_HOP_BITS};
use std::io::Write as _;
use std::net::IpAddr;

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
    /// The `Max-Forwards` to send in place of the client's (RFC 9110 §7.6.2: one less
    /// on a TRACE or OPTIONS); None sends the client's as it is.
    pub max_forwards: Option<u64>,
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
    /// `Transfer-Encoding: chunked` (encode with
    /// [`encode_chunk`](super::encode_chunk)), `UntilClose` sends neither and
    /// `Connection: close` (headers kept as they are if the origin's body was
    /// close-delimited already). Either way the origin's Content-Length and
    /// Transfer-Encoding are dropped, so only for payloads without other codings.
    pub framing_override: Option<BodyFraming>,
}

/// Names a forwarded message must not carry: hop-by-hop ones and those its Connection
/// header lists, except framing headers ([`HOP_BY_HOP_BITS`], [`FRAMING_BITS`]: a
/// Connection token never removes a framing field, by which the proxy frames the body
/// and so must the next hop).
///
/// Built per forwarded message, and per stored response (`caching/stored.rs`: a head
/// built anew keeps none of them either); allocates only when the Connection header
/// names fields the proxy does not know by name (`close`, `keep-alive` and the
/// hop-by-hop ones it does).
pub(crate) struct Skip<'a> {
    /// The known names to skip.
    bits: u64,
    /// The known names the Connection header lists.
    listed: u64,
    /// Other names the Connection header lists.
    named: Vec<&'a [u8]>,
    /// Skip names holding `_`.
    underscored: bool,
}

impl<'a> Skip<'a> {
    /// What to skip of `headers`: the hop-by-hop fields, those its Connection header
    /// lists (never a framing field), the known names of `extra`, with `framing` the
    /// framing fields, with `underscored` names holding `_`.
    pub(crate) fn new(
        headers: &'a Fields,
        extra: u64,
        framing: bool,
        underscored: bool,
    ) -> Skip<'a> {
        let mut bits = HOP_BY_HOP_BITS | extra;
        if framing {
            bits |= FRAMING_BITS;
        }
        let mut named = Vec::new();
        let mut listed = 0;
        for t in tokens(headers, names::CONNECTION) {
            match name_bit(t) {
                0 => named.push(t),
                b => listed |= b & !FRAMING_BITS,
            }
        }
        Skip {
            bits: bits | listed,
            listed,
            named,
            underscored,
        }
    }

    /// Whether a field named `name` is skipped (the name classified here: for callers
    /// that hold a name without its bit).
    pub(crate) fn skips(&self, name: &[u8]) -> bool {
        self.contains(name_bit(name), name)
    }

    /// Whether the field `name`, whose bit is `bit`, is skipped.
    fn contains(&self, bit: u64, name: &[u8]) -> bool {
        if bit != 0 {
            return self.bits & bit != 0;
        }
        (self.underscored && name.contains(&b'_'))
            || self.named.iter().any(|n| name.eq_ignore_ascii_case(n))
    }
}

/// Every field of `headers` that `skip` does not name, in order.
fn write_fields(headers: &Fields, skip: &Skip<'_>, out: &mut Vec<u8>) {
    for (bit, name, value) in headers.raw() {
        if skip.contains(bit, name) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// One `name` field: every existing `lookup` value, then ours (written by `ours`),
/// comma-joined; ours alone when the Connection header lists the name (its fields are
/// the previous hop's, RFC 9110 §7.6.1).
fn write_appended(
    headers: &Fields,
    skip: &Skip<'_>,
    (name, lookup): (&str, Name<'static>),
    out: &mut Vec<u8>,
    ours: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    let listed = skip.listed & lookup.bit() != 0;
    for v in headers.get_all(lookup).filter(|_| !listed) {
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

/// A `Date` field of `unix` seconds (an IMF-fixdate, RFC 9110 §5.6.7).
pub(crate) fn write_date(out: &mut Vec<u8>, unix: u64) {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(httpdate::fmt_http_date(at).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A `Date` field of now.
pub(crate) fn write_date_now(out: &mut Vec<u8>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    write_date(out, now);
}

/// The `Connection` field saying whether the connection stays open.
pub(super) fn write_connection(keep_alive: bool, out: &mut Vec<u8>) {
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
    let extra = if opts.client_ip.is_some() {
        const { name_bits(&["host", "via", "x-forwarded-for"]) }
    } else {
        const { name_bits(&["host", "via"]) }
    };
    let extra = match opts.max_forwards {
        Some(_) => extra | const { name_bits(&["max-forwards"]) },
        None => extra,
    };
    let skip = Skip::new(&head.headers, extra, true, !opts.underscores);
    out.reserve(head.headers.byte_len() + opts.path_and_query.len() + opts.via.len() + 96);
    out.extend_from_slice(head.headers.slice(head.method));
    out.push(b' ');
    out.extend_from_slice(opts.path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(opts.host.as_bytes());
    out.extend_from_slice(b"\r\n");
    write_fields(&head.headers, &skip, out);
    if let Some(n) = opts.max_forwards {
        out.extend_from_slice(b"Max-Forwards: ");
        push_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    }
    match head.framing {
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
    write_appended(&head.headers, &skip, ("Via", names::VIA), out, |o| {
        o.extend_from_slice(opts.via.as_bytes())
    });
    if let Some(ip) = opts.client_ip {
        write_appended(
            &head.headers,
            &skip,
            ("X-Forwarded-For", names::X_FORWARDED_FOR),
            out,
            |o| push_ip(o, ip),
        );
    }
    write_connection(opts.keep_alive, out);
    out.extend_from_slice(b"\r\n");
}

/// Writes the response head to send to the client: always HTTP/1.1, end-to-end fields
/// in order, the framing as one field of the proxy's own, Via, and Connection (not on
/// 1xx).
pub fn write_response_head(head: &ResponseHead, out: &mut Vec<u8>, opts: &ForwardResponse<'_>) {
    // RFC 9110 §8.6 and RFC 9112 §6.1: no Content-Length or Transfer-Encoding on 1xx and
    // 204, and a Content-Length list of one value goes on as that value (as on
    // requests: the next hop cannot read it differently). A HEAD or 304 response keeps
    // its Content-Length: it is the representation's.
    let reframe = if head.status < 200 || head.status == 204 {
        Some(BodyFraming::None)
    } else {
        match opts.framing_override {
            None | Some(BodyFraming::None) => match head.framing {
                BodyFraming::Length(n) => Some(BodyFraming::Length(n)),
                _ => None,
            },
            Some(BodyFraming::UntilClose) if head.framing == BodyFraming::UntilClose => None,
            Some(f) => Some(f),
        }
    };
    let skip = Skip::new(
        &head.headers,
        const { name_bits(&["via"]) },
        reframe.is_some(),
        false,
    );
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
    // RFC 9110 §6.6.1: a response forwarded without a Date gets one of its receipt.
    if head.status >= 200 && !head.headers.contains(names::DATE) {
        write_date_now(out);
    }
    write_appended(&head.headers, &skip, ("Via", names::VIA), out, |o| {
        o.extend_from_slice(opts.via.as_bytes())
    });
    if !(100..200).contains(&head.status) {
        let until_close = opts.framing_override == Some(BodyFraming::UntilClose);
        write_connection(opts.keep_alive && !until_close, out);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{head, resp};
    use super::super::{parse_response, Method};
    use super::*;

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
                max_forwards: None,
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
                max_forwards: None,
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
    fn connection_tokens_remove_known_and_other_fields_in_any_case() {
        let s = forward(
            "GET /x HTTP/1.1\r\nHost: c\r\nConnection: CACHE-control,x-Other , close\r\n\
             Cache-Control: no-cache\r\nX-OTHER: 1\r\nPragma: no-cache\r\nClose: 1\r\n\r\n",
            None,
            true,
        );
        assert_eq!(
            s,
            "GET /y?z HTTP/1.1\r\nHost: origin:81\r\nPragma: no-cache\r\nVia: 1.1 t\r\n\
             Connection: keep-alive\r\n\r\n"
        );
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
        let head = resp(raw);
        write_response_head(
            &head,
            &mut out,
            &ForwardResponse {
                via: "1.1 t",
                keep_alive,
                framing_override,
            },
        );
        let s = String::from_utf8(out).unwrap();
        // A final response without a Date gets one of now (RFC 9110 §6.6.1), which is
        // taken out here for the exact compares.
        if head.status < 200 || raw.contains("\r\nDate: ") {
            return s;
        }
        super::super::test_util::undated(&s)
    }

    #[test]
    fn a_response_without_a_date_gets_one_and_one_with_keeps_its_own() {
        let mut out = Vec::new();
        let opts = ForwardResponse {
            via: "v",
            keep_alive: true,
            framing_override: None,
        };
        write_response_head(
            &resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            &mut out,
            &opts,
        );
        let s = String::from_utf8(out).unwrap();
        let date = s.lines().find_map(|l| l.strip_prefix("Date: ")).expect(&s);
        let at = httpdate::parse_http_date(date).unwrap();
        let age = std::time::SystemTime::now()
            .duration_since(at)
            .unwrap_or_default();
        assert!(age.as_secs() < 60, "{s}");
        let dated =
            "HTTP/1.1 200 OK\r\nDate: Sun, 09 Sep 2001 01:46:40 GMT\r\nContent-Length: 0\r\n\r\n";
        let mut out = Vec::new();
        write_response_head(&resp(dated), &mut out, &opts);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.matches("Date: ").count(), 1, "{s}");
        assert!(s.contains("Date: Sun, 09 Sep 2001 01:46:40 GMT\r\n"), "{s}");
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
            "HTTP/1.1 200 Fine\r\nX-B: 2\r\nContent-Length: 3\r\nVia: 1.0 o, 1.1 t\r\n\
             Connection: keep-alive\r\n\r\n"
        );
        // A Content-Length list goes on as its one value; a 204 carries no framing field
        // (RFC 9110 §8.6).
        let s = forward_response(
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
            true,
            None,
        );
        assert!(s.contains("\r\nContent-Length: 3\r\n"), "{s}");
        assert_eq!(s.matches("Content-Length").count(), 1, "{s}");
        let s = forward_response(
            "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
            None,
        );
        assert_eq!(
            s,
            "HTTP/1.1 204 No Content\r\nVia: 1.1 t\r\nConnection: keep-alive\r\n\r\n"
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
        assert_eq!(h.body(Method::Other), BodyFraming::UntilClose);
        let mut out = Vec::new();
        let opts = ForwardResponse {
            via: "1.1 t",
            keep_alive: false,
            framing_override: None,
        };
        write_response_head(&h, &mut out, &opts);
        let (again, _) = parse_response(&out, 8192).unwrap().unwrap();
        assert_eq!(
            again.body(Method::Other),
            BodyFraming::UntilClose,
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        assert!(!again.keep_alive());
    }
}
