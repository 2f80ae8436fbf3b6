//! `Vary` (RFC 9111 §4.1): the request's side of a response's `Vary`, normalised so that
//! requests that mean the same match (whitespace around commas, and case where a
//! field's values are case-insensitive), and where each variant is kept. Pure.

use crate::http::codec::{RequestHead, ResponseHead};

/// Fields whose values are compared without regard to case: content codings (RFC 9110
/// §8.4.1), language tags (RFC 5646 §2.1.1) and charsets (RFC 9110 §8.3.2).
const CASE_INSENSITIVE: &[&str] = &["accept-encoding", "accept-language", "accept-charset"];

/// Where the variant `variant` (non-empty, see [`variant`]) of generation `generation`
/// of the object at `key` is kept. An object with `Vary` is stored twice: at its URL's
/// key, where the latest variant fetched answers lookups first (and tells which fields
/// vary and the generation), and at this key, where a request whose values differ
/// finds the variant made for them. A new generation starts when a variant is stored
/// while the URL's key holds none (first fetch, eviction, invalidation): the variants of
/// older generations are then out of reach and age out of the cache.
pub fn alternate_key(key: &str, generation: u64, variant: &[u8]) -> String {
    let mut k = String::with_capacity(key.len() + 22 + variant.len());
    k.push_str(key);
    k.push('\n');
    k.push_str(&generation.to_string());
    k.push('\n');
    for &b in variant {
        if (b.is_ascii_graphic() && b != b'%') || b == b' ' || b == b'\n' {
            k.push(b as char);
        } else {
            k.push_str(&format!("%{b:02X}"));
        }
    }
    k
}

/// The request's side of the response's `Vary`: for each field name it lists, in its
/// order, `name:value` and a line feed, the value being the request's field lines of
/// that name, their comma-separated members trimmed and joined by commas (lower case
/// for the fields in `CASE_INSENSITIVE`; empty when they hold none); `name` alone and a
/// line feed when the request has no such field, which matches only a request without
/// one too (RFC 9111 §4.1). Empty without `Vary`; None for `Vary: *`, which no request
/// matches.
pub fn variant(resp: &ResponseHead, req: &RequestHead) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for value in resp.headers_all("vary") {
        for name in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if name.is_empty() {
                continue;
            }
            if name == b"*" {
                return None;
            }
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            let fold = CASE_INSENSITIVE.contains(&name.as_str());
            out.extend_from_slice(name.as_bytes());
            if req.headers_all(&name).next().is_none() {
                out.push(b'\n');
                continue;
            }
            out.push(b':');
            let mut first = true;
            for member in req
                .headers_all(&name)
                .flat_map(|v| v.split(|&b| b == b','))
                .map(<[u8]>::trim_ascii)
                .filter(|m| !m.is_empty())
            {
                if !first {
                    out.push(b',');
                }
                first = false;
                let at = out.len();
                out.extend_from_slice(member);
                if fold {
                    out[at..].make_ascii_lowercase();
                }
            }
            out.push(b'\n');
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::codec::test_util::{request_with as req, resp};

    #[test]
    fn rfc9111_4_1_request_values_are_normalised_before_matching() {
        let r = resp("HTTP/1.1 200 OK\r\nVary: Accept-Encoding, Accept-Language, X-Case\r\n\r\n");
        let a = variant(
            &r,
            &req("Accept-Encoding: gzip,br\r\nAccept-Language: en-US\r\nX-Case: A\r\n"),
        )
        .unwrap();
        let b = variant(
            &r,
            &req("accept-encoding: GZIP ,  br\r\nAccept-Language:  EN-us \r\nx-case: A\r\n"),
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a,
            b"accept-encoding:gzip,br\naccept-language:en-us\nx-case:A\n"
        );
        // Values of other fields keep their case; order of members still matters.
        let c = variant(
            &r,
            &req("Accept-Encoding: gzip,br\r\nAccept-Language: en-US\r\nX-Case: a\r\n"),
        )
        .unwrap();
        assert_ne!(a, c);
        let d = variant(
            &r,
            &req("Accept-Encoding: br, gzip\r\nAccept-Language: en-US\r\nX-Case: A\r\n"),
        )
        .unwrap();
        assert_ne!(a, d);
        // Several field lines are one list.
        let e = variant(&r, &req("Accept-Encoding: gzip\r\nAccept-Encoding: br\r\nAccept-Language: en-US\r\nX-Case: A\r\n")).unwrap();
        assert_eq!(a, e);
        assert_eq!(
            variant(&resp("HTTP/1.1 200 OK\r\nVary: *\r\n\r\n"), &req("")),
            None
        );
    }

    #[test]
    fn rfc9111_4_1_an_absent_field_matches_only_an_absent_one() {
        let r = resp("HTTP/1.1 200 OK\r\nVary: X-Foo\r\n\r\n");
        let absent = variant(&r, &req("")).unwrap();
        let empty = variant(&r, &req("X-Foo:\r\n")).unwrap();
        let blank_members = variant(&r, &req("X-Foo: ,\r\n")).unwrap();
        assert_ne!(absent, empty);
        assert_eq!(empty, blank_members);
        assert_eq!(absent, variant(&r, &req("X-Other: 1\r\n")).unwrap());
    }
}
