//! Responses the proxy answers with itself (errors and other local answers) and the
//! reason phrases of their status lines. Pure functions writing into a caller's buffer:
//! no sockets, callable from any thread.

use super::forward::write_connection;
use std::io::Write as _;

/// A complete local response with a text body (none for 1xx, 204 and 304, which
/// cannot have one). `extra_headers` come before the framing; a Content-Type among
/// them replaces `text/plain`. `head_only` answers a HEAD: the framing says the body's
/// length, as a GET's answer would (RFC 9110 §8.6 allows no other), and the body stays.
pub fn simple_response(
    status: u16,
    body: &str,
    head_only: bool,
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
    // RFC 9110 §6.6.1: Turnstile is the origin of its own answers, and has a clock.
    let has_date = extra_headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("date"));
    if status >= 200 && !has_date {
        super::write_date_now(out);
    }
    if !bodiless {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    if !(100..200).contains(&status) {
        write_connection(keep_alive, out);
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless && !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}

/// The standard reason phrase (RFC 9110 §15), or the class's name for others.
fn reason(status: u16) -> &'static str {
    known_reason(status).unwrap_or(match status {
        100..=199 => "Informational",
        200..=299 => "Success",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        _ => "Server Error",
    })
}

/// The standard reason phrase for `status`, if it has one.
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
        508 => Some("Loop Detected"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_response, BodyFraming, Method};
    use super::*;

    /// `raw` without its one `Date` line (whose value is now).
    fn undated(raw: Vec<u8>) -> String {
        super::super::test_util::undated(&String::from_utf8(raw).unwrap())
    }

    #[test]
    fn simple_responses_are_complete() {
        let mut out = Vec::new();
        simple_response(404, "nope", false, false, &[], &mut out);
        assert_eq!(
            undated(out),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
        );
        let mut out = Vec::new();
        simple_response(
            200,
            "{}",
            false,
            true,
            &[("Content-Type", "application/json"), ("X-A", "b")],
            &mut out,
        );
        assert_eq!(
            undated(out),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: b\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}"
        );
        let mut out = Vec::new();
        simple_response(204, "ignored", false, true, &[], &mut out);
        assert_eq!(
            undated(out),
            "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
        // What we write, we parse back.
        let mut out = Vec::new();
        simple_response(503, "busy", false, true, &[], &mut out);
        let (h, n) = parse_response(&out, 8192).unwrap().unwrap();
        assert_eq!(
            (h.status, h.body(Method::Other), &out[n..]),
            (503, BodyFraming::Length(4), &b"busy"[..])
        );
        // A HEAD's answer says the length and sends no body.
        let mut out = Vec::new();
        simple_response(200, "{}", true, true, &[], &mut out);
        assert_eq!(
            undated(out),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
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
}
